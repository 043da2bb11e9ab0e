"""The Decide flow: resolve the profile, read features and contacts and check consent
concurrently, score the candidates, choose an action or silence under the caps, holdout
and exploration, and commit the decision.

Consent gates every response that has a profile: exactly one CheckConsent is made per
such Decide, and a response without a valid consent result is silence (fail closed).
Each Decide reads the served bundle once and uses it from start to finish, so a hot
reload never mixes two versions in one decision.
"""

import asyncio
import hashlib
import logging
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from services.decision.arbitration import Choice, cap_reached, choose
from services.decision.bundle import Bundle
from services.decision.catalog import CandidateSet, ConsentPair, PolicyRules
from services.decision.clients import (
    ConsentClient,
    ConsentResult,
    IdentityClient,
    IdentityUnavailable,
)
from services.decision.decision_log import ContactWrite, DecisionLog
from services.decision.domain import (
    CandidateResult,
    DecideQuery,
    Decision,
    SilenceReason,
)
from services.decision.feature_store import FeatureStore, ProfileState
from services.decision.features import (
    CONTACT_LOOKBACK_DAYS,
    SECONDS_PER_DAY,
    PurchaseAggregate,
    decision_features,
)
from services.decision.limits import is_valid_profile_id
from services.decision.log_throttle import WarningThrottle
from services.decision.records import RecordContext, decision_record
from services.decision.scoring import score_rows
from shared.deadlines import hop_timeout
from trustfirst.consent.v1 import consent_pb2
from trustfirst.decision.v1 import decision_pb2

logger = logging.getLogger(__name__)

_UNSPECIFIED_STATUS = decision_pb2.CANDIDATE_STATUS_UNSPECIFIED


