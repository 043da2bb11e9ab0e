"""Fixtures of the identity tests: the service in-process on a loopback port, and a stub."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis
from pydantic import SecretStr

from services.identity.app import create_service
from services.identity.hashing import IdentifierHasher
from services.identity.settings import IdentitySettings
from shared.server import GrpcService
from trustfirst.identity.v1 import identity_pb2, identity_pb2_grpc

HASH_KEY = "test-identity-hash-key-0123456789abcdef"

EMAIL = identity_pb2.IDENTIFIER_KIND_EMAIL
PHONE = identity_pb2.IDENTIFIER_KIND_PHONE
ACCOUNT_ID = identity_pb2.IDENTIFIER_KIND_ACCOUNT_ID
LOYALTY_ID = identity_pb2.IDENTIFIER_KIND_LOYALTY_ID
DEVICE_ID = identity_pb2.IDENTIFIER_KIND_DEVICE_ID
COOKIE_ID = identity_pb2.IDENTIFIER_KIND_COOKIE_ID
POS_TOKEN = identity_pb2.IDENTIFIER_KIND_POS_TOKEN


def ident(
    kind: identity_pb2.IdentifierKind.ValueType, value: str
) -> identity_pb2.Identifier:
    return identity_pb2.Identifier(kind=kind, value=value)


def make_settings(redis_url: str, **overrides: Any) -> IdentitySettings:
    """Settings of a test service on a free port. Overrides set any field, rules included."""
    values: dict[str, Any] = {
        "port": 0,
        "redis_url": redis_url,
        "hash_key": SecretStr(HASH_KEY),
        "hash_key_file": None,
        "phone_default_region": "GB",
        "grace_seconds": 0,
        "rules_file": None,
        **overrides,
    }
    return IdentitySettings(**values)


@asynccontextmanager
async def running_identity(
    redis_url: str, **overrides: Any
) -> AsyncIterator[identity_pb2_grpc.IdentityServiceAsyncStub]:
    """Start an identity service with the given settings and yield a stub on it."""
    service = create_service(make_settings(redis_url, **overrides))
    await service.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel:
            yield identity_pb2_grpc.IdentityServiceStub(channel)
    finally:
        await service.stop(grace=0)


async def resolve(
    stub: identity_pb2_grpc.IdentityServiceAsyncStub,
    *identifiers: identity_pb2.Identifier,
    source: str = "web",
) -> identity_pb2.ResolveResponse:
    return await stub.Resolve(
        identity_pb2.ResolveRequest(identifiers=identifiers, source=source)
    )


async def lookup(
    stub: identity_pb2_grpc.IdentityServiceAsyncStub,
    *identifiers: identity_pb2.Identifier,
) -> identity_pb2.LookupResponse:
    return await stub.Lookup(identity_pb2.LookupRequest(identifiers=identifiers))


def rejections(
    response: identity_pb2.ResolveResponse,
) -> list[tuple[int, str, str, bool]]:
    """Return each rejection as (index, reason name, rule kind name, quarantined)."""
    return [
        (
            item.index,
            identity_pb2.RejectionReason.Name(item.reason),
            identity_pb2.IdentifierKind.Name(item.rule_kind),
            item.quarantined,
        )
        for item in response.rejected_identifiers
    ]


@pytest.fixture
def hasher() -> IdentifierHasher:
    return IdentifierHasher(HASH_KEY.encode())


@pytest.fixture(scope="session")
async def identity_service(redis_url: str) -> AsyncIterator[GrpcService]:
    service = create_service(make_settings(redis_url))
    await service.start()
    yield service
    await service.stop(grace=0)


@pytest.fixture(scope="session")
async def identity_channel(
    identity_service: GrpcService,
) -> AsyncIterator[grpc.aio.Channel]:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{identity_service.port}")
    yield channel
    await channel.close()


@pytest.fixture
async def stub(
    identity_channel: grpc.aio.Channel, redis_client: aioredis.Redis
) -> identity_pb2_grpc.IdentityServiceAsyncStub:
    """A stub on the running service; the test Redis is empty when the test starts."""
    return identity_pb2_grpc.IdentityServiceStub(identity_channel)
