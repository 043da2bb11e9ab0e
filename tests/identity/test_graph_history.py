"""Merge history on the graph with a stepping clock: nested splits, explanations, export."""

from datetime import timedelta

import pytest
import redis.asyncio as aioredis

from services.identity.graph import IdentityGraph
from services.identity.hashing import IdentifierHasher
from services.identity.keys import EVENTS_STREAM
from services.identity.models import HashedIdentifier, IdentifierState, Kind
from services.identity.subject_rights import SubjectRights
from tests.identity.test_graph import START, StepClock


@pytest.fixture
def clock() -> StepClock:
    return StepClock()


@pytest.fixture
def graph(redis_client: aioredis.Redis, clock: StepClock) -> IdentityGraph:
    return IdentityGraph(redis_client, clock=clock)


@pytest.fixture
def rights(redis_client: aioredis.Redis, clock: StepClock) -> SubjectRights:
    return SubjectRights(redis_client, clock=clock)


def email(hasher: IdentifierHasher, name: str) -> HashedIdentifier:
    return hasher.hash(Kind.EMAIL, f"{name}@example.com")


def device(hasher: IdentifierHasher, name: str) -> HashedIdentifier:
    return hasher.hash(Kind.DEVICE_ID, f"dev-{name}")


async def nested_merge(
    graph: IdentityGraph, hasher: IdentifierHasher
) -> tuple[str, str, str]:
    """Create a, b, c one second apart; merge c into b, then b into a. Return the ids."""
    a = await graph.resolve([email(hasher, "a")], "web")
    b = await graph.resolve([email(hasher, "b"), device(hasher, "b")], "app")
    c = await graph.resolve([email(hasher, "c")], "pos")
    await graph.resolve([email(hasher, "b"), email(hasher, "c")], "crm")
    await graph.resolve([email(hasher, "a"), device(hasher, "b")], "crm")
    return a.profile_id, b.profile_id, c.profile_id


async def test_split_nested_merge(
    graph: IdentityGraph, hasher: IdentifierHasher
) -> None:
    a, b, c = await nested_merge(graph, hasher)

    result = await graph.split_profile(a, merged_profile_id=b)
    moved = {link.identifier for link in result.moved}
    c_now = await graph.get_profile(c)
    a_now = await graph.get_profile(a)

    assert result.moved_merged_profile_ids == sorted([b, c])
    assert moved == {email(hasher, "b"), device(hasher, "b"), email(hasher, "c")}
    assert c_now is not None
    assert c_now.profile_id == result.new_profile_id
    assert a_now is not None
    assert [link.identifier for link in a_now.links] == [email(hasher, "a")]
    assert a_now.merged_profile_ids == []


async def test_split_inner_merge_only(
    graph: IdentityGraph, hasher: IdentifierHasher
) -> None:
    a, b, c = await nested_merge(graph, hasher)

    result = await graph.split_profile(a, merged_profile_id=c)
    a_now = await graph.get_profile(a)

    assert result.moved_merged_profile_ids == [c]
    assert [link.identifier for link in result.moved] == [email(hasher, "c")]
    assert a_now is not None
    assert a_now.merged_profile_ids == [b]


async def test_split_keeps_link_time(
    graph: IdentityGraph, hasher: IdentifierHasher
) -> None:
    created = await graph.resolve([email(hasher, "a"), device(hasher, "a")], "web")

    result = await graph.split_profile(created.profile_id, [device(hasher, "a")])

    assert result.moved[0].link_time == START
    assert result.moved[0].source == "web"
    assert result.moved[0].anchor is None


async def test_explain_nested_merges(
    graph: IdentityGraph, hasher: IdentifierHasher
) -> None:
    a, b, c = await nested_merge(graph, hasher)

    explanation = await graph.explain_link(email(hasher, "c"), email(hasher, "a"))

    assert explanation.linked is True
    assert explanation.first.profile_id == a
    assert explanation.first.link is not None
    assert explanation.first.link.origin_profile_id == c
    assert explanation.first.link.source == "pos"
    assert explanation.second.link is not None
    assert explanation.second.link.origin_profile_id == a
    assert [(step.profile_id, step.into_profile_id) for step in explanation.merges] == [
        (c, b),
        (b, a),
    ]
    assert explanation.merges[0].source == "crm"
    assert explanation.merges[0].merged_identifier == email(hasher, "c")
    assert explanation.merges[0].into_identifier == email(hasher, "b")
    assert explanation.merges[1].merged_identifier == device(hasher, "b")
    assert explanation.merges[1].into_identifier == email(hasher, "a")
    assert explanation.merges[1].merge_time == START + timedelta(seconds=4)


