"""CheckConsent over gRPC: statuses, reasons, order, expiry and no stale results."""

from __future__ import annotations

import asyncio
import time

import grpc
import redis.asyncio as aioredis

from services.consent.app import create_service
from tests.consent.conftest import consent_settings
from tests.consent.helpers import (
    EVERY_PAIR,
    MARKETING_EMAIL,
    SUBJECT,
    change,
    check_one,
    record,
)
from trustfirst.consent.v1 import consent_pb2 as pb
from trustfirst.consent.v1 import consent_pb2_grpc


async def test_check_never_asked_denied(
    stub: consent_pb2_grpc.ConsentServiceAsyncStub,
) -> None:
    result = await check_one(stub)

    assert result.allowed is False
    assert result.status == pb.CONSENT_STATUS_NEVER_ASKED
    assert result.reason == pb.CHECK_REASON_NEVER_ASKED


async def test_check_grant_allowed(
    stub: consent_pb2_grpc.ConsentServiceAsyncStub,
) -> None:
    await record(stub, change(pb.CONSENT_ACTION_GRANT))

    result = await check_one(stub)

    assert result.allowed is True
    assert result.status == pb.CONSENT_STATUS_GRANTED
    assert result.reason == pb.CHECK_REASON_GRANTED


async def test_check_deny_denied(
    stub: consent_pb2_grpc.ConsentServiceAsyncStub,
) -> None:
    await record(stub, change(pb.CONSENT_ACTION_GRANT))
    await record(stub, change(pb.CONSENT_ACTION_DENY))

    result = await check_one(stub)

    assert result.allowed is False
    assert result.status == pb.CONSENT_STATUS_DENIED
    assert result.reason == pb.CHECK_REASON_DENIED


async def test_check_withdraw_denied(
    stub: consent_pb2_grpc.ConsentServiceAsyncStub,
) -> None:
    await record(stub, change(pb.CONSENT_ACTION_GRANT))
    await record(stub, change(pb.CONSENT_ACTION_WITHDRAW))

    result = await check_one(stub)

    assert result.allowed is False
    assert result.status == pb.CONSENT_STATUS_WITHDRAWN
    assert result.reason == pb.CHECK_REASON_WITHDRAWN


async def test_check_withdraw_never_stale(
    stub: consent_pb2_grpc.ConsentServiceAsyncStub, redis_url: str
) -> None:
    # Writes go through one replica and checks through another, as two pods sharing
    # one Redis would serve them, so neither a server nor a channel can cache.
    second = create_service(consent_settings(redis_url))
    await second.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{second.port}") as channel:
            checker = consent_pb2_grpc.ConsentServiceStub(channel)
            answers = []
            for _ in range(40):
                await record(stub, change(pb.CONSENT_ACTION_GRANT))
                answers.append((await check_one(checker)).allowed)
                await record(stub, change(pb.CONSENT_ACTION_WITHDRAW))
                answers.append((await check_one(checker)).allowed)
    finally:
        await second.stop(grace=0)

    assert answers == [True, False] * 40


async def test_check_expired_grant_denied(
    stub: consent_pb2_grpc.ConsentServiceAsyncStub,
) -> None:
    grant = change(pb.CONSENT_ACTION_GRANT, expire_in_seconds=1.0)
    written = await record(stub, grant, idempotency_key="grant-with-expiry")
    before = await check_one(stub)

    expire_ns = grant.expire_time.ToNanoseconds()
    await asyncio.sleep(max(0.0, (expire_ns - time.time_ns()) / 1e9) + 0.05)
    after = await check_one(stub)
    retried = await record(stub, grant, idempotency_key="grant-with-expiry")

    assert before.allowed is True
    assert after.allowed is False
    assert after.status == pb.CONSENT_STATUS_DENIED
    assert after.reason == pb.CHECK_REASON_EXPIRED
    # A late retry of the same request replays instead of failing on the past expiry.
    assert retried.replayed is True
    assert retried.consistency_token == written.consistency_token


async def test_check_results_in_request_order(
    stub: consent_pb2_grpc.ConsentServiceAsyncStub,
) -> None:
    await record(
        stub,
        change(pb.CONSENT_ACTION_GRANT, pb.PURPOSE_MARKETING, pb.CHANNEL_SMS),
        change(pb.CONSENT_ACTION_DENY, pb.PURPOSE_PROFILING, pb.CHANNEL_WEB),
        change(pb.CONSENT_ACTION_WITHDRAW, pb.PURPOSE_ANALYTICS, pb.CHANNEL_PUSH),
    )
    pairs = [
        pb.PurposeChannel(purpose=pb.PURPOSE_ANALYTICS, channel=pb.CHANNEL_PUSH),
        pb.PurposeChannel(purpose=pb.PURPOSE_MARKETING, channel=pb.CHANNEL_SMS),
        MARKETING_EMAIL,
        pb.PurposeChannel(purpose=pb.PURPOSE_PROFILING, channel=pb.CHANNEL_WEB),
        pb.PurposeChannel(purpose=pb.PURPOSE_MARKETING, channel=pb.CHANNEL_SMS),
    ]

    response = await stub.CheckConsent(
        pb.CheckConsentRequest(subject_id=SUBJECT, pairs=pairs)
    )

    assert [(r.purpose, r.channel) for r in response.results] == [
        (p.purpose, p.channel) for p in pairs
    ]
    assert [r.reason for r in response.results] == [
        pb.CHECK_REASON_WITHDRAWN,
        pb.CHECK_REASON_GRANTED,
        pb.CHECK_REASON_NEVER_ASKED,
        pb.CHECK_REASON_DENIED,
        pb.CHECK_REASON_GRANTED,
    ]
    assert [r.allowed for r in response.results] == [False, True, False, False, True]


async def test_check_all_pairs_batch(
    stub: consent_pb2_grpc.ConsentServiceAsyncStub,
) -> None:
    pairs = EVERY_PAIR
    grants = [
        change(pb.CONSENT_ACTION_GRANT, pair.purpose, pair.channel) for pair in pairs
    ]
    await record(stub, *grants)

    response = await stub.CheckConsent(
        pb.CheckConsentRequest(subject_id=SUBJECT, pairs=pairs)
    )

    assert len(response.results) == 24
    assert all(result.allowed for result in response.results)


async def test_check_other_subject_unaffected(
    stub: consent_pb2_grpc.ConsentServiceAsyncStub,
) -> None:
    await record(stub, change(pb.CONSENT_ACTION_GRANT), subject_id="profile-a")

    result = await check_one(stub, subject_id="profile-b")

    assert result.reason == pb.CHECK_REASON_NEVER_ASKED


async def test_state_hash_fields(
    stub: consent_pb2_grpc.ConsentServiceAsyncStub, redis_client: aioredis.Redis
) -> None:
    await record(stub, change(pb.CONSENT_ACTION_GRANT))
    await record(stub, change(pb.CONSENT_ACTION_DENY, channel=pb.CHANNEL_SMS))

    fields = await redis_client.hkeys(f"tf:consent:{{{SUBJECT}}}:state")

    assert sorted(fields) == [
        "ledger_head",
        "ledger_sequence",
        "marketing:email",
        "marketing:sms",
    ]
