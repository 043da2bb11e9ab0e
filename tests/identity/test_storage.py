"""What the identity service stores in Redis: keyed hashes, never an identifier in clear."""

from __future__ import annotations

from typing import TypeAlias

import redis.asyncio as aioredis

from tests.identity.conftest import (
    ACCOUNT_ID,
    COOKIE_ID,
    DEVICE_ID,
    EMAIL,
    HASH_KEY,
    LOYALTY_ID,
    PHONE,
    POS_TOKEN,
    ident,
)
from trustfirst.identity.v1 import identity_pb2, identity_pb2_grpc

Stub: TypeAlias = "identity_pb2_grpc.IdentityServiceAsyncStub"

# Values chosen so that none can occur by chance inside a hex hash, an id or a timestamp.
CLEAR_VALUES = {
    EMAIL: " Zelda.Quinn@Example.org ",
    PHONE: "020 7946 0958",
    ACCOUNT_ID: "acct-zq-7731",
    LOYALTY_ID: "LOY-ZQ-5521",
    DEVICE_ID: "dev-zq-b7e1",
    COOKIE_ID: "ck-zq-9001",
    POS_TOKEN: "tok-zq-4242",
}
FORBIDDEN = [
    "zelda",
    "quinn",
    "example.org",
    "+442079460958",
    "442079460958",
    "7946",
    "acct-zq",
    "loy-zq",
    "dev-zq",
    "ck-zq",
    "tok-zq",
    HASH_KEY,
]


async def dump_redis(client: aioredis.Redis) -> list[str]:
    """Return every key name and every value, field and member in the database."""
    texts: list[str] = []
    async for key in client.scan_iter():
        texts.append(key)
        kind = await client.type(key)
        if kind == "string":
            texts.append(await client.get(key))
        elif kind == "hash":
            for field, value in (await client.hgetall(key)).items():
                texts.extend([field, value])
        elif kind == "set":
            texts.extend(await client.smembers(key))
        elif kind == "stream":
            for entry_id, fields in await client.xrange(key):
                texts.append(entry_id)
                for field, value in fields.items():
                    texts.extend([field, value])
        else:
            raise AssertionError(f"unexpected key type {kind} of {key}")
    return texts


async def test_redis_stores_no_clear_value(
    stub: Stub, redis_client: aioredis.Redis
) -> None:
    for kind, value in CLEAR_VALUES.items():
        await stub.Resolve(
            identity_pb2.ResolveRequest(identifiers=[ident(kind, value)], source="web")
        )
    everything = [ident(kind, value) for kind, value in CLEAR_VALUES.items()]
    await stub.Resolve(
        identity_pb2.ResolveRequest(identifiers=everything, source="crm")
    )

    texts = await dump_redis(redis_client)
    dump = "\n".join(texts).lower()

    assert len(texts) > 30
    for forbidden in FORBIDDEN:
        assert forbidden.lower() not in dump, forbidden
