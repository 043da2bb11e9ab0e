"""The Decide flow: resolve the profile, read features and check consent concurrently,
score the candidates, choose an action or silence, and record the decision.

Consent gates every response that has a profile: exactly one CheckConsent is made per
such Decide, and a response without a valid consent result is silence (fail closed).
"""

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from services.decision.arbitration import (
    Choice,
    choose,
    expected_order_value,
    score_candidates,
)
from services.decision.catalog import CandidateSet, Catalog, ConsentPair
from services.decision.clients import (
    ConsentClient,
    ConsentResult,
    IdentityClient,
    IdentityUnavailable,
)
from services.decision.decision_log import DecisionLog
from services.decision.domain import (
    CandidateResult,
    CandidateStatus,
    DecideQuery,
    Decision,
    SilenceReason,
)
from services.decision.feature_store import FeatureStore
from services.decision.features import FEATURE_NAMES, PurchaseAggregate, feature_vector
from services.decision.limits import is_valid_profile_id
from services.decision.log_throttle import WarningThrottle
from services.decision.model import RepeatPurchaseModel
from trustfirst.consent.v1 import consent_pb2
from trustfirst.decision.v1 import decision_pb2

logger = logging.getLogger(__name__)

_UNSPECIFIED_STATUS = decision_pb2.CANDIDATE_STATUS_UNSPECIFIED


@dataclass(frozen=True)
class _Scored:
    """Model output for one decision; empty when features were unavailable."""

    features: list[float] | None = None
    repeat_probability: float = 0.0
    scores: tuple[float, ...] = ()


