"""gRPC servicer of DecisionService: validates, converts, and delegates to the domain."""

import math
from typing import Any

import grpc
from google.protobuf import timestamp_pb2

from services.decision import validation
from services.decision.bundle import Bundle
from services.decision.decider import Decider
from services.decision.domain import Decision
from services.decision.explain import DecisionExplainer, Explanation
from services.decision.outcomes import OutcomeRecorder
from shared.errors import handle_errors
from shared.logs import request_id_var
from trustfirst.consent.v1 import consent_pb2
from trustfirst.decision.v1 import decision_pb2, decision_pb2_grpc

ERROR_DOMAIN = "decision.trustfirst.dev"

Context = grpc.aio.ServicerContext[Any, Any]


def decision_to_proto(decision: Decision) -> decision_pb2.DecideResponse:
    """Return the DecideResponse of decision."""
    return decision_pb2.DecideResponse(
        decision_id=decision.decision_id,
        profile_id=decision.profile_id,
        silent=decision.silent,
        action_id=decision.action_id,
        silence_reason=decision.silence_reason,
        candidates=[
            decision_pb2.CandidateScore(
                action_id=candidate.action_id,
                score=candidate.score,
                status=candidate.status,
            )
            for candidate in decision.candidates
        ],
        model_version=decision.model_version,
        consent_token=decision.consent_token,
        repeat_probability=decision.repeat_probability,
        catalog_version=decision.catalog_version,
        propensity=decision.propensity,
        holdout=decision.holdout,
        explored=decision.explored,
    )


def bundle_to_actions_proto(bundle: Bundle) -> decision_pb2.ListActionsResponse:
    """Return the ListActionsResponse of a bundle's catalog, actions in file order."""
    catalog = bundle.catalog
    return decision_pb2.ListActionsResponse(
        actions=[
            decision_pb2.Action(
                action_id=action.action_id,
                kind=action.kind,
                channel=action.channel,
                purposes=action.purposes,
                touchpoints=action.touchpoints,
                cost_cents=action.cost_cents,
                description=action.description,
                discount_rate=action.discount_rate,
                discount_cents=action.discount_cents,
                eligibility=decision_pb2.Eligibility(
                    min_purchase_count=action.min_purchase_count,
                    min_recency_days=action.min_recency_days,
                    max_recency_days=action.max_recency_days,
                    min_basket_cents=action.min_basket_cents,
                ),
            )
            for action in catalog.actions
        ],
        catalog_version=catalog.version,
        caps=[
            decision_pb2.ContactCap(
                channel=cap.channel,
                max_contacts=cap.max_contacts,
                period_days=cap.period_days,
            )
            for cap in catalog.caps
        ],
        holdout_share=catalog.policy.holdout_share,
        exploration_share=catalog.policy.exploration_share,
        bundle_version=bundle.version,
    )


def record_to_decision_proto(record: dict[str, Any]) -> decision_pb2.DecideResponse:
    """Return the DecideResponse that a decision record describes."""
    reason = record.get("silence_reason", "SILENCE_REASON_UNSPECIFIED")
    return decision_pb2.DecideResponse(
        decision_id=record["decision_id"],
        profile_id=record["profile_id"],
        silent=not record.get("chosen"),
        action_id=record.get("chosen", ""),
        silence_reason=decision_pb2.SilenceReason.Value(reason),
        candidates=[
            decision_pb2.CandidateScore(
                action_id=c["action_id"],
                score=c["score"],
                status=decision_pb2.CandidateStatus.Value(c["status"]),
            )
            for c in record.get("candidates", [])
        ],
        model_version=record.get("model_version", ""),
        consent_token=record.get("consent_token", ""),
        repeat_probability=record.get("repeat_probability", 0.0),
        catalog_version=record.get("catalog_version", ""),
        propensity=record.get("propensity", 1.0),
        holdout=record.get("holdout", False),
        explored=record.get("explored", False),
    )


def explanation_to_proto(
    explanation: Explanation,
) -> decision_pb2.ExplainDecisionResponse:
    """Return the ExplainDecisionResponse of explanation."""
    record = explanation.record
    margin_rate = float(record.get("margin_rate", 0.0))
    features = []
    for name, value in (record.get("features") or {}).items():
        missing = value is None or not math.isfinite(value)
        features.append(
            decision_pb2.FeatureValue(
                name=name, value=0.0 if missing else value, missing=missing
            )
        )
    outcomes = [
        decision_pb2.AttributedOutcome(
            event_id=entry.event_id,
            event_time=timestamp_pb2.Timestamp(seconds=entry.time),
            amount_cents=entry.amount_cents,
            discount_cents=entry.discount_cents,
            quantity=entry.quantity,
            margin_cents=entry.margin_cents(margin_rate),
        )
        for entry in explanation.outcomes
    ]
    return decision_pb2.ExplainDecisionResponse(
        decision=record_to_decision_proto(record),
        decision_time=timestamp_pb2.Timestamp(seconds=int(record["as_of"])),
        touchpoint=record.get("touchpoint", ""),
        channel=consent_pb2.Channel.Value(record.get("channel", "CHANNEL_UNSPECIFIED")),
        features=features,
        outcomes=outcomes,
        attributed_margin_cents=explanation.attributed_margin_cents,
        attribution_end_time=timestamp_pb2.Timestamp(
            seconds=explanation.attribution_end
        ),
    )


class DecisionServicer(decision_pb2_grpc.DecisionServiceServicer):
    """Serves Decide, RecordOutcome, ListActions and ExplainDecision."""

    def __init__(
        self,
        decider: Decider,
        outcomes: OutcomeRecorder,
        explainer: DecisionExplainer,
    ) -> None:
        self._decider = decider
        self._outcomes = outcomes
        self._explainer = explainer
        self._actions: tuple[str, decision_pb2.ListActionsResponse] | None = None

    @handle_errors(ERROR_DOMAIN)
    async def Decide(
        self, request: decision_pb2.DecideRequest, context: Context
    ) -> decision_pb2.DecideResponse:
        if request.request_id:
            request_id_var.set(request.request_id[:64])
        query = validation.decide_query(request)
        decision = await self._decider.decide(query)
        return decision_to_proto(decision)

    @handle_errors(ERROR_DOMAIN)
    async def RecordOutcome(
        self, request: decision_pb2.RecordOutcomeRequest, context: Context
    ) -> decision_pb2.RecordOutcomeResponse:
        outcome = validation.purchase_outcome(request)
        recorded = await self._outcomes.record_purchase(outcome)
        return decision_pb2.RecordOutcomeResponse(
            profile_id=recorded.profile_id,
            duplicate=recorded.duplicate,
            attributed_decision_ids=recorded.attributed_decision_ids,
        )

    @handle_errors(ERROR_DOMAIN)
    async def ListActions(
        self, request: decision_pb2.ListActionsRequest, context: Context
    ) -> decision_pb2.ListActionsResponse:
        bundle = self._decider.bundle
        if self._actions is None or self._actions[0] != bundle.version:
            self._actions = (bundle.version, bundle_to_actions_proto(bundle))
        return self._actions[1]

    @handle_errors(ERROR_DOMAIN)
    async def ExplainDecision(
        self, request: decision_pb2.ExplainDecisionRequest, context: Context
    ) -> decision_pb2.ExplainDecisionResponse:
        query = validation.explain_query(request)
        explanation = await self._explainer.explain(query)
        return explanation_to_proto(explanation)
