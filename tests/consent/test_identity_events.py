"""Identity events read from the Redis Stream by the running consent service.

The events are written with XADD in identity's format, as the identity service writes
them, and one test runs the real identity service and merges two of its profiles.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeAlias, cast

import grpc
import pytest
import redis.asyncio as aioredis
from pydantic import SecretStr
from redis.exceptions import ConnectionError as RedisConnectionError

from services.consent.app import ConsentService, create_service
from services.consent.identity_events import IdentityEventConsumer
from services.consent.reconciler import IdentityEvent, IdentityReconciler
from services.identity import keys as identity_keys
from services.identity.app import create_service as create_identity_service
from services.identity.settings import IdentitySettings
from tests.consent.conftest import consent_settings
from tests.consent.helpers import change, error_reason, record
from trustfirst.consent.v1 import consent_pb2 as pb
from trustfirst.consent.v1 import consent_pb2_grpc
from trustfirst.identity.v1 import identity_pb2, identity_pb2_grpc

STREAM = identity_keys.EVENTS_STREAM
Stub: TypeAlias = "consent_pb2_grpc.ConsentServiceAsyncStub"
MARKETING_EMAIL = pb.PurposeChannel(
    purpose=pb.PURPOSE_MARKETING, channel=pb.CHANNEL_EMAIL
)
TIME = "2025-06-01T12:00:00Z"


async def wait_until(
    condition: Callable[[], Awaitable[bool]], timeout_seconds: float = 10.0
) -> None:
    """Poll condition every 20 ms until it holds; fail after timeout_seconds."""
    deadline = asyncio.get_running_loop().time() + timeout_seconds
    while not await condition():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"condition not met within {timeout_seconds} s")
        await asyncio.sleep(0.02)


@pytest.fixture
async def consuming(
    redis_client: aioredis.Redis, redis_url: str
) -> AsyncIterator[tuple[ConsentService, Stub]]:
    """A consent service whose identity event consumer runs, on an empty database."""
    service = create_service(
        consent_settings(redis_url, identity_events=True, identity_events_block_ms=50)
    )
    await service.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel:
            yield service, consent_pb2_grpc.ConsentServiceStub(channel)
    finally:
        await service.stop(grace=0)


async def check(stub: Stub, subject_id: str) -> pb.CheckConsentResponse:
    return await stub.CheckConsent(
        pb.CheckConsentRequest(subject_id=subject_id, pairs=[MARKETING_EMAIL])
    )


async def all_acknowledged(redis_client: aioredis.Redis) -> bool:
    """Tell whether the consent group has read every entry and acknowledged it."""
    groups: list[dict[str, Any]] = await redis_client.xinfo_groups(STREAM)
    last = cast("list[tuple[str, Any]]", await redis_client.xrevrange(STREAM, count=1))
    for group in groups:
        if group["name"] == "consent":
            delivered = bool(last) and group["last-delivered-id"] == last[0][0]
            return delivered and group["pending"] == 0
    return False


async def test_events_merge_from_stream(
    consuming: tuple[ConsentService, Stub], redis_client: aioredis.Redis
) -> None:
    _, stub = consuming
    await record(stub, change(pb.CONSENT_ACTION_GRANT), subject_id="p-survivor")
    await record(stub, change(pb.CONSENT_ACTION_DENY), subject_id="p-merged")

    await redis_client.xadd(
        STREAM,
        {
            "type": "merge",
            "profile_id": "p-survivor",
            "merged_ids": "p-merged",
            "time": TIME,
        },
    )
    await wait_until(lambda: all_acknowledged(redis_client))
    survivor = await check(stub, "p-survivor")
    merged = await check(stub, "p-merged")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await record(stub, change(pb.CONSENT_ACTION_GRANT), subject_id="p-merged")

    assert survivor.results[0].reason == pb.CHECK_REASON_DENIED
    assert merged.results[0].reason == pb.CHECK_REASON_SUBJECT_MERGED
    assert merged.results[0].allowed is False
    assert merged.merged_into_subject_id == "p-survivor"
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_reason(raised.value) == "SUBJECT_MERGED"


async def test_events_merge_several_ids(
    consuming: tuple[ConsentService, Stub], redis_client: aioredis.Redis
) -> None:
    _, stub = consuming
    await record(stub, change(pb.CONSENT_ACTION_GRANT), subject_id="p-survivor")
    await record(stub, change(pb.CONSENT_ACTION_GRANT), subject_id="p-one")
    await record(stub, change(pb.CONSENT_ACTION_WITHDRAW), subject_id="p-two")

    await redis_client.xadd(
        STREAM,
        {
            "type": "merge",
            "profile_id": "p-survivor",
            "merged_ids": "p-one,p-two",
            "time": TIME,
        },
    )
    await wait_until(lambda: all_acknowledged(redis_client))
    survivor = await check(stub, "p-survivor")
    history = await stub.ListConsentHistory(
        pb.ListConsentHistoryRequest(subject_id="p-survivor")
    )

    assert survivor.results[0].reason == pb.CHECK_REASON_WITHDRAWN
    assert [e.type for e in history.entries] == [
        pb.LEDGER_ENTRY_TYPE_RECORD,
        pb.LEDGER_ENTRY_TYPE_MERGE,
        pb.LEDGER_ENTRY_TYPE_MERGE,
    ]
    assert [e.related_subject_id for e in history.entries[1:]] == ["p-one", "p-two"]
    assert history.entries[2].source == "identity-merge"


async def test_events_duplicate_entry_once(
    consuming: tuple[ConsentService, Stub], redis_client: aioredis.Redis
) -> None:
    _, stub = consuming
    await record(stub, change(pb.CONSENT_ACTION_GRANT), subject_id="p-survivor")
    await record(stub, change(pb.CONSENT_ACTION_DENY), subject_id="p-merged")
    event: dict[Any, Any] = {
        "type": "merge",
        "profile_id": "p-survivor",
        "merged_ids": "p-merged",
        "time": TIME,
    }

    await redis_client.xadd(STREAM, event)
    await redis_client.xadd(STREAM, event)
    await wait_until(lambda: all_acknowledged(redis_client))

    assert await redis_client.llen("tf:consent:{p-survivor}:ledger") == 2
    assert await redis_client.llen("tf:consent:{p-merged}:ledger") == 2


async def test_events_erase_from_stream(
    consuming: tuple[ConsentService, Stub], redis_client: aioredis.Redis
) -> None:
    _, stub = consuming
    await record(stub, change(pb.CONSENT_ACTION_GRANT), subject_id="p-erased")
    await record(stub, change(pb.CONSENT_ACTION_GRANT), subject_id="p-old")

    await redis_client.xadd(
        STREAM,
        {
            "type": "erase",
            "profile_id": "p-erased",
            "merged_ids": "p-old",
            "time": TIME,
        },
    )
    await wait_until(lambda: all_acknowledged(redis_client))
    consent_keys = cast("list[str]", await redis_client.keys("tf:consent:*"))
    verified = await stub.VerifyLedger(pb.VerifyLedgerRequest(subject_id="p-erased"))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await record(stub, change(pb.CONSENT_ACTION_GRANT), subject_id="p-erased")

    assert len(consent_keys) == 2
    assert all(key.startswith("tf:consent:erased:{") for key in consent_keys)
    assert not any("p-erased" in key or "p-old" in key for key in consent_keys)
    assert verified.erasure.ledger_sequence == 1
    assert len(verified.erasure.entry_hashes) == 1
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_reason(raised.value) == "SUBJECT_ERASED"


async def test_events_split_from_stream(
    consuming: tuple[ConsentService, Stub], redis_client: aioredis.Redis
) -> None:
    _, stub = consuming
    await record(
        stub,
        change(pb.CONSENT_ACTION_DENY),
        change(pb.CONSENT_ACTION_GRANT, channel=pb.CHANNEL_SMS),
        subject_id="p-origin",
    )

    await redis_client.xadd(
        STREAM,
        {
            "type": "split",
            "profile_id": "p-origin",
            "new_profile_id": "p-new",
            "time": TIME,
        },
    )
    await wait_until(lambda: all_acknowledged(redis_client))
    response = await stub.CheckConsent(
        pb.CheckConsentRequest(
            subject_id="p-new",
            pairs=[
                MARKETING_EMAIL,
                pb.PurposeChannel(purpose=pb.PURPOSE_MARKETING, channel=pb.CHANNEL_SMS),
            ],
        )
    )

    assert [r.reason for r in response.results] == [
        pb.CHECK_REASON_DENIED,
        pb.CHECK_REASON_NEVER_ASKED,
    ]


@pytest.mark.usefixtures("consuming")
async def test_events_malformed_acknowledged(redis_client: aioredis.Redis) -> None:
    await redis_client.xadd(
        STREAM, {"type": "merge", "profile_id": "p-survivor", "time": TIME}
    )
    await redis_client.xadd(
        STREAM, {"type": "rename", "profile_id": "p-survivor", "time": TIME}
    )
    await redis_client.xadd(
        STREAM, {"type": "split", "profile_id": "p-survivor", "time": TIME}
    )
    await wait_until(lambda: all_acknowledged(redis_client))

    assert await redis_client.keys("tf:consent:*") == []


async def test_events_claims_dead_consumer_entry(
    redis_client: aioredis.Redis, redis_url: str
) -> None:
    # Another replica read the event and died before its XACK.
    await redis_client.xgroup_create(STREAM, "consent", id="0", mkstream=True)
    await redis_client.xadd(
        STREAM,
        {
            "type": "merge",
            "profile_id": "p-survivor",
            "merged_ids": "p-merged",
            "time": TIME,
        },
    )
    await redis_client.xreadgroup("consent", "dead-replica", {STREAM: ">"})

    service = create_service(
        consent_settings(
            redis_url,
            identity_events=True,
            identity_events_block_ms=50,
            identity_events_claim_idle_ms=1000,
        )
    )
    await service.start()
    try:
        await wait_until(lambda: all_acknowledged(redis_client))
    finally:
        await service.stop(grace=0)

    assert await redis_client.llen("tf:consent:{p-survivor}:ledger") == 1
    assert (
        await redis_client.hget("tf:consent:{p-merged}:state", "merged_into")
        == "p-survivor"
    )


async def test_events_consumer_stops_with_service(
    consuming: tuple[ConsentService, Stub],
) -> None:
    service, _ = consuming
    assert service.consumer is not None

    await service.consumer.stop()
    await service.consumer.stop()

    assert service.consumer.applied == 0


async def test_events_real_identity_merge(
    consuming: tuple[ConsentService, Stub], redis_client: aioredis.Redis, redis_url: str
) -> None:
    _, stub = consuming
    identity = create_identity_service(
        IdentitySettings(
            port=0,
            redis_url=redis_url,
            hash_key=SecretStr("consent-tests-identity-hash-key-0123456789"),
            grace_seconds=0,
        )
    )
    await identity.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{identity.port}") as channel:
            profiles = identity_pb2_grpc.IdentityServiceStub(channel)
            email = identity_pb2.Identifier(
                kind=identity_pb2.IDENTIFIER_KIND_EMAIL, value="ada@example.com"
            )
            loyalty = identity_pb2.Identifier(
                kind=identity_pb2.IDENTIFIER_KIND_LOYALTY_ID, value="LOY-4471-2209"
            )
            first = await profiles.Resolve(
                identity_pb2.ResolveRequest(identifiers=[email], source="web")
            )
            second = await profiles.Resolve(
                identity_pb2.ResolveRequest(identifiers=[loyalty], source="pos")
            )
            await record(
                stub, change(pb.CONSENT_ACTION_GRANT), subject_id=first.profile_id
            )
            await record(
                stub, change(pb.CONSENT_ACTION_WITHDRAW), subject_id=second.profile_id
            )

            merged = await profiles.Resolve(
                identity_pb2.ResolveRequest(identifiers=[email, loyalty], source="app")
            )
    finally:
        await identity.stop(grace=0)
    await wait_until(lambda: all_acknowledged(redis_client))
    survivor = await check(stub, merged.profile_id)
    (loser,) = merged.merged_profile_ids
    closed = await check(stub, loser)

    assert {merged.profile_id, loser} == {first.profile_id, second.profile_id}
    assert survivor.results[0].reason == pb.CHECK_REASON_WITHDRAWN
    assert closed.merged_into_subject_id == merged.profile_id


class FlakyReconciler(IdentityReconciler):
    """Fails each event with the queued errors first, then records it as applied."""

    def __init__(self, errors: list[Exception]) -> None:
        self.errors = errors
        self.applied: list[IdentityEvent] = []

    async def apply(self, event: IdentityEvent) -> None:
        if self.errors:
            raise self.errors.pop(0)
        self.applied.append(event)


async def pending_count(redis_client: aioredis.Redis) -> int:
    summary = await redis_client.xpending(STREAM, "consent")
    return int(summary["pending"])


async def test_consumer_acks_after_apply(redis_client: aioredis.Redis) -> None:
    reconciler = FlakyReconciler([RedisConnectionError("connection reset")])
    consumer = IdentityEventConsumer(redis_client, reconciler, STREAM, consumer="c1")
    await redis_client.xadd(
        STREAM, {"type": "erase", "profile_id": "p-1", "time": TIME}
    )

    with pytest.raises(RedisConnectionError):
        await consumer.poll()
    pending_after_failure = await pending_count(redis_client)
    acknowledged = await consumer.poll()

    assert pending_after_failure == 1
    assert acknowledged == 1
    assert await pending_count(redis_client) == 0
    assert [event.profile_id for event in reconciler.applied] == ["p-1"]


async def test_consumer_leaves_failing_entry_pending(
    redis_client: aioredis.Redis,
) -> None:
    reconciler = FlakyReconciler([ValueError("bad state")] * 3)
    consumer = IdentityEventConsumer(
        redis_client, reconciler, STREAM, consumer="c1", max_attempts=2
    )
    await redis_client.xadd(
        STREAM, {"type": "erase", "profile_id": "p-1", "time": TIME}
    )
    await redis_client.xadd(
        STREAM, {"type": "erase", "profile_id": "p-2", "time": TIME}
    )

    results = [await consumer.poll() for _ in range(4)]

    # p-1 fails on both its attempts and is skipped after; p-2 fails once, then succeeds.
    assert results == [0, 1, 0, 0]
    assert await pending_count(redis_client) == 1
    assert [event.profile_id for event in reconciler.applied] == ["p-2"]