class Decider:
    """Decides the next best action for one customer at one touchpoint."""

    def __init__(
        self,
        catalog: Catalog,
        model: RepeatPurchaseModel,
        features: FeatureStore,
        identity: IdentityClient,
        consent: ConsentClient,
        decision_log: DecisionLog,
        features_deadline_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.catalog = catalog
        self.model = model
        self._features = features
        self._identity = identity
        self._consent = consent
        self._decision_log = decision_log
        self._features_deadline_seconds = features_deadline_seconds
        self._clock = clock
        self._warnings = WarningThrottle(logger)

    async def decide(self, query: DecideQuery) -> Decision:
        """Return the decision for query; dependency failures give silence, not errors.

        Raises InvalidArgument only when identity rejects one of query's identifiers.
        """
        decision_id = uuid.uuid4().hex
        profile_id, no_profile_reason = await self._resolve_profile(query)
        if profile_id is None:
            logger.debug("decision %s: silent, no profile", decision_id)
            return self._silence_without_profile(decision_id, no_profile_reason)

        as_of = query.event_time if query.event_time is not None else int(self._clock())
        candidates = self.catalog.candidates(query.channel, query.touchpoint)
        pairs = candidates.pairs or (
            (consent_pb2.PURPOSE_PERSONALISATION, query.channel),
        )
        aggregate, consent = await asyncio.gather(
            self._read_features(profile_id), self._check_consent(profile_id, pairs)
        )

        scored = self._score(candidates, aggregate, as_of)
        choice = self._choose(candidates, scored, aggregate, consent)
        decision = self._build_decision(
            decision_id, profile_id, candidates, scored, choice, consent
        )
        await self._store_record(query, decision, as_of, scored)
        logger.debug(
            "decision %s for profile %s: action %r, silence reason %s",
            decision_id,
            profile_id,
            decision.action_id,
            decision.silence_reason,
        )
        return decision

    async def _resolve_profile(
        self, query: DecideQuery
    ) -> tuple[str | None, SilenceReason]:
        if query.profile_id is not None:
            return query.profile_id, decision_pb2.SILENCE_REASON_UNSPECIFIED
        try:
            profile_id = await self._identity.lookup(query.identifiers)
        except IdentityUnavailable as exc:
            self._warnings.warning("identity", "identity unavailable: %s", exc)
            return None, decision_pb2.SILENCE_REASON_IDENTITY_UNAVAILABLE
        if profile_id is None:
            return None, decision_pb2.SILENCE_REASON_PROFILE_NOT_FOUND
        if not is_valid_profile_id(profile_id):
            # The id becomes a Redis hash tag, so an unexpected form is not used.
            self._warnings.warning(
                "identity",
                "identity returned an invalid profile id %r",
                profile_id[:140],
            )
            return None, decision_pb2.SILENCE_REASON_IDENTITY_UNAVAILABLE
        return profile_id, decision_pb2.SILENCE_REASON_UNSPECIFIED

    async def _read_features(self, profile_id: str) -> PurchaseAggregate | None:
        """Return the profile's aggregate (empty with no history), or None on failure."""
        try:
            aggregate = await asyncio.wait_for(
                self._features.get(profile_id), self._features_deadline_seconds
            )
        except Exception as exc:
            # Any failure here only silences the response, so it is logged, not raised.
            self._warnings.warning(
                "features", "features of profile %s unavailable: %r", profile_id, exc
            )
            return None
        return aggregate if aggregate is not None else PurchaseAggregate()

    async def _check_consent(
        self, profile_id: str, pairs: tuple[ConsentPair, ...]
    ) -> ConsentResult | None:
        """Return consent's result, or None when it cannot be trusted (fail closed)."""
        try:
            return await self._consent.check(profile_id, pairs)
        except Exception as exc:
            # Every failure, expected or not, must end in silence rather than an action.
            self._warnings.warning(
                "consent", "consent check for profile %s failed: %r", profile_id, exc
            )
            return None

    def _score(
        self, candidates: CandidateSet, aggregate: PurchaseAggregate | None, as_of: int
    ) -> _Scored:
        if aggregate is None:
            return _Scored()
        # NOTE: a profile with no purchase on record is scored from all-missing features,
        # a case the CDNOW training snapshots do not contain.
        features = feature_vector(aggregate, as_of)
        row = np.array([features], dtype=np.float64)
        probability = float(self.model.predict(row)[0])
        if not candidates.actions:
            return _Scored(features, probability)

        order_value = expected_order_value(
            aggregate, self.catalog.default_order_value_cents
        )
        scores = score_candidates(
            candidates, probability, order_value, self.catalog.margin_rate
        )
        return _Scored(features, probability, tuple(scores.tolist()))

    def _choose(
        self,
        candidates: CandidateSet,
        scored: _Scored,
        aggregate: PurchaseAggregate | None,
        consent: ConsentResult | None,
    ) -> Choice:
        count = len(candidates.actions)
        if consent is None:
            statuses = (decision_pb2.CANDIDATE_STATUS_CONSENT_UNAVAILABLE,) * count
            return Choice(
                None, decision_pb2.SILENCE_REASON_CONSENT_UNAVAILABLE, statuses
            )

        if aggregate is None:
            # Refused candidates still show NO_CONSENT; the others were never scored.
            statuses = tuple(
                _UNSPECIFIED_STATUS
                if all(consent.allowed[j] for j in pair_indices)
                else decision_pb2.CANDIDATE_STATUS_NO_CONSENT
                for pair_indices in candidates.action_pairs
            )
            return Choice(
                None, decision_pb2.SILENCE_REASON_FEATURES_UNAVAILABLE, statuses
            )

        scores = np.array(scored.scores, dtype=np.float64)
        return choose(candidates, scores, consent.allowed, aggregate.purchase_count)

    def _build_decision(
        self,
        decision_id: str,
        profile_id: str,
        candidates: CandidateSet,
        scored: _Scored,
        choice: Choice,
        consent: ConsentResult | None,
    ) -> Decision:
        scores = scored.scores or (0.0,) * len(candidates.actions)
        results: list[CandidateResult] = []
        for action, score, status in zip(
            candidates.actions, scores, choice.statuses, strict=True
        ):
            results.append(CandidateResult(action.action_id, score, status))

        chosen = (
            "" if choice.chosen is None else candidates.actions[choice.chosen].action_id
        )
        return Decision(
            decision_id=decision_id,
            profile_id=profile_id,
            action_id=chosen,
            silence_reason=choice.silence_reason,
            candidates=tuple(results),
            model_version=self.model.version,
            consent_token=consent.token if consent is not None else "",
            repeat_probability=scored.repeat_probability,
        )

    def _silence_without_profile(
        self, decision_id: str, reason: SilenceReason
    ) -> Decision:
        return Decision(
            decision_id=decision_id,
            profile_id="",
            action_id="",
            silence_reason=reason,
            candidates=(),
            model_version=self.model.version,
            consent_token="",
            repeat_probability=0.0,
        )

    async def _store_record(
        self, query: DecideQuery, decision: Decision, as_of: int, scored: _Scored
    ) -> None:
        record: dict[str, Any] = {
            "decision_id": decision.decision_id,
            "profile_id": decision.profile_id,
            "time": round(self._clock(), 3),
            "as_of": as_of,
            "touchpoint": query.touchpoint,
            "channel": consent_pb2.Channel.Name(query.channel),
            "basket": [
                [line.sku, line.quantity, line.unit_price_cents]
                for line in query.basket
            ],
            "features": (
                dict(zip(FEATURE_NAMES, scored.features, strict=True))
                if scored.features is not None
                else None
            ),
            "repeat_probability": decision.repeat_probability,
            "candidates": [
                {
                    "action_id": c.action_id,
                    "score": round(c.score, 4),
                    "status": _status_name(c.status),
                }
                for c in decision.candidates
            ],
            "chosen": decision.action_id,
            "silence_reason": decision_pb2.SilenceReason.Name(decision.silence_reason),
            "model_version": decision.model_version,
            "catalog_version": self.catalog.version,
            "consent_token": decision.consent_token,
        }
        try:
            await self._decision_log.store(
                decision.profile_id, decision.decision_id, record
            )
        except Exception as exc:
            # NOTE: the response is sent without its record when this write fails, so an
            # audit of decisions can miss some made during a Redis outage.
            self._warnings.warning(
                "record",
                "decision %s record not stored: %r",
                decision.decision_id,
                exc,
            )


def _status_name(status: CandidateStatus) -> str:
    return decision_pb2.CandidateStatus.Name(status)
