"""The identity graph in Redis: links identifiers under the rules, reads, splits, explains."""

import logging
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from services.identity import scripts
from services.identity.keys import EVENTS_STREAM, GRAPH_PREFIX, index_key, profile_key
from services.identity.models import (
    Explanation,
    HashedIdentifier,
    IdentifierState,
    IdentifierStatus,
    Kind,
    LookupMatch,
    MergeRecord,
    Profile,
    RejectedIdentifier,
    Rejection,
    ResolveResult,
    SplitResult,
)
from services.identity.records import (
    Clock,
    from_millis,
    new_profile_id,
    parse_link,
    parse_links,
    parse_merge_records,
    to_iso,
    to_millis,
    utc_now,
)
from services.identity.rules import IdentityRules, RuleSettings
from shared.errors import FailedPrecondition, NotFound

logger = logging.getLogger(__name__)

RedisClient = aioredis.Redis | RedisCluster
"""A single Redis server or a Redis Cluster. Every graph key is in one slot either way."""

PROFILE_ID_PREFIX = "p_"


class IdentifierNotLinked(FailedPrecondition):
    """A SplitProfile named an identifier that is not on the profile."""

    def __init__(self, profile_id: str, position: int) -> None:
        super().__init__(
            f"identifier {position} of the split is not linked to profile {profile_id}",
            metadata={"profile_id": profile_id},
        )
        self.position = position


