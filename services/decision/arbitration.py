"""Scores of candidate actions and the choice between them and silence.

The score of an action is its expected incremental value over silence, net of cost, in
cents. With p the probability that the customer purchases within the model's horizon
without any action, V the expected order value and, from the catalog, the action's
uplift u, discount_rate r, discount_cents d and cost_cents c and the catalog's
margin_rate m:

    q = u * (1 - p)                      extra purchase probability caused by the action
    score = m * q * V - (p + q) * (r * V + d) - c

The discount term charges every order placed with the action, including those the
customer would have placed anyway, so a discount to a likely buyer scores low. Silence
scores 0.
"""

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from services.decision.catalog import CandidateSet
from services.decision.domain import CandidateStatus, SilenceReason
from services.decision.features import PurchaseAggregate
from trustfirst.decision.v1 import decision_pb2

_NO_REASON = decision_pb2.SILENCE_REASON_UNSPECIFIED


@dataclass(frozen=True)
class Choice:
    """The chosen candidate (or None for silence), the silence reason, and statuses."""

    chosen: int | None
    silence_reason: SilenceReason
    statuses: tuple[CandidateStatus, ...]


def expected_order_value(aggregate: PurchaseAggregate, default_cents: int) -> float:
    """Return the customer's mean order value in cents, or default_cents with no history."""
    if aggregate.purchase_count == 0:
        return float(default_cents)
    return aggregate.total_amount_cents / aggregate.purchase_count


def score_candidates(
    candidates: CandidateSet,
    repeat_probability: float,
    order_value_cents: float,
    margin_rate: float,
) -> npt.NDArray[np.float64]:
    """Return each candidate's expected incremental value over silence, in cents."""
    # NOTE: uplift is a per-action constant from the catalog, a placeholder for learned
    # uplift models that estimate each action's effect per customer.
    p = repeat_probability
    extra = candidates.uplift * (1.0 - p)
    given_away = (
        candidates.discount_rate * order_value_cents + candidates.discount_cents
    )
    scores: npt.NDArray[np.float64] = (
        margin_rate * extra * order_value_cents
        - (p + extra) * given_away
        - candidates.cost_cents
    )
    return scores


def choose(
    candidates: CandidateSet,
    scores: npt.NDArray[np.float64],
    consent_allowed: tuple[bool, ...],
    purchase_count: int,
) -> Choice:
    """Pick the best permitted, eligible candidate with a positive score, else silence.

    consent_allowed follows candidates.pairs. An action is permitted when every pair it
    needs is allowed, and eligible when the customer has at least its min_purchase_count
    purchases on record.
    """
    if not candidates.actions:
        return Choice(None, decision_pb2.SILENCE_REASON_NO_ELIGIBLE_ACTION, ())

    statuses: list[CandidateStatus] = []
    open_indices: list[int] = []
    for index, pair_indices in enumerate(candidates.action_pairs):
        if not all(consent_allowed[j] for j in pair_indices):
            statuses.append(decision_pb2.CANDIDATE_STATUS_NO_CONSENT)
        elif purchase_count < candidates.min_purchase_count[index]:
            statuses.append(decision_pb2.CANDIDATE_STATUS_INELIGIBLE)
        else:
            statuses.append(decision_pb2.CANDIDATE_STATUS_OUTSCORED)
            open_indices.append(index)

    if all(s == decision_pb2.CANDIDATE_STATUS_NO_CONSENT for s in statuses):
        return Choice(None, decision_pb2.SILENCE_REASON_NO_CONSENT, tuple(statuses))
    if not open_indices:
        return Choice(
            None, decision_pb2.SILENCE_REASON_NO_ELIGIBLE_ACTION, tuple(statuses)
        )

    best = max(open_indices, key=lambda index: scores[index])
    if scores[best] <= 0.0:
        return Choice(
            None, decision_pb2.SILENCE_REASON_SILENCE_SCORED_BEST, tuple(statuses)
        )
    statuses[best] = decision_pb2.CANDIDATE_STATUS_CHOSEN
    return Choice(best, _NO_REASON, tuple(statuses))
