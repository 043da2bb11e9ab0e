"""Training on a synthetic CDNOW-format file, the artifact it writes, and model loading."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from services.decision.artifact import ArtifactNotFoundError, sha256_file
from services.decision.bundle import load_bundle
from services.decision.catalog import load_catalog
from services.decision.features import FEATURE_NAMES
from services.decision.model import ModelLoadError, load_model
from services.decision.train import main, train_model


def _manifest(folder: Path) -> dict:  # type: ignore[type-arg]
    return json.loads((folder / "manifest.json").read_text())


def test_artifact_files(model_root: Path) -> None:
    version = (model_root / "CURRENT").read_text().strip()
    folder = model_root / version

    assert (folder / "model.txt").is_file()
    assert _manifest(folder)["version"] == version


def test_manifest_contents(model_root: Path, synthetic_cdnow: Path) -> None:
    manifest = _manifest(model_root / (model_root / "CURRENT").read_text().strip())

    assert manifest["feature_schema"] == list(FEATURE_NAMES)
    assert manifest["label"]["horizon_days"] == 90
    assert manifest["data"]["file_name"] == "synthetic.txt"
    assert manifest["data"]["sha256"] == sha256_file(synthetic_cdnow)
    assert manifest["training"]["params"]["deterministic"] is True
    assert manifest["training"]["params"]["seed"] == 3
    assert (
        manifest["rows"]["train_customers"] + manifest["rows"]["holdout_customers"]
        == 800
    )
    assert manifest["rows"]["train"] > manifest["rows"]["holdout"] > 0


def test_manifest_metrics(model_root: Path) -> None:
    metrics = _manifest(model_root / (model_root / "CURRENT").read_text().strip())[
        "metrics"
    ]

    assert 0.7 < metrics["holdout_auc"] <= 1.0
    assert 0.0 < metrics["holdout_brier"] < 0.25
    assert len(metrics["calibration"]) == 10
    assert [row["bin"] for row in metrics["calibration"]] == list(range(1, 11))


def test_load_from_root(model_root: Path) -> None:
    model = load_model(model_root)

    assert model.version == (model_root / "CURRENT").read_text().strip()
    assert model.horizon_days == 90
    assert model.feature_names == FEATURE_NAMES


def test_predict_probabilities(model_root: Path) -> None:
    model = load_model(model_root)
    rows = np.array(
        [
            [5.0, 8.0, 300.0, 30000.0, 3750.0, 4000.0, 1.1, 2.0, 40.0, 0.1, 0.8],
            [
                400.0,
                1.0,
                400.0,
                1500.0,
                1500.0,
                1500.0,
                np.nan,
                1.0,
                np.nan,
                np.nan,
                0.1,
            ],
        ]
    )

    probabilities = model.predict(rows)

    assert probabilities.shape == (2,)
    assert 0.0 < probabilities[1] < probabilities[0] < 1.0


def test_load_missing_artifact(tmp_path: Path) -> None:
    with pytest.raises(ArtifactNotFoundError) as caught:
        load_model(tmp_path / "nothing")

    assert "python -m services.decision.train --out" in str(caught.value)


def test_load_current_names_missing_version(tmp_path: Path) -> None:
    (tmp_path / "CURRENT").write_text("20990101T000000Z-00000000\n")

    with pytest.raises(ArtifactNotFoundError, match="names version"):
        load_model(tmp_path)


def test_load_rejects_other_schema(model_root: Path, tmp_path: Path) -> None:
    folder = tmp_path / "copy"
    shutil.copytree(model_root / (model_root / "CURRENT").read_text().strip(), folder)
    manifest = _manifest(folder)
    manifest["feature_schema"] = [*FEATURE_NAMES[:-1], "days_since_last_contact"]
    (folder / "manifest.json").write_text(json.dumps(manifest))

    with pytest.raises(ModelLoadError, match="feature schema"):
        load_model(folder)


def test_load_rejects_changed_model_file(model_root: Path, tmp_path: Path) -> None:
    folder = tmp_path / "copy"
    shutil.copytree(model_root / (model_root / "CURRENT").read_text().strip(), folder)
    with (folder / "model.txt").open("a") as file:
        file.write("\n")

    with pytest.raises(ModelLoadError, match="SHA-256"):
        load_model(folder)


def test_train_rejects_short_history(tmp_path: Path) -> None:
    data = tmp_path / "short.txt"
    data.write_text("1 19970101 1 5.00\n2 19970301 1 7.00\n")

    with pytest.raises(ValueError, match="less than two label horizons"):
        train_model(data, tmp_path / "out")


def test_command_repeats_model(
    model_root: Path,
    synthetic_cdnow: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    main(["--data", str(synthetic_cdnow), "--out", str(tmp_path), "--seed", "3"])

    output = capsys.readouterr().out
    first = _manifest(model_root / (model_root / "CURRENT").read_text().strip())
    again = _manifest(tmp_path / (tmp_path / "CURRENT").read_text().strip())
    assert "holdout AUC" in output
    assert "calibration by decile" in output
    assert again["model_sha256"] == first["model_sha256"]


def test_bundle_carries_catalog(model_root: Path) -> None:
    folder = model_root / (model_root / "CURRENT").read_text().strip()
    manifest = _manifest(folder)
    bundle = load_bundle(model_root)

    assert (folder / "catalog.toml").is_file()
    assert manifest["catalog_version"] == bundle.catalog.version
    assert bundle.version == manifest["version"]
    assert bundle.value_model is None
    assert bundle.catalog.policy.exploration_share == 0.0


def test_bundle_without_catalog_uses_fallback(model_root: Path, tmp_path: Path) -> None:
    folder = tmp_path / "legacy"
    shutil.copytree(model_root / (model_root / "CURRENT").read_text().strip(), folder)
    (folder / "catalog.toml").unlink()

    bundle = load_bundle(folder)

    assert bundle.catalog.version == load_catalog().version


def test_bundle_rejects_changed_value_model(model_root: Path, tmp_path: Path) -> None:
    folder = tmp_path / "copy"
    shutil.copytree(model_root / (model_root / "CURRENT").read_text().strip(), folder)
    manifest = _manifest(folder)
    manifest["value_model"] = {
        "file": "value_model.txt",
        "sha256": "0" * 64,
        "action_codes": {"a": 1},
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (folder / "value_model.txt").write_text("tree\n")

    with pytest.raises(ModelLoadError, match="SHA-256"):
        load_bundle(folder)
