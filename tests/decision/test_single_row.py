"""Single-row scoring through LightGBM's C API gives what Booster.predict gives."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest

from services.decision.model import SingleRowPredictor, load_model

ROWS = 2_000


def _rows(columns: int) -> np.ndarray:
    """Random feature rows of all magnitudes, a tenth of the values missing."""
    rng = np.random.default_rng(7)
    rows = rng.lognormal(mean=2.0, sigma=2.0, size=(ROWS, columns))
    rows[rng.random(rows.shape) < 0.1] = np.nan
    return rows


def test_single_row_equals_booster(model_root: Path) -> None:
    model = load_model(model_root)
    rows = _rows(len(model.feature_names))
    expected = model.booster.predict(rows, num_threads=1)

    assert model.single_row is not None
    got = np.array([model.predict(rows[i : i + 1])[0] for i in range(ROWS)])
    np.testing.assert_array_equal(got, expected)


def test_many_rows_use_booster(model_root: Path) -> None:
    model = load_model(model_root)
    rows = _rows(len(model.feature_names))[:50]

    np.testing.assert_array_equal(
        model.predict(rows), model.booster.predict(rows, num_threads=1)
    )


def test_wrong_width_rejected(model_root: Path) -> None:
    model = load_model(model_root)
    assert model.single_row is not None

    with pytest.raises(ValueError, match="expected"):
        model.single_row.predict(np.zeros(len(model.feature_names) + 1))


def test_fallback_without_c_api(
    model_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = load_model(model_root)
    monkeypatch.delattr(lgb.basic, "_LIB")

    assert SingleRowPredictor.create(model.booster, len(model.feature_names)) is None


def test_predict_without_single_row(model_root: Path) -> None:
    model = load_model(model_root)
    plain = replace(model, single_row=None)
    rows = _rows(len(model.feature_names))[:1]

    np.testing.assert_array_equal(plain.predict(rows), model.predict(rows))
