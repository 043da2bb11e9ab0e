"""Writes acknowledged only when durable: AOF fsync on every write, or WAIT on a replica."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis

from services.consent.app import create_service
from services.consent.durability import FSYNC, NONE, WAIT, DurabilityGuard
from services.consent.errors import StoreNotDurable
from shared.embedded_redis import EmbeddedRedis
from tests.consent.conftest import consent_settings
from tests.consent.helpers import MARKETING_EMAIL, SUBJECT, change, error_reason, record
from trustfirst.consent.v1 import consent_pb2 as pb
from trustfirst.consent.v1 import consent_pb2_grpc


@pytest.fixture
def lazy_redis() -> Iterator[EmbeddedRedis]:
    """A private redis-server that fsyncs once a second, so a crash can lose writes."""
    server = EmbeddedRedis(appendfsync="everysec").start()
    yield server
    server.stop()


@pytest.fixture
async def lazy_client(lazy_redis: EmbeddedRedis) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(lazy_redis.url, decode_responses=True)
    yield client
    await client.aclose()


async def run_writes(
    redis_url: str, writes: int = 1, **settings: Any
) -> list[pb.RecordConsentResponse | grpc.aio.AioRpcError]:
    """Start a consent service on redis_url and return each RecordConsent's outcome."""
    service = create_service(consent_settings(redis_url, **settings))
    await service.start()
    outcomes: list[pb.RecordConsentResponse | grpc.aio.AioRpcError] = []
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel:
            stub = consent_pb2_grpc.ConsentServiceStub(channel)
            for _ in range(writes):
                try:
                    outcomes.append(await record(stub, change(pb.CONSENT_ACTION_GRANT)))
                except grpc.aio.AioRpcError as error:
                    outcomes.append(error)
    finally:
        await service.stop(grace=0)
    return outcomes


async def attach_replica(primary: aioredis.Redis, replica: EmbeddedRedis) -> None:
    """Make replica follow the primary on 127.0.0.1 and wait until it is connected."""
    async with aioredis.Redis.from_url(replica.url) as client:
        await client.replicaof(
            "127.0.0.1", int(primary.connection_pool.connection_kwargs["port"])
        )
    for _ in range(250):
        info = await primary.info("replication")
        if info.get("connected_slaves") == 1:
            return
        await asyncio.sleep(0.02)
    pytest.fail("the replica did not connect within 5 s")


async def test_guard_fsync_mode(redis_client: aioredis.Redis) -> None:
    guard = DurabilityGuard(redis_client)

    status = await guard.refresh()

    assert status.mode == FSYNC
    assert status.appendfsync == "always"
    assert await guard.before_write() == 0


async def test_guard_none_mode(lazy_client: aioredis.Redis) -> None:
    guard = DurabilityGuard(lazy_client)

    status = await guard.refresh()

    assert status.mode == NONE
    with pytest.raises(StoreNotDurable):
        await guard.before_write()


async def test_guard_warn_accepts(lazy_client: aioredis.Redis) -> None:
    guard = DurabilityGuard(lazy_client, policy="warn")

    assert await guard.before_write() == 0


async def test_guard_rechecks_config(lazy_client: aioredis.Redis) -> None:
    now = [0.0]
    guard = DurabilityGuard(lazy_client, recheck_seconds=10, clock=lambda: now[0])
    with pytest.raises(StoreNotDurable):
        await guard.before_write()

    await lazy_client.config_set("appendfsync", "always")
    cached = guard.status
    now[0] = 10.0
    waited = await guard.before_write()

    assert cached is not None
    assert cached.mode == NONE
    assert waited == 0
    assert guard.status is not None
    assert guard.status.mode == FSYNC


async def test_service_rejects_lazy_redis(
    lazy_redis: EmbeddedRedis, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="services.consent.durability"):
        (outcome,) = await run_writes(lazy_redis.url)

    assert isinstance(outcome, grpc.aio.AioRpcError)
    assert outcome.code() == grpc.StatusCode.UNAVAILABLE
    assert error_reason(outcome) == "STORE_NOT_DURABLE"
    assert "appendfsync=everysec" in caplog.text
    assert "consent writes are rejected" in caplog.text


async def test_service_checks_on_lazy_redis(lazy_redis: EmbeddedRedis) -> None:
    service = create_service(consent_settings(lazy_redis.url))
    await service.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel:
            stub = consent_pb2_grpc.ConsentServiceStub(channel)
            response = await stub.CheckConsent(
                pb.CheckConsentRequest(subject_id=SUBJECT, pairs=[MARKETING_EMAIL])
            )
    finally:
        await service.stop(grace=0)

    assert response.results[0].reason == pb.CHECK_REASON_NEVER_ASKED


async def test_service_warn_accepts_lazy_redis(
    lazy_redis: EmbeddedRedis, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="services.consent.durability"):
        (outcome,) = await run_writes(lazy_redis.url, durability="warn")

    assert isinstance(outcome, pb.RecordConsentResponse)
    assert "accepted anyway" in caplog.text


async def test_service_waits_for_replica(
    lazy_redis: EmbeddedRedis, lazy_client: aioredis.Redis
) -> None:
    replica = EmbeddedRedis(appendfsync="everysec").start()
    try:
        await attach_replica(lazy_client, replica)
        guard = DurabilityGuard(lazy_client)
        status = await guard.refresh()
        first, second = await run_writes(lazy_redis.url, writes=2)
        async with aioredis.Redis.from_url(replica.url, decode_responses=True) as copy:
            replicated = await copy.llen(f"tf:consent:{{{SUBJECT}}}:ledger")
    finally:
        # A replica that follows a live primary takes 10 s to stop on SIGTERM here.
        replica.kill()
        replica.stop()

    assert status.mode == WAIT
    assert status.wait_replicas == 1
    assert isinstance(first, pb.RecordConsentResponse)
    assert isinstance(second, pb.RecordConsentResponse)
    assert replicated == 2


async def test_service_fails_when_replica_lost(
    lazy_redis: EmbeddedRedis, lazy_client: aioredis.Redis
) -> None:
    replica = EmbeddedRedis(appendfsync="everysec").start()
    try:
        await attach_replica(lazy_client, replica)
        service = create_service(
            consent_settings(lazy_redis.url, durability_wait_timeout_ms=100)
        )
        await service.start()
        replica.kill()
        try:
            async with grpc.aio.insecure_channel(
                f"127.0.0.1:{service.port}"
            ) as channel:
                stub = consent_pb2_grpc.ConsentServiceStub(channel)
                with pytest.raises(grpc.aio.AioRpcError) as raised:
                    await record(stub, change(pb.CONSENT_ACTION_GRANT))
        finally:
            await service.stop(grace=0)
    finally:
        replica.stop()

    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    assert error_reason(raised.value) == "STORE_NOT_DURABLE"


async def test_service_wait_replicas_setting(
    redis_url: str, redis_client: aioredis.Redis
) -> None:
    # With appendfsync always, a configured replica count still has to be met.
    (outcome,) = await run_writes(
        redis_url, durability_wait_replicas=1, durability_wait_timeout_ms=50
    )

    assert isinstance(outcome, grpc.aio.AioRpcError)
    assert error_reason(outcome) == "STORE_NOT_DURABLE"
