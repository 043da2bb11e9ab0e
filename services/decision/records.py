"""The decision record: what the decision log stores per decision, and what training,
offline evaluation, ExplainDecision and the lifetime-value report read back.

The service and the simulator both build records with ``decision_record``, so logs from
either are read by the same code.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from services.decision.domain import BasketLine, Decision
from services.decision.features import DECISION_FEATURE_NAMES
from trustfirst.consent.v1 import consent_pb2
from trustfirst.decision.v1 import decision_pb2

RECORD_FORMAT = 2
"""Version of the record layout; records without ``format`` are from version 1."""


@dataclass(frozen=True)
class RecordContext:
    """Facts of a decision that its Decision does not carry."""

    time: float
    """Wall-clock seconds since the epoch when the decision was made."""
    as_of: int
    """Seconds since the epoch the decision was made for (the request's event time)."""
    touchpoint: str
    channel: consent_pb2.Channel.ValueType
    basket: Sequence[BasketLine]
    features: Sequence[float] | None
    """DECISION_FEATURE_NAMES values, or None when the features were unavailable."""
    open_actions: Sequence[str]
    """Candidates that were permitted, eligible and under the caps."""
    probabilities: Sequence[float]
    """Policy probability of each candidate; empty when none was open."""
    silence_probability: float
    best_action: str
    """The action the policy prefers without exploration or holdout; empty for silence."""
    margin_rate: float
    action_cost_cents: float
    """Cost of the chosen action; 0 when silent."""
    attribution_window_days: int


def decision_record(decision: Decision, context: RecordContext) -> dict[str, Any]:
    """Return the JSON-ready record of decision."""
    features = None
    if context.features is not None:
        features = dict(zip(DECISION_FEATURE_NAMES, context.features, strict=True))
    probabilities = list(context.probabilities) or [0.0] * len(decision.candidates)
    return {
        "format": RECORD_FORMAT,
        "decision_id": decision.decision_id,
        "profile_id": decision.profile_id,
        "time": round(context.time, 3),
        "as_of": context.as_of,
        "touchpoint": context.touchpoint,
        "channel": consent_pb2.Channel.Name(context.channel),
        "basket": [
            [line.sku, line.quantity, line.unit_price_cents] for line in context.basket
        ],
        "features": features,
        "repeat_probability": decision.repeat_probability,
        "candidates": [
            {
                "action_id": c.action_id,
                "score": round(c.score, 4),
                "status": decision_pb2.CandidateStatus.Name(c.status),
                "probability": round(probability, 6),
            }
            for c, probability in zip(decision.candidates, probabilities, strict=True)
        ],
        "open_actions": list(context.open_actions),
        "chosen": decision.action_id,
        "silence_reason": decision_pb2.SilenceReason.Name(decision.silence_reason),
        "propensity": round(decision.propensity, 6),
        "silence_probability": round(context.silence_probability, 6),
        "best_action": context.best_action,
        "holdout": decision.holdout,
        "explored": decision.explored,
        "model_version": decision.model_version,
        "catalog_version": decision.catalog_version,
        "consent_token": decision.consent_token,
        "margin_rate": context.margin_rate,
        "action_cost_cents": context.action_cost_cents,
        "attribution_window_days": context.attribution_window_days,
    }
