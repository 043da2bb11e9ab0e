"""Requests and results of the decision service as plain types, free of gRPC."""

from dataclasses import dataclass
from typing import TypeAlias

from trustfirst.consent.v1 import consent_pb2
from trustfirst.decision.v1 import decision_pb2
from trustfirst.identity.v1 import identity_pb2

CandidateStatus: TypeAlias = decision_pb2.CandidateStatus.ValueType
SilenceReason: TypeAlias = decision_pb2.SilenceReason.ValueType


@dataclass(frozen=True)
class BasketLine:
    sku: str
    quantity: int
    unit_price_cents: int


@dataclass(frozen=True)
class DecideQuery:
    """A validated Decide request: exactly one of profile_id and identifiers is set."""

    profile_id: str | None
    identifiers: tuple[identity_pb2.Identifier, ...]
    touchpoint: str
    channel: consent_pb2.Channel.ValueType
    basket: tuple[BasketLine, ...] = ()
    event_time: int | None = None
    """Seconds since the epoch of the touchpoint; None means the time of the request."""


@dataclass(frozen=True)
class CandidateResult:
    action_id: str
    score: float
    """Expected incremental value over silence, net of cost, in cents."""
    status: CandidateStatus


@dataclass(frozen=True)
class Decision:
    """The result of a Decide: an action, or silence with its reason."""

    decision_id: str
    profile_id: str
    action_id: str
    """The chosen action; empty when silent."""
    silence_reason: SilenceReason
    """Reason for showing nothing; SILENCE_REASON_UNSPECIFIED when an action is chosen."""
    candidates: tuple[CandidateResult, ...]
    model_version: str
    """Version of the bundle (model, catalog and rules) that made the decision."""
    consent_token: str
    repeat_probability: float
    catalog_version: str = ""
    propensity: float = 1.0
    """Probability with which the served choice (the action, or silence) was drawn."""
    holdout: bool = False
    explored: bool = False

    @property
    def silent(self) -> bool:
        return not self.action_id


@dataclass(frozen=True)
class PurchaseOutcome:
    """A validated RecordOutcome purchase: exactly one of profile_id and identifiers."""

    profile_id: str | None
    identifiers: tuple[identity_pb2.Identifier, ...]
    event_id: str
    amount_cents: int
    quantity: int
    event_time: int | None = None
    """Seconds since the epoch of the purchase; None means the time of the request."""
    decision_id: str = ""
    discount_cents: int = 0
    """Discount granted on the order; its list value is amount_cents + discount_cents."""


@dataclass(frozen=True)
class ExplainQuery:
    """A validated ExplainDecision request."""

    profile_id: str
    decision_id: str