class IdentityGraph:
    """Profiles and their identifiers in Redis. Every write is one atomic Lua script.

    The graph receives only hashed identifiers, because callers normalise and hash them first.
    """

    def __init__(
        self,
        redis: RedisClient,
        rules: IdentityRules | None = None,
        events_max_length: int = 1_000_000,
        clock: Clock = utc_now,
    ) -> None:
        self._redis = redis
        self._rules = rules or IdentityRules(RuleSettings())
        self._rules_argument = self._rules.script_argument()
        self._events_max_length = events_max_length
        self._clock = clock
        self._resolve_script = redis.register_script(scripts.RESOLVE)
        self._get_profile_script = redis.register_script(scripts.GET_PROFILE)
        self._split_script = redis.register_script(scripts.SPLIT_PROFILE)
        self._explain_script = redis.register_script(scripts.EXPLAIN_LINK)

    async def resolve(
        self, identifiers: Sequence[HashedIdentifier], source: str
    ) -> ResolveResult:
        """Link identifiers into one profile under the rules, creating or merging profiles.

        Identifiers are taken in priority order, each with its whole profile, and one that
        would break a rule is rejected. The oldest profile (by creation time, then id)
        survives a merge, and a ``merge`` event is added to the event stream in the same
        atomic step. Rejections carry the index of the identifier in ``identifiers``.
        """
        if not identifiers:
            raise ValueError("resolve needs at least one identifier")

        distinct, positions = self._in_priority_order(identifiers)
        now = self._clock()
        args: list[str | int] = [
            GRAPH_PREFIX,
            self._events_max_length,
            new_profile_id(),
            to_millis(now),
            to_iso(now),
            source,
            self._rules.quarantine_threshold,
            self._rules.quarantine_window_seconds * 1000,
            self._rules_argument,
            *(identifier.field for identifier in distinct),
        ]
        keys = [EVENTS_STREAM, *(index_key(identifier) for identifier in distinct)]
        profile_id, created, merged, flat_rejections = await self._resolve_script(
            keys=keys, args=args
        )

        result = ResolveResult(
            profile_id=str(profile_id),
            created=int(created) == 1,
            merged_profile_ids=[str(item) for item in merged],
            rejected=_parse_rejections(flat_rejections, distinct, positions),
        )
        _log_resolve(result, identifiers)
        return result

    def _in_priority_order(
        self, identifiers: Sequence[HashedIdentifier]
    ) -> tuple[list[HashedIdentifier], dict[str, list[int]]]:
        """Return the distinct identifiers, highest priority first (request order within a
        kind), and the request positions of each field."""
        order = sorted(
            range(len(identifiers)),
            key=lambda index: self._rules.rank(identifiers[index].kind),
        )
        distinct: list[HashedIdentifier] = []
        positions: dict[str, list[int]] = {}
        for index in order:
            identifier = identifiers[index]
            if identifier.field not in positions:
                positions[identifier.field] = []
                distinct.append(identifier)
            positions[identifier.field].append(index)
        return distinct, positions

    async def lookup(
        self, identifiers: Sequence[HashedIdentifier]
    ) -> LookupMatch | None:
        """Return the profile of the first linked identifier, or None. Writes nothing.

        Quarantined and erased identifiers are skipped, like unknown ones.
        """
        if not identifiers:
            return None

        keys = [index_key(identifier) for identifier in identifiers]
        values = await self._redis.mget(keys)
        for index, value in enumerate(values):
            if value is not None and str(value).startswith(PROFILE_ID_PREFIX):
                return LookupMatch(profile_id=str(value), index=index)
        return None

    async def get_profile(self, profile_id: str) -> Profile | None:
        """Return the live profile of profile_id (its survivor if it was merged), or None."""
        reply = await self._get_profile_script(
            keys=[profile_key(profile_id)], args=[GRAPH_PREFIX, profile_id]
        )
        if reply is None:
            return None

        live_id, created, flat_links, merged = reply
        return Profile(
            profile_id=str(live_id),
            create_time=from_millis(created),
            links=parse_links(flat_links),
            merged_profile_ids=sorted(str(item) for item in merged),
        )

    async def split_profile(
        self,
        profile_id: str,
        identifiers: Sequence[HashedIdentifier] = (),
        merged_profile_id: str = "",
    ) -> SplitResult:
        """Move identifiers of a live profile into a new profile, and publish a split event.

        Either identifiers names what moves, or merged_profile_id undoes that merge: every
        identifier first linked to it, or to a profile merged into it, moves. The moved
        links keep their source and time, and their origin becomes the new profile.
        Raises NotFound, IdentifierNotLinked or FailedPrecondition, and then moves nothing.
        """
        fields = list(dict.fromkeys(identifier.field for identifier in identifiers))
        now = self._clock()
        new_id = new_profile_id()
        args: list[str | int] = [
            GRAPH_PREFIX,
            self._events_max_length,
            new_id,
            to_millis(now),
            to_iso(now),
            profile_id,
            merged_profile_id,
            *fields,
        ]
        reply = await self._split_script(
            keys=[EVENTS_STREAM, profile_key(profile_id)], args=args
        )
        if reply[0] == "error":
            raise _split_error(profile_id, merged_profile_id, str(reply[1]), reply[2])

        _, live_id, created_id, flat_moved, moved_merged = reply
        result = SplitResult(
            profile_id=str(live_id),
            new_profile_id=str(created_id),
            moved=parse_links(flat_moved),
            moved_merged_profile_ids=sorted(str(item) for item in moved_merged),
        )
        logger.info(
            "profile %s split: %d identifiers moved to %s",
            result.profile_id,
            len(result.moved),
            result.new_profile_id,
            extra={"profile_id": result.profile_id},
        )
        return result

    async def explain_link(
        self, first: HashedIdentifier, second: HashedIdentifier
    ) -> Explanation:
        """Return the state of two identifiers and the merges that joined their profiles."""
        reply = await self._explain_script(
            keys=[index_key(first), index_key(second)],
            args=[GRAPH_PREFIX, first.field, second.field],
        )
        (first_status, first_chain), (second_status, second_chain) = (
            _parse_description(identifier, item)
            for identifier, item in zip((first, second), reply, strict=True)
        )

        merges: list[MergeRecord] = []
        if (
            first_status.profile_id
            and first_status.profile_id == second_status.profile_id
        ):
            merges = _merge_path(first_status, first_chain, second_status, second_chain)
        return Explanation(first=first_status, second=second_status, merges=merges)


