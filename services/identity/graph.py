"""The identity graph in Redis: links identifiers to profiles, merges and reads profiles."""

import logging
import secrets
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis

from services.identity import scripts
from services.identity.keys import EVENTS_STREAM, GRAPH_PREFIX, index_key, profile_key
from services.identity.models import (
    HashedIdentifier,
    Kind,
    Link,
    LookupMatch,
    Profile,
    ResolveResult,
)

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def new_profile_id() -> str:
    """Return a fresh profile id: ``p_`` and 128 random bits in lower-case hex."""
    return "p_" + secrets.token_hex(16)


def utc_now() -> datetime:
    return datetime.now(UTC)


def to_millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def from_millis(millis: int) -> datetime:
    return datetime.fromtimestamp(millis / 1000, UTC)


def to_iso(moment: datetime) -> str:
    """Return moment as ISO 8601 UTC with milliseconds, like ``2025-01-31T09:30:00.123Z``."""
    return (
        moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


class IdentityGraph:
    """Profiles and their identifiers in Redis. Every write is one atomic Lua script.

    The graph receives only hashed identifiers, because callers normalise and hash them first.
    """

    def __init__(
        self,
        redis: "aioredis.Redis",
        events_max_length: int = 1_000_000,
        clock: Clock = utc_now,
    ) -> None:
        self._redis = redis
        self._events_max_length = events_max_length
        self._clock = clock
        self._resolve_script = redis.register_script(scripts.RESOLVE)
        self._get_profile_script = redis.register_script(scripts.GET_PROFILE)

    async def resolve(
        self, identifiers: Sequence[HashedIdentifier], source: str
    ) -> ResolveResult:
        """Link identifiers into one profile, creating it or merging the profiles they point at.

        The oldest profile (by creation time, then id) survives a merge, and a ``merge``
        event is added to the event stream in the same atomic step.
        """
        if not identifiers:
            raise ValueError("resolve needs at least one identifier")

        now = self._clock()
        args: list[str | int] = [
            GRAPH_PREFIX,
            self._events_max_length,
            new_profile_id(),
            to_millis(now),
            to_iso(now),
            source,
            *(identifier.field for identifier in identifiers),
        ]
        keys = [EVENTS_STREAM, *(index_key(identifier) for identifier in identifiers)]
        reply = await self._resolve_script(keys=keys, args=args)

        result = ResolveResult(
            profile_id=str(reply[0]),
            created=int(reply[1]) == 1,
            merged_profile_ids=[str(item) for item in reply[2:]],
        )
        if result.created:
            logger.debug("profile created", extra={"profile_id": result.profile_id})
        if result.merged_profile_ids:
            logger.info(
                "profiles merged into %s: %s",
                result.profile_id,
                ",".join(result.merged_profile_ids),
                extra={"profile_id": result.profile_id},
            )
        return result

    async def lookup(
        self, identifiers: Sequence[HashedIdentifier]
    ) -> LookupMatch | None:
        """Return the profile of the first identifier that is linked, or None. Writes nothing."""
        if not identifiers:
            return None

        keys = [index_key(identifier) for identifier in identifiers]
        values = await self._redis.mget(keys)
        for index, profile_id in enumerate(values):
            if profile_id is not None:
                return LookupMatch(profile_id=str(profile_id), index=index)
        return None

    async def get_profile(self, profile_id: str) -> Profile | None:
        """Return the live profile of profile_id (its survivor if it was merged), or None."""
        reply = await self._get_profile_script(
            keys=[profile_key(profile_id)], args=[GRAPH_PREFIX, profile_id]
        )
        if reply is None:
            return None

        live_id, created, flat_links, merged = reply
        links = [
            _parse_link(flat_links[i], flat_links[i + 1])
            for i in range(0, len(flat_links), 2)
        ]
        links.sort(key=lambda link: (link.link_time, link.identifier.field))
        return Profile(
            profile_id=str(live_id),
            create_time=from_millis(int(created)),
            links=links,
            merged_profile_ids=sorted(str(item) for item in merged),
        )


def _parse_link(field: Any, provenance: Any) -> Link:
    """Parse a links-hash entry: ``<kind>:<hash>`` and ``<ms>:<origin profile>:<source>``."""
    kind, value_hash = str(field).split(":", 1)
    millis, origin, source = str(provenance).split(":", 2)
    return Link(
        identifier=HashedIdentifier(Kind(kind), value_hash),
        source=source,
        link_time=from_millis(int(millis)),
        origin_profile_id=origin,
    )
