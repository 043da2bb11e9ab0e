"""A plain-Python model of Resolve under the rules, to compare the Lua script against.

It applies the documented algorithm to an in-memory graph: identifiers in priority order,
each joining the group with its whole profile unless a kind's maximum would break, the
oldest profile surviving, and claims that quarantine a value past the threshold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from services.identity.models import HashedIdentifier, Kind, Rejection
from services.identity.rules import IdentityRules

ModelRejection = tuple[int, Rejection, Kind | None, bool]
"""A rejection as (request index, reason, rule kind, quarantined by this call)."""


@dataclass
class ModelProfile:
    created: int
    links: dict[str, int] = field(default_factory=dict)
    """Identifier field to its link time in ms."""


@dataclass
class ModelResult:
    profile_id: str
    created: bool
    merged_profile_ids: list[str]
    rejected: list[ModelRejection]


class ReferenceGraph:
    """The identity graph as dicts, with profile ids ``m1``, ``m2``, ..."""

    def __init__(self, rules: IdentityRules) -> None:
        self.rules = rules
        self.index: dict[str, str] = {}
        """Identifier field to a live profile id, or ``q`` when quarantined."""
        self.profiles: dict[str, ModelProfile] = {}
        self.claims: dict[str, dict[str, int]] = {}
        self._next = 0

    def resolve(self, identifiers: Sequence[HashedIdentifier], now: int) -> ModelResult:
        """Apply one Resolve at time now (ms) and return what the service should return."""
        order = sorted(
            range(len(identifiers)), key=lambda i: self.rules.rank(identifiers[i].kind)
        )
        distinct: list[HashedIdentifier] = []
        positions: dict[str, list[int]] = {}
        for index in order:
            item = identifiers[index]
            if item.field not in positions:
                positions[item.field] = []
                distinct.append(item)
            positions[item.field].append(index)

        rejected: dict[int, list[object]] = {}
        holder: dict[int, str] = {}
        for position, item in enumerate(distinct):
            value = self.index.get(item.field)
            if value == "q":
                rejected[position] = [Rejection.QUARANTINED, None, False]
            elif value is not None:
                holder[position] = value

        usable = [p for p in range(len(distinct)) if p not in rejected]
        holders = {holder.get(p) for p in usable}
        if usable and None not in holders and len(holders) == 1:
            return self._result(
                holders.pop() or "", False, [], rejected, distinct, positions
            )
        if not usable:
            return self._result("", False, [], rejected, distinct, positions)

        members, new_positions, conflicts = self._group(distinct, holder, rejected, now)
        if not members and not new_positions:
            return self._result("", False, [], rejected, distinct, positions)

        members.sort(key=lambda pid: (self.profiles[pid].created, pid))
        created = not members
        if created:
            self._next += 1
            survivor = f"m{self._next}"
            self.profiles[survivor] = ModelProfile(created=now)
        else:
            survivor = members[0]

        for loser in members[1:]:
            for identifier, millis in self.profiles[loser].links.items():
                self.profiles[survivor].links.setdefault(identifier, millis)
                self.index[identifier] = survivor
            del self.profiles[loser]
        for position in new_positions:
            self.profiles[survivor].links[distinct[position].field] = now
            self.index[distinct[position].field] = survivor

        self._claim(conflicts, survivor, distinct, rejected, now)
        return self._result(
            survivor, created, members[1:], rejected, distinct, positions
        )

    def _group(
        self,
        distinct: list[HashedIdentifier],
        holder: dict[int, str],
        rejected: dict[int, list[object]],
        now: int,
    ) -> tuple[list[str], list[int], list[tuple[int, str]]]:
        """Run the greedy union. Return the member profiles, new positions and conflicts."""
        group: dict[Kind, int] = {}
        members: list[str] = []
        new_positions: list[int] = []
        conflicts: list[tuple[int, str]] = []
        for position, item in enumerate(distinct):
            owner = holder.get(position)
            if position in rejected or (owner is not None and owner in members):
                continue
            added = self._counts(owner, now) if owner else {item.kind: 1}
            broken = next(
                (
                    kind
                    for kind in self.rules.priority
                    if group.get(kind, 0) > 0
                    and added.get(kind, 0) > 0
                    and group[kind] + added[kind] > self.rules.kinds[kind].max_values
                ),
                None,
            )
            if broken is not None:
                reason = (
                    Rejection.UNIQUE_KIND_CONFLICT
                    if self.rules.kinds[broken].unique
                    else Rejection.KIND_LIMIT_EXCEEDED
                )
                rejected[position] = [reason, broken, False]
                quarantine_on = self.rules.quarantine_threshold > 0
                if owner and quarantine_on and not self.rules.kinds[item.kind].unique:
                    conflicts.append((position, owner))
                continue
            for kind, number in added.items():
                group[kind] = group.get(kind, 0) + number
            if owner:
                members.append(owner)
            else:
                new_positions.append(position)
        return members, new_positions, conflicts

    def _counts(self, profile_id: str, now: int) -> dict[Kind, int]:
        counts: dict[Kind, int] = {}
        for identifier, millis in self.profiles[profile_id].links.items():
            kind = Kind(identifier.split(":", 1)[0])
            window = self.rules.kinds[kind].window_seconds * 1000
            if window == 0 or millis > now - window:
                counts[kind] = counts.get(kind, 0) + 1
        return counts

    def _claim(
        self,
        conflicts: list[tuple[int, str]],
        survivor: str,
        distinct: list[HashedIdentifier],
        rejected: dict[int, list[object]],
        now: int,
    ) -> None:
        window = self.rules.quarantine_window_seconds * 1000
        for position, owner in conflicts:
            identifier = distinct[position].field
            claims = self.claims.setdefault(identifier, {})
            claims[owner] = now
            claims[survivor] = now
            for profile_id in [
                p for p, millis in claims.items() if millis < now - window
            ]:
                del claims[profile_id]
            if len(claims) > self.rules.quarantine_threshold:
                self.index[identifier] = "q"
                del self.profiles[owner].links[identifier]
                del self.claims[identifier]
                rejected[position][2] = True

    def _result(
        self,
        profile_id: str,
        created: bool,
        merged: list[str],
        rejected: dict[int, list[object]],
        distinct: list[HashedIdentifier],
        positions: dict[str, list[int]],
    ) -> ModelResult:
        items: list[ModelRejection] = []
        for position, (reason, kind, quarantined) in rejected.items():
            for index in positions[distinct[position].field]:
                items.append((index, reason, kind, quarantined))  # type: ignore[arg-type]
        items.sort(key=lambda item: item[0])
        return ModelResult(profile_id, created, list(merged), items)

    def partition(self) -> set[frozenset[str]]:
        """Return the linked identifier fields grouped by profile."""
        return {
            frozenset(profile.links)
            for profile in self.profiles.values()
            if profile.links
        }
