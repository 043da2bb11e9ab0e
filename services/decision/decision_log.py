"""Decision records in Redis, one JSON string per decision with a TTL.

The key is ``tf:decision:{<profile_id>}:decision:<decision_id>``, under the profile's hash
tag like its features.
"""

import json
import math
from typing import Any

import redis.asyncio as aioredis


def decision_key(profile_id: str, decision_id: str) -> str:
    return f"tf:decision:{{{profile_id}}}:decision:{decision_id}"


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class DecisionLog:
    """Writes and reads decision records."""

    def __init__(self, redis: "aioredis.Redis", ttl_seconds: int) -> None:
        self._redis = redis
        self._ttl_seconds = ttl_seconds

    async def store(
        self, profile_id: str, decision_id: str, record: dict[str, Any]
    ) -> None:
        """Write record with one SET and the configured TTL. NaN and infinities become null."""
        features = record.get("features")
        if isinstance(features, dict):
            record = {
                **record,
                "features": {k: _finite_or_none(v) for k, v in features.items()},
            }
        payload = json.dumps(record, separators=(",", ":"), allow_nan=False)
        await self._redis.set(
            decision_key(profile_id, decision_id), payload, ex=self._ttl_seconds
        )

    async def load(self, profile_id: str, decision_id: str) -> dict[str, Any] | None:
        """Return the stored record, or None when it expired or never existed."""
        payload = await self._redis.get(decision_key(profile_id, decision_id))
        if payload is None:
            return None
        record: dict[str, Any] = json.loads(payload)
        return record
