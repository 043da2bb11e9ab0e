"""The benchmark's smoke mode runs the real suite for a few seconds and reports every row.

No timing is asserted: the machine running the tests may be busy, and speed is the
benchmark's own output, not a test condition.
"""

import json
from pathlib import Path
from typing import Any

import pytest

from bench.__main__ import main
from tests.decision.synthetic import write_synthetic_cdnow

SCENARIOS = {
    "Decide",
    "Decide by identifiers",
    "CheckConsent (20 pairs)",
    "Lookup",
    "health check (floor)",
}


@pytest.fixture(scope="module")
def smoke_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The output folder of one smoke run on a synthetic CDNOW file."""
    folder = tmp_path_factory.mktemp("bench")
    data = write_synthetic_cdnow(folder / "synthetic.txt", customers=300)
    main(["--smoke", "--out", str(folder / "out"), "--data", str(data)])
    return folder / "out"


@pytest.fixture(scope="module")
def results(smoke_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((smoke_dir / "results.json").read_text())
    return data


def test_smoke_runs_every_scenario(results: dict[str, Any]) -> None:
    names = {run["name"] for run in results["runs"]}

    assert names == SCENARIOS


def test_smoke_runs_have_no_errors(results: dict[str, Any]) -> None:
    errors = {run["name"]: run["errors"] for run in results["runs"] if run["errors"]}

    assert errors == {}


def test_smoke_runs_measure_calls(results: dict[str, Any]) -> None:
    for run in results["runs"]:
        assert run["calls"] > 0, run["name"]
        assert set(run["latency_ms"]) == {"p50", "p90", "p99", "p99.9", "max"}, run[
            "name"
        ]


def test_smoke_measures_service_memory(results: dict[str, Any]) -> None:
    for name in ("identity", "consent", "decision"):
        assert results["memory_mb"][name]["peak_rss"] > 0, name


def test_smoke_times_lightgbm(results: dict[str, Any]) -> None:
    assert set(results["lightgbm_ms"]) == {"booster", "model"}


def test_smoke_skips_mlserver(results: dict[str, Any]) -> None:
    assert results["mlserver"] == {}


def test_smoke_writes_markdown(smoke_dir: Path) -> None:
    markdown = (smoke_dir / "report.md").read_text()

    assert "### Latency in ms, from each call's due time" in markdown
    assert "| Decide | 50 |" in markdown
