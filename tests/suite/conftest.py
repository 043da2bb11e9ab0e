"""Fixtures of the suite tests: a model trained once, the in-memory telemetry, and the
whole suite running as processes on a private Redis.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)

from services.decision.train import train_model
from shared.embedded_redis import EmbeddedRedis
from shared.telemetry import Telemetry, configure_telemetry
from suite.launcher import Suite, hash_key_file, start_suite
from tests.decision.synthetic import write_synthetic_cdnow

# Every service logs at DEBUG in the shared suite, so the log scan reads the most output.
SERVICE_LOG_LEVELS = {
    f"TRUSTFIRST_{name}_LOG_LEVEL": "DEBUG"
    for name in ("IDENTITY", "CONSENT", "DECISION")
}

# The suite's tests check responses and logs, not deadlines, so decision's deadlines are
# long enough that a busy test machine does not turn calls into silences or errors.
SERVICE_DEADLINES = {
    f"TRUSTFIRST_DECISION_{step}_DEADLINE_MS": "2000"
    for step in ("IDENTITY", "CONSENT", "FEATURES")
}


@pytest.fixture(scope="session")
def suite_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model folder trained on a small synthetic CDNOW-format history."""
    folder = tmp_path_factory.mktemp("suite-model")
    data = write_synthetic_cdnow(folder / "synthetic.txt", customers=400)
    train_model(data, folder / "models", seed=5)
    return folder / "models"


@dataclass
class TelemetryCapture:
    """The process-wide providers, exporting into memory."""

    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader
    telemetry: Telemetry


@pytest.fixture(scope="session")
def telemetry_capture() -> Iterator[TelemetryCapture]:
    """Install global tracer and meter providers that keep spans and metrics in memory.

    The providers stay installed for the rest of the session, because OpenTelemetry lets a
    process set them once.
    """
    spans = InMemorySpanExporter()
    reader = InMemoryMetricReader()
    telemetry = configure_telemetry("tests", span_exporter=spans, metric_reader=reader)
    yield TelemetryCapture(spans=spans, metrics=reader, telemetry=telemetry)
    telemetry.shutdown()


@dataclass
class RunningSuite:
    """The suite's processes, its Redis and the identity hash key they use."""

    suite: Suite
    redis: EmbeddedRedis
    hash_key: str

    def target(self, name: str) -> str:
        return self.suite.target(name)

    def log_paths(self) -> list[Path]:
        return [service.log_path for service in self.suite.services.values()]


@pytest.fixture(scope="session")
def running_suite(
    tmp_path_factory: pytest.TempPathFactory, suite_model: Path
) -> Iterator[RunningSuite]:
    """Redis and the three services as processes on free ports, for the whole session.

    Redis is a server of its own, not the session's shared one, so no other test's
    flush reaches the suite's data.
    """
    data_dir = tmp_path_factory.mktemp("suite")
    redis = EmbeddedRedis(data_dir=data_dir / "redis").start()
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {**SERVICE_LOG_LEVELS, **SERVICE_DEADLINES}.items():
            patch.setenv(name, value)
        suite = start_suite(data_dir, suite_model, redis.url)
    try:
        hash_key = hash_key_file(data_dir).read_text().strip()
        yield RunningSuite(suite=suite, redis=redis, hash_key=hash_key)
    finally:
        suite.stop()
        redis.stop()


@pytest.fixture(scope="session")
def suite_env(running_suite: RunningSuite) -> dict[str, str]:
    """Environment of a client process that points at the running suite."""
    env = dict(os.environ)
    env["TRUSTFIRST_IDENTITY_TARGET"] = running_suite.target("identity")
    env["TRUSTFIRST_CONSENT_TARGET"] = running_suite.target("consent")
    env["TRUSTFIRST_DECISION_TARGET"] = running_suite.target("decision")
    return env
