"""The identity graph in Redis, called directly: create, link, merge, events, key slots."""

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot

from services.identity.graph import IdentityGraph
from services.identity.hashing import IdentifierHasher
from services.identity.keys import EVENTS_STREAM, profile_key
from services.identity.models import HashedIdentifier, Kind

START = datetime(2025, 3, 1, 9, 0, 0, tzinfo=UTC)


class StepClock:
    """A clock that moves one second forward on every reading."""

    def __init__(self) -> None:
        self._ticks: Iterator[int] = iter(range(1_000_000))

    def __call__(self) -> datetime:
        return START + timedelta(seconds=next(self._ticks))


@pytest.fixture
def graph(redis_client: aioredis.Redis) -> IdentityGraph:
    return IdentityGraph(redis_client, clock=StepClock())


def email(hasher: IdentifierHasher, name: str) -> HashedIdentifier:
    return hasher.hash(Kind.EMAIL, f"{name}@example.com")


def device(hasher: IdentifierHasher, name: str) -> HashedIdentifier:
    return hasher.hash(Kind.DEVICE_ID, f"device-{name}")


async def test_resolve_creates_profile(
    graph: IdentityGraph, hasher: IdentifierHasher
) -> None:
    result = await graph.resolve([email(hasher, "ana")], "web")

    assert result.created is True
    assert re.fullmatch(r"p_[0-9a-f]{32}", result.profile_id)
    assert result.merged_profile_ids == []


async def test_resolve_known_identifier_reuses(
    graph: IdentityGraph, hasher: IdentifierHasher
) -> None:
    first = await graph.resolve([email(hasher, "ana")], "web")

    second = await graph.resolve([email(hasher, "ana")], "app")

    assert second.profile_id == first.profile_id
    assert second.created is False


async def test_resolve_links_new_identifier(
    graph: IdentityGraph, hasher: IdentifierHasher
) -> None:
    first = await graph.resolve([email(hasher, "ana")], "web")

    await graph.resolve([email(hasher, "ana"), device(hasher, "ana")], "app")
    match = await graph.lookup([device(hasher, "ana")])

    assert match is not None
    assert match.profile_id == first.profile_id


async def test_resolve_keeps_first_provenance(
    graph: IdentityGraph, hasher: IdentifierHasher
) -> None:
    first = await graph.resolve([email(hasher, "ana")], "web")
    await graph.resolve([email(hasher, "ana"), device(hasher, "ana")], "app")

    profile = await graph.get_profile(first.profile_id)

    assert profile is not None
    assert [(link.identifier.kind, link.source) for link in profile.links] == [
        (Kind.EMAIL, "web"),
        (Kind.DEVICE_ID, "app"),
    ]
    assert profile.links[0].link_time == START
    assert profile.links[1].link_time == START + timedelta(seconds=1)


async def test_resolve_duplicate_identifier_once(
    graph: IdentityGraph, hasher: IdentifierHasher
) -> None:
    result = await graph.resolve([email(hasher, "ana"), email(hasher, "ana")], "web")

    profile = await graph.get_profile(result.profile_id)

    assert profile is not None
    assert len(profile.links) == 1


async def test_merge_oldest_survives(
    graph: IdentityGraph, hasher: IdentifierHasher
) -> None:
    oldest = await graph.resolve([email(hasher, "a")], "web")
    middle = await graph.resolve([email(hasher, "b")], "app")
    newest = await graph.resolve([email(hasher, "c")], "pos")

    result = await graph.resolve(
        [email(hasher, "c"), email(hasher, "a"), email(hasher, "b")], "crm"
    )

    assert result.profile_id == oldest.profile_id
    assert result.created is False
    assert result.merged_profile_ids == [middle.profile_id, newest.profile_id]


async def test_merge_moves_identifiers(
    graph: IdentityGraph, hasher: IdentifierHasher
) -> None:
    oldest = await graph.resolve([email(hasher, "a"), device(hasher, "a")], "web")
    await graph.resolve([email(hasher, "b"), device(hasher, "b")], "app")
    await graph.resolve([email(hasher, "a"), email(hasher, "b")], "crm")

    for identifier in [device(hasher, "a"), email(hasher, "b"), device(hasher, "b")]:
        match = await graph.lookup([identifier])
        assert match is not None
        assert match.profile_id == oldest.profile_id


