"""What the identity service stores in Redis: keyed hashes, never an identifier in clear."""

from __future__ import annotations

import logging
from typing import TypeAlias

import pytest
import redis.asyncio as aioredis

from services.identity.keys import QUARANTINE_KEY
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
# The phone is checked by its 12 digits: a 4-digit part such as 7946 does occur in hashes.
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
        elif kind == "zset":
            for member, score in await client.zrange(key, 0, -1, withscores=True):
                texts.extend([member, str(score)])
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


async def run_lifecycle(stub: Stub) -> None:
    """Resolve, merge, quarantine a shared device, split and erase, with clear values."""
    everything = [ident(kind, value) for kind, value in CLEAR_VALUES.items()]
    created = await stub.Resolve(
        identity_pb2.ResolveRequest(identifiers=everything, source="crm")
    )
    for number in range(6):
        await stub.Resolve(
            identity_pb2.ResolveRequest(
                identifiers=[
                    ident(ACCOUNT_ID, f"acct-zq-{number}"),
                    ident(POS_TOKEN, "tok-zq-shared"),
                ],
                source="pos",
            )
        )
    await stub.SplitProfile(
        identity_pb2.SplitProfileRequest(
            profile_id=created.profile_id, identifiers=[everything[-1]]
        )
    )
    await stub.ExplainLink(
        identity_pb2.ExplainLinkRequest(first=everything[0], second=everything[1])
    )
    await stub.EraseProfile(
        identity_pb2.EraseProfileRequest(profile_id=created.profile_id)
    )


async def test_lifecycle_stores_no_clear_value(
    stub: Stub, redis_client: aioredis.Redis
) -> None:
    await run_lifecycle(stub)

    texts = await dump_redis(redis_client)
    dump = "\n".join(texts).lower()

    assert await redis_client.zcard(QUARANTINE_KEY) == 1
    for forbidden in FORBIDDEN:
        assert forbidden.lower() not in dump, forbidden


async def test_logs_contain_no_value(
    stub: Stub, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="services.identity"):
        await run_lifecycle(stub)

    logged = "\n".join(
        f"{record.getMessage()} {record.__dict__}" for record in caplog.records
    ).lower()

    assert "quarantined" in logged
    assert "erased" in logged
    for forbidden in FORBIDDEN:
        assert forbidden.lower() not in logged, forbidden
