"""Fixtures of the consent tests: a durable Redis and an in-process consent service.

The consent tests get their own redis-server with ``appendfsync always``, because the
service rejects writes on a Redis that would lose them in a crash.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis

from services.consent.app import create_service
from services.consent.settings import ConsentSettings
from shared.embedded_redis import EmbeddedRedis
from shared.server import GrpcService
from tests.consent.helpers import SUBJECT_HASH_KEY
from trustfirst.consent.v1 import consent_pb2_grpc


@pytest.fixture(scope="session")
def redis_server() -> Iterator[EmbeddedRedis]:
    """A redis-server for the consent tests, with fsync on every write."""
    server = EmbeddedRedis(appendfsync="always").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server: EmbeddedRedis) -> str:
    """The consent Redis's URL; defined here too, because the session fixture of the same
    name at the top of tests/ may already be bound to the shared test Redis."""
    return redis_server.url


def consent_settings(redis_url: str, **fields: Any) -> ConsentSettings:
    """Settings of a test service: a free port on 127.0.0.1 and the test Redis.

    The identity event consumer is off unless fields turn it on, so that only tests
    about identity events have a background task writing to Redis.
    """
    fields.setdefault("identity_events", False)
    fields.setdefault("subject_hash_key", SUBJECT_HASH_KEY)
    return ConsentSettings(
        host="127.0.0.1", port=0, redis_url=redis_url, grace_seconds=0, **fields
    )


@pytest.fixture(scope="session")
async def consent_service(redis_url: str) -> AsyncIterator[GrpcService]:
    service = create_service(consent_settings(redis_url))
    await service.start()
    yield service
    await service.stop()


@pytest.fixture(scope="session")
async def consent_channel(
    consent_service: GrpcService,
) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(
        f"127.0.0.1:{consent_service.port}"
    ) as channel:
        yield channel


@pytest.fixture
def stub(
    consent_channel: grpc.aio.Channel, redis_client: aioredis.Redis
) -> consent_pb2_grpc.ConsentServiceAsyncStub:
    """A stub on the test service; the Redis database is empty when the test starts."""
    return consent_pb2_grpc.ConsentServiceStub(consent_channel)
