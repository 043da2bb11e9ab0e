"""Purchases recorded by RecordOutcome: the feature update, the attribution to decisions,
and the per-profile outcome log.

One Lua script applies a purchase once per event id (the feature store's update). It then
finds the profile's decisions made within the attribution window before the purchase.
Last, it appends a JSON entry listing them to ``tf:decision:{<profile_id>}:outcomes``, a
sorted set scored by event time. A purchase at time t is attributed to every decision made at a
time d with t - window < d <= t.
"""

import json
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from services.decision.feature_store import PURCHASE_UPDATE_LUA
from services.decision.keys import (
    decisions_key,
    event_key,
    features_key,
    outcomes_key,
)

# Outcome entries kept per profile; the oldest are trimmed beyond it.
MAX_OUTCOMES_PER_PROFILE = 1_000

# KEYS[1..2] as the feature update; KEYS[3]: the decisions set; KEYS[4]: the outcomes set.
# ARGV[1..4] as the feature update; ARGV[5] event id, ARGV[6] attribution window (s),
# ARGV[7] discount (cents), ARGV[8] outcomes TTL (s), ARGV[9] the decision id the caller
# named ('' if none), ARGV[10] entries kept.
# Returns 0 for a duplicate event id, else {1, attributed decision ids}.
_RECORD_OUTCOME_SCRIPT = (
    PURCHASE_UPDATE_LUA
    + """
local window = tonumber(ARGV[6])
local ids = redis.call('ZRANGEBYSCORE', KEYS[3], '(' .. (time - window), time)
local entry = cjson.encode({
  event_id = ARGV[5],
  time = time,
  amount_cents = tonumber(ARGV[2]),
  discount_cents = tonumber(ARGV[7]),
  quantity = tonumber(ARGV[3]),
  decision_ids = ids,
  claimed_decision_id = ARGV[9],
})
redis.call('ZADD', KEYS[4], time, entry)
redis.call('ZREMRANGEBYRANK', KEYS[4], 0, -(tonumber(ARGV[10]) + 1))
redis.call('EXPIRE', KEYS[4], ARGV[8])
return {1, ids}
"""
)


@dataclass(frozen=True)
class OutcomeEntry:
    """One recorded purchase and the decisions it is attributed to."""

    event_id: str
    time: int
    """Seconds since the epoch of the purchase."""
    amount_cents: int
    """Amount paid."""
    discount_cents: int
    """Discount granted on the order; its list value is amount_cents + discount_cents."""
    quantity: int
    decision_ids: tuple[str, ...]
    claimed_decision_id: str = ""
    """The decision id the caller named in RecordOutcome, if any."""

    def margin_cents(self, margin_rate: float) -> float:
        """Return margin_rate x list value - discount, in cents."""
        list_value = self.amount_cents + self.discount_cents
        return margin_rate * list_value - self.discount_cents

    def to_json(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "time": self.time,
            "amount_cents": self.amount_cents,
            "discount_cents": self.discount_cents,
            "quantity": self.quantity,
            "decision_ids": list(self.decision_ids),
            "claimed_decision_id": self.claimed_decision_id,
        }


def outcome_from_json(data: dict[str, Any]) -> OutcomeEntry:
    """Build an entry from its JSON form.

    Lua's cjson writes an empty list as ``{}``, which reads back as no decision ids.
    """
    ids = data.get("decision_ids") or []
    return OutcomeEntry(
        event_id=str(data["event_id"]),
        time=int(data["time"]),
        amount_cents=int(data["amount_cents"]),
        discount_cents=int(data.get("discount_cents", 0)),
        quantity=int(data["quantity"]),
        decision_ids=tuple(str(i) for i in ids) if isinstance(ids, list) else (),
        claimed_decision_id=str(data.get("claimed_decision_id", "")),
    )


class OutcomeLog:
    """Records purchases with their attribution, and reads them back."""

    def __init__(
        self,
        redis: "aioredis.Redis",
        event_ttl_seconds: int,
        attribution_window_seconds: int,
        outcome_ttl_seconds: int,
    ) -> None:
        self._redis = redis
        self._event_ttl_seconds = event_ttl_seconds
        self._window_seconds = attribution_window_seconds
        self._outcome_ttl_seconds = outcome_ttl_seconds
        self._script = redis.register_script(_RECORD_OUTCOME_SCRIPT)

    async def record_purchase(
        self,
        profile_id: str,
        event_id: str,
        time: int,
        amount_cents: int,
        quantity: int,
        discount_cents: int = 0,
        decision_id: str = "",
    ) -> tuple[bool, tuple[str, ...]]:
        """Apply one purchase atomically.

        Returns whether it was applied (False for an event id already recorded) and the
        ids of the decisions it is attributed to.
        """
        result = await self._script(
            keys=[
                features_key(profile_id),
                event_key(profile_id, event_id),
                decisions_key(profile_id),
                outcomes_key(profile_id),
            ],
            args=[
                time,
                amount_cents,
                quantity,
                self._event_ttl_seconds,
                event_id,
                self._window_seconds,
                discount_cents,
                self._outcome_ttl_seconds,
                decision_id,
                MAX_OUTCOMES_PER_PROFILE,
            ],
        )
        if not isinstance(result, list):
            return False, ()
        return True, tuple(str(item) for item in result[1])

    async def between(
        self, profile_id: str, start: int, end: int
    ) -> list[OutcomeEntry]:
        """Return the profile's outcomes with start <= time < end, oldest first."""
        payloads = await self._redis.zrangebyscore(
            outcomes_key(profile_id), start, f"({end}"
        )
        return [outcome_from_json(json.loads(str(payload))) for payload in payloads]