def _parse_rejections(
    flat: Sequence[Any],
    distinct: Sequence[HashedIdentifier],
    positions: dict[str, list[int]],
) -> list[RejectedIdentifier]:
    """Map the script's rejections, by position among the distinct identifiers, back to
    every request index that carried the identifier."""
    rejected = []
    for i in range(0, len(flat), 4):
        position, reason, kind, quarantined = flat[i : i + 4]
        field = distinct[int(position)].field
        for index in positions[field]:
            rejected.append(
                RejectedIdentifier(
                    index=index,
                    reason=Rejection(str(reason)),
                    rule_kind=Kind(str(kind)) if kind else None,
                    quarantined=int(quarantined) == 1,
                )
            )
    rejected.sort(key=lambda item: item.index)
    return rejected


def _log_resolve(
    result: ResolveResult, identifiers: Sequence[HashedIdentifier]
) -> None:
    """Log creations, merges and quarantines with profile ids and kinds, never values."""
    if result.created:
        logger.debug("profile created", extra={"profile_id": result.profile_id})
    if result.merged_profile_ids:
        logger.info(
            "profiles merged into %s: %s",
            result.profile_id,
            ",".join(result.merged_profile_ids),
            extra={"profile_id": result.profile_id},
        )
    for item in result.rejected:
        if item.quarantined:
            logger.warning(
                "a %s value was quarantined after a conflict with profile %s",
                identifiers[item.index].kind,
                result.profile_id,
                extra={"profile_id": result.profile_id},
            )


def _split_error(
    profile_id: str, merged_profile_id: str, code: str, detail: Any
) -> Exception:
    """Return the domain error of a split the script rejected."""
    if code == "not_found":
        return NotFound(
            f"profile {profile_id} not found", metadata={"profile_id": profile_id}
        )
    if code == "not_linked":
        return IdentifierNotLinked(profile_id, int(detail))
    if code == "not_merged":
        return FailedPrecondition(
            f"profile {merged_profile_id} was not merged into profile {profile_id}",
            metadata={"profile_id": profile_id},
        )
    if code == "nothing":
        return FailedPrecondition(
            f"no identifier of profile {profile_id} comes from profile {merged_profile_id}",
            metadata={"profile_id": profile_id},
        )
    return FailedPrecondition(
        f"the split would move every identifier of profile {profile_id}; "
        "at least one must stay",
        metadata={"profile_id": profile_id},
    )


def _parse_description(
    identifier: HashedIdentifier, item: Sequence[Any]
) -> tuple[IdentifierStatus, list[MergeRecord]]:
    """Parse one identifier's part of the explain script's reply."""
    state, live_id, provenance, chain = item
    if state != "linked":
        return IdentifierStatus(IdentifierState(str(state))), []

    link = parse_link(identifier.field, provenance)
    status = IdentifierStatus(IdentifierState.LINKED, str(live_id), link)
    return status, parse_merge_records(chain)


def _merge_path(
    first: IdentifierStatus,
    first_chain: list[MergeRecord],
    second: IdentifierStatus,
    second_chain: list[MergeRecord],
) -> list[MergeRecord]:
    """Return the merges from each origin up to the first profile both paths reach."""
    assert first.link is not None and second.link is not None
    first_nodes = _path_nodes(first.link.origin_profile_id, first_chain)
    second_nodes = _path_nodes(second.link.origin_profile_id, second_chain)
    meeting = next((node for node in first_nodes if node in second_nodes), None)

    def before_meeting(chain: list[MergeRecord], nodes: list[str]) -> list[MergeRecord]:
        if meeting is None:
            return chain
        return chain[: nodes.index(meeting)]

    return before_meeting(first_chain, first_nodes) + before_meeting(
        second_chain, second_nodes
    )


def _path_nodes(origin: str, chain: list[MergeRecord]) -> list[str]:
    """Return the profiles from origin up its merge parents: origin, parent, ..."""
    return [origin, *(record.into_profile_id for record in chain)]
