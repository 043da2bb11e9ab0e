"""The demo runs the real suite (three processes and Redis) on a slice of CDNOW."""

import json
import shutil
from pathlib import Path

import pytest
import redis

from shared.embedded_redis import EmbeddedRedis
from suite.demo import DemoConfig, DemoReport, run_demo

CUSTOMERS = 300


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("demo")


@pytest.fixture(scope="module")
def embedded_report(demo_dir: Path) -> DemoReport:
    """A demo run with no Redis URL, so the launcher starts its own embedded Redis."""
    return run_demo(DemoConfig(data_dir=demo_dir, limit=CUSTOMERS, concurrency=8))


def test_demo_decides_every_customer(embedded_report: DemoReport) -> None:
    assert embedded_report.customers == CUSTOMERS
    assert len(embedded_report.latencies_ms) == CUSTOMERS
    assert dict(embedded_report.errors) == {}


def test_demo_answers_are_actions_or_silences(embedded_report: DemoReport) -> None:
    answered = sum(embedded_report.actions.values()) + sum(
        embedded_report.silences.values()
    )

    assert answered == CUSTOMERS


def test_demo_chooses_some_actions(embedded_report: DemoReport) -> None:
    assert sum(embedded_report.actions.values()) > 0


def test_demo_silences_without_consent(embedded_report: DemoReport) -> None:
    assert embedded_report.silences["SILENCE_REASON_NO_CONSENT"] > 0


def test_demo_writes_summary(embedded_report: DemoReport, demo_dir: Path) -> None:
    summary = json.loads((demo_dir / "demo-summary.json").read_text())

    assert summary["decisions"] == CUSTOMERS
    assert summary["latency_ms"]["p99"] > 0


def test_demo_uses_redis_url(
    embedded_report: DemoReport,
    demo_dir: Path,
    durable_redis: EmbeddedRedis,
    tmp_path: Path,
) -> None:
    # The model trained by the first run is reused, so this run trains nothing.
    shutil.copytree(demo_dir / "models", tmp_path / "models")

    report = run_demo(
        DemoConfig(
            data_dir=tmp_path,
            redis_url=durable_redis.url,
            limit=20,
            concurrency=4,
        )
    )
    client = redis.Redis.from_url(durable_redis.url)
    profile_keys = list(client.scan_iter("tf:decision:*features", count=1000))
    client.close()

    assert not (tmp_path / "redis").exists()
    assert len(report.latencies_ms) == 20
    assert len(profile_keys) >= 20
