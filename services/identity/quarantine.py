"""The operator's view of quarantined identifier values: list them, release one."""

import logging

from services.identity import scripts
from services.identity.graph import RedisClient
from services.identity.keys import (
    GRAPH_PREFIX,
    QUARANTINE_KEY,
    QUARANTINE_MARKER,
    claims_key,
    index_key,
)
from services.identity.models import HashedIdentifier, QuarantinedValue
from services.identity.records import from_millis

logger = logging.getLogger(__name__)


class QuarantineRegistry:
    """Lists and releases the values that Resolve quarantined."""

    def __init__(self, redis: RedisClient) -> None:
        self._redis = redis
        self._release_script = redis.register_script(scripts.RELEASE_QUARANTINED)

    async def list_values(
        self, offset: int, limit: int
    ) -> tuple[list[QuarantinedValue], int | None]:
        """Return up to limit values from offset, oldest first, and the next offset.

        The next offset is None on the last page. A value released between two pages
        shifts the later ones, so a page may skip a value.
        """
        # One entry more than the page shows whether a next page exists.
        reply = await self._redis.zrange(
            QUARANTINE_KEY, offset, offset + limit, withscores=True
        )
        entries = [(str(item[0]), float(item[1])) for item in reply]
        page = entries[:limit]
        identifiers = [HashedIdentifier.from_field(field) for field, _ in page]
        markers = (
            await self._redis.mget([index_key(item) for item in identifiers])
            if identifiers
            else []
        )

        values = []
        for identifier, (_, score), marker in zip(
            identifiers, page, markers, strict=True
        ):
            values.append(
                QuarantinedValue(
                    identifier=identifier,
                    quarantine_time=from_millis(int(score)),
                    profile_count=_profile_count(marker),
                )
            )
        next_offset = offset + limit if len(entries) > limit else None
        return values, next_offset

    async def release(self, identifier: HashedIdentifier) -> bool:
        """Take a value out of quarantine, or return False when it was not quarantined.

        The value's claims are forgotten, so it takes more than the threshold of new
        claims to quarantine it again.
        """
        released = await self._release_script(
            keys=[index_key(identifier), QUARANTINE_KEY, claims_key(identifier)],
            args=[GRAPH_PREFIX, identifier.field],
        )
        if int(released) == 1:
            logger.info("a quarantined %s value was released", identifier.kind)
            return True
        return False


def _profile_count(marker: object) -> int:
    """Return the profile count of a ``q:<ms>:<profiles>`` marker, or 0 if it is missing."""
    text = str(marker or "")
    if not text.startswith(QUARANTINE_MARKER):
        return 0
    return int(text.rsplit(":", 1)[-1])
