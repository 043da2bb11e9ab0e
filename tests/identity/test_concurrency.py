"""Concurrent and sequential Resolve calls under the rules end in the graph the rules allow.

The concurrent test runs 16 clients of 500 calls each over overlapping identifier sets
through real gRPC. The order in which Redis ran the calls is unknown, so it checks what
is true in every order: the stored graph is consistent, every profile respects the rules,
no identifier or profile is lost, and the profiles are exactly the union of what each
call reported as linked. The sequential test compares every call with a plain-Python
model of the rules.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TypeAlias

import redis.asyncio as aioredis

from services.identity.graph import IdentityGraph
from services.identity.hashing import IdentifierHasher
from services.identity.keys import EVENTS_STREAM
from services.identity.models import HashedIdentifier
from services.identity.normalise import Normaliser
from services.identity.rules import IdentityRules, RuleSettings
from services.identity.validation import IdentifierReader
from shared.errors import Violations
from tests.identity.graph_audit import read_graph, rule_problems, structural_problems
from tests.identity.reference import ReferenceGraph
from tests.identity.workload import plan_calls
from trustfirst.identity.v1 import identity_pb2, identity_pb2_grpc

Stub: TypeAlias = "identity_pb2_grpc.IdentityServiceAsyncStub"

CLIENTS = 16
CALLS_PER_CLIENT = 500
SEQUENTIAL_CALLS = 1500


def make_reader(hasher: IdentifierHasher) -> IdentifierReader:
    return IdentifierReader(Normaliser("GB"), hasher, IdentityRules(RuleSettings()))


def hashed_fields(
    reader: IdentifierReader, identifiers: Sequence[identity_pb2.Identifier]
) -> list[str | None]:
    """Return the stored field of each identifier, None for a blocked placeholder."""
    fields: list[str | None] = []
    for identifier in identifiers:
        violations = Violations()
        outcome = reader.read_one(identifier, "identifier", violations)
        assert not violations.items
        fields.append(outcome.field if isinstance(outcome, HashedIdentifier) else None)
    return fields


class UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, item: str) -> str:
        self.parent.setdefault(item, item)
        while self.parent[item] != item:
            self.parent[item] = self.parent[self.parent[item]]
            item = self.parent[item]
        return item

    def union(self, items: Sequence[str]) -> None:
        for item in items:
            self.parent[self.find(item)] = self.find(items[0])

    def groups(self, keep: set[str]) -> set[frozenset[str]]:
        members: dict[str, set[str]] = {}
        for item in list(self.parent):
            if item in keep:
                members.setdefault(self.find(item), set()).add(item)
        return {frozenset(group) for group in members.values()}


async def run_client(
    stub: Stub, calls: list[list[identity_pb2.Identifier]], client: int
) -> list[identity_pb2.ResolveResponse]:
    responses = []
    for identifiers in calls:
        request = identity_pb2.ResolveRequest(
            identifiers=identifiers, source=f"client-{client}"
        )
        responses.append(await stub.Resolve(request))
    return responses


async def test_concurrent_resolve_consistent(
    stub: Stub, redis_client: aioredis.Redis, hasher: IdentifierHasher
) -> None:
    plans = [plan_calls(seed, CALLS_PER_CLIENT) for seed in range(CLIENTS)]

    results = await asyncio.gather(
        *(run_client(stub, plan, client) for client, plan in enumerate(plans))
    )

    reader = make_reader(hasher)
    links = UnionFind()
    accepted: set[str] = set()
    returned_ids: set[str] = set()
    for plan, responses in zip(plans, results, strict=True):
        for identifiers, response in zip(plan, responses, strict=True):
            rejected = {item.index for item in response.rejected_identifiers}
            fields = hashed_fields(reader, identifiers)
            linked = [f for i, f in enumerate(fields) if i not in rejected and f]
            assert all(f is not None or i in rejected for i, f in enumerate(fields)), (
                "a placeholder was linked"
            )
            links.union(linked)
            accepted.update(linked)
            if response.profile_id:
                returned_ids.add(response.profile_id)

    snapshot = await read_graph(redis_client)
    quarantined = snapshot.quarantine
    linked_now = {f for f, value in snapshot.index.items() if value.startswith("p_")}
    events = await redis_client.xrange(EVENTS_STREAM)
    merged_in_events = [
        i for _, fields in events for i in fields["merged_ids"].split(",")
    ]
    merged_in_profiles = [i for members in snapshot.merged.values() for i in members]

    assert structural_problems(snapshot) == []
    assert rule_problems(snapshot, IdentityRules(RuleSettings())) == []
    # No lost identifier: everything a call linked is still linked or was quarantined.
    assert accepted - quarantined == linked_now
    # No lost profile: every id a call returned is live or merged into a live profile.
    assert returned_ids - set(snapshot.records) == set()
    # The graph is the union of the links the calls reported, less quarantined values.
    assert snapshot.partition() == links.groups(accepted - quarantined)
    assert len(quarantined) >= 1
    assert len(events) > 0
    assert sorted(merged_in_events) == sorted(merged_in_profiles)
    assert len(set(merged_in_events)) == len(merged_in_events)


class StepClock:
    """A clock that moves one millisecond forward on every reading."""

    def __init__(self) -> None:
        self.now = datetime(2025, 3, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=1)
        return self.now


async def test_sequential_matches_model(
    redis_client: aioredis.Redis, hasher: IdentifierHasher
) -> None:
    rules = IdentityRules(RuleSettings())
    clock = StepClock()
    graph = IdentityGraph(redis_client, rules, clock=clock)
    model = ReferenceGraph(rules)
    reader = make_reader(hasher)
    model_id: dict[str, str] = {}

    for number, identifiers in enumerate(plan_calls(99, SEQUENTIAL_CALLS)):
        batch = reader.read_batch(identifiers, Violations())
        if not batch.identifiers:
            continue
        result = await graph.resolve(batch.identifiers, "web")
        expected = model.resolve(batch.identifiers, int(clock.now.timestamp() * 1000))

        got = [(r.index, r.reason, r.rule_kind, r.quarantined) for r in result.rejected]
        assert got == expected.rejected, number
        assert result.created == expected.created, number
        if result.created:
            model_id[result.profile_id] = expected.profile_id
        assert model_id.get(result.profile_id, "") == expected.profile_id, number
        assert [
            model_id[i] for i in result.merged_profile_ids
        ] == expected.merged_profile_ids

    snapshot = await read_graph(redis_client)
    assert snapshot.partition() == model.partition()
    assert snapshot.quarantine == {
        f for f, value in model.index.items() if value == "q"
    }
    assert len(snapshot.quarantine) >= 1
    assert structural_problems(snapshot) == []
