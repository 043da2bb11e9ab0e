"""One trace follows a Decide through identity and consent; the metrics count it.

The three services run in-process on loopback sockets and share the session's in-memory
span exporter and metric reader, so every span and data point of the call is visible.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind
from pydantic import SecretStr

from services.consent.app import create_service as create_consent
from services.consent.settings import ConsentSettings
from services.decision.app import create_service as create_decision
from services.decision.settings import DecisionSettings
from services.identity.app import create_service as create_identity
from services.identity.settings import IdentitySettings
from shared.server import GrpcService
from tests.suite.conftest import TelemetryCapture
from trustfirst.consent.v1 import consent_pb2, consent_pb2_grpc
from trustfirst.decision.v1 import decision_pb2, decision_pb2_grpc
from trustfirst.identity.v1 import identity_pb2, identity_pb2_grpc

DECIDE = "/trustfirst.decision.v1.DecisionService/Decide"
LOOKUP = "/trustfirst.identity.v1.IdentityService/Lookup"
CHECK_CONSENT = "/trustfirst.consent.v1.ConsentService/CheckConsent"
HASH_KEY = "tracing-tests-identity-key-0123456789abcdef"
EMAIL = "trace.me@example.com"


@dataclass
class Stubs:
    identity: identity_pb2_grpc.IdentityServiceAsyncStub
    consent: consent_pb2_grpc.ConsentServiceAsyncStub
    decision: decision_pb2_grpc.DecisionServiceAsyncStub
    health: health_pb2_grpc.HealthAsyncStub


@pytest.fixture
async def services(
    telemetry_capture: TelemetryCapture,
    redis_client: Any,
    redis_url: str,
    suite_model: Path,
) -> AsyncIterator[Stubs]:
    """Identity, consent and decision in-process, decision calling the other two."""
    identity = create_identity(
        IdentitySettings(
            port=0,
            redis_url=redis_url,
            hash_key=SecretStr(HASH_KEY),
            hash_key_file=None,
            grace_seconds=0,
        )
    )
    # The session's Redis writes its AOF once a second, so durability is only warned
    # about. Identity events are not needed here, and their consumer can delay stop().
    consent = create_consent(
        ConsentSettings(
            port=0,
            redis_url=redis_url,
            grace_seconds=0,
            durability="warn",
            identity_events=False,
        )
    )
    started: list[GrpcService] = []
    channels: list[grpc.aio.Channel] = []
    try:
        for service in (identity, consent):
            await service.start()
            started.append(service)
        decision = create_decision(
            DecisionSettings(
                port=0,
                redis_url=redis_url,
                model_path=suite_model,
                identity_target=f"127.0.0.1:{identity.port}",
                consent_target=f"127.0.0.1:{consent.port}",
                identity_deadline_ms=5000,
                consent_deadline_ms=5000,
                features_deadline_ms=5000,
                grace_seconds=0,
            )
        )
        await decision.start()
        started.append(decision)
        channels = [
            grpc.aio.insecure_channel(f"127.0.0.1:{service.port}")
            for service in started
        ]
        yield Stubs(
            identity=identity_pb2_grpc.IdentityServiceStub(channels[0]),
            consent=consent_pb2_grpc.ConsentServiceStub(channels[1]),
            decision=decision_pb2_grpc.DecisionServiceStub(channels[2]),
            health=health_pb2_grpc.HealthStub(channels[2]),
        )
    finally:
        for channel in channels:
            await channel.close()
        for service in reversed(started):
            await service.stop(grace=0)


def _email() -> identity_pb2.Identifier:
    return identity_pb2.Identifier(kind=identity_pb2.IDENTIFIER_KIND_EMAIL, value=EMAIL)


async def _decide_with_identifiers(
    stubs: Stubs, capture: TelemetryCapture
) -> decision_pb2.DecideResponse:
    """Resolve a customer who allowed personalisation on the web, then Decide at checkout.

    The checkout banner also needs marketing, which was never asked, so consent refuses
    at least one pair. Spans of the set-up calls are cleared before the Decide.
    """
    resolved = await stubs.identity.Resolve(
        identity_pb2.ResolveRequest(identifiers=[_email()], source="tracing-test")
    )
    await stubs.consent.RecordConsent(
        consent_pb2.RecordConsentRequest(
            subject_id=resolved.profile_id,
            source="tracing-test",
            notice_version="2026-01",
            changes=[
                consent_pb2.ConsentChange(
                    purpose=consent_pb2.PURPOSE_PERSONALISATION,
                    channel=consent_pb2.CHANNEL_WEB,
                    action=consent_pb2.CONSENT_ACTION_GRANT,
                )
            ],
        )
    )
    capture.spans.clear()
    return await stubs.decision.Decide(
        decision_pb2.DecideRequest(
            identifiers=[_email()],
            touchpoint="checkout",
            channel=consent_pb2.CHANNEL_WEB,
        )
    )


def _server_span(spans: Sequence[ReadableSpan], name: str) -> ReadableSpan:
    found = [s for s in spans if s.name == name and s.kind == SpanKind.SERVER]
    assert len(found) == 1, f"{len(found)} server spans named {name}"
    return found[0]


def _ancestors(span: ReadableSpan, spans: Sequence[ReadableSpan]) -> list[int]:
    """Return the span ids from span's parent up to the root, following parent links."""
    by_id = {s.context.span_id: s for s in spans if s.context is not None}
    chain: list[int] = []
    parent = span.parent
    while parent is not None:
        chain.append(parent.span_id)
        above = by_id.get(parent.span_id)
        parent = above.parent if above is not None else None
    return chain


