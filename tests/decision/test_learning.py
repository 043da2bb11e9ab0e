"""Learning incrementality from simulated decision logs, checked against the simulator's
ground truth: the learned policy's margin, its silence for buyers who buy anyway, and
the offline estimates' intervals.
"""

import json
from pathlib import Path

import pytest

from services.decision.bundle import load_bundle
from services.decision.learn import main as learn_main
from services.decision.simulate import (
    ExperimentConfig,
    ExperimentResult,
    run_experiment,
)
from services.decision.trainset import build_training_set
from services.decision.value_model import VALUE_MODEL_COLUMNS

# Small enough for the test run, large enough that the action effects stand out of the
# order-value noise (see docs/model.md for the full-size run).
CONFIG = ExperimentConfig(customers=20_000, test_customers=5_000, seed=7)


@pytest.fixture(scope="module")
def experiment(
    model_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> ExperimentResult:
    workdir = tmp_path_factory.mktemp("experiment")
    return run_experiment(CONFIG, load_bundle(model_root), workdir)


@pytest.mark.parametrize(
    "baseline", ["always:email-discount-10pct", "never-message", "random"]
)
def test_learned_beats_baseline(experiment: ExperimentResult, baseline: str) -> None:
    assert experiment.test_values["learned"] > experiment.test_values[baseline]


def test_learned_silent_for_buyers_anyway(experiment: ExperimentResult) -> None:
    assert experiment.learned_silence_by_segment["buys_anyway"] > 0.8


def test_learned_discounts_persuadables(experiment: ExperimentResult) -> None:
    assert experiment.learned_silence_by_segment["persuadable"] < 0.5


@pytest.mark.parametrize("estimator", ["IPS", "SNIPS", "DR"])
@pytest.mark.parametrize(
    "policy", ["learned", "silence", "random", "always:email-discount-10pct"]
)
def test_estimate_covers_truth(
    experiment: ExperimentResult, policy: str, estimator: str
) -> None:
    estimate = experiment.learn.estimates[policy][estimator]
    truth = experiment.offline_truth[policy]

    assert estimate.low <= truth <= estimate.high


def test_new_bundle_contents(experiment: ExperimentResult, model_root: Path) -> None:
    bundle = experiment.bundle
    base = load_bundle(model_root)

    assert bundle.value_model is not None
    assert tuple(bundle.value_model.booster.feature_name()) == VALUE_MODEL_COLUMNS
    assert bundle.manifest["base_version"] == base.version
    assert (
        bundle.manifest["metrics"]["holdout_auc"]
        == base.manifest["metrics"]["holdout_auc"]
    )
    assert bundle.manifest["value_model"]["horizon_days"] == 90
    assert bundle.catalog.version == base.catalog.version
    assert "DR" in bundle.manifest["offline_evaluation"]["policies"]["learned"]


def test_training_set_rows(experiment: ExperimentResult, tmp_path: Path) -> None:
    rows = experiment.learn.rows

    assert rows["training_rows"] + rows["evaluation_rows"] == CONFIG.customers
    assert rows["skipped_no_features"] == 0


def test_training_set_skips_open_windows(
    experiment: ExperimentResult, tmp_path: Path
) -> None:
    log = experiment.bundle.path.parent.parent / "simulated-decisions.jsonl.gz"
    data = build_training_set(log, progress=False)

    assert len(data) == CONFIG.customers
    assert data.horizon_days == 90
    assert data.propensities.tolist() == [pytest.approx(1 / 3)] * CONFIG.customers


def test_learn_command(
    experiment: ExperimentResult,
    model_root: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    log = experiment.bundle.path.parent.parent / "simulated-decisions.jsonl.gz"
    registry = tmp_path / "registry"
    base = model_root / (model_root / "CURRENT").read_text().strip()

    learn_main(
        [
            "--log",
            str(log),
            "--registry",
            str(registry),
            "--base",
            str(base),
            "--promote",
        ]
    )

    output = capsys.readouterr().out
    current = (registry / "CURRENT").read_text().strip()
    manifest = json.loads((registry / current / "manifest.json").read_text())
    assert "promoted" in output
    assert "SNIPS" in output
    assert manifest["value_model"]["rows"]["evaluation_rows"] > 0
    assert load_bundle(registry).value_model is not None
