"""Hostile input for every RPC of the three services, over real sockets to the suite's
processes: random, oversized, malformed and unicode-heavy messages, huge batches, and
raw bytes that are no protobuf message at all.

The only outcomes allowed are a valid response, INVALID_ARGUMENT, RESOURCE_EXHAUSTED, and
the codes a method's contract lists (NOT_FOUND, FAILED_PRECONDITION). Never INTERNAL or
UNKNOWN, and every process is still alive at the end.
"""

import os
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.faults.harness import ProcessSuite
from tests.hostile.strategies import messages
from trustfirst.consent.v1 import consent_pb2
from trustfirst.decision.v1 import decision_pb2
from trustfirst.identity.v1 import identity_pb2

CALL_TIMEOUT_SECONDS = 10.0
MESSAGE_LIMIT_BYTES = 1 << 20
"""The services' default max_message_bytes."""

ALWAYS_ALLOWED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}

CONTRACT_CODES: dict[str, set[grpc.StatusCode]] = {
    "GetProfile": {grpc.StatusCode.NOT_FOUND},
    "ExportProfile": {grpc.StatusCode.NOT_FOUND},
    "EraseProfile": {grpc.StatusCode.NOT_FOUND},
    "SplitProfile": {grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION},
    "ReleaseQuarantinedValue": {grpc.StatusCode.NOT_FOUND},
    "RecordConsent": {grpc.StatusCode.FAILED_PRECONDITION},
    "SetJurisdiction": {grpc.StatusCode.FAILED_PRECONDITION},
    "CheckConsent": {grpc.StatusCode.FAILED_PRECONDITION},
    "ListConsentHistory": {grpc.StatusCode.FAILED_PRECONDITION},
    "RecordOutcome": {grpc.StatusCode.NOT_FOUND},
    "ExplainDecision": {grpc.StatusCode.NOT_FOUND},
}
"""Codes besides ALWAYS_ALLOWED that a method's contract documents for caller input."""

SERVICES = {
    "identity": identity_pb2.DESCRIPTOR.services_by_name["IdentityService"],
    "consent": consent_pb2.DESCRIPTOR.services_by_name["ConsentService"],
    "decision": decision_pb2.DESCRIPTOR.services_by_name["DecisionService"],
}

METHODS = [
    (name, method) for name, service in SERVICES.items() for method in service.methods
]

EXAMPLES = int(os.environ.get("TRUSTFIRST_HOSTILE_EXAMPLES", "25"))
"""Examples per RPC and test; a longer hunt for bugs sets the variable higher."""

HOSTILE_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module")
def channels(hostile_suite: ProcessSuite) -> Iterator[dict[str, grpc.Channel]]:
    opened = {
        name: grpc.insecure_channel(
            hostile_suite.target(name),
            options=[("grpc.max_send_message_length", 8 * MESSAGE_LIMIT_BYTES)],
        )
        for name in SERVICES
    }
    yield opened
    for channel in opened.values():
        channel.close()


def _call(channel: grpc.Channel, path: str, payload: bytes) -> grpc.StatusCode:
    """Send payload as the request of path; return the status code of the call."""
    call = channel.unary_unary(path)
    try:
        call(payload, timeout=CALL_TIMEOUT_SECONDS)
    except grpc.RpcError as error:
        code: grpc.StatusCode = error.code()  # type: ignore[attr-defined]
        return code
    return grpc.StatusCode.OK


def _path(service: str, method: Any) -> str:
    return f"/{SERVICES[service].full_name}/{method.name}"


def _allowed(method_name: str) -> set[grpc.StatusCode]:
    return ALWAYS_ALLOWED | CONTRACT_CODES.get(method_name, set())


def _message_class(method: Any) -> type[Message]:
    from google.protobuf import message_factory

    return message_factory.GetMessageClass(method.input_type)


@pytest.mark.parametrize(
    ("service", "method"), METHODS, ids=lambda m: getattr(m, "name", m)
)
def test_random_messages(
    channels: dict[str, grpc.Channel],
    known_profiles: list[str],
    service: str,
    method: Any,
) -> None:
    allowed = _allowed(method.name)

    @HOSTILE_SETTINGS
    @given(request=messages(method.input_type))
    def check(request: Message) -> None:
        code = _call(
            channels[service], _path(service, method), request.SerializeToString()
        )
        assert code in allowed, (
            f"{method.name} answered {code.name} to {request!r:.500}"
        )

    check()


@pytest.mark.parametrize(
    ("service", "method"), METHODS, ids=lambda m: getattr(m, "name", m)
)
def test_garbage_bytes(
    channels: dict[str, grpc.Channel], service: str, method: Any
) -> None:
    allowed = _allowed(method.name)

    @HOSTILE_SETTINGS
    @given(payload=st.one_of(st.binary(max_size=512), st.sampled_from(GARBAGE)))
    def check(payload: bytes) -> None:
        code = _call(channels[service], _path(service, method), payload)
        assert code in allowed, (
            f"{method.name} answered {code.name} to {payload!r:.200}"
        )

    check()


