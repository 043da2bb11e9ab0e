"""Reads the whole identity graph from Redis and checks its structural invariants.

Tests use it after concurrent runs: every identifier must point at a live profile that
lists it, every merged profile at a live survivor that lists it, and every live profile
must respect the rules.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import redis.asyncio as aioredis

from services.identity.keys import GRAPH_PREFIX, QUARANTINE_KEY
from services.identity.models import Kind
from services.identity.rules import IdentityRules


@dataclass
class GraphSnapshot:
    """The graph as stored: index values, live and merged profile records, quarantine."""

    index: dict[str, str] = field(default_factory=dict)
    """Identifier field to its index value (profile id or marker)."""
    records: dict[str, dict[str, str]] = field(default_factory=dict)
    links: dict[str, dict[str, str]] = field(default_factory=dict)
    merged: dict[str, set[str]] = field(default_factory=dict)
    quarantine: set[str] = field(default_factory=set)

    @property
    def live(self) -> set[str]:
        return {
            pid for pid, record in self.records.items() if record.get("state") == "live"
        }

    def partition(self) -> set[frozenset[str]]:
        """Return the linked identifier fields grouped by profile."""
        groups: dict[str, set[str]] = {}
        for identifier, value in self.index.items():
            if value.startswith("p_"):
                groups.setdefault(value, set()).add(identifier)
        return {frozenset(group) for group in groups.values()}


async def read_graph(client: aioredis.Redis) -> GraphSnapshot:
    """Read every identity key of the database into a snapshot."""
    snapshot = GraphSnapshot()
    async for key in client.scan_iter(match=GRAPH_PREFIX + "*", count=1000):
        rest = key[len(GRAPH_PREFIX) :]
        if rest.startswith("ix:"):
            snapshot.index[rest[3:]] = await client.get(key)
        elif rest.startswith("p:") and rest.endswith(":links"):
            snapshot.links[rest[2:-6]] = await client.hgetall(key)
        elif rest.startswith("p:") and rest.endswith(":merged"):
            snapshot.merged[rest[2:-7]] = set(await client.smembers(key))
        elif rest.startswith("p:"):
            snapshot.records[rest[2:]] = await client.hgetall(key)
    snapshot.quarantine = set(await client.zrange(QUARANTINE_KEY, 0, -1))
    return snapshot


def structural_problems(snapshot: GraphSnapshot) -> list[str]:
    """Return every broken invariant of the stored graph, as sentences."""
    problems: list[str] = []
    live = snapshot.live

    for identifier, value in snapshot.index.items():
        if value.startswith("q:"):
            if identifier not in snapshot.quarantine:
                problems.append(f"{identifier} is marked quarantined but not listed")
        elif value.startswith("x:"):
            continue
        elif value not in live:
            problems.append(f"{identifier} points at {value}, which is not live")
        elif identifier not in snapshot.links.get(value, {}):
            problems.append(f"{identifier} points at {value}, which does not list it")

    for profile_id, links in snapshot.links.items():
        if profile_id not in live:
            problems.append(f"{profile_id} has links but is not live")
        for identifier in links:
            if snapshot.index.get(identifier) != profile_id:
                problems.append(
                    f"{profile_id} lists {identifier}, which points elsewhere"
                )

    for profile_id, record in snapshot.records.items():
        if record.get("state") == "merged":
            into = record.get("into", "")
            if into not in live:
                problems.append(
                    f"merged {profile_id} points at {into}, which is not live"
                )
            elif profile_id not in snapshot.merged.get(into, set()):
                problems.append(f"{into} does not list merged {profile_id}")
        elif record.get("state") != "live":
            problems.append(f"{profile_id} has state {record.get('state')}")

    for profile_id, members in snapshot.merged.items():
        if profile_id not in live:
            problems.append(f"{profile_id} has a merged set but is not live")
        for member in members:
            if snapshot.records.get(member, {}).get("into") != profile_id:
                problems.append(f"{profile_id} lists {member}, which points elsewhere")

    for identifier in snapshot.quarantine:
        if not snapshot.index.get(identifier, "").startswith("q:"):
            problems.append(f"{identifier} is listed as quarantined but not marked")
    return problems


def rule_problems(snapshot: GraphSnapshot, rules: IdentityRules) -> list[str]:
    """Return every live profile that contains more values of a kind than the rules allow.

    Windows are ignored, so the check assumes every link was made within its window.
    """
    problems = []
    for profile_id, links in snapshot.links.items():
        counts = Counter(Kind(identifier.split(":", 1)[0]) for identifier in links)
        for kind, number in counts.items():
            if number > rules.kinds[kind].max_values:
                problems.append(f"{profile_id} holds {number} {kind} values")
    return problems
