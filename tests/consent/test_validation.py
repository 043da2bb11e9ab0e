"""Input validation over gRPC: INVALID_ARGUMENT with BadRequest field paths."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from services.consent.tokens import encode_token
from tests.consent.helpers import (
    EVERY_PAIR,
    MARKETING_EMAIL,
    SUBJECT,
    change,
    field_violations,
    record_request,
)
from trustfirst.consent.v1 import consent_pb2 as pb
from trustfirst.consent.v1 import consent_pb2_grpc

GRANT = pb.CONSENT_ACTION_GRANT


def check_request(*pairs: pb.PurposeChannel, **fields: Any) -> pb.CheckConsentRequest:
    fields.setdefault("subject_id", SUBJECT)
    return pb.CheckConsentRequest(pairs=pairs, **fields)


def all_pairs(count: int) -> list[pb.PurposeChannel]:
    return [MARKETING_EMAIL] * count


def grants_on_every_pair() -> list[pb.ConsentChange]:
    return [change(GRANT, pair.purpose, pair.channel) for pair in EVERY_PAIR]


CHECK_CASES = {
    "subject missing": (check_request(MARKETING_EMAIL, subject_id=""), ["subject_id"]),
    "subject too long": (
        check_request(MARKETING_EMAIL, subject_id="p" * 129),
        ["subject_id"],
    ),
    "subject not printable": (
        check_request(MARKETING_EMAIL, subject_id="profile\n1"),
        ["subject_id"],
    ),
    "no pairs": (check_request(), ["pairs"]),
    "65 pairs": (check_request(*all_pairs(65)), ["pairs"]),
    "channel unspecified": (
        check_request(*all_pairs(3), pb.PurposeChannel(purpose=pb.PURPOSE_MARKETING)),
        ["pairs[3].channel"],
    ),
    "purpose unknown": (
        check_request(
            pb.PurposeChannel(
                purpose=pb.Purpose.ValueType(99), channel=pb.CHANNEL_EMAIL
            )
        ),
        ["pairs[0].purpose"],
    ),
    "pair empty": (
        check_request(pb.PurposeChannel()),
        ["pairs[0].purpose", "pairs[0].channel"],
    ),
    "token malformed": (
        check_request(MARKETING_EMAIL, min_consistency_token="abc"),
        ["min_consistency_token"],
    ),
}

RECORD_CASES = {
    "subject missing": (
        record_request(change(GRANT), subject_id=""),
        ["subject_id"],
    ),
    "no changes": (record_request(), ["changes"]),
    "65 changes": (
        record_request(*grants_on_every_pair() * 2, *grants_on_every_pair()[:17]),
        ["changes"],
    ),
    "purpose unspecified": (
        record_request(change(GRANT, purpose=pb.PURPOSE_UNSPECIFIED)),
        ["changes[0].purpose"],
    ),
    "channel unknown": (
        record_request(
            change(GRANT), change(GRANT, pb.PURPOSE_ANALYTICS, pb.Channel.ValueType(42))
        ),
        ["changes[1].channel"],
    ),
    "action unspecified": (
        record_request(change(pb.CONSENT_ACTION_UNSPECIFIED)),
        ["changes[0].action"],
    ),
    "expiry on deny": (
        record_request(change(pb.CONSENT_ACTION_DENY, expire_in_seconds=60)),
        ["changes[0].expire_time"],
    ),
    "expiry on withdraw": (
        record_request(change(pb.CONSENT_ACTION_WITHDRAW, expire_in_seconds=60)),
        ["changes[0].expire_time"],
    ),
    "expiry in past": (
        record_request(change(GRANT, expire_in_seconds=-1)),
        ["changes[0].expire_time"],
    ),
    "duplicate pair": (
        record_request(
            change(GRANT),
            change(GRANT, channel=pb.CHANNEL_SMS),
            change(pb.CONSENT_ACTION_DENY),
        ),
        ["changes[2]"],
    ),
    "source missing": (record_request(change(GRANT), source=""), ["source"]),
    "source too long": (record_request(change(GRANT), source="s" * 129), ["source"]),
    "notice missing": (
        record_request(change(GRANT), notice_version=""),
        ["notice_version"],
    ),
    "notice too long": (
        record_request(change(GRANT), notice_version="v" * 129),
        ["notice_version"],
    ),
    "notice not printable": (
        record_request(change(GRANT), notice_version="v1\x00"),
        ["notice_version"],
    ),
    "key too long": (
        record_request(change(GRANT), idempotency_key="k" * 129),
        ["idempotency_key"],
    ),
    "several fields": (
        record_request(
            change(GRANT, channel=pb.CHANNEL_UNSPECIFIED), subject_id="", source=""
        ),
        ["subject_id", "changes[0].channel", "source"],
    ),
    "key reserved": (
        record_request(change(GRANT), idempotency_key="identity-merge:p2"),
        ["idempotency_key"],
    ),
}

JURISDICTION_CASES = {
    "subject missing": (
        pb.SetJurisdictionRequest(jurisdiction="US", source="signup"),
        ["subject_id"],
    ),
    "jurisdiction missing": (
        pb.SetJurisdictionRequest(subject_id=SUBJECT, source="signup"),
        ["jurisdiction"],
    ),
    "jurisdiction unknown": (
        pb.SetJurisdictionRequest(subject_id=SUBJECT, jurisdiction="XX", source="s"),
        ["jurisdiction"],
    ),
    "jurisdiction lower case": (
        pb.SetJurisdictionRequest(subject_id=SUBJECT, jurisdiction="us", source="s"),
        ["jurisdiction"],
    ),
    "source missing": (
        pb.SetJurisdictionRequest(subject_id=SUBJECT, jurisdiction="US"),
        ["source"],
    ),
    "key reserved": (
        pb.SetJurisdictionRequest(
            subject_id=SUBJECT,
            jurisdiction="US",
            source="s",
            idempotency_key="identity-split:p1",
        ),
        ["idempotency_key"],
    ),
}

HISTORY_CASES = {
    "subject missing": (pb.ListConsentHistoryRequest(), ["subject_id"]),
    "page size negative": (
        pb.ListConsentHistoryRequest(subject_id=SUBJECT, page_size=-1),
        ["page_size"],
    ),
    "page size 1001": (
        pb.ListConsentHistoryRequest(subject_id=SUBJECT, page_size=1001),
        ["page_size"],
    ),
    "page token malformed": (
        pb.ListConsentHistoryRequest(subject_id=SUBJECT, page_token="next"),
        ["page_token"],
    ),
    "page token of other subject": (
        pb.ListConsentHistoryRequest(
            subject_id=SUBJECT, page_token=encode_token("profile-0002", 3)
        ),
        ["page_token"],
    ),
}

VERIFY_CASES = {
    "subject missing": (pb.VerifyLedgerRequest(), ["subject_id"]),
    "65 checkpoints": (
        pb.VerifyLedgerRequest(
            subject_id=SUBJECT,
            checkpoints=[pb.LedgerCheckpoint(sequence=1, hash="a" * 64)] * 65,
        ),
        ["checkpoints"],
    ),
    "checkpoint fields": (
        pb.VerifyLedgerRequest(
            subject_id=SUBJECT,
            checkpoints=[
                pb.LedgerCheckpoint(sequence=1, hash="a" * 64),
                pb.LedgerCheckpoint(sequence=0, hash="A" * 64),
            ],
        ),
        ["checkpoints[1].sequence", "checkpoints[1].hash"],
    ),
}


async def invalid_call(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    return raised.value


@pytest.mark.parametrize(
    ("request_message", "fields"), CHECK_CASES.values(), ids=CHECK_CASES.keys()
)
async def test_check_invalid(
    stub: consent_pb2_grpc.ConsentServiceAsyncStub,
    request_message: pb.CheckConsentRequest,
    fields: list[str],
) -> None:
    error = await invalid_call(stub.CheckConsent(request_message))

    assert list(field_violations(error)) == fields


@pytest.mark.parametrize(
    ("request_message", "fields"), RECORD_CASES.values(), ids=RECORD_CASES.keys()
)
async def test_record_invalid(
    stub: consent_pb2_grpc.ConsentServiceAsyncStub,
    request_message: pb.RecordConsentRequest,
    fields: list[str],
) -> None:
    error = await invalid_call(stub.RecordConsent(request_message))

    assert list(field_violations(error)) == fields


@pytest.mark.parametrize(
    ("request_message", "fields"),
    JURISDICTION_CASES.values(),
    ids=JURISDICTION_CASES.keys(),
)
async def test_jurisdiction_invalid(
    stub: consent_pb2_grpc.ConsentServiceAsyncStub,
    request_message: pb.SetJurisdictionRequest,
    fields: list[str],
) -> None:
    error = await invalid_call(stub.SetJurisdiction(request_message))

    assert list(field_violations(error)) == fields


@pytest.mark.parametrize(
    ("request_message", "fields"), HISTORY_CASES.values(), ids=HISTORY_CASES.keys()
)
async def test_history_invalid(
    stub: consent_pb2_grpc.ConsentServiceAsyncStub,
    request_message: pb.ListConsentHistoryRequest,
    fields: list[str],
) -> None:
    error = await invalid_call(stub.ListConsentHistory(request_message))

    assert list(field_violations(error)) == fields


@pytest.mark.parametrize(
    ("request_message", "fields"), VERIFY_CASES.values(), ids=VERIFY_CASES.keys()
)
async def test_verify_invalid(
    stub: consent_pb2_grpc.ConsentServiceAsyncStub,
    request_message: pb.VerifyLedgerRequest,
    fields: list[str],
) -> None:
    error = await invalid_call(stub.VerifyLedger(request_message))

    assert list(field_violations(error)) == fields


async def test_list_subject_missing(
    stub: consent_pb2_grpc.ConsentServiceAsyncStub,
) -> None:
    error = await invalid_call(stub.ListConsents(pb.ListConsentsRequest()))

    assert list(field_violations(error)) == ["subject_id"]


async def test_invalid_error_info(
    stub: consent_pb2_grpc.ConsentServiceAsyncStub,
) -> None:
    error = await invalid_call(stub.CheckConsent(check_request()))

    status = rpc_status.from_call(error)
    info = error_details_pb2.ErrorInfo()
    assert status is not None
    assert status.details[0].Unpack(info) is True
    assert info.reason == "INVALID_ARGUMENT"
    assert info.domain == "consent.trustfirst.dev"


async def test_invalid_record_writes_nothing(
    stub: consent_pb2_grpc.ConsentServiceAsyncStub,
) -> None:
    await invalid_call(stub.RecordConsent(record_request(change(GRANT), change(GRANT))))

    listing = await stub.ListConsents(pb.ListConsentsRequest(subject_id=SUBJECT))

    assert list(listing.consents) == []
