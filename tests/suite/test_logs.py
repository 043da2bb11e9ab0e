"""Service logs are JSON lines with trace ids, and hold no identifier in clear.

The scan runs a slice of CDNOW customers through the running suite with the workload of
tests/suite/workload.py, and sends requests that the services reject. Then it reads every
line of the three service logs.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest
from opentelemetry import trace

from shared.channels import create_channel
from shared.logs import JsonFormatter
from tests.suite.conftest import RunningSuite, TelemetryCapture
from tests.suite.workload import WorkloadResult, run_workload
from trustfirst.consent.v1 import consent_pb2
from trustfirst.decision.v1 import decision_pb2, decision_pb2_grpc
from trustfirst.identity.v1 import identity_pb2, identity_pb2_grpc

CUSTOMERS = 50
# Values that the services reject: they reach validation, so they must not reach the logs.
REJECTED_VALUES = {
    identity_pb2.IDENTIFIER_KIND_EMAIL: "not-an-email.leak-check",
    identity_pb2.IDENTIFIER_KIND_PHONE: "+44 7700 900 leak",
    identity_pb2.IDENTIFIER_KIND_LOYALTY_ID: "CDN-LEAK-" + "9" * 300,
}
# Every clear value this test sends matches one of these (any case). A phone number of the
# workload is written +44 20 7946 0nnn, or +442079460nnn once normalised.
CLEAR_VALUE_PATTERNS = {
    "email": r"customer\.\d+@cdnow",
    "loyalty id": r"cdn-\d+",
    "phone": r"(?:44|0)\s?20\s?7946\s?0\d{3}",
    "rejected value": r"leak-check|900 leak|cdn-leak",
}


async def _send_rejected(suite: RunningSuite) -> list[str]:
    """Send each rejected value to Resolve, Lookup and Decide; return the status codes."""
    codes: list[str] = []
    async with (
        create_channel(suite.target("identity")) as identity_channel,
        create_channel(suite.target("decision")) as decision_channel,
    ):
        identity = identity_pb2_grpc.IdentityServiceStub(identity_channel)
        decision = decision_pb2_grpc.DecisionServiceStub(decision_channel)
        for kind, value in REJECTED_VALUES.items():
            identifiers = [identity_pb2.Identifier(kind=kind, value=value)]
            calls = [
                identity.Resolve(
                    identity_pb2.ResolveRequest(identifiers=identifiers, source="scan")
                ),
                identity.Lookup(identity_pb2.LookupRequest(identifiers=identifiers)),
                decision.Decide(
                    decision_pb2.DecideRequest(
                        identifiers=identifiers,
                        touchpoint="checkout",
                        channel=consent_pb2.CHANNEL_WEB,
                    )
                ),
            ]
            for call in calls:
                try:
                    await call
                    codes.append("OK")
                except grpc.aio.AioRpcError as error:
                    codes.append(error.code().name)
    return codes


@dataclass
class ScannedRun:
    """The workload's result, the rejected calls' codes and each service's log text."""

    workload: WorkloadResult
    rejected: list[str]
    logs: dict[str, str]


@pytest.fixture(scope="module")
def scanned(running_suite: RunningSuite) -> ScannedRun:
    """Run the workload and the rejected calls, then read every service log."""
    targets = {
        name: running_suite.target(name) for name in ("identity", "consent", "decision")
    }

    async def load() -> tuple[WorkloadResult, list[str]]:
        workload = await run_workload(targets, running_suite.redis.url, CUSTOMERS)
        return workload, await _send_rejected(running_suite)

    workload, rejected = asyncio.run(load())
    logs = {
        path.stem: path.read_text(errors="replace")
        for path in running_suite.log_paths()
    }
    return ScannedRun(workload=workload, rejected=rejected, logs=logs)


def _lines(logs: dict[str, str]) -> Iterator[tuple[str, str]]:
    for service, text in logs.items():
        for line in text.splitlines():
            if line.strip():
                yield service, line


def test_scan_workload_completed(scanned: ScannedRun) -> None:
    assert len(scanned.workload.profiles) == CUSTOMERS
    assert scanned.workload.outcomes == CUSTOMERS
    assert dict(scanned.workload.errors) == {}


def test_scan_rejected_values_reached_services(scanned: ScannedRun) -> None:
    assert "INVALID_ARGUMENT" in scanned.rejected


@pytest.mark.parametrize("kind", sorted(CLEAR_VALUE_PATTERNS))
def test_scan_no_clear_identifier(scanned: ScannedRun, kind: str) -> None:
    pattern = re.compile(CLEAR_VALUE_PATTERNS[kind], re.IGNORECASE)
    leaks = [
        f"{service}: {line[:200]}"
        for service, line in _lines(scanned.logs)
        if pattern.search(line)
    ]

    assert leaks == []


def test_scan_no_hash_key(scanned: ScannedRun, running_suite: RunningSuite) -> None:
    key = running_suite.hash_key
    leaks = [service for service, line in _lines(scanned.logs) if key in line]

    assert leaks == []


def test_scan_lines_are_json(scanned: ScannedRun) -> None:
    not_json = []
    for service, line in _lines(scanned.logs):
        try:
            json.loads(line)
        except ValueError:
            not_json.append(f"{service}: {line[:200]}")

    assert not_json == []


def test_scan_lines_carry_trace_id(scanned: ScannedRun) -> None:
    traced = {
        service
        for service, line in _lines(scanned.logs)
        if line.startswith("{") and "trace_id" in json.loads(line)
    }

    assert traced == {"identity", "consent", "decision"}


def _format_one(message: str) -> dict[str, str]:
    """Log message through a JsonFormatter and return the parsed line."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("tests"))
    record = logging.LogRecord("tests", logging.INFO, __file__, 1, message, (), None)
    handler.handle(record)
    parsed: dict[str, str] = json.loads(stream.getvalue())
    return parsed


def test_json_log_inside_span(telemetry_capture: TelemetryCapture) -> None:
    with trace.get_tracer("tests").start_as_current_span("unit") as span:
        line = _format_one("inside")
        context = span.get_span_context()

    assert line["trace_id"] == f"{context.trace_id:032x}"
    assert line["span_id"] == f"{context.span_id:016x}"


def test_json_log_outside_span(telemetry_capture: TelemetryCapture) -> None:
    line = _format_one("outside")

    assert "trace_id" not in line
    assert "span_id" not in line
