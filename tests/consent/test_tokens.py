"""Consistency tokens: their format and min_consistency_token handling in checks."""

from __future__ import annotations

import grpc
import pytest
import redis.asyncio as aioredis

from services.consent.tokens import InvalidToken, decode_token, encode_token
from tests.consent.helpers import (
    MARKETING_EMAIL,
    SUBJECT,
    change,
    error_reason,
    field_violations,
    record,
)
from trustfirst.consent.v1 import consent_pb2 as pb
from trustfirst.consent.v1 import consent_pb2_grpc


def test_token_round_trip() -> None:
    token = encode_token(SUBJECT, 42)

    assert len(token) == 20
    assert decode_token(SUBJECT, token) == 42


def test_token_other_subject_rejected() -> None:
    token = encode_token("profile-a", 3)

    with pytest.raises(InvalidToken, match="different subject_id"):
        decode_token("profile-b", token)


@pytest.mark.parametrize(
    "token",
    ["", "AQ", "A" * 20, encode_token(SUBJECT, 1)[:-1] + "!", "é" * 20],
)
def test_token_malformed_rejected(token: str) -> None:
    with pytest.raises(InvalidToken):
        decode_token(SUBJECT, token)


async def check_with_token(
    stub: consent_pb2_grpc.ConsentServiceAsyncStub, token: str
) -> pb.CheckConsentResponse:
    return await stub.CheckConsent(
        pb.CheckConsentRequest(
            subject_id=SUBJECT, pairs=[MARKETING_EMAIL], min_consistency_token=token
        )
    )


async def test_check_token_of_write_satisfied(
    stub: consent_pb2_grpc.ConsentServiceAsyncStub,
) -> None:
    written = await record(stub, change(pb.CONSENT_ACTION_GRANT))

    response = await check_with_token(stub, written.consistency_token)

    assert response.results[0].allowed is True
    assert response.consistency_token == written.consistency_token


async def test_check_token_follows_writes(
    stub: consent_pb2_grpc.ConsentServiceAsyncStub,
) -> None:
    empty = await check_with_token(stub, "")
    await record(stub, change(pb.CONSENT_ACTION_GRANT))
    await record(stub, change(pb.CONSENT_ACTION_DENY))

    response = await check_with_token(stub, empty.consistency_token)

    assert decode_token(SUBJECT, empty.consistency_token) == 0
    assert decode_token(SUBJECT, response.consistency_token) == 2


async def test_check_token_ahead_failed_precondition(
    stub: consent_pb2_grpc.ConsentServiceAsyncStub, redis_client: aioredis.Redis
) -> None:
    written = await record(stub, change(pb.CONSENT_ACTION_GRANT))
    # The ledger loses the write, as after a failover to a replica that lagged.
    await redis_client.flushdb()

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await check_with_token(stub, written.consistency_token)

    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_reason(raised.value) == "CONSISTENCY_TOKEN_AHEAD"


async def test_check_token_malformed_invalid(
    stub: consent_pb2_grpc.ConsentServiceAsyncStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await check_with_token(stub, "not-a-token")

    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert list(field_violations(raised.value)) == ["min_consistency_token"]


async def test_check_token_other_subject_invalid(
    stub: consent_pb2_grpc.ConsentServiceAsyncStub,
) -> None:
    other = await record(stub, change(pb.CONSENT_ACTION_GRANT), subject_id="other")

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await check_with_token(stub, other.consistency_token)

    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert list(field_violations(raised.value)) == ["min_consistency_token"]
