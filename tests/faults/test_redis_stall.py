"""Redis stops replying without closing its connections (a stalled server, here a
stopped process): Decide returns silence within its step deadlines instead of waiting
for the Redis socket timeout, and decides normally once Redis runs again."""

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.harness import SERVICES, ProcessSuite, start_process_suite
from tests.faults.workload import Stubs, decide, decide_request, register_customers
from trustfirst.decision.v1 import decision_pb2

# Below the services' Redis socket timeout (1 s), far above the features and record
# deadlines of decision (50 and 100 ms here).
STALLED_CALL_DEADLINE_SECONDS = 0.9
STALLED_CALLS = 5
ATTEMPTS = 20
# Silence for a missing dependency. Other silences (a profile in the holdout group, say)
# come from a Decide whose dependencies replied.
UNAVAILABLE_REASONS = {
    decision_pb2.SILENCE_REASON_CONSENT_UNAVAILABLE,
    decision_pb2.SILENCE_REASON_FEATURES_UNAVAILABLE,
}


async def _until_served(stubs: Stubs, profile_id: str) -> decision_pb2.DecideResponse:
    """Decide until Redis and consent served the reply, up to ATTEMPTS times; return the
    last reply.

    A cold service, or one whose Redis connections just came back, may miss a step
    deadline on its first calls and return silence.
    """
    reply = await decide(stubs, profile_id)
    for _ in range(ATTEMPTS - 1):
        if reply.silence_reason not in UNAVAILABLE_REASONS:
            break
        await asyncio.sleep(0.1)
        reply = await decide(stubs, profile_id)
    return reply


@pytest.fixture
def suite(tmp_path: Path, model_path: Path) -> Iterator[ProcessSuite]:
    running = start_process_suite(
        tmp_path, model_path, env={"TRUSTFIRST_DECISION_RECORD_DEADLINE_MS": "100"}
    )
    yield running
    running.stop()


async def test_stalled_redis_decide_silent(suite: ProcessSuite) -> None:
    stubs = Stubs.connect({name: suite.target(name) for name in SERVICES})
    redis_process = suite.redis.process
    assert redis_process is not None
    try:
        [profile_id] = await register_customers(stubs, 1, "stall")
        before = await _until_served(stubs, profile_id)
        redis_process.send_signal(signal.SIGSTOP)
        try:
            stalled = [
                await stubs.decision.Decide(
                    decide_request(profile_id), timeout=STALLED_CALL_DEADLINE_SECONDS
                )
                for _ in range(STALLED_CALLS)
            ]
        finally:
            redis_process.send_signal(signal.SIGCONT)
        after = await _until_served(stubs, profile_id)
    finally:
        await stubs.close()

    assert before.silence_reason not in UNAVAILABLE_REASONS
    assert all(reply.silent for reply in stalled)
    assert {reply.silence_reason for reply in stalled} <= UNAVAILABLE_REASONS
    assert after.silence_reason not in UNAVAILABLE_REASONS
