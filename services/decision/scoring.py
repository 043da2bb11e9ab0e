"""Scores of the candidates of one or many decisions, from a bundle's models.

Serving scores one row and the simulator and offline evaluation score many, through the
same function: one repeat-purchase prediction per row, and one value-model call for all
rows and candidates.
"""

import numpy as np
import numpy.typing as npt

from services.decision.bundle import Bundle
from services.decision.catalog import CandidateSet
from services.decision.features import DECISION_FEATURE_NAMES, FEATURE_NAMES

_PURCHASE_COLUMNS = len(FEATURE_NAMES)
_MEAN_ORDER_COLUMN = FEATURE_NAMES.index("monetary_mean_cents")


def prior_scores(
    candidates: CandidateSet,
    repeat_probability: npt.NDArray[np.float64],
    order_value_cents: npt.NDArray[np.float64],
    margin_rate: float,
) -> npt.NDArray[np.float64]:
    """Return the prior formula's scores, shape (rows, candidates), in cents.

    The formula is in arbitration.py; the inputs are one value per row.
    """
    p = repeat_probability[:, np.newaxis]
    value = order_value_cents[:, np.newaxis]
    extra = candidates.uplift * (1.0 - p)
    given_away = candidates.discount_rate * value + candidates.discount_cents
    scores: npt.NDArray[np.float64] = (
        margin_rate * extra * value - (p + extra) * given_away - candidates.cost_cents
    )
    return scores


def score_rows(
    bundle: Bundle, features: npt.NDArray[np.float64], candidates: CandidateSet
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Return the repeat probability of each row and the score of each candidate.

    features has DECISION_FEATURE_NAMES columns. With a value model, a score is the
    model's incremental value less the action's cost. An action the model never saw, and
    every action of a bundle without a value model, gets the prior formula's score.
    """
    if features.shape[1] != len(DECISION_FEATURE_NAMES):
        raise ValueError(
            f"expected {len(DECISION_FEATURE_NAMES)} feature columns, "
            f"got {features.shape[1]}"
        )
    repeat = bundle.model.predict(features[:, :_PURCHASE_COLUMNS])
    if not candidates.actions:
        return repeat, np.zeros((features.shape[0], 0))

    model = bundle.value_model
    if model is None:
        return repeat, _prior(bundle, features, candidates, repeat)

    values = model.incremental_values(features, candidates.action_ids)
    scores: npt.NDArray[np.float64] = values - candidates.cost_cents
    if model.plan_for(candidates.action_ids).any_unknown:
        prior = _prior(bundle, features, candidates, repeat)
        scores = np.where(np.isnan(scores), prior, scores)
    return repeat, scores


def _prior(
    bundle: Bundle,
    features: npt.NDArray[np.float64],
    candidates: CandidateSet,
    repeat: npt.NDArray[np.float64],
) -> npt.NDArray[np.float64]:
    order_value = features[:, _MEAN_ORDER_COLUMN]
    order_value = np.where(
        np.isnan(order_value),
        float(bundle.catalog.default_order_value_cents),
        order_value,
    )
    return prior_scores(candidates, repeat, order_value, bundle.catalog.margin_rate)
