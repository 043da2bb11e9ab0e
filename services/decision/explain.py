"""ExplainDecision: a logged decision and the outcomes attributed to it."""

from dataclasses import dataclass
from typing import Any

from services.decision.decision_log import DecisionLog
from services.decision.domain import ExplainQuery
from services.decision.features import SECONDS_PER_DAY
from services.decision.outcome_log import OutcomeEntry, OutcomeLog
from shared.errors import NotFound


@dataclass(frozen=True)
class Explanation:
    """A decision record with its attributed outcomes and their margin."""

    record: dict[str, Any]
    outcomes: tuple[OutcomeEntry, ...]
    attributed_margin_cents: float
    """Sum of the outcomes' margins less the chosen action's cost, in cents."""
    attribution_end: int
    """Seconds since the epoch when the attribution window closes."""


class DecisionExplainer:
    """Reads decisions back from the decision log and the outcome log."""

    def __init__(self, decision_log: DecisionLog, outcome_log: OutcomeLog) -> None:
        self._decision_log = decision_log
        self._outcome_log = outcome_log

    async def explain(self, query: ExplainQuery) -> Explanation:
        """Return the decision's explanation.

        Raises NotFound when no record of the decision exists for the profile (it never
        existed, or it expired).
        """
        record = await self._decision_log.load(query.profile_id, query.decision_id)
        if record is None:
            raise NotFound(
                f"no decision {query.decision_id!r} is recorded for profile "
                f"{query.profile_id!r}; records expire after the configured TTL"
            )

        as_of = int(record["as_of"])
        window_days = int(record.get("attribution_window_days", 0))
        end = as_of + window_days * SECONDS_PER_DAY
        entries = await self._outcome_log.between(query.profile_id, as_of, end)
        attributed = tuple(e for e in entries if query.decision_id in e.decision_ids)

        margin_rate = float(record.get("margin_rate", 0.0))
        margin = sum(entry.margin_cents(margin_rate) for entry in attributed)
        margin -= float(record.get("action_cost_cents", 0.0))
        return Explanation(record, attributed, margin, end)