async def test_merge_keeps_provenance(
    graph: IdentityGraph, hasher: IdentifierHasher
) -> None:
    oldest = await graph.resolve([email(hasher, "a")], "web")
    other = await graph.resolve([device(hasher, "b")], "app")
    await graph.resolve([email(hasher, "a"), device(hasher, "b")], "crm")

    profile = await graph.get_profile(oldest.profile_id)

    assert profile is not None
    moved = profile.links[1]
    assert moved.identifier == device(hasher, "b")
    assert moved.source == "app"
    assert moved.link_time == START + timedelta(seconds=1)
    assert moved.origin_profile_id == other.profile_id


async def test_merged_profile_follows_survivor(
    graph: IdentityGraph, hasher: IdentifierHasher
) -> None:
    oldest = await graph.resolve([email(hasher, "a")], "web")
    other = await graph.resolve([email(hasher, "b")], "app")
    await graph.resolve([email(hasher, "a"), email(hasher, "b")], "crm")

    profile = await graph.get_profile(other.profile_id)

    assert profile is not None
    assert profile.profile_id == oldest.profile_id
    assert profile.merged_profile_ids == [other.profile_id]


async def test_merge_chain_points_at_last_survivor(
    graph: IdentityGraph, hasher: IdentifierHasher, redis_client: aioredis.Redis
) -> None:
    first = await graph.resolve([email(hasher, "a")], "web")
    second = await graph.resolve([email(hasher, "b")], "web")
    third = await graph.resolve([email(hasher, "c")], "web")
    await graph.resolve([email(hasher, "b"), email(hasher, "c")], "web")

    result = await graph.resolve([email(hasher, "a"), email(hasher, "b")], "web")
    profile = await graph.get_profile(third.profile_id)

    assert result.merged_profile_ids == [second.profile_id]
    assert profile is not None
    assert profile.profile_id == first.profile_id
    assert profile.merged_profile_ids == sorted([second.profile_id, third.profile_id])
    assert (
        await redis_client.hget(profile_key(third.profile_id), "into")
        == first.profile_id
    )
    assert await redis_client.exists(profile_key(second.profile_id) + ":links") == 0
    assert await redis_client.exists(profile_key(second.profile_id) + ":merged") == 0


async def test_merge_publishes_event(
    graph: IdentityGraph, hasher: IdentifierHasher, redis_client: aioredis.Redis
) -> None:
    oldest = await graph.resolve([email(hasher, "a")], "web")
    middle = await graph.resolve([email(hasher, "b")], "web")
    newest = await graph.resolve([email(hasher, "c")], "web")

    await graph.resolve(
        [email(hasher, "a"), email(hasher, "b"), email(hasher, "c")], "web"
    )
    entries = await redis_client.xrange(EVENTS_STREAM)

    assert len(entries) == 1
    assert entries[0][1] == {
        "type": "merge",
        "profile_id": oldest.profile_id,
        "merged_ids": f"{middle.profile_id},{newest.profile_id}",
        "time": "2025-03-01T09:00:03.000Z",
    }


async def test_no_event_without_merge(
    graph: IdentityGraph, hasher: IdentifierHasher, redis_client: aioredis.Redis
) -> None:
    await graph.resolve([email(hasher, "a")], "web")
    await graph.resolve([email(hasher, "a"), device(hasher, "a")], "web")

    assert await redis_client.exists(EVENTS_STREAM) == 0


async def test_lookup_first_known_index(
    graph: IdentityGraph, hasher: IdentifierHasher
) -> None:
    created = await graph.resolve([device(hasher, "a")], "app")

    match = await graph.lookup([email(hasher, "x"), device(hasher, "a")])

    assert match is not None
    assert match.profile_id == created.profile_id
    assert match.index == 1


async def test_lookup_writes_nothing(
    graph: IdentityGraph, hasher: IdentifierHasher, redis_client: aioredis.Redis
) -> None:
    match = await graph.lookup([email(hasher, "nobody")])

    assert match is None
    assert await redis_client.dbsize() == 0


async def test_get_profile_unknown(graph: IdentityGraph) -> None:
    assert await graph.get_profile("p_" + "0" * 32) is None


async def test_keys_share_stream_slot(
    graph: IdentityGraph, hasher: IdentifierHasher, redis_client: aioredis.Redis
) -> None:
    await graph.resolve([email(hasher, "a")], "web")
    await graph.resolve([email(hasher, "b")], "web")
    await graph.resolve([email(hasher, "a"), email(hasher, "b")], "web")

    keys = [key async for key in redis_client.scan_iter()]
    slots = {key_slot(key.encode()) for key in keys}

    # Two index keys, two profile records, the survivor's links and merged set, the stream.
    assert len(keys) == 7
    assert slots == {key_slot(EVENTS_STREAM.encode())}
