"""RecordConsent over gRPC: returned records, idempotent retries and concurrent writes."""

from __future__ import annotations

import asyncio

import grpc
import pytest
import redis.asyncio as aioredis

from services.consent.tokens import decode_token
from tests.consent.helpers import (
    SUBJECT,
    change,
    error_reason,
    field_violations,
    record,
    record_request,
    timestamp_in,
)
from trustfirst.consent.v1 import consent_pb2 as pb
from trustfirst.consent.v1 import consent_pb2_grpc

LEDGER_KEY = f"tf:consent:{{{SUBJECT}}}:ledger"


async def test_record_returns_records(
    stub: consent_pb2_grpc.ConsentServiceAsyncStub,
) -> None:
    grant = change(pb.CONSENT_ACTION_GRANT, expire_in_seconds=3600)
    deny = change(pb.CONSENT_ACTION_DENY, pb.PURPOSE_PROFILING, pb.CHANNEL_WEB)

    response = await stub.RecordConsent(
        record_request(grant, deny, source="pos", notice_version="v7")
    )

    first, second = response.records
    assert response.replayed is False
    assert (first.purpose, first.channel) == (pb.PURPOSE_MARKETING, pb.CHANNEL_EMAIL)
    assert first.status == pb.CONSENT_STATUS_GRANTED
    assert first.expire_time == grant.expire_time
    assert first.source == "pos"
    assert first.notice_version == "v7"
    assert first.ledger_sequence == 1
    assert first.update_time.seconds > 0
    assert (second.purpose, second.channel) == (pb.PURPOSE_PROFILING, pb.CHANNEL_WEB)
    assert second.status == pb.CONSENT_STATUS_DENIED
    assert second.HasField("expire_time") is False


async def test_record_tokens_increase(
    stub: consent_pb2_grpc.ConsentServiceAsyncStub,
) -> None:
    tokens = []
    for action in (
        pb.CONSENT_ACTION_GRANT,
        pb.CONSENT_ACTION_WITHDRAW,
        pb.CONSENT_ACTION_GRANT,
    ):
        response = await record(stub, change(action))
        tokens.append(response.consistency_token)

    assert [decode_token(SUBJECT, token) for token in tokens] == [1, 2, 3]


async def test_record_retry_replays(
    stub: consent_pb2_grpc.ConsentServiceAsyncStub, redis_client: aioredis.Redis
) -> None:
    grant = change(pb.CONSENT_ACTION_GRANT)
    first = await record(stub, grant, idempotency_key="retry-1")
    await record(stub, change(pb.CONSENT_ACTION_DENY, channel=pb.CHANNEL_SMS))

    retried = await record(stub, grant, idempotency_key="retry-1")

    assert first.replayed is False
    assert retried.replayed is True
    assert retried.consistency_token == first.consistency_token
    assert retried.records == first.records
    assert await redis_client.llen(LEDGER_KEY) == 2


async def test_record_concurrent_retries_apply_once(
    stub: consent_pb2_grpc.ConsentServiceAsyncStub, redis_client: aioredis.Redis
) -> None:
    request = record_request(
        change(pb.CONSENT_ACTION_GRANT), idempotency_key="same-click"
    )

    responses = await asyncio.gather(*(stub.RecordConsent(request) for _ in range(8)))

    assert [r.replayed for r in responses].count(False) == 1
    assert {r.consistency_token for r in responses} == {responses[0].consistency_token}
    assert await redis_client.llen(LEDGER_KEY) == 1


async def test_record_key_reuse_rejected(
    stub: consent_pb2_grpc.ConsentServiceAsyncStub,
) -> None:
    await record(stub, change(pb.CONSENT_ACTION_GRANT), idempotency_key="k1")

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await record(stub, change(pb.CONSENT_ACTION_DENY), idempotency_key="k1")

    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert list(field_violations(raised.value)) == ["idempotency_key"]


async def test_record_same_key_other_subject(
    stub: consent_pb2_grpc.ConsentServiceAsyncStub,
) -> None:
    grant = change(pb.CONSENT_ACTION_GRANT)
    first = await record(stub, grant, subject_id="profile-a", idempotency_key="k1")

    second = await record(stub, grant, subject_id="profile-b", idempotency_key="k1")

    assert first.replayed is False
    assert second.replayed is False


async def test_record_concurrent_writes_serialised(
    stub: consent_pb2_grpc.ConsentServiceAsyncStub, redis_client: aioredis.Redis
) -> None:
    channels = [pb.CHANNEL_EMAIL, pb.CHANNEL_SMS, pb.CHANNEL_PUSH, pb.CHANNEL_WEB]
    writes = [
        record(stub, change(pb.CONSENT_ACTION_GRANT, channel=channel))
        for channel in channels * 3
    ]

    responses = await asyncio.gather(*writes)

    sequences = sorted(decode_token(SUBJECT, r.consistency_token) for r in responses)
    assert sequences == list(range(1, 13))
    assert await redis_client.llen(LEDGER_KEY) == 12


async def test_record_grant_expiry_in_past(
    stub: consent_pb2_grpc.ConsentServiceAsyncStub,
) -> None:
    grant = change(pb.CONSENT_ACTION_GRANT)
    grant.expire_time.CopyFrom(timestamp_in(-60))

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await record(stub, grant)

    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_reason(raised.value) == "INVALID_ARGUMENT"
    assert list(field_violations(raised.value)) == ["changes[0].expire_time"]