async def test_trace_decide_spans_share_trace(
    services: Stubs, telemetry_capture: TelemetryCapture
) -> None:
    await _decide_with_identifiers(services, telemetry_capture)
    spans = telemetry_capture.spans.get_finished_spans()
    decide = _server_span(spans, DECIDE)
    lookup = _server_span(spans, LOOKUP)
    check = _server_span(spans, CHECK_CONSENT)

    assert decide.context is not None
    assert lookup.context is not None
    assert check.context is not None
    assert lookup.context.trace_id == decide.context.trace_id
    assert check.context.trace_id == decide.context.trace_id


async def test_trace_lookup_descends_from_decide(
    services: Stubs, telemetry_capture: TelemetryCapture
) -> None:
    await _decide_with_identifiers(services, telemetry_capture)
    spans = telemetry_capture.spans.get_finished_spans()
    decide = _server_span(spans, DECIDE)
    lookup = _server_span(spans, LOOKUP)

    assert decide.context is not None
    assert decide.context.span_id in _ancestors(lookup, spans)


async def test_trace_check_descends_from_decide(
    services: Stubs, telemetry_capture: TelemetryCapture
) -> None:
    await _decide_with_identifiers(services, telemetry_capture)
    spans = telemetry_capture.spans.get_finished_spans()
    decide = _server_span(spans, DECIDE)
    check = _server_span(spans, CHECK_CONSENT)

    assert decide.context is not None
    assert decide.context.span_id in _ancestors(check, spans)


async def test_trace_client_span_between_services(
    services: Stubs, telemetry_capture: TelemetryCapture
) -> None:
    await _decide_with_identifiers(services, telemetry_capture)
    spans = telemetry_capture.spans.get_finished_spans()
    check = _server_span(spans, CHECK_CONSENT)
    clients = [
        s for s in spans if s.kind == SpanKind.CLIENT and s.name == CHECK_CONSENT
    ]

    assert len(clients) == 1
    assert check.parent is not None
    assert clients[0].context is not None
    assert check.parent.span_id == clients[0].context.span_id
    assert check.parent.is_remote


async def test_trace_decide_is_root(
    services: Stubs, telemetry_capture: TelemetryCapture
) -> None:
    await _decide_with_identifiers(services, telemetry_capture)
    decide = _server_span(telemetry_capture.spans.get_finished_spans(), DECIDE)

    assert decide.parent is None


async def test_trace_failed_call_marks_span(
    services: Stubs, telemetry_capture: TelemetryCapture
) -> None:
    telemetry_capture.spans.clear()
    with pytest.raises(grpc.aio.AioRpcError):
        await services.decision.Decide(
            decision_pb2.DecideRequest(touchpoint="checkout", channel=0)
        )
    decide = _server_span(telemetry_capture.spans.get_finished_spans(), DECIDE)

    assert decide.attributes is not None
    assert decide.attributes["rpc.grpc.status_code"] == 3
    assert not decide.status.is_ok


async def test_trace_health_check_untraced(
    services: Stubs, telemetry_capture: TelemetryCapture
) -> None:
    telemetry_capture.spans.clear()
    await services.health.Check(health_pb2.HealthCheckRequest())

    assert telemetry_capture.spans.get_finished_spans() == ()


def _silence_reason(reply: decision_pb2.DecideResponse) -> str:
    name = decision_pb2.SilenceReason.Name(reply.silence_reason)
    return name.removeprefix("SILENCE_REASON_")


def _points(capture: TelemetryCapture, name: str) -> list[Any]:
    """Return every data point of the metric called name."""
    data = capture.metrics.get_metrics_data()
    points: list[Any] = []
    for resource_metrics in data.resource_metrics if data else ():
        for scope in resource_metrics.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    points.extend(metric.data.data_points)
    return points


async def test_metrics_count_decision(
    services: Stubs, telemetry_capture: TelemetryCapture
) -> None:
    before = _points(telemetry_capture, "trustfirst.decisions")
    reply = await _decide_with_identifiers(services, telemetry_capture)
    expected = (
        {"action": "none", "reason": _silence_reason(reply)}
        if reply.silent
        else {"action": reply.action_id, "reason": "CHOSEN"}
    )

    def count(points: list[Any]) -> int:
        return sum(p.value for p in points if dict(p.attributes) == expected)

    after = _points(telemetry_capture, "trustfirst.decisions")
    assert count(after) - count(before) == 1


async def test_metrics_count_consent_denial(
    services: Stubs, telemetry_capture: TelemetryCapture
) -> None:
    marketing_web = {"purpose": "MARKETING", "channel": "WEB", "reason": "NEVER_ASKED"}

    def count(points: list[Any]) -> int:
        return sum(p.value for p in points if dict(p.attributes) == marketing_web)

    before = count(_points(telemetry_capture, "trustfirst.consent.denials"))
    await _decide_with_identifiers(services, telemetry_capture)
    after = count(_points(telemetry_capture, "trustfirst.consent.denials"))

    assert after - before == 1


async def test_metrics_time_decide(
    services: Stubs, telemetry_capture: TelemetryCapture
) -> None:
    await _decide_with_identifiers(services, telemetry_capture)
    decide_points = [
        point
        for point in _points(telemetry_capture, "rpc.server.call.duration")
        if point.attributes.get("rpc.method") == "Decide"
        and point.attributes.get("rpc.grpc.status_code") == 0
    ]

    assert len(decide_points) == 1
    assert decide_points[0].attributes["rpc.service"] == (
        "trustfirst.decision.v1.DecisionService"
    )
    assert decide_points[0].count >= 1
