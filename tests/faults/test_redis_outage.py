"""Redis is killed during load and restarted on the same port and data: calls fail with
UNAVAILABLE or return silence, the services recover by themselves, and every write they
acknowledged is still there."""

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from tests.faults.harness import ProcessSuite, start_process_suite
from tests.faults.workload import (
    CALL_TIMEOUT_SECONDS,
    Stubs,
    consent_request,
    decide,
    email,
    purchase_request,
    register_customers,
)
from trustfirst.identity.v1 import identity_pb2

ROUNDS_PER_PHASE = 15
RECOVERY_SECONDS = 20.0


@dataclass
class Load:
    """Outcomes of the load, per phase, and the writes the services acknowledged."""

    outcomes: dict[str, Counter[str]] = field(default_factory=dict)
    actions: Counter[str] = field(default_factory=Counter)
    consent_keys: dict[str, str] = field(default_factory=dict)
    resolved: dict[str, str] = field(default_factory=dict)
    outcome_events: dict[str, str] = field(default_factory=dict)

    def count(self, phase: str, outcome: str) -> None:
        self.outcomes.setdefault(phase, Counter())[outcome] += 1


async def _round(
    stubs: Stubs, load: Load, phase: str, index: int, profile_id: str
) -> bool:
    """Make one call of each kind; return whether all of them succeeded."""
    name = f"{phase}-{index}"
    calls = {
        "resolve": stubs.identity.Resolve(
            identity_pb2.ResolveRequest(identifiers=[email(name)], source="web"),
            timeout=CALL_TIMEOUT_SECONDS,
        ),
        "record": stubs.consent.RecordConsent(
            consent_request(profile_id, f"load-{name}"), timeout=CALL_TIMEOUT_SECONDS
        ),
        "outcome": stubs.decision.RecordOutcome(
            purchase_request(profile_id, f"load-{name}", days_ago=1),
            timeout=CALL_TIMEOUT_SECONDS,
        ),
        "decide": decide(stubs, profile_id),
    }
    all_ok = True
    for kind, call in calls.items():
        try:
            response = await call
        except grpc.aio.AioRpcError as error:
            load.count(phase, f"{kind}:{error.code().name}")
            all_ok = False
            continue
        if kind == "resolve":
            load.resolved[name] = response.profile_id
        elif kind == "record":
            load.consent_keys[f"load-{name}"] = profile_id
        elif kind == "outcome":
            load.outcome_events[f"load-{name}"] = profile_id
        elif response.silent:
            all_ok = False
            load.count(phase, "decide:silent")
        else:
            load.actions[phase] += 1
        load.count(phase, f"{kind}:OK")
    return all_ok


@pytest.fixture
def suite(tmp_path: Path, model_path: Path) -> Iterator[ProcessSuite]:
    running = start_process_suite(tmp_path, model_path)
    yield running
    running.stop()


async def _run_load(suite: ProcessSuite, stubs: Stubs, profiles: list[str]) -> Load:
    load = Load()
    for index in range(ROUNDS_PER_PHASE):
        await _round(stubs, load, "before", index, profiles[index % len(profiles)])

    suite.redis.kill()
    for index in range(ROUNDS_PER_PHASE):
        await _round(stubs, load, "outage", index, profiles[index % len(profiles)])

    suite.redis.start()
    deadline = time.monotonic() + RECOVERY_SECONDS
    index = 0
    while time.monotonic() < deadline:
        index += 1
        if await _round(
            stubs, load, "recovering", index, profiles[index % len(profiles)]
        ):
            break
    for index in range(ROUNDS_PER_PHASE):
        await _round(stubs, load, "after", index, profiles[index % len(profiles)])
    return load


async def _lost_writes(stubs: Stubs, load: Load) -> list[str]:
    """Repeat every acknowledged write and look up every resolved identifier; return
    the writes that the services no longer have."""
    lost = []
    for key, profile_id in load.consent_keys.items():
        replay = await stubs.consent.RecordConsent(
            consent_request(profile_id, key), timeout=CALL_TIMEOUT_SECONDS
        )
        if not replay.replayed:
            lost.append(f"consent {key}")
    for event_id, profile_id in load.outcome_events.items():
        again = await stubs.decision.RecordOutcome(
            purchase_request(profile_id, event_id, days_ago=1),
            timeout=CALL_TIMEOUT_SECONDS,
        )
        if not again.duplicate:
            lost.append(f"outcome {event_id}")
    for name, profile_id in load.resolved.items():
        found = await stubs.identity.Lookup(
            identity_pb2.LookupRequest(identifiers=[email(name)]),
            timeout=CALL_TIMEOUT_SECONDS,
        )
        if found.profile_id != profile_id:
            lost.append(f"identifier {name}")
    return lost


async def test_redis_outage(suite: ProcessSuite) -> None:
    stubs = Stubs.connect({name: suite.target(name) for name in suite.ports})
    try:
        profiles = await register_customers(stubs, 5, "redis-outage-")
        load = await _run_load(suite, stubs, profiles)
        lost = await _lost_writes(stubs, load)
        alive = {name: suite.alive(name) for name in suite.services}
    finally:
        await stubs.close()

    failures = {
        outcome
        for phase in load.outcomes.values()
        for outcome in phase
        if not outcome.endswith(":OK") and outcome != "decide:silent"
    }
    outage = load.outcomes["outage"]
    assert failures <= {
        "resolve:UNAVAILABLE",
        "record:UNAVAILABLE",
        "outcome:UNAVAILABLE",
        "decide:UNAVAILABLE",
    }
    assert load.actions["outage"] == 0
    assert outage["record:OK"] == 0
    assert load.outcomes["after"]["decide:OK"] == ROUNDS_PER_PHASE
    # Exploration may draw silence now and then, so not every Decide is an action.
    assert load.actions["after"] > 0
    assert load.outcomes["after"]["record:OK"] == ROUNDS_PER_PHASE
    assert load.outcomes["after"]["resolve:OK"] == ROUNDS_PER_PHASE
    assert load.outcomes["after"]["outcome:OK"] == ROUNDS_PER_PHASE
    assert lost == []
    assert alive == {"identity": True, "consent": True, "decision": True}
