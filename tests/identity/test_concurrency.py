"""Concurrent Resolve calls over overlapping identifiers end in a consistent graph."""

from __future__ import annotations

import asyncio
import random
from typing import TypeAlias

import redis.asyncio as aioredis

from services.identity.keys import EVENTS_STREAM
from tests.identity.conftest import DEVICE_ID, EMAIL, ident
from trustfirst.identity.v1 import identity_pb2, identity_pb2_grpc

Stub: TypeAlias = "identity_pb2_grpc.IdentityServiceAsyncStub"

TASKS = 8
CALLS_PER_TASK = 100
CLUSTERS = 20  # identifiers of different clusters are never resolved together
CLUSTER_SIZE = 20


def plan_calls(seed: int) -> list[list[int]]:
    """Return the identifier numbers of each call of one task: 2 or 3 from one cluster."""
    rng = random.Random(seed)
    calls = []
    for _ in range(CALLS_PER_TASK):
        first = rng.randrange(CLUSTERS) * CLUSTER_SIZE
        members = range(first, first + CLUSTER_SIZE)
        calls.append(rng.sample(members, rng.choice([2, 3])))
    return calls


def identifier(number: int) -> identity_pb2.Identifier:
    if number % 2 == 0:
        return ident(EMAIL, f"user{number}@example.com")
    return ident(DEVICE_ID, f"device-{number}")


def expected_groups(plans: list[list[list[int]]]) -> dict[int, int]:
    """Union-find over every call: map each used identifier number to its group's root."""
    parent: dict[int, int] = {}

    def find(item: int) -> int:
        parent.setdefault(item, item)
        while parent[item] != item:
            parent[item] = parent[parent[item]]
            item = parent[item]
        return item

    for plan in plans:
        for numbers in plan:
            for number in numbers[1:]:
                parent[find(number)] = find(numbers[0])
    return {item: find(item) for item in list(parent)}


async def run_task(stub: Stub, plan: list[list[int]], task: int) -> None:
    for numbers in plan:
        request = identity_pb2.ResolveRequest(
            identifiers=[identifier(number) for number in numbers],
            source=f"task-{task}",
        )
        await stub.Resolve(request)


async def test_concurrent_resolve_consistent(
    stub: Stub, redis_client: aioredis.Redis
) -> None:
    plans = [plan_calls(seed) for seed in range(TASKS)]

    await asyncio.gather(
        *(run_task(stub, plan, task) for task, plan in enumerate(plans))
    )

    groups = expected_groups(plans)
    profile_of: dict[int, str] = {}
    for number in groups:
        response = await stub.Lookup(
            identity_pb2.LookupRequest(identifiers=[identifier(number)])
        )
        assert response.found, number
        profile_of[number] = response.profile_id

    live_profiles: dict[str, identity_pb2.Profile] = {}
    for profile_id in set(profile_of.values()):
        profile_response = await stub.GetProfile(
            identity_pb2.GetProfileRequest(profile_id=profile_id)
        )
        assert profile_response.profile.profile_id == profile_id
        live_profiles[profile_id] = profile_response.profile

    hashes = [i.value_hash for p in live_profiles.values() for i in p.identifiers]
    roots_to_profiles = {(groups[n], profile_of[n]) for n in groups}
    events = await redis_client.xrange(EVENTS_STREAM)
    merged_in_events = [
        i for _, fields in events for i in fields["merged_ids"].split(",")
    ]
    merged_in_profiles = [
        i for p in live_profiles.values() for i in p.merged_profile_ids
    ]

    assert len(hashes) == len(groups)
    assert len(set(hashes)) == len(groups)
    assert len(roots_to_profiles) == len(set(groups.values()))
    assert len(live_profiles) == len(set(groups.values()))
    assert len(events) > 0
    assert sorted(merged_in_events) == sorted(merged_in_profiles)
    assert len(set(merged_in_events)) == len(merged_in_events)