GARBAGE = [
    b"\xff" * 64,
    b"\x0a\x02\xc3\x28",  # field 1, a string of invalid UTF-8
    b"\x0a\xff\xff\xff\xff\x0f",  # a length far past the end
    b"\x12\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01",  # a varint of 11 bytes
    b"\x0b" * 200,  # start-group tags with no end
    b"\x00",  # field number 0
]


@pytest.mark.parametrize(
    ("service", "method"), METHODS, ids=lambda m: getattr(m, "name", m)
)
def test_oversized_message(
    channels: dict[str, grpc.Channel], service: str, method: Any
) -> None:
    # An unknown field of 2 MiB: the server rejects it by size before parsing.
    payload = (
        b"\xfa\x3f"
        + _varint(2 * MESSAGE_LIMIT_BYTES)
        + b"a" * (2 * MESSAGE_LIMIT_BYTES)
    )

    code = _call(channels[service], _path(service, method), payload)

    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


HUGE = 20_000
"""Items of a huge batch: far past every batch limit, and still under 1 MiB."""


def _huge_batches(profile_id: str) -> list[tuple[str, str, Message]]:
    email = identity_pb2.Identifier(
        kind=identity_pb2.IDENTIFIER_KIND_EMAIL, value="a@example.com"
    )
    pair = consent_pb2.PurposeChannel(
        purpose=consent_pb2.PURPOSE_MARKETING, channel=consent_pb2.CHANNEL_EMAIL
    )
    change = consent_pb2.ConsentChange(
        purpose=consent_pb2.PURPOSE_MARKETING,
        channel=consent_pb2.CHANNEL_EMAIL,
        action=consent_pb2.CONSENT_ACTION_GRANT,
    )
    hashed = identity_pb2.IdentifierHash(
        kind=identity_pb2.IDENTIFIER_KIND_EMAIL, value_hash="ab" * 32
    )
    return [
        ("identity", "Resolve", identity_pb2.ResolveRequest(identifiers=[email] * HUGE, source="web")),
        ("identity", "Lookup", identity_pb2.LookupRequest(identifiers=[email] * HUGE)),
        ("identity", "SplitProfile", identity_pb2.SplitProfileRequest(profile_id=profile_id, identifier_hashes=[hashed] * (HUGE // 4))),
        ("consent", "CheckConsent", consent_pb2.CheckConsentRequest(subject_id=profile_id, pairs=[pair] * HUGE)),
        ("consent", "RecordConsent", consent_pb2.RecordConsentRequest(subject_id=profile_id, changes=[change] * HUGE, source="web", notice_version="1")),
        ("consent", "VerifyLedger", consent_pb2.VerifyLedgerRequest(subject_id=profile_id, checkpoints=[consent_pb2.LedgerCheckpoint(sequence=1, hash="a" * 64)] * (HUGE // 4))),
        ("decision", "Decide", decision_pb2.DecideRequest(profile_id=profile_id, touchpoint="home", channel=consent_pb2.CHANNEL_WEB, identifiers=[email] * HUGE)),
        ("decision", "Decide", decision_pb2.DecideRequest(profile_id=profile_id, touchpoint="home", channel=consent_pb2.CHANNEL_WEB, context=decision_pb2.DecisionContext(basket=[decision_pb2.BasketItem(sku="s", quantity=1, unit_price_cents=100)] * HUGE))),
        ("decision", "RecordOutcome", decision_pb2.RecordOutcomeRequest(identifiers=[email] * HUGE, kind=decision_pb2.OUTCOME_KIND_PURCHASE, amount_cents=1, quantity=1, event_id="e")),
    ]  # fmt: skip


def test_huge_batches(
    channels: dict[str, grpc.Channel], known_profiles: list[str]
) -> None:
    codes = {}
    for index, (service, method, request) in enumerate(
        _huge_batches(known_profiles[0])
    ):
        path = f"/{SERVICES[service].full_name}/{method}"
        payload = request.SerializeToString()
        codes[f"{index}:{method}"] = _call(channels[service], path, payload)

    # The batches exceed the item limits, not the message size, so each is invalid.
    assert set(codes.values()) == {grpc.StatusCode.INVALID_ARGUMENT}, codes


def test_processes_alive(hostile_suite: ProcessSuite) -> None:
    statuses = {}
    for name in SERVICES:
        with grpc.insecure_channel(hostile_suite.target(name)) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=5
            )
        statuses[name] = reply.status

    assert all(hostile_suite.alive(name) for name in SERVICES)
    assert statuses == dict.fromkeys(SERVICES, health_pb2.HealthCheckResponse.SERVING)
