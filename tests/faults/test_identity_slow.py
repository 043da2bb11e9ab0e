"""Identity slower than decision's deadline: the deadline holds, the Decide is silence
with IDENTITY_UNAVAILABLE, and the caller's own deadline reaches the identity hop."""

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from shared.embedded_redis import free_port
from tests.faults.harness import ProcessSuite, start_process_suite
from tests.faults.proxy import DelayingProxy
from tests.faults.workload import (
    CALL_TIMEOUT_SECONDS,
    CHANNEL,
    TOUCHPOINT,
    Stubs,
    email,
    register_customers,
)
from trustfirst.decision.v1 import decision_pb2

IDENTITY_DEADLINE_MS = 300
LOOKUP = "/trustfirst.identity.v1.IdentityService/Lookup"
ROUNDING_SECONDS = 0.05
"""Slack for the grpc-timeout header, which carries a deadline rounded up."""


@dataclass
class SlowIdentity:
    suite: ProcessSuite
    proxy: DelayingProxy
    stubs: Stubs


@pytest.fixture(scope="module")
async def slow_suite(
    tmp_path_factory: pytest.TempPathFactory, model_path: Path
) -> AsyncIterator[SlowIdentity]:
    tmp_path = tmp_path_factory.mktemp("slow-identity")
    ports = {name: free_port() for name in ("identity", "consent", "decision")}
    proxy = DelayingProxy(f"127.0.0.1:{ports['identity']}")
    await proxy.start()
    suite = start_process_suite(
        tmp_path,
        model_path,
        env={"TRUSTFIRST_DECISION_IDENTITY_DEADLINE_MS": str(IDENTITY_DEADLINE_MS)},
        decision_targets={"identity": proxy.address},
        ports=ports,
    )
    stubs = Stubs.connect({name: suite.target(name) for name in suite.ports})
    try:
        yield SlowIdentity(suite, proxy, stubs)
    finally:
        await stubs.close()
        suite.stop()
        await proxy.stop()


@pytest.fixture
def slow(slow_suite: SlowIdentity) -> SlowIdentity:
    """The module's suite with the proxy reset: no delay, no calls seen."""
    slow_suite.proxy.delay_seconds = 0.0
    slow_suite.proxy.calls.clear()
    return slow_suite


async def _decide_by_email(
    stubs: Stubs, name: str, deadline_seconds: float = CALL_TIMEOUT_SECONDS
) -> decision_pb2.DecideResponse:
    request = decision_pb2.DecideRequest(
        identifiers=[email(name)], touchpoint=TOUCHPOINT, channel=CHANNEL
    )
    response: decision_pb2.DecideResponse = await stubs.decision.Decide(
        request, timeout=deadline_seconds
    )
    return response


async def test_identity_fast_gives_action(slow: SlowIdentity) -> None:
    await register_customers(slow.stubs, 3, "slow-identity-")

    responses = [
        await _decide_by_email(slow.stubs, f"slow-identity-{i}") for i in range(3)
    ]

    assert any(response.action_id for response in responses)
    assert slow.proxy.calls[0].method == LOOKUP


async def test_identity_slow_gives_silence(slow: SlowIdentity) -> None:
    await register_customers(slow.stubs, 1, "slow-identity-")
    slow.proxy.delay_seconds = 3 * IDENTITY_DEADLINE_MS / 1000

    response = await _decide_by_email(slow.stubs, "slow-identity-0")

    assert response.silent is True
    assert response.action_id == ""
    assert response.silence_reason == decision_pb2.SILENCE_REASON_IDENTITY_UNAVAILABLE


async def test_identity_slow_call_abandoned(slow: SlowIdentity) -> None:
    await register_customers(slow.stubs, 1, "slow-identity-")
    slow.proxy.delay_seconds = 3 * IDENTITY_DEADLINE_MS / 1000

    await _decide_by_email(slow.stubs, "slow-identity-0")
    # The cancellation reaches the proxy just after decision has sent its response.
    await asyncio.wait_for(slow.proxy.calls[0].finished.wait(), timeout=5)
    calls = list(slow.proxy.calls)

    # Lookup is retried on UNAVAILABLE only, so a missed deadline is one call.
    assert len(calls) == 1
    assert calls[0].time_remaining is not None
    assert calls[0].time_remaining <= IDENTITY_DEADLINE_MS / 1000 + ROUNDING_SECONDS
    assert calls[0].cancelled is True
    assert calls[0].forwarded is False


async def test_caller_deadline_reaches_identity(slow: SlowIdentity) -> None:
    await register_customers(slow.stubs, 1, "slow-identity-")
    slow.proxy.delay_seconds = 1.0

    # The caller allows less than decision's own identity deadline would.
    caller_timeout = IDENTITY_DEADLINE_MS / 1000 / 2
    with pytest.raises(grpc.aio.AioRpcError):
        await _decide_by_email(
            slow.stubs, "slow-identity-0", deadline_seconds=caller_timeout
        )
    remaining = slow.proxy.calls[0].time_remaining

    assert remaining is not None
    assert remaining <= caller_timeout + ROUNDING_SECONDS
