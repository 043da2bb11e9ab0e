"""Time-dependent rules on the graph, with a controlled clock: windows and lowered limits."""

from datetime import UTC, datetime, timedelta

import redis.asyncio as aioredis

from services.identity.graph import IdentityGraph
from services.identity.hashing import IdentifierHasher
from services.identity.models import HashedIdentifier, Kind, Rejection
from services.identity.rules import IdentityRules, RuleSettings

START = datetime(2025, 3, 1, 9, 0, 0, tzinfo=UTC)


class ManualClock:
    """A clock that stays where a test sets it."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def make_graph(
    redis_client: aioredis.Redis, clock: ManualClock, **rules: object
) -> IdentityGraph:
    config = RuleSettings.model_validate(rules)
    return IdentityGraph(redis_client, IdentityRules(config), clock=clock)


def cookie(hasher: IdentifierHasher, name: str) -> HashedIdentifier:
    return hasher.hash(Kind.COOKIE_ID, f"ck-{name}")


def email(hasher: IdentifierHasher, name: str) -> HashedIdentifier:
    return hasher.hash(Kind.EMAIL, f"{name}@example.com")


def device(hasher: IdentifierHasher, name: str) -> HashedIdentifier:
    return hasher.hash(Kind.DEVICE_ID, f"dev-{name}")


def account(hasher: IdentifierHasher, name: str) -> HashedIdentifier:
    return hasher.hash(Kind.ACCOUNT_ID, f"acct-{name}")


async def test_window_counts_recent_links(
    redis_client: aioredis.Redis, hasher: IdentifierHasher
) -> None:
    clock = ManualClock()
    graph = make_graph(
        redis_client,
        clock,
        max_values_per_kind={"cookie_id": 2},
        max_values_window_seconds={"cookie_id": 60},
    )
    anchor = email(hasher, "ana")
    await graph.resolve([anchor, cookie(hasher, "1")], "web")
    clock.advance(10)
    await graph.resolve([anchor, cookie(hasher, "2")], "web")
    clock.advance(10)

    third = await graph.resolve([anchor, cookie(hasher, "3")], "web")
    clock.advance(45)
    fourth = await graph.resolve([anchor, cookie(hasher, "4")], "web")
    profile = await graph.get_profile(fourth.profile_id)

    # At 20 s both earlier cookies are inside the 60 s window, and at 65 s the first is not.
    assert third.rejected[0].reason is Rejection.KIND_LIMIT_EXCEEDED
    assert third.rejected[0].rule_kind is Kind.COOKIE_ID
    assert fourth.rejected == []
    assert profile is not None
    assert len(profile.links) == 4


async def test_no_window_counts_every_link(
    redis_client: aioredis.Redis, hasher: IdentifierHasher
) -> None:
    clock = ManualClock()
    graph = make_graph(redis_client, clock, max_values_per_kind={"device_id": 1})
    await graph.resolve([email(hasher, "ana"), device(hasher, "1")], "web")
    clock.advance(400 * 86_400)

    later = await graph.resolve([email(hasher, "ana"), device(hasher, "2")], "web")

    assert later.rejected[0].reason is Rejection.KIND_LIMIT_EXCEEDED


async def test_lowered_limit_keeps_profile(
    redis_client: aioredis.Redis, hasher: IdentifierHasher
) -> None:
    clock = ManualClock()
    loose = make_graph(redis_client, clock, max_values_per_kind={"device_id": 3})
    devices = [device(hasher, str(number)) for number in range(3)]
    created = await loose.resolve([email(hasher, "ana"), *devices], "web")
    strict = make_graph(redis_client, clock, max_values_per_kind={"device_id": 2})

    known = await strict.resolve([devices[0], devices[1]], "app")
    with_new_email = await strict.resolve([devices[0], email(hasher, "ana2")], "app")
    with_new_device = await strict.resolve([devices[0], device(hasher, "9")], "app")
    other = await strict.resolve([email(hasher, "bo"), device(hasher, "bo")], "app")
    merge = await strict.resolve([email(hasher, "bo"), email(hasher, "ana")], "app")

    assert known.profile_id == created.profile_id
    assert with_new_email.rejected == []
    assert with_new_email.profile_id == created.profile_id
    assert [item.reason for item in with_new_device.rejected] == [
        Rejection.KIND_LIMIT_EXCEEDED
    ]
    assert merge.profile_id == other.profile_id
    assert [item.index for item in merge.rejected] == [1]


async def test_claims_outside_window_forgotten(
    redis_client: aioredis.Redis, hasher: IdentifierHasher
) -> None:
    clock = ManualClock()
    graph = make_graph(
        redis_client, clock, quarantine_threshold=2, quarantine_window_seconds=60
    )
    shared = device(hasher, "kiosk")
    await graph.resolve([account(hasher, "0"), shared], "pos")

    outcomes = []
    for number in range(1, 5):
        clock.advance(120)
        result = await graph.resolve([account(hasher, str(number)), shared], "pos")
        outcomes.append(result.rejected[0].quarantined)

    assert outcomes == [False, False, False, False]


async def test_claims_inside_window_quarantine(
    redis_client: aioredis.Redis, hasher: IdentifierHasher
) -> None:
    clock = ManualClock()
    graph = make_graph(
        redis_client, clock, quarantine_threshold=2, quarantine_window_seconds=60
    )
    shared = device(hasher, "kiosk")
    await graph.resolve([account(hasher, "0"), shared], "pos")

    outcomes = []
    for number in range(1, 4):
        clock.advance(20)
        result = await graph.resolve([account(hasher, str(number)), shared], "pos")
        outcomes.append(result.rejected[0].reason)

    # Claims: {0, 1} then {0, 1, 2}, which is more than 2, so the second conflict
    # quarantines the device and the third meets the quarantine.
    assert outcomes == [
        Rejection.UNIQUE_KIND_CONFLICT,
        Rejection.UNIQUE_KIND_CONFLICT,
        Rejection.QUARANTINED,
    ]


async def test_duplicate_rejection_reported_twice(
    redis_client: aioredis.Redis, hasher: IdentifierHasher
) -> None:
    clock = ManualClock()
    graph = make_graph(redis_client, clock)
    await graph.resolve([account(hasher, "1")], "web")

    result = await graph.resolve(
        [account(hasher, "2"), account(hasher, "1"), account(hasher, "1")], "web"
    )

    assert [item.index for item in result.rejected] == [1, 2]
