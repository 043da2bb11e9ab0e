"""RecordOutcome: apply a purchase to the profile's feature aggregate, once per event id."""

import logging
import time
from collections.abc import Callable

from services.decision.clients import IdentityClient, IdentityUnavailable
from services.decision.domain import PurchaseOutcome
from services.decision.feature_store import FeatureStore
from services.decision.limits import is_valid_profile_id
from shared.errors import NotFound, Unavailable

logger = logging.getLogger(__name__)


class OutcomeRecorder:
    """Records purchases into the feature store."""

    def __init__(
        self,
        features: FeatureStore,
        identity: IdentityClient,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._features = features
        self._identity = identity
        self._clock = clock

    async def record_purchase(self, outcome: PurchaseOutcome) -> tuple[str, bool]:
        """Apply outcome; return the profile id and whether the event id was a duplicate.

        Raises NotFound when no profile is linked to the identifiers, and Unavailable when
        identity cannot be asked.
        """
        profile_id = outcome.profile_id
        if profile_id is None:
            try:
                profile_id = await self._identity.lookup(outcome.identifiers)
            except IdentityUnavailable as exc:
                raise Unavailable(
                    f"the identity service is unavailable: {exc}"
                ) from exc
            if profile_id is None:
                raise NotFound("no profile is linked to the identifiers")
            if not is_valid_profile_id(profile_id):
                raise Unavailable("the identity service returned an invalid profile id")

        event_time = outcome.event_time
        if event_time is None:
            event_time = int(self._clock())
        applied = await self._features.record_purchase(
            profile_id,
            outcome.event_id,
            time=event_time,
            amount_cents=outcome.amount_cents,
            quantity=outcome.quantity,
        )

        # NOTE: decision_id is validated and logged but not stored with the purchase, so
        # outcomes cannot yet be joined to decisions for offline evaluation.
        logger.info(
            "purchase for profile %s %s",
            profile_id,
            "applied" if applied else "ignored as a duplicate event",
            extra={"decision_id": outcome.decision_id},
        )
        return profile_id, not applied
