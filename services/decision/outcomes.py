"""RecordOutcome: apply a purchase to the profile's features once per event id, and
attribute it to the profile's decisions within the attribution window.
"""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from services.decision.clients import IdentityClient, IdentityUnavailable
from services.decision.domain import PurchaseOutcome
from services.decision.limits import is_valid_profile_id
from services.decision.outcome_log import OutcomeLog
from shared.errors import NotFound, Unavailable

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecordedOutcome:
    """The result of recording one purchase."""

    profile_id: str
    duplicate: bool
    """True when the event id was recorded before and nothing changed."""
    attributed_decision_ids: tuple[str, ...]


class OutcomeRecorder:
    """Records purchases into the feature store and the outcome log."""

    def __init__(
        self,
        outcomes: OutcomeLog,
        identity: IdentityClient,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._outcomes = outcomes
        self._identity = identity
        self._clock = clock

    async def record_purchase(self, outcome: PurchaseOutcome) -> RecordedOutcome:
        """Apply outcome and attribute it.

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
        applied, attributed = await self._outcomes.record_purchase(
            profile_id,
            outcome.event_id,
            time=event_time,
            amount_cents=outcome.amount_cents,
            quantity=outcome.quantity,
            discount_cents=outcome.discount_cents,
            decision_id=outcome.decision_id,
        )

        logger.info(
            "purchase for profile %s %s, attributed to %s decisions",
            profile_id,
            "applied" if applied else "ignored as a duplicate event",
            len(attributed),
            extra={"decision_id": outcome.decision_id},
        )
        return RecordedOutcome(profile_id, not applied, attributed)