async def test_explain_meets_below_root(
    graph: IdentityGraph, hasher: IdentifierHasher
) -> None:
    await nested_merge(graph, hasher)

    explanation = await graph.explain_link(email(hasher, "c"), device(hasher, "b"))

    # Both paths meet at b, so the merge of b into a is no part of the explanation.
    assert len(explanation.merges) == 1
    assert explanation.merges[0].merged_identifier == email(hasher, "c")


async def test_explain_same_origin_anchor(
    graph: IdentityGraph, hasher: IdentifierHasher
) -> None:
    created = await graph.resolve([email(hasher, "a")], "web")
    await graph.resolve([email(hasher, "a"), device(hasher, "a")], "app")

    explanation = await graph.explain_link(email(hasher, "a"), device(hasher, "a"))

    assert explanation.linked is True
    assert explanation.merges == []
    assert explanation.second.link is not None
    assert explanation.second.link.origin_profile_id == created.profile_id
    assert explanation.second.link.anchor == email(hasher, "a")
    assert explanation.second.link.source == "app"


async def test_explain_not_linked(
    graph: IdentityGraph, hasher: IdentifierHasher
) -> None:
    first = await graph.resolve([email(hasher, "a")], "web")
    second = await graph.resolve([email(hasher, "b")], "web")

    explanation = await graph.explain_link(email(hasher, "a"), email(hasher, "b"))

    assert explanation.linked is False
    assert explanation.first.profile_id == first.profile_id
    assert explanation.second.profile_id == second.profile_id
    assert explanation.merges == []


async def test_explain_unknown(graph: IdentityGraph, hasher: IdentifierHasher) -> None:
    explanation = await graph.explain_link(email(hasher, "x"), email(hasher, "y"))

    assert explanation.first.state is IdentifierState.UNKNOWN
    assert explanation.linked is False


async def test_export_merge_records(
    graph: IdentityGraph, hasher: IdentifierHasher, rights: SubjectRights
) -> None:
    a, b, c = await nested_merge(graph, hasher)

    export = await rights.export_profile(c)

    assert export is not None
    assert export.profile.profile_id == a
    assert export.profile.create_time == START
    assert len(export.profile.links) == 4
    assert [
        (item.profile_id, item.into_profile_id) for item in export.merged_profiles
    ] == [
        (c, b),
        (b, a),
    ]
    assert export.merged_profiles[0].create_time == START + timedelta(seconds=2)
    assert export.merged_profiles[1].source == "crm"
    assert export.split_from_profile_id is None


async def test_export_split_origin(
    graph: IdentityGraph, hasher: IdentifierHasher, rights: SubjectRights
) -> None:
    created = await graph.resolve([email(hasher, "a"), device(hasher, "a")], "web")
    split = await graph.split_profile(created.profile_id, [device(hasher, "a")])

    export = await rights.export_profile(split.new_profile_id)

    assert export is not None
    assert export.split_from_profile_id == created.profile_id
    assert export.split_time == START + timedelta(seconds=1)


async def test_erase_nested(
    graph: IdentityGraph,
    hasher: IdentifierHasher,
    rights: SubjectRights,
    redis_client: aioredis.Redis,
) -> None:
    a, b, c = await nested_merge(graph, hasher)

    result = await rights.erase_profile(b)
    entries = await redis_client.xrange(EVENTS_STREAM)
    keys = sorted([key async for key in redis_client.scan_iter()])

    assert result is not None
    assert result.profile_id == a
    assert result.merged_profile_ids == sorted([b, c])
    assert result.erased_identifier_count == 4
    assert entries[-1][1] == {
        "type": "erase",
        "profile_id": a,
        "merged_ids": ",".join(sorted([b, c])),
        "time": "2025-03-01T09:00:05.000Z",
    }
    # Left: the four tombstoned index keys and the stream.
    assert len(keys) == 5
    assert all(":ix:" in key for key in keys if key != EVENTS_STREAM)
    for profile_id in (a, b, c):
        assert await graph.get_profile(profile_id) is None


async def test_erase_unknown(rights: SubjectRights) -> None:
    assert await rights.erase_profile("p_" + "0" * 32) is None


async def test_tombstone_ttl(
    graph: IdentityGraph, hasher: IdentifierHasher, redis_client: aioredis.Redis
) -> None:
    rights = SubjectRights(redis_client, tombstone_ttl_seconds=3600)
    created = await graph.resolve([email(hasher, "a")], "web")

    await rights.erase_profile(created.profile_id)
    ttls = [
        await redis_client.pttl(key) async for key in redis_client.scan_iter("*:ix:*")
    ]

    assert len(ttls) == 1
    assert 3_500_000 < ttls[0] <= 3_600_000
