"""OpenTelemetry traces and metrics of a service: providers, OTLP export and instruments.

Every service process gets an SDK tracer provider, so log lines written inside a call carry
its trace id even when nothing is exported. Spans and metrics leave the process only when an
OTLP endpoint is configured with the standard variables:

- ``OTEL_EXPORTER_OTLP_ENDPOINT`` (both signals), or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``
  and ``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`` (one signal each), for example
  ``http://otel-collector:4317``. The exporter speaks OTLP over gRPC and reads the other
  ``OTEL_EXPORTER_OTLP_*`` variables (headers, timeout, certificate, insecure) itself.
- ``OTEL_TRACES_EXPORTER=none`` or ``OTEL_METRICS_EXPORTER=none`` turns one signal's export
  off although an endpoint is set.
- ``OTEL_SDK_DISABLED=true`` turns the SDK off: no spans, no metrics, no trace ids.
- A process that exports no traces records only the spans whose caller asked for them
  (a sampled ``traceparent``): its sampler is parent-based with ``always_off`` for root
  spans. A span that is not recorded costs less than one that is. Trace ids are still
  made, continued from the caller's ``traceparent`` and sent on with the caller's sampled
  flag, so log lines of one request share a trace id across the services.
  ``OTEL_TRACES_SAMPLER`` chooses another sampler.
- ``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES`` name the process; the default
  service name is ``trustfirst-<service>``.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import grpc
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased

logger = logging.getLogger(__name__)

METER_NAME = "trustfirst"

# Bucket bounds of the call duration histogram, in seconds: from 0.5 ms (a unary round trip
# on loopback) to 5 s (the longest deadline the suite's clients use).
DURATION_BUCKETS_SECONDS = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
)  # fmt: skip

# Health checks and reflection are probes, not traffic: they get no spans.
UNTRACED_SERVICES = ("grpc.health.v1.Health", "grpc.reflection.")

DECIDE_METHOD = "/trustfirst.decision.v1.DecisionService/Decide"
CHECK_CONSENT_METHOD = "/trustfirst.consent.v1.ConsentService/CheckConsent"


def sdk_disabled() -> bool:
    """Return True when ``OTEL_SDK_DISABLED`` is ``true``, as the specification reads it."""
    return os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"


def _export_enabled(signal: str) -> bool:
    """Return True when the OTLP exporter of signal (TRACES or METRICS) is configured."""
    if os.environ.get(f"OTEL_{signal}_EXPORTER", "otlp").strip().lower() == "none":
        return False
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or os.environ.get(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT")
    )


@dataclass
class Telemetry:
    """The providers one process installed; ``shutdown`` flushes what is still queued."""

    tracer_provider: TracerProvider | None = None
    meter_provider: MeterProvider | None = None
    exporting_traces: bool = False
    exporting_metrics: bool = False

    def shutdown(self) -> None:
        """Export what is queued and stop the providers; blocks up to the export timeout."""
        if self.tracer_provider is not None:
            self.tracer_provider.shutdown()
        if self.meter_provider is not None:
            self.meter_provider.shutdown()


def configure_telemetry(
    service: str,
    span_exporter: SpanExporter | None = None,
    metric_reader: MetricReader | None = None,
) -> Telemetry:
    """Install the global tracer and meter providers of a process running service.

    span_exporter and metric_reader are for tests (an in-memory exporter and reader); a
    process otherwise gets the OTLP exporters when the environment configures them. The
    global providers can be set once per process, so a second call installs nothing.
    """
    if sdk_disabled():
        logger.info("OpenTelemetry SDK disabled by OTEL_SDK_DISABLED")
        return Telemetry()

    resource = Resource.create(
        {
            "service.name": os.environ.get("OTEL_SERVICE_NAME")
            or f"trustfirst-{service}",
            "service.namespace": "trustfirst",
        }
    )
    tracer_provider = _tracer_provider(resource, span_exporter)
    meter_provider = _meter_provider(resource, metric_reader)
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(meter_provider)
    telemetry = Telemetry(
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        exporting_traces=_export_enabled("TRACES"),
        exporting_metrics=_export_enabled("METRICS"),
    )
    logger.info(
        "OpenTelemetry configured",
        extra={
            "otlp_traces": telemetry.exporting_traces,
            "otlp_metrics": telemetry.exporting_metrics,
        },
    )
    return telemetry


def _tracer_provider(
    resource: Resource, span_exporter: SpanExporter | None
) -> TracerProvider:
    exporting = _export_enabled("TRACES")
    sampler = None
    if (
        span_exporter is None
        and not exporting
        and not os.environ.get("OTEL_TRACES_SAMPLER")
    ):
        sampler = ParentBased(root=ALWAYS_OFF)
    provider = TracerProvider(resource=resource, sampler=sampler)
    if span_exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(span_exporter))
    if exporting:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter,
        )

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


def _meter_provider(
    resource: Resource, metric_reader: MetricReader | None
) -> MeterProvider:
    readers: list[MetricReader] = []
    if metric_reader is not None:
        readers.append(metric_reader)
    if _export_enabled("METRICS"):
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
            OTLPMetricExporter,
        )

        # The interval comes from OTEL_METRIC_EXPORT_INTERVAL (default 60 s).
        readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
    return MeterProvider(resource=resource, metric_readers=readers)


@functools.lru_cache(maxsize=256)
def rpc_attributes(method: str) -> Mapping[str, str]:
    """Return the span and metric attributes of method (``/package.Service/Method``).

    The mapping is shared between calls, so callers must not change it.
    """
    service, _, name = method.lstrip("/").partition("/")
    return {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}


def end_rpc_span(span: trace.Span, code: grpc.StatusCode) -> None:
    """Set the status code of a call on its span, mark the span failed unless the code
    is OK, and end it."""
    span.set_attribute("rpc.grpc.status_code", code.value[0])
    if code != grpc.StatusCode.OK:
        span.set_status(trace.Status(trace.StatusCode.ERROR, code.name))
    span.end()


class RpcMetrics:
    """The suite's metric instruments, created on the global meter provider.

    The instruments are created before a provider may be installed; the API's proxy meter
    forwards them to the provider once ``configure_telemetry`` sets it.
    """

    def __init__(self) -> None:
        meter = metrics.get_meter(METER_NAME)
        self.duration = meter.create_histogram(
            "rpc.server.call.duration",
            unit="s",
            description="Time a unary call spent in the server, from the first "
            "interceptor to the response or error.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS_SECONDS,
        )
        self.decisions = meter.create_counter(
            "trustfirst.decisions",
            unit="{decision}",
            description="Decide responses, by chosen action and by silence reason.",
        )
        self.consent_denials = meter.create_counter(
            "trustfirst.consent.denials",
            unit="{pair}",
            description="CheckConsent results that were not allowed, by purpose, "
            "channel and reason.",
        )
        # One attribute mapping per method and status code, made on first use.
        self._call_attributes: dict[
            tuple[str, grpc.StatusCode], Mapping[str, str | int]
        ] = {}

    def record_call(self, method: str, code: grpc.StatusCode, seconds: float) -> None:
        """Record the duration of one unary call of method (``/package.Service/Method``)."""
        key = (method, code)
        attributes = self._call_attributes.get(key)
        if attributes is None:
            attributes = {
                **rpc_attributes(method),
                "rpc.grpc.status_code": code.value[0],
            }
            self._call_attributes[key] = attributes
        self.duration.record(seconds, attributes)

    def record_response(self, method: str, response: Any) -> None:
        """Count the decision or the consent denials that response carries, if any."""
        if method == DECIDE_METHOD:
            self.decisions.add(1, decision_attributes(response))
        elif method == CHECK_CONSENT_METHOD:
            for result in response.results:
                if not result.allowed:
                    self.consent_denials.add(1, denial_attributes(result))


def decision_attributes(response: Any) -> Mapping[str, str]:
    """Return the metric attributes of a DecideResponse: its action, or ``none`` and why."""
    if response.silent:
        return _silence_attributes(response.silence_reason)
    return _action_attributes(response.action_id)


@functools.lru_cache(maxsize=256)
def _action_attributes(action_id: str) -> Mapping[str, str]:
    return {"action": action_id, "reason": "CHOSEN"}


@functools.lru_cache(maxsize=64)
def _silence_attributes(silence_reason: int) -> Mapping[str, str]:
    from trustfirst.decision.v1 import decision_pb2

    reason = _enum_name(decision_pb2.SilenceReason, silence_reason, "SILENCE_REASON_")
    return {"action": "none", "reason": reason}


def denial_attributes(result: Any) -> Mapping[str, str]:
    """Return the metric attributes of a refused ConsentCheckResult, as enum names."""
    return _denial_attributes(result.purpose, result.channel, result.reason)


@functools.lru_cache(maxsize=1024)
def _denial_attributes(purpose: int, channel: int, reason: int) -> Mapping[str, str]:
    from trustfirst.consent.v1 import consent_pb2

    return {
        "purpose": _enum_name(consent_pb2.Purpose, purpose, "PURPOSE_"),
        "channel": _enum_name(consent_pb2.Channel, channel, "CHANNEL_"),
        "reason": _enum_name(consent_pb2.CheckReason, reason, "CHECK_REASON_"),
    }


def _enum_name(enum: Any, value: int, prefix: str) -> str:
    """Return the name of value without prefix, or the number for a value newer than enum."""
    try:
        name: str = enum.Name(value)
    except ValueError:
        return str(value)
    return name.removeprefix(prefix)
