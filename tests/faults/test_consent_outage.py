"""The consent process is killed during Decide load: every Decide in the outage is
silence with CONSENT_UNAVAILABLE, and decisions come back once consent restarts."""

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.harness import ProcessSuite, start_process_suite
from tests.faults.workload import Stubs, decide, register_customers
from trustfirst.decision.v1 import decision_pb2

OUTAGE_DECIDES = 40
RECOVERY_SECONDS = 20.0


@pytest.fixture
def suite(tmp_path: Path, model_path: Path) -> Iterator[ProcessSuite]:
    running = start_process_suite(tmp_path, model_path)
    yield running
    running.stop()


async def _first_action(stubs: Stubs, profiles: list[str], seconds: float) -> str:
    """Decide for the profiles in turn until one gets an action; return it, or ""."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for profile_id in profiles:
            try:
                response = await decide(stubs, profile_id)
            except Exception:
                continue
            if response.action_id:
                return response.action_id
        await asyncio.sleep(0.2)
    return ""


async def test_consent_outage_decides_silence(suite: ProcessSuite) -> None:
    stubs = Stubs.connect({name: suite.target(name) for name in suite.ports})
    try:
        profiles = await register_customers(stubs, 8, "consent-outage-")
        before = await _first_action(stubs, profiles, seconds=5)

        suite.kill("consent")
        outage = [
            await decide(stubs, profiles[index % len(profiles)])
            for index in range(OUTAGE_DECIDES)
        ]

        suite.start("consent")
        after = await _first_action(stubs, profiles, seconds=RECOVERY_SECONDS)
    finally:
        await stubs.close()

    reasons = {decision_pb2.SilenceReason.Name(r.silence_reason) for r in outage}
    assert before != ""
    assert [r.action_id for r in outage] == [""] * OUTAGE_DECIDES
    assert all(r.silent for r in outage)
    assert reasons == {"SILENCE_REASON_CONSENT_UNAVAILABLE"}
    assert after != ""