def holdout_position(salt: str, profile_id: str) -> float:
    """Return a stable number in [0, 1) for profile_id: a SHA-256 of salt and id."""
    digest = hashlib.sha256(f"{salt}:{profile_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def in_holdout(rules: PolicyRules, profile_id: str) -> bool:
    """Return whether profile_id belongs to the holdout that rules define."""
    if rules.holdout_share <= 0.0:
        return False
    return holdout_position(rules.holdout_salt, profile_id) < rules.holdout_share


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
        bundle: Bundle,
        features: FeatureStore,
        identity: IdentityClient,
        consent: ConsentClient,
        decision_log: DecisionLog,
        features_deadline_seconds: float,
        record_deadline_seconds: float,
        attribution_window_days: int = 90,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self._bundle = bundle
        self._features = features
        self._identity = identity
        self._consent = consent
        self._decision_log = decision_log
        self._features_deadline_seconds = features_deadline_seconds
        self._record_deadline_seconds = record_deadline_seconds
        self._attribution_window_days = attribution_window_days
        self._clock = clock
        # Exploration draws; not for security, so the default generator suffices.
        self._rng = rng or random.Random()
        self._warnings = WarningThrottle(logger)

    @property
    def bundle(self) -> Bundle:
        """The bundle new decisions are made with."""
        return self._bundle

    def swap_bundle(self, bundle: Bundle) -> None:
        """Serve bundle from the next Decide on; decisions in flight keep theirs."""
        self._bundle = bundle

    async def decide(self, query: DecideQuery) -> Decision:
        """Return the decision for query; dependency failures give silence, not errors.

        Raises InvalidArgument only when identity rejects one of query's identifiers.
        """
        bundle = self._bundle
        decision_id = uuid.uuid4().hex
        profile_id, no_profile_reason = await self._resolve_profile(query)
        if profile_id is None:
            logger.debug("decision %s: silent, no profile", decision_id)
            return _silence_without_profile(bundle, decision_id, no_profile_reason)

        as_of = query.event_time if query.event_time is not None else int(self._clock())
        candidates = bundle.catalog.candidates(query.channel, query.touchpoint)
        pairs = candidates.pairs or (
            (consent_pb2.PURPOSE_PERSONALISATION, query.channel),
        )
        lookback = max(CONTACT_LOOKBACK_DAYS, bundle.catalog.contact_lookback_days)
        state, consent = await asyncio.gather(
            self._read_state(profile_id, as_of, lookback),
            self._check_consent(profile_id, pairs),
        )

        scored = _score(bundle, candidates, state, as_of)
        choice = self._choose(
            bundle, candidates, scored, state, consent, query, profile_id, as_of
        )
        decision = _build_decision(
            bundle, decision_id, profile_id, candidates, scored, choice, consent
        )
        decision = await self._commit(
            bundle, query, decision, candidates, scored, choice, as_of
        )
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

    async def _read_state(
        self, profile_id: str, as_of: int, lookback_days: int
    ) -> ProfileState | None:
        """Return the profile's aggregate and contacts, or None on failure."""
        try:
            return await asyncio.wait_for(
                self._features.read_state(profile_id, as_of, lookback_days),
                self._features_deadline_seconds,
            )
        except Exception as exc:
            # Any failure here only silences the response, so it is logged, not raised.
            self._warnings.warning(
                "features", "features of profile %s unavailable: %r", profile_id, exc
            )
            return None

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

    def _choose(
        self,
        bundle: Bundle,
        candidates: CandidateSet,
        scored: _Scored,
        state: ProfileState | None,
        consent: ConsentResult | None,
        query: DecideQuery,
        profile_id: str,
        as_of: int,
    ) -> Choice:
        count = len(candidates.actions)
        if consent is None:
            statuses = (decision_pb2.CANDIDATE_STATUS_CONSENT_UNAVAILABLE,) * count
            return Choice(
                None, decision_pb2.SILENCE_REASON_CONSENT_UNAVAILABLE, statuses
            )

        if state is None or scored.features is None:
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

        policy = bundle.catalog.policy
        aggregate = state.aggregate or PurchaseAggregate()
        return choose(
            candidates,
            np.array(scored.scores, dtype=np.float64),
            consent.allowed,
            aggregate.purchase_count,
            recency_days=scored.features[0],
            basket_cents=sum(
                line.quantity * line.unit_price_cents for line in query.basket
            ),
            capped=cap_reached(candidates.caps, state.contacts, as_of),
            holdout=in_holdout(policy, profile_id),
            exploration_share=policy.exploration_share,
            rng=self._rng,
        )

    async def _commit(
        self,
        bundle: Bundle,
        query: DecideQuery,
        decision: Decision,
        candidates: CandidateSet,
        scored: _Scored,
        choice: Choice,
        as_of: int,
    ) -> Decision:
        """Store the decision and its contact; a cap reached meanwhile turns it silent."""
        contact = None
        if choice.chosen is not None:
            caps = [
                (cap.period_days * SECONDS_PER_DAY, cap.max_contacts)
                for cap in candidates.caps
            ]
            keep_days = max(CONTACT_LOOKBACK_DAYS, bundle.catalog.contact_lookback_days)
            contact = ContactWrite(
                int(query.channel), caps, keep_days * SECONDS_PER_DAY
            )

        record = decision_record(
            decision, self._context(bundle, query, scored, choice, candidates, as_of)
        )
        try:
            # A stalled Redis would otherwise hold the response until the socket timeout.
            async with asyncio.timeout(hop_timeout(self._record_deadline_seconds)):
                committed = await self._decision_log.commit(
                    decision.profile_id, decision.decision_id, record, contact
                )
            if committed:
                return decision
            # Another decision for this profile took the cap's last slot meanwhile.
            decision = _capped(decision, choice)
            capped_choice = Choice(None, decision.silence_reason, ())
            record = decision_record(
                decision,
                self._context(bundle, query, scored, capped_choice, candidates, as_of),
            )
            async with asyncio.timeout(hop_timeout(self._record_deadline_seconds)):
                await self._decision_log.store(
                    decision.profile_id, decision.decision_id, record
                )
        except Exception as exc:
            # NOTE: the response is sent without its record when this write fails or
            # misses its deadline. An audit of decisions can then miss some made during a
            # Redis outage, and the caps do not count the contact of a chosen action.
            # A write that timed out may still complete in Redis later.
            self._warnings.warning(
                "record",
                "decision %s record not stored: %r",
                decision.decision_id,
                exc,
            )
        return decision

    def _context(
        self,
        bundle: Bundle,
        query: DecideQuery,
        scored: _Scored,
        choice: Choice,
        candidates: CandidateSet,
        as_of: int,
    ) -> RecordContext:
        actions = candidates.actions
        chosen_cost = 0.0
        if choice.chosen is not None:
            chosen_cost = float(actions[choice.chosen].cost_cents)
        return RecordContext(
            time=self._clock(),
            as_of=as_of,
            touchpoint=query.touchpoint,
            channel=query.channel,
            basket=query.basket,
            features=scored.features,
            open_actions=[actions[i].action_id for i in choice.open_indices],
            probabilities=choice.probabilities,
            silence_probability=choice.silence_probability,
            best_action="" if choice.best is None else actions[choice.best].action_id,
            margin_rate=bundle.catalog.margin_rate,
            action_cost_cents=chosen_cost,
            attribution_window_days=self._attribution_window_days,
        )


def _score(
    bundle: Bundle,
    candidates: CandidateSet,
    state: ProfileState | None,
    as_of: int,
) -> _Scored:
    if state is None:
        return _Scored()
    # NOTE: a profile with no purchase on record is scored from all-missing purchase
    # features, a case the CDNOW training snapshots do not contain.
    aggregate = state.aggregate or PurchaseAggregate()
    features = decision_features(aggregate, [t for t, _ in state.contacts], as_of)
    repeat, scores = score_rows(
        bundle, np.array([features], dtype=np.float64), candidates
    )
    return _Scored(features, float(repeat[0]), tuple(scores[0].tolist()))


def _build_decision(
    bundle: Bundle,
    decision_id: str,
    profile_id: str,
    candidates: CandidateSet,
    scored: _Scored,
    choice: Choice,
    consent: ConsentResult | None,
) -> Decision:
    scores = scored.scores or (0.0,) * len(candidates.actions)
    results = tuple(
        CandidateResult(action.action_id, score, status)
        for action, score, status in zip(
            candidates.actions, scores, choice.statuses, strict=True
        )
    )
    chosen = (
        "" if choice.chosen is None else candidates.actions[choice.chosen].action_id
    )
    return Decision(
        decision_id=decision_id,
        profile_id=profile_id,
        action_id=chosen,
        silence_reason=choice.silence_reason,
        candidates=results,
        model_version=bundle.version,
        consent_token=consent.token if consent is not None else "",
        repeat_probability=scored.repeat_probability,
        catalog_version=bundle.catalog.version,
        propensity=choice.propensity,
        holdout=choice.silence_reason == decision_pb2.SILENCE_REASON_HOLDOUT,
        explored=choice.explored,
    )


def _capped(decision: Decision, choice: Choice) -> Decision:
    """Return decision turned into silence because its channel's cap was reached."""
    open_indices = set(choice.open_indices)
    candidates = tuple(
        replace(c, status=decision_pb2.CANDIDATE_STATUS_CAPPED)
        if index in open_indices
        else c
        for index, c in enumerate(decision.candidates)
    )
    return replace(
        decision,
        action_id="",
        silence_reason=decision_pb2.SILENCE_REASON_CONTACT_CAP,
        candidates=candidates,
        propensity=1.0,
        explored=False,
    )


def _silence_without_profile(
    bundle: Bundle, decision_id: str, reason: SilenceReason
) -> Decision:
    return Decision(
        decision_id=decision_id,
        profile_id="",
        action_id="",
        silence_reason=reason,
        candidates=(),
        model_version=bundle.version,
        consent_token="",
        repeat_probability=0.0,
        catalog_version=bundle.catalog.version,
    )
