"""The tracer provider of a process: spans are recorded only where they can leave it."""

from __future__ import annotations

import pytest
from opentelemetry import propagate
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shared.telemetry import _tracer_provider

PARENT_TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{PARENT_TRACE_ID}-00f067aa0ba902b7-01"
EXPORT_VARIABLES = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_TRACES_EXPORTER",
    "OTEL_TRACES_SAMPLER",
)


@pytest.fixture
def no_export(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in EXPORT_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("no_export")
def test_unexported_spans_not_recorded() -> None:
    tracer = _tracer_provider(Resource.create({}), None).get_tracer("test")
    span = tracer.start_span("call")

    assert not span.is_recording()
    assert span.get_span_context().is_valid


@pytest.mark.usefixtures("no_export")
def test_unexported_span_continues_caller_trace() -> None:
    tracer = _tracer_provider(Resource.create({}), None).get_tracer("test")
    parent = propagate.extract({"traceparent": TRACEPARENT})
    span = tracer.start_span("call", context=parent)

    assert f"{span.get_span_context().trace_id:032x}" == PARENT_TRACE_ID


@pytest.mark.usefixtures("no_export")
def test_unexported_span_keeps_sampled_flag() -> None:
    tracer = _tracer_provider(Resource.create({}), None).get_tracer("test")
    parent = propagate.extract({"traceparent": TRACEPARENT})
    span = tracer.start_span("call", context=parent)

    assert span.get_span_context().trace_flags.sampled
    assert span.is_recording()


@pytest.mark.usefixtures("no_export")
def test_unsampled_parent_not_recorded() -> None:
    tracer = _tracer_provider(Resource.create({}), None).get_tracer("test")
    unsampled = TRACEPARENT.removesuffix("-01") + "-00"
    span = tracer.start_span(
        "call", context=propagate.extract({"traceparent": unsampled})
    )

    assert not span.is_recording()
    assert not span.get_span_context().trace_flags.sampled


@pytest.mark.usefixtures("no_export")
def test_sampler_variable_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_on")
    tracer = _tracer_provider(Resource.create({}), None).get_tracer("test")

    assert tracer.start_span("call").is_recording()


@pytest.mark.usefixtures("no_export")
def test_exporter_spans_recorded() -> None:
    exporter = InMemorySpanExporter()
    tracer = _tracer_provider(Resource.create({}), exporter).get_tracer("test")
    tracer.start_span("call").end()

    assert [span.name for span in exporter.get_finished_spans()] == ["call"]
