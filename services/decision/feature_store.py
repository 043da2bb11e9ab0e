"""Per-profile purchase aggregates and contact history in Redis.

Each profile has one hash, ``tf:decision:{<profile_id>}:features``, with integer fields
(cents, seconds since the epoch). A recorded purchase leaves a marker key
``tf:decision:{<profile_id>}:event:<event_id>`` that expires after a TTL, so a retried
event is applied once within that TTL. The actions chosen for the profile are kept in the
sorted set ``tf:decision:{<profile_id>}:contacts``. Every key carries the profile id as a
hash tag, so the update script touches a single cluster slot.
"""

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.typing import EncodableT, FieldT

from services.decision.features import SECONDS_PER_DAY, PurchaseAggregate
from services.decision.keys import contacts_key, event_key, features_key
from services.decision.limits import is_valid_profile_id

logger = logging.getLogger(__name__)

# Profiles written per pipeline round trip by put_many: large enough to amortise the
# round trip, small enough that one reply stays a few hundred kilobytes.
PUT_MANY_CHUNK_SIZE = 1_000

_FIELDS = (
    ("count", "purchase_count"),
    ("amount_cents", "total_amount_cents"),
    ("quantity", "total_quantity"),
    ("first_time", "first_purchase_time"),
    ("last_time", "last_purchase_time"),
    ("last_amount_cents", "last_amount_cents"),
)

# KEYS[1]: the features hash; KEYS[2]: the event marker.
# ARGV: purchase time (s), amount (cents), quantity, marker TTL (s).
# A duplicate event id returns 0 before anything changes. The update mirrors
# PurchaseAggregate.add_purchase. The outcome script appends its own steps to this body.
PURCHASE_UPDATE_LUA = """
if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[4]) then
  return 0
end
local time = tonumber(ARGV[1])
local current = redis.call('HMGET', KEYS[1], 'count', 'first_time', 'last_time')
local count = tonumber(current[1]) or 0
if count == 0 then
  redis.call('HSET', KEYS[1], 'first_time', ARGV[1], 'last_time', ARGV[1],
             'last_amount_cents', ARGV[2])
else
  if time < tonumber(current[2]) then
    redis.call('HSET', KEYS[1], 'first_time', ARGV[1])
  end
  if time >= tonumber(current[3]) then
    redis.call('HSET', KEYS[1], 'last_time', ARGV[1], 'last_amount_cents', ARGV[2])
  end
end
redis.call('HINCRBY', KEYS[1], 'count', 1)
redis.call('HINCRBY', KEYS[1], 'amount_cents', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'quantity', ARGV[3])
"""

# Returns 1 when the purchase was applied and 0 when the event id was already recorded.
_RECORD_PURCHASE_SCRIPT = PURCHASE_UPDATE_LUA + "return 1\n"


class FeatureDataError(ValueError):
    """A stored aggregate has a field that is not an integer."""


__all__ = [
    "FeatureDataError",
    "FeatureStore",
    "ProfileState",
    "event_key",
    "features_key",
]


@dataclass(frozen=True)
class ProfileState:
    """The purchase aggregate and contacts that Decide reads in one round trip."""

    aggregate: PurchaseAggregate | None
    """The purchase aggregate; None when no purchase was ever stored."""
    contacts: tuple[tuple[int, int], ...]
    """(time in seconds, channel number) of each contact in the lookback, oldest first."""


def encode_aggregate(aggregate: PurchaseAggregate) -> dict[FieldT, EncodableT]:
    """Return the hash fields that store aggregate."""
    return {field: str(getattr(aggregate, attribute)) for field, attribute in _FIELDS}


def decode_aggregate(fields: Mapping[str, str]) -> PurchaseAggregate:
    """Build an aggregate from stored hash fields; a missing field counts as 0.

    Raises FeatureDataError when a field is not an integer.
    """
    values: dict[str, int] = {}
    for field, attribute in _FIELDS:
        text = fields.get(field, "0")
        try:
            values[attribute] = int(text)
        except ValueError as exc:
            raise FeatureDataError(
                f"feature field {field!r} is not an integer: {text[:32]!r}"
            ) from exc
    return PurchaseAggregate(**values)


class FeatureStore:
    """Reads and updates purchase aggregates in Redis."""

    def __init__(self, redis: "aioredis.Redis", event_ttl_seconds: int) -> None:
        self._redis = redis
        self._event_ttl_seconds = event_ttl_seconds
        self._record_script = redis.register_script(_RECORD_PURCHASE_SCRIPT)

    async def get(self, profile_id: str) -> PurchaseAggregate | None:
        """Return the profile's aggregate, or None when no purchase was ever stored.

        Raises FeatureDataError when the stored hash is corrupt.
        """
        fields = await self._redis.hgetall(features_key(profile_id))
        if not fields:
            return None
        return decode_aggregate({str(k): str(v) for k, v in fields.items()})

    async def read_state(
        self, profile_id: str, as_of: int, lookback_days: int
    ) -> ProfileState:
        """Return the aggregate and the contacts in (as_of - lookback_days, as_of].

        One pipelined round trip. Raises FeatureDataError when the stored hash is corrupt.
        """
        since = as_of - lookback_days * SECONDS_PER_DAY
        pipeline = self._redis.pipeline(transaction=False)
        pipeline.hgetall(features_key(profile_id))
        pipeline.zrangebyscore(
            contacts_key(profile_id), f"({since}", as_of, withscores=True
        )
        fields, members = await pipeline.execute()

        aggregate = None
        if fields:
            aggregate = decode_aggregate({str(k): str(v) for k, v in fields.items()})
        return ProfileState(aggregate, decode_contacts(members))

    async def record_purchase(
        self,
        profile_id: str,
        event_id: str,
        time: int,
        amount_cents: int,
        quantity: int,
    ) -> bool:
        """Apply one purchase atomically; return False when event_id was already applied."""
        applied = await self._record_script(
            keys=[features_key(profile_id), event_key(profile_id, event_id)],
            args=[time, amount_cents, quantity, self._event_ttl_seconds],
        )
        return bool(applied)

    async def put_many(self, aggregates: Mapping[str, PurchaseAggregate]) -> int:
        """Store many aggregates, replacing what each profile had; return how many.

        Writes go in pipelines of PUT_MANY_CHUNK_SIZE profiles without MULTI, so this is
        a bulk load, not one transaction: a failure can leave earlier chunks written.
        Raises ValueError, before writing anything, when a profile id is invalid.
        """
        items = list(aggregates.items())
        for profile_id, _ in items:
            if not is_valid_profile_id(profile_id):
                raise ValueError(f"invalid profile id {profile_id[:140]!r}")

        for start in range(0, len(items), PUT_MANY_CHUNK_SIZE):
            pipeline = self._redis.pipeline(transaction=False)
            for profile_id, aggregate in items[start : start + PUT_MANY_CHUNK_SIZE]:
                pipeline.hset(
                    features_key(profile_id), mapping=encode_aggregate(aggregate)
                )
            await pipeline.execute()

        logger.info("stored %s feature aggregates", len(items))
        return len(items)


def decode_contacts(members: list[tuple[str, float]]) -> tuple[tuple[int, int], ...]:
    """Return (time, channel) pairs from ``<decision_id>:<channel>`` members and scores.

    A member without a numeric channel suffix is skipped.
    """
    contacts: list[tuple[int, int]] = []
    for member, score in members:
        _, _, channel = str(member).rpartition(":")
        if channel.isdigit():
            contacts.append((int(score), int(channel)))
    return tuple(contacts)
