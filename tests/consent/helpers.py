"""Request builders and error decoding shared by the consent tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc
import redis.asyncio as aioredis
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from services.consent.durability import DurabilityGuard
from services.consent.erasure import SubjectEraser, SubjectHasher
from services.consent.jurisdictions import JurisdictionPolicy
from services.consent.reader import ConsentReader
from services.consent.reconciler import IdentityReconciler
from services.consent.recorder import ConsentRecorder
from services.consent.verifier import LedgerVerifier
from services.consent.writer import LedgerWriter
from trustfirst.consent.v1 import consent_pb2 as pb
from trustfirst.consent.v1 import consent_pb2_grpc

SUBJECT = "profile-0001"

SUBJECT_HASH_KEY = "consent-tests-subject-hash-key-0123456789"
"""subject_hash_key of the test services and of the domain objects built here."""

PURPOSES = [purpose for purpose in pb.Purpose.values() if purpose]
CHANNELS = [channel for channel in pb.Channel.values() if channel]
EVERY_PAIR = [
    pb.PurposeChannel(purpose=purpose, channel=channel)
    for purpose in PURPOSES
    for channel in CHANNELS
]
"""All 24 pairs, by purpose then channel."""

MARKETING_EMAIL = pb.PurposeChannel(
    purpose=pb.PURPOSE_MARKETING, channel=pb.CHANNEL_EMAIL
)


def change(
    action: pb.ConsentAction.ValueType,
    purpose: pb.Purpose.ValueType = pb.PURPOSE_MARKETING,
    channel: pb.Channel.ValueType = pb.CHANNEL_EMAIL,
    expire_in_seconds: float | None = None,
) -> pb.ConsentChange:
    """Build one change; expire_in_seconds sets an expiry relative to now."""
    message = pb.ConsentChange(purpose=purpose, channel=channel, action=action)
    if expire_in_seconds is not None:
        message.expire_time.CopyFrom(timestamp_in(expire_in_seconds))
    return message


def timestamp_in(seconds: float) -> Timestamp:
    """Return the Timestamp seconds from now (negative for the past)."""
    timestamp = Timestamp()
    timestamp.FromNanoseconds(time.time_ns() + int(seconds * 1e9))
    return timestamp


def record_request(
    *changes: pb.ConsentChange,
    subject_id: str = SUBJECT,
    idempotency_key: str = "",
    source: str = "preference-center",
    notice_version: str = "2025-01",
) -> pb.RecordConsentRequest:
    return pb.RecordConsentRequest(
        subject_id=subject_id,
        changes=changes,
        source=source,
        notice_version=notice_version,
        idempotency_key=idempotency_key,
    )


async def record(
    stub: consent_pb2_grpc.ConsentServiceAsyncStub,
    *changes: pb.ConsentChange,
    subject_id: str = SUBJECT,
    idempotency_key: str = "",
) -> pb.RecordConsentResponse:
    request = record_request(
        *changes, subject_id=subject_id, idempotency_key=idempotency_key
    )
    return await stub.RecordConsent(request)


async def check_one(
    stub: consent_pb2_grpc.ConsentServiceAsyncStub,
    pair: pb.PurposeChannel = MARKETING_EMAIL,
    subject_id: str = SUBJECT,
) -> pb.ConsentCheckResult:
    """Check one pair and return its result."""
    response = await stub.CheckConsent(
        pb.CheckConsentRequest(subject_id=subject_id, pairs=[pair])
    )
    return response.results[0]


def field_violations(error: grpc.aio.AioRpcError) -> dict[str, str]:
    """Return the BadRequest field violations of a failed call, by field path."""
    status = rpc_status.from_call(error)
    assert status is not None, "the error carries no google.rpc.Status"
    violations: dict[str, str] = {}
    for detail in status.details:
        bad_request = error_details_pb2.BadRequest()
        if detail.Unpack(bad_request):
            for violation in bad_request.field_violations:
                violations[violation.field] = violation.description
    return violations


def error_reason(error: grpc.aio.AioRpcError) -> str:
    """Return the ErrorInfo reason of a failed call, or an empty string."""
    status = rpc_status.from_call(error)
    assert status is not None, "the error carries no google.rpc.Status"
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return str(info.reason)
    return ""


@dataclass
class Domain:
    """The consent domain objects on one Redis client, without gRPC."""

    writer: LedgerWriter
    recorder: ConsentRecorder
    reader: ConsentReader
    eraser: SubjectEraser
    verifier: LedgerVerifier
    reconciler: IdentityReconciler
    policy: JurisdictionPolicy


def build_domain(
    redis: aioredis.Redis, clock: Callable[[], int] = time.time_ns
) -> Domain:
    """Build the domain objects as create_service does, with the shipped jurisdictions."""
    policy = JurisdictionPolicy.load(None, "EU")
    hasher = SubjectHasher(SUBJECT_HASH_KEY.encode())
    guard = DurabilityGuard(redis)
    writer = LedgerWriter(redis, hasher, guard, clock)
    reader = ConsentReader(redis, policy, clock)
    eraser = SubjectEraser(redis, hasher, guard, clock)
    return Domain(
        writer=writer,
        recorder=ConsentRecorder(writer),
        reader=reader,
        eraser=eraser,
        verifier=LedgerVerifier(redis, eraser),
        reconciler=IdentityReconciler(writer, reader, eraser, policy),
        policy=policy,
    )
