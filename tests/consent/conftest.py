"""Fixtures of the consent tests: one in-process consent service on a loopback port."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
import redis.asyncio as aioredis

from services.consent.app import create_service
from services.consent.settings import ConsentSettings
from shared.server import GrpcService
from trustfirst.consent.v1 import consent_pb2_grpc


def consent_settings(redis_url: str) -> ConsentSettings:
    """Settings of a test service: a free port on 127.0.0.1 and the test Redis."""
    return ConsentSettings(
        host="127.0.0.1", port=0, redis_url=redis_url, grace_seconds=0
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
