"""Decision records in Redis: one JSON string per decision with a TTL, the profile's
decision times for outcome attribution, and the contacts that contact caps count.

The record key is ``tf:decision:{<profile_id>}:decision:<decision_id>``. The sorted set
``tf:decision:{<profile_id>}:decisions`` contains decision ids scored by decision time,
and ``tf:decision:{<profile_id>}:contacts`` contains ``<decision_id>:<channel>`` scored
by contact time.
One Lua script checks the contact caps and writes all three, so two concurrent decisions
for one profile cannot both pass a cap that has room for one.
"""

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from services.decision.keys import (
    contacts_key,
    decision_key,
    decisions_key,
)

__all__ = ["ContactWrite", "DecisionLog", "decision_key"]

# Maximum entries per profile in the decisions and contacts sorted sets. Older ones are
# trimmed, so a caller that decides in a loop for one profile cannot grow them unbounded.
MAX_ENTRIES_PER_PROFILE = 1_000

# KEYS[1]: the record; KEYS[2]: the decisions set; KEYS[3]: the contacts set.
# ARGV[1] record JSON, ARGV[2] record TTL (s), ARGV[3] decision time (s), ARGV[4] decision
# id, ARGV[5] contact member ('' when no action was chosen), ARGV[6] channel suffix
# (':<channel>'), ARGV[7] seconds of contacts kept, ARGV[8] TTL of the contacts set (s),
# ARGV[9] seconds of decisions kept, ARGV[10] entries kept, ARGV[11] number of caps, then
# one (period in seconds, max contacts) pair per cap.
# Returns 0, writing nothing, when a cap of the channel is already reached; else 1.
# A contact member already present means this decision was committed before (the client
# retries a call whose connection dropped), so the script returns 1 without counting it
# against its own cap.
_COMMIT_SCRIPT = """
local now = tonumber(ARGV[3])
local suffix = ARGV[6]
if ARGV[5] ~= '' and redis.call('ZSCORE', KEYS[3], ARGV[5]) then
  return 1
end
if ARGV[5] ~= '' then
  for i = 0, tonumber(ARGV[11]) - 1 do
    local period = tonumber(ARGV[12 + 2 * i])
    local limit = tonumber(ARGV[13 + 2 * i])
    local members = redis.call('ZRANGEBYSCORE', KEYS[3], '(' .. (now - period), now)
    local count = 0
    for _, member in ipairs(members) do
      if string.sub(member, -string.len(suffix)) == suffix then
        count = count + 1
      end
    end
    if count >= limit then
      return 0
    end
  end
end
local max_entries = tonumber(ARGV[10])
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('ZADD', KEYS[2], now, ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. (now - tonumber(ARGV[9])))
redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -(max_entries + 1))
redis.call('EXPIRE', KEYS[2], ARGV[2])
if ARGV[5] ~= '' then
  redis.call('ZADD', KEYS[3], now, ARGV[5])
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. (now - tonumber(ARGV[7])))
  redis.call('ZREMRANGEBYRANK', KEYS[3], 0, -(max_entries + 1))
  redis.call('EXPIRE', KEYS[3], ARGV[8])
end
return 1
"""


@dataclass(frozen=True)
class ContactWrite:
    """The contact that a chosen action adds, and the caps it must respect."""

    channel: int
    caps: Sequence[tuple[int, int]]
    """(period in seconds, max contacts) of each cap on the channel."""
    keep_seconds: int
    """How long contacts are kept: the longest cap period or feature lookback."""


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def encode_record(record: dict[str, Any]) -> str:
    """Return the record as compact JSON; NaN and infinite features become null."""
    features = record.get("features")
    if isinstance(features, dict):
        record = {
            **record,
            "features": {k: _finite_or_none(v) for k, v in features.items()},
        }
    return json.dumps(record, separators=(",", ":"), allow_nan=False)


class DecisionLog:
    """Writes and reads decision records."""

    def __init__(
        self,
        redis: "aioredis.Redis",
        ttl_seconds: int,
        attribution_window_seconds: int = 90 * 86_400,
    ) -> None:
        self._redis = redis
        self._ttl_seconds = ttl_seconds
        # Decision times are kept for two windows, so an outcome that arrives late still
        # finds the decisions made within one window before it.
        self._decisions_kept_seconds = 2 * attribution_window_seconds
        self._commit_script = redis.register_script(_COMMIT_SCRIPT)

    async def store(
        self, profile_id: str, decision_id: str, record: dict[str, Any]
    ) -> None:
        """Write a record that adds no contact, with the configured TTL."""
        await self.commit(profile_id, decision_id, record, None)

    async def commit(
        self,
        profile_id: str,
        decision_id: str,
        record: dict[str, Any],
        contact: ContactWrite | None,
    ) -> bool:
        """Write record and, with a contact, add it unless a cap is reached.

        Returns False, having written nothing, when a cap of the contact's channel is
        already reached. record["as_of"] is the decision time in seconds.
        """
        as_of = int(record["as_of"])
        cap_args: list[int] = []
        member = ""
        suffix = ""
        keep_seconds = 0
        if contact is not None:
            member = f"{decision_id}:{contact.channel}"
            suffix = f":{contact.channel}"
            keep_seconds = contact.keep_seconds
            for period_seconds, max_contacts in contact.caps:
                cap_args.extend((period_seconds, max_contacts))

        written = await self._commit_script(
            keys=[
                decision_key(profile_id, decision_id),
                decisions_key(profile_id),
                contacts_key(profile_id),
            ],
            args=[
                encode_record(record),
                self._ttl_seconds,
                as_of,
                decision_id,
                member,
                suffix,
                keep_seconds,
                max(self._ttl_seconds, keep_seconds),
                self._decisions_kept_seconds,
                MAX_ENTRIES_PER_PROFILE,
                len(cap_args) // 2,
                *cap_args,
            ],
        )
        return bool(written)

    async def load(self, profile_id: str, decision_id: str) -> dict[str, Any] | None:
        """Return the stored record, or None when it expired or never existed."""
        payload = await self._redis.get(decision_key(profile_id, decision_id))
        if payload is None:
            return None
        record: dict[str, Any] = json.loads(payload)
        return record
