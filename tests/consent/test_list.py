"""ListConsents over gRPC, and the reader's view of expired grants."""

from __future__ import annotations

import time

import grpc
import pytest
import redis.asyncio as aioredis

from services.consent.tokens import decode_token, encode_token
from tests.consent.helpers import (
    SUBJECT,
    build_domain,
    change,
    field_violations,
    record,
)
from trustfirst.consent.v1 import consent_pb2 as pb
from trustfirst.consent.v1 import consent_pb2_grpc


async def list_consents(
    stub: consent_pb2_grpc.ConsentServiceAsyncStub,
) -> pb.ListConsentsResponse:
    return await stub.ListConsents(pb.ListConsentsRequest(subject_id=SUBJECT))


async def test_list_empty_subject(
    stub: consent_pb2_grpc.ConsentServiceAsyncStub,
) -> None:
    response = await list_consents(stub)

    assert list(response.consents) == []
    assert decode_token(SUBJECT, response.consistency_token) == 0


async def test_list_changed_pairs_sorted(
    stub: consent_pb2_grpc.ConsentServiceAsyncStub,
) -> None:
    await record(
        stub,
        change(pb.CONSENT_ACTION_DENY, pb.PURPOSE_PROFILING, pb.CHANNEL_WEB),
        change(pb.CONSENT_ACTION_GRANT, pb.PURPOSE_MARKETING, pb.CHANNEL_SMS),
    )
    await record(
        stub, change(pb.CONSENT_ACTION_WITHDRAW, pb.PURPOSE_MARKETING, pb.CHANNEL_EMAIL)
    )

    response = await list_consents(stub)

    assert [(c.purpose, c.channel, c.status) for c in response.consents] == [
        (pb.PURPOSE_MARKETING, pb.CHANNEL_EMAIL, pb.CONSENT_STATUS_WITHDRAWN),
        (pb.PURPOSE_MARKETING, pb.CHANNEL_SMS, pb.CONSENT_STATUS_GRANTED),
        (pb.PURPOSE_PROFILING, pb.CHANNEL_WEB, pb.CONSENT_STATUS_DENIED),
    ]
    assert [c.ledger_sequence for c in response.consents] == [2, 1, 1]
    assert decode_token(SUBJECT, response.consistency_token) == 2


async def test_list_matches_write(
    stub: consent_pb2_grpc.ConsentServiceAsyncStub,
) -> None:
    written = await record(
        stub, change(pb.CONSENT_ACTION_GRANT, expire_in_seconds=3600)
    )

    response = await list_consents(stub)

    assert list(response.consents) == list(written.records)


async def test_reader_lists_expired_grant_denied(
    stub: consent_pb2_grpc.ConsentServiceAsyncStub, redis_client: aioredis.Redis
) -> None:
    await record(stub, change(pb.CONSENT_ACTION_GRANT, expire_in_seconds=60))
    two_minutes_later = time.time_ns() + 120 * 10**9
    reader = build_domain(redis_client, clock=lambda: two_minutes_later).reader

    listing = await reader.list_consents(SUBJECT)

    assert listing.states[0].status == pb.CONSENT_STATUS_DENIED
    assert listing.states[0].expire_ns is not None


async def test_list_at_token_replays_state(
    stub: consent_pb2_grpc.ConsentServiceAsyncStub,
) -> None:
    # A decision's check carried token 2; the customer withdrew afterwards.
    await record(stub, change(pb.CONSENT_ACTION_GRANT))
    await record(stub, change(pb.CONSENT_ACTION_DENY, channel=pb.CHANNEL_SMS))
    check = await stub.CheckConsent(
        pb.CheckConsentRequest(
            subject_id=SUBJECT,
            pairs=[
                pb.PurposeChannel(
                    purpose=pb.PURPOSE_MARKETING, channel=pb.CHANNEL_EMAIL
                )
            ],
        )
    )
    await record(stub, change(pb.CONSENT_ACTION_WITHDRAW))

    then = await stub.ListConsents(
        pb.ListConsentsRequest(
            subject_id=SUBJECT, at_consistency_token=check.consistency_token
        )
    )
    now = await list_consents(stub)

    assert [(c.channel, c.status) for c in then.consents] == [
        (pb.CHANNEL_EMAIL, pb.CONSENT_STATUS_GRANTED),
        (pb.CHANNEL_SMS, pb.CONSENT_STATUS_DENIED),
    ]
    assert then.consistency_token == check.consistency_token
    assert now.consents[0].status == pb.CONSENT_STATUS_WITHDRAWN


async def test_list_at_token_matches_current(
    stub: consent_pb2_grpc.ConsentServiceAsyncStub,
) -> None:
    await record(stub, change(pb.CONSENT_ACTION_GRANT, expire_in_seconds=3600))
    written = await record(stub, change(pb.CONSENT_ACTION_DENY, channel=pb.CHANNEL_SMS))

    replayed = await stub.ListConsents(
        pb.ListConsentsRequest(
            subject_id=SUBJECT, at_consistency_token=written.consistency_token
        )
    )
    current = await list_consents(stub)

    assert list(replayed.consents) == list(current.consents)


async def test_list_at_token_ahead(
    stub: consent_pb2_grpc.ConsentServiceAsyncStub,
) -> None:
    await record(stub, change(pb.CONSENT_ACTION_GRANT))

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.ListConsents(
            pb.ListConsentsRequest(
                subject_id=SUBJECT, at_consistency_token=encode_token(SUBJECT, 2)
            )
        )

    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_list_at_token_invalid(
    stub: consent_pb2_grpc.ConsentServiceAsyncStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.ListConsents(
            pb.ListConsentsRequest(
                subject_id=SUBJECT, at_consistency_token=encode_token("other", 1)
            )
        )

    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert list(field_violations(raised.value)) == ["at_consistency_token"]
