"""Subject rights on the identity graph: export everything about a profile, or erase it."""

import logging

from services.identity import scripts
from services.identity.graph import RedisClient
from services.identity.keys import EVENTS_STREAM, GRAPH_PREFIX, profile_key
from services.identity.models import EraseResult, Profile, ProfileExport
from services.identity.records import (
    Clock,
    from_millis,
    pairs_to_dict,
    parse_links,
    parse_merge_records,
    to_iso,
    to_millis,
    utc_now,
)

logger = logging.getLogger(__name__)


class SubjectRights:
    """Reads and erases whole profiles, with the profiles merged into them."""

    def __init__(
        self,
        redis: RedisClient,
        tombstone_ttl_seconds: int = 0,
        events_max_length: int = 1_000_000,
        clock: Clock = utc_now,
    ) -> None:
        self._tombstone_ttl_ms = tombstone_ttl_seconds * 1000
        self._events_max_length = events_max_length
        self._clock = clock
        self._export_script = redis.register_script(scripts.EXPORT_PROFILE)
        self._erase_script = redis.register_script(scripts.ERASE_PROFILE)

    async def export_profile(self, profile_id: str) -> ProfileExport | None:
        """Return everything stored about the live profile of profile_id, or None.

        That is the profile record, every link with its provenance, and the record of
        every profile merged into it. Identifier values are stored only as keyed hashes,
        so the export contains the hashes.
        """
        reply = await self._export_script(
            keys=[profile_key(profile_id)], args=[GRAPH_PREFIX, profile_id]
        )
        if reply is None:
            return None

        live_id, flat_record, flat_links, flat_merged = reply
        record = pairs_to_dict(flat_record)
        merged = parse_merge_records(flat_merged)
        merged.sort(key=lambda item: (item.merge_time, item.profile_id))
        split_from = record.get("split_from")
        split_at = record.get("split_at")
        profile = Profile(
            profile_id=str(live_id),
            create_time=from_millis(record["created"]),
            links=parse_links(flat_links),
            merged_profile_ids=sorted(item.profile_id for item in merged),
        )
        return ProfileExport(
            profile=profile,
            merged_profiles=merged,
            split_from_profile_id=split_from,
            split_time=from_millis(split_at) if split_at else None,
        )

    async def erase_profile(self, profile_id: str) -> EraseResult | None:
        """Erase the live profile of profile_id and every profile merged into it.

        Each of its identifiers keeps a tombstone in its index key instead of a profile
        id, so a later Resolve rejects it. The records, links and merged sets are
        deleted, and an ``erase`` event names the profile and the merged ids. Returns
        None when no such profile exists.
        """
        now = self._clock()
        args: list[str | int] = [
            GRAPH_PREFIX,
            self._events_max_length,
            profile_id,
            to_millis(now),
            to_iso(now),
            self._tombstone_ttl_ms,
        ]
        reply = await self._erase_script(
            keys=[EVENTS_STREAM, profile_key(profile_id)], args=args
        )
        if reply[0] == "error":
            return None

        _, live_id, merged, count = reply
        result = EraseResult(
            profile_id=str(live_id),
            merged_profile_ids=[str(item) for item in merged],
            erased_identifier_count=int(count),
        )
        logger.info(
            "profile %s erased with %d merged profiles and %d identifiers",
            result.profile_id,
            len(result.merged_profile_ids),
            result.erased_identifier_count,
            extra={"profile_id": result.profile_id},
        )
        return result
