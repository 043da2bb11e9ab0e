"""Scores of candidate actions and the choice between them and silence.

The score of an action is its expected incremental value over silence, net of cost, in
cents. A bundle with a value model scores with it (see value_model.py). Without one, the
prior formula below scores with the catalog's constant uplift. Its inputs are p, the
probability that the customer purchases within the model's horizon without any action,
V, the expected order value, and from the catalog the action's uplift u, discount_rate r,
discount_cents d and cost_cents c and the catalog's margin_rate m:

    q = u * (1 - p)                      extra purchase probability caused by the action
    score = m * q * V - (p + q) * (r * V + d) - c

The discount term charges every order placed with the action, including those the
customer would have placed anyway, so a discount to a likely buyer scores low. Silence
scores 0.

The choice takes the best permitted, eligible candidate under the contact caps when it
scores above 0, else silence. A holdout profile always gets silence. With an exploration
share e, a uniform draw among the n open candidates and silence replaces that choice with
probability e, so each option's probability is (1 - e) [option is the best] + e / n.
"""

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from services.decision.catalog import CandidateSet, ContactCap
from services.decision.domain import CandidateStatus, SilenceReason
from services.decision.features import SECONDS_PER_DAY, PurchaseAggregate
from trustfirst.decision.v1 import decision_pb2

_NO_REASON = decision_pb2.SILENCE_REASON_UNSPECIFIED
_OPEN = decision_pb2.CANDIDATE_STATUS_OUTSCORED


@dataclass(frozen=True)
class Choice:
    """The chosen candidate (or None for silence), the silence reason, and statuses."""

    chosen: int | None
    silence_reason: SilenceReason
    statuses: tuple[CandidateStatus, ...]
    propensity: float = 1.0
    """Probability with which chosen (or silence) was drawn."""
    probabilities: tuple[float, ...] = ()
    """Probability of each candidate under the policy; empty when none was open."""
    silence_probability: float = 1.0
    explored: bool = False
    best: int | None = None
    """The candidate the policy prefers without exploration or holdout; None is silence."""
    open_indices: tuple[int, ...] = ()
    """Candidates that were permitted, eligible and under the caps."""


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


def cap_reached(
    caps: Sequence[ContactCap],
    contacts: Sequence[tuple[int, int]],
    as_of: int,
) -> bool:
    """Return whether any cap already counts max_contacts contacts on its channel.

    A cap counts the contacts at times t with as_of - period < t <= as_of; contacts are
    (time in seconds, channel number) pairs.
    """
    for cap in caps:
        start = as_of - cap.period_days * SECONDS_PER_DAY
        count = sum(
            1
            for time, channel in contacts
            if channel == cap.channel and start < time <= as_of
        )
        if count >= cap.max_contacts:
            return True
    return False


def eligible_mask(
    candidates: CandidateSet,
    purchase_count: int,
    recency_days: float,
    basket_cents: int,
) -> npt.NDArray[np.bool_]:
    """Return which candidates the eligibility rules admit.

    recency_days is NaN for a customer with no purchase: such a customer passes
    min_recency_days and fails any max_recency_days.
    """
    no_purchase = math.isnan(recency_days)
    recency = 0.0 if no_purchase else recency_days
    min_recency_ok = no_purchase | (recency >= candidates.min_recency_days)
    if no_purchase:
        max_recency_ok = np.isinf(candidates.max_recency_days)
    else:
        max_recency_ok = recency <= candidates.max_recency_days
    mask: npt.NDArray[np.bool_] = (
        (purchase_count >= candidates.min_purchase_count)
        & (basket_cents >= candidates.min_basket_cents)
        & min_recency_ok
        & max_recency_ok
    )
    return mask


def choose(
    candidates: CandidateSet,
    scores: npt.NDArray[np.float64],
    consent_allowed: tuple[bool, ...],
    purchase_count: int,
    *,
    recency_days: float = math.nan,
    basket_cents: int = 0,
    capped: bool = False,
    holdout: bool = False,
    exploration_share: float = 0.0,
    rng: random.Random | None = None,
) -> Choice:
    """Pick the candidate to serve, or silence, with the probability of the pick.

    consent_allowed follows candidates.pairs. A candidate is open when consent allows
    every pair it needs, the eligibility rules admit it and no contact cap of its channel
    is reached (capped). rng draws the exploration; None means no exploration.
    """
    if not candidates.actions:
        return Choice(None, decision_pb2.SILENCE_REASON_NO_ELIGIBLE_ACTION, ())

    eligible = eligible_mask(candidates, purchase_count, recency_days, basket_cents)
    statuses: list[CandidateStatus] = []
    open_indices: list[int] = []
    for index, pair_indices in enumerate(candidates.action_pairs):
        if not all(consent_allowed[j] for j in pair_indices):
            statuses.append(decision_pb2.CANDIDATE_STATUS_NO_CONSENT)
        elif not eligible[index]:
            statuses.append(decision_pb2.CANDIDATE_STATUS_INELIGIBLE)
        elif capped:
            statuses.append(decision_pb2.CANDIDATE_STATUS_CAPPED)
        else:
            statuses.append(_OPEN)
            open_indices.append(index)

    if all(s == decision_pb2.CANDIDATE_STATUS_NO_CONSENT for s in statuses):
        return Choice(None, decision_pb2.SILENCE_REASON_NO_CONSENT, tuple(statuses))
    if not open_indices:
        reason = (
            decision_pb2.SILENCE_REASON_CONTACT_CAP
            if decision_pb2.CANDIDATE_STATUS_CAPPED in statuses
            else decision_pb2.SILENCE_REASON_NO_ELIGIBLE_ACTION
        )
        return Choice(None, reason, tuple(statuses))

    best: int | None = max(open_indices, key=lambda index: scores[index])
    if best is not None and not scores[best] > 0.0:
        best = None
    if holdout:
        for index in open_indices:
            statuses[index] = decision_pb2.CANDIDATE_STATUS_UNSPECIFIED
        return Choice(
            None,
            decision_pb2.SILENCE_REASON_HOLDOUT,
            tuple(statuses),
            best=best,
            open_indices=tuple(open_indices),
        )
    return _draw(candidates, statuses, open_indices, best, exploration_share, rng)


def _draw(
    candidates: CandidateSet,
    statuses: list[CandidateStatus],
    open_indices: list[int],
    best: int | None,
    exploration_share: float,
    rng: random.Random | None,
) -> Choice:
    """Draw the served option among the open candidates and silence."""
    options: list[int | None] = [*open_indices, None]
    share = exploration_share if rng is not None else 0.0
    explored = share > 0.0 and rng is not None and rng.random() < share
    chosen = rng.choice(options) if explored and rng is not None else best

    uniform = share / len(options)
    probabilities = [0.0] * len(candidates.actions)
    for index in open_indices:
        probabilities[index] = (1.0 - share) * (index == best) + uniform
    silence_probability = (1.0 - share) * (best is None) + uniform

    if chosen is None:
        reason: SilenceReason = (
            decision_pb2.SILENCE_REASON_EXPLORATION
            if explored and best is not None
            else decision_pb2.SILENCE_REASON_SILENCE_SCORED_BEST
        )
        propensity = silence_probability
    else:
        statuses[chosen] = decision_pb2.CANDIDATE_STATUS_CHOSEN
        reason = _NO_REASON
        propensity = probabilities[chosen]
    return Choice(
        chosen,
        reason,
        tuple(statuses),
        propensity=propensity,
        probabilities=tuple(probabilities),
        silence_probability=silence_probability,
        explored=explored,
        best=best,
        open_indices=tuple(open_indices),
    )
