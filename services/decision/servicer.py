"""gRPC servicer of DecisionService: validates, converts, and delegates to the domain."""

from typing import Any

import grpc

from services.decision import validation
from services.decision.catalog import Catalog
from services.decision.decider import Decider
from services.decision.domain import Decision
from services.decision.outcomes import OutcomeRecorder
from shared.errors import handle_errors
from shared.logs import request_id_var
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
    )


def catalog_to_proto(catalog: Catalog) -> decision_pb2.ListActionsResponse:
    """Return the ListActionsResponse listing every action of catalog, in file order."""
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
            )
            for action in catalog.actions
        ],
        catalog_version=catalog.version,
    )


class DecisionServicer(decision_pb2_grpc.DecisionServiceServicer):
    """Serves Decide, RecordOutcome and ListActions."""

    def __init__(self, decider: Decider, outcomes: OutcomeRecorder) -> None:
        self._decider = decider
        self._outcomes = outcomes
        self._actions = catalog_to_proto(decider.catalog)

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
        profile_id, duplicate = await self._outcomes.record_purchase(outcome)
        return decision_pb2.RecordOutcomeResponse(
            profile_id=profile_id, duplicate=duplicate
        )

    @handle_errors(ERROR_DOMAIN)
    async def ListActions(
        self, request: decision_pb2.ListActionsRequest, context: Context
    ) -> decision_pb2.ListActionsResponse:
        return self._actions
