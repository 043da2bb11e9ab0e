"""Holdout metrics: ROC AUC with ties, Brier score and the calibration table."""

import pytest

from services.decision.evaluation import brier_score, calibration_table, roc_auc


def test_auc_perfect_order() -> None:
    assert roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0


def test_auc_reversed_order() -> None:
    assert roc_auc([1, 1, 0, 0], [0.1, 0.2, 0.8, 0.9]) == 0.0


def test_auc_counts_ties_as_half() -> None:
    assert roc_auc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5


def test_auc_mixed_order() -> None:
    # Pairs (positive, negative): (0.4, 0.1) and (0.4, 0.6), (0.8, 0.1) and (0.8, 0.6): 3 of 4.
    assert roc_auc([0, 1, 0, 1], [0.1, 0.4, 0.6, 0.8]) == 0.75


def test_auc_rejects_one_class() -> None:
    with pytest.raises(ValueError, match="both positive and negative"):
        roc_auc([1, 1], [0.2, 0.3])


def test_brier_score() -> None:
    assert brier_score([1, 0], [0.5, 0.25]) == pytest.approx((0.25 + 0.0625) / 2)


def test_calibration_table_bins() -> None:
    labels = [0, 0, 0, 1, 0, 1, 1, 1]
    probabilities = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]

    table = calibration_table(labels, probabilities, bins=4)

    assert table == [
        {"bin": 1, "rows": 2, "mean_predicted": 0.15, "observed_rate": 0.0},
        {"bin": 2, "rows": 2, "mean_predicted": 0.35, "observed_rate": 0.5},
        {"bin": 3, "rows": 2, "mean_predicted": 0.55, "observed_rate": 0.5},
        {"bin": 4, "rows": 2, "mean_predicted": 0.75, "observed_rate": 1.0},
    ]
