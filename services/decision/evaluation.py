"""Holdout metrics of a binary probability model: ROC AUC, Brier score, calibration."""

from typing import TypedDict

import numpy as np
import numpy.typing as npt

CALIBRATION_BINS = 10


class CalibrationBin(TypedDict):
    """One equal-count bin of predictions, from lowest to highest."""

    bin: int
    rows: int
    mean_predicted: float
    observed_rate: float


def roc_auc(labels: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    """Return the area under the ROC curve, counting tied scores as half-ordered.

    Computed from the rank sum of the positives (Mann-Whitney U). Raises ValueError when
    labels hold only one class.
    """
    labels_array = np.asarray(labels).astype(bool)
    scores_array = np.asarray(scores, dtype=np.float64)
    positives = int(labels_array.sum())
    negatives = labels_array.size - positives
    if positives == 0 or negatives == 0:
        raise ValueError("ROC AUC needs both positive and negative labels")

    _, inverse, counts = np.unique(
        scores_array, return_inverse=True, return_counts=True
    )
    average_ranks = np.cumsum(counts) - (counts - 1) / 2.0
    ranks = average_ranks[inverse]
    rank_sum = float(ranks[labels_array].sum())
    return (rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives)


def brier_score(labels: npt.ArrayLike, probabilities: npt.ArrayLike) -> float:
    """Return the mean squared difference between probabilities and 0/1 labels."""
    labels_array = np.asarray(labels, dtype=np.float64)
    probabilities_array = np.asarray(probabilities, dtype=np.float64)
    return float(np.mean((probabilities_array - labels_array) ** 2))


def calibration_table(
    labels: npt.ArrayLike, probabilities: npt.ArrayLike, bins: int = CALIBRATION_BINS
) -> list[CalibrationBin]:
    """Split rows into equal-count bins by predicted probability and compare each bin's
    mean prediction with its observed positive rate.
    """
    labels_array = np.asarray(labels, dtype=np.float64)
    probabilities_array = np.asarray(probabilities, dtype=np.float64)
    order = np.argsort(probabilities_array, kind="stable")

    table: list[CalibrationBin] = []
    for index, rows in enumerate(np.array_split(order, bins), start=1):
        if rows.size == 0:
            continue
        table.append(
            CalibrationBin(
                bin=index,
                rows=int(rows.size),
                mean_predicted=round(float(probabilities_array[rows].mean()), 4),
                observed_rate=round(float(labels_array[rows].mean()), 4),
            )
        )
    return table
