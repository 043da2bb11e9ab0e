"""SIGTERM to a service under load: every call in flight at the signal still succeeds.

Decision runs as a process; identity and consent run in this process, with consent behind
a proxy that delays every CheckConsent by PROXY_DELAY_SECONDS. So each Decide stays in
the decision server for at least that long, and the proxy records which calls had reached
the service's handler before the signal was sent. Calls that had not reached it may fail,
with the codes of a server that is going away.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pydantic import SecretStr

from services.consent.app import create_service as create_consent
from services.consent.settings import ConsentSettings
from services.identity.app import create_service as create_identity
from services.identity.settings import IdentitySettings
from shared.embedded_redis import free_port
from tests.decision.proxy import ForwardingProxy
from trustfirst.consent.v1 import consent_pb2
from trustfirst.decision.v1 import decision_pb2, decision_pb2_grpc

CHECK_CONSENT = "/trustfirst.consent.v1.ConsentService/CheckConsent"
PROXY_DELAY_SECONDS = 0.6
GRACE_SECONDS = 5
# Open-loop load: one Decide every CALL_INTERVAL_SECONDS for LOAD_SECONDS, with SIGTERM
# sent SIGNAL_AFTER_SECONDS after the first call; at most 80 calls in all.
CALL_INTERVAL_SECONDS = 0.025
LOAD_SECONDS = 2.0
SIGNAL_AFTER_SECONDS = 1.0
CALL_TIMEOUT_SECONDS = 15.0


class RecordingProxy(ForwardingProxy):
    """A forwarding proxy that records when each subject's CheckConsent arrived."""

    def __init__(self, target: str) -> None:
        super().__init__(target)
        self.arrivals: dict[str, float] = {}

    async def forward(
        self, method: str, request: bytes, context: grpc.aio.ServicerContext[Any, Any]
    ) -> bytes:
        if method == CHECK_CONSENT:
            subject = consent_pb2.CheckConsentRequest.FromString(request).subject_id
            self.arrivals[subject] = time.monotonic()
        return await super().forward(method, request, context)


@dataclass
class CallResult:
    """One Decide of the load: when it started and ended, and its status code."""

    profile_id: str
    started: float
    ended: float = 0.0
    code: grpc.StatusCode = grpc.StatusCode.OK


@dataclass
class LoadRun:
    results: list[CallResult] = field(default_factory=list)
    signal_time: float = 0.0
    health: list[int] = field(default_factory=list)
    exit_code: int | None = None


@dataclass
class Backends:
    identity_target: str
    proxy: RecordingProxy


@pytest.fixture(scope="module")
async def backends(redis_url: str) -> AsyncIterator[Backends]:
    """Identity and consent in-process, consent behind the delaying proxy."""
    identity = create_identity(
        IdentitySettings(
            port=0,
            redis_url=redis_url,
            hash_key=SecretStr("sigterm-tests-identity-key-0123456789abcdef"),
            hash_key_file=None,
            grace_seconds=0,
        )
    )
    # The session's Redis writes its AOF once a second, so durability is only warned
    # about. Identity events are not needed here, and their consumer can delay stop().
    consent = create_consent(
        ConsentSettings(
            port=0,
            redis_url=redis_url,
            grace_seconds=0,
            durability="warn",
            identity_events=False,
        )
    )
    await identity.start()
    await consent.start()
    proxy = RecordingProxy(f"127.0.0.1:{consent.port}")
    proxy.delay_seconds = PROXY_DELAY_SECONDS
    await proxy.start()
    try:
        yield Backends(identity_target=f"127.0.0.1:{identity.port}", proxy=proxy)
    finally:
        await proxy.stop()
        await consent.stop(grace=0)
        await identity.stop(grace=0)


def _start_decision(
    backends: Backends, redis_url: str, model: Path, log_path: Path
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = dict(os.environ)
    env.update(
        {
            "REDIS_URL": redis_url,
            "TRUSTFIRST_DECISION_PORT": str(port),
            "TRUSTFIRST_DECISION_IDENTITY_TARGET": backends.identity_target,
            "TRUSTFIRST_DECISION_CONSENT_TARGET": backends.proxy.target,
            "TRUSTFIRST_DECISION_CONSENT_DEADLINE_MS": "10000",
            "TRUSTFIRST_DECISION_FEATURES_DEADLINE_MS": "5000",
            "TRUSTFIRST_DECISION_MODEL_PATH": str(model),
            "TRUSTFIRST_DECISION_GRACE_SECONDS": str(GRACE_SECONDS),
        }
    )
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.decision"],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    return process, f"127.0.0.1:{port}"


async def _wait_serving(
    stub: health_pb2_grpc.HealthAsyncStub, process: subprocess.Popen[bytes]
) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, "decision exited during start-up"
        try:
            reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=0.5)
            if reply.status == health_pb2.HealthCheckResponse.SERVING:
                return
        except grpc.aio.AioRpcError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError("decision was not SERVING within 30 s")


async def _watch_health(stub: health_pb2_grpc.HealthAsyncStub, seen: list[int]) -> None:
    """Record every status the Watch stream sends until NOT_SERVING or the stream ends."""
    with_errors_ignored: Any = stub.Watch(health_pb2.HealthCheckRequest())
    try:
        async for reply in with_errors_ignored:
            seen.append(reply.status)
            if reply.status == health_pb2.HealthCheckResponse.NOT_SERVING:
                return
    except grpc.aio.AioRpcError:
        return
    finally:
        with_errors_ignored.cancel()


async def _decide(
    stub: decision_pb2_grpc.DecisionServiceAsyncStub, result: CallResult
) -> None:
    request = decision_pb2.DecideRequest(
        profile_id=result.profile_id,
        touchpoint="checkout",
        channel=consent_pb2.CHANNEL_WEB,
    )
    try:
        await stub.Decide(request, timeout=CALL_TIMEOUT_SECONDS)
    except grpc.aio.AioRpcError as error:
        result.code = error.code()
    result.ended = time.monotonic()


async def _run_load(target: str, process: subprocess.Popen[bytes]) -> LoadRun:
    """Send the open-loop load, SIGTERM the process part way, and wait for every call."""
    run = LoadRun()
    async with grpc.aio.insecure_channel(target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        await _wait_serving(health, process)
        watcher = asyncio.create_task(_watch_health(health, run.health))
        stub = decision_pb2_grpc.DecisionServiceStub(channel)
        calls: list[asyncio.Task[None]] = []
        first = time.monotonic()
        number = 0
        while time.monotonic() - first < LOAD_SECONDS:
            if not run.signal_time and time.monotonic() - first >= SIGNAL_AFTER_SECONDS:
                run.signal_time = time.monotonic()
                process.send_signal(signal.SIGTERM)
            result = CallResult(f"sigterm-{number:03d}", time.monotonic())
            run.results.append(result)
            calls.append(asyncio.create_task(_decide(stub, result)))
            number += 1
            await asyncio.sleep(CALL_INTERVAL_SECONDS)
        await asyncio.gather(*calls)
        await asyncio.wait_for(watcher, timeout=GRACE_SECONDS)
    run.exit_code = await asyncio.to_thread(process.wait, GRACE_SECONDS + 10)
    return run


@pytest.fixture(scope="module")
async def load_run(
    backends: Backends,
    redis_url: str,
    suite_model: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[LoadRun]:
    """One load run against a decision process that gets SIGTERM part way through."""
    log_path = tmp_path_factory.mktemp("sigterm") / "decision.log"
    process, target = _start_decision(backends, redis_url, suite_model, log_path)
    try:
        yield await _run_load(target, process)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _in_flight(run: LoadRun, proxy: RecordingProxy) -> list[CallResult]:
    """Return the calls that had reached the server and not ended when SIGTERM was sent."""
    return [
        result
        for result in run.results
        if proxy.arrivals.get(result.profile_id, float("inf")) < run.signal_time
        and result.ended > run.signal_time
    ]


async def test_sigterm_drains_in_flight_calls(
    load_run: LoadRun, backends: Backends
) -> None:
    in_flight = _in_flight(load_run, backends.proxy)
    failed = [
        (r.profile_id, r.code.name) for r in in_flight if r.code != grpc.StatusCode.OK
    ]

    assert len(in_flight) >= 5
    assert failed == []


async def test_sigterm_failures_never_reached_handler(
    load_run: LoadRun, backends: Backends
) -> None:
    failed = [r for r in load_run.results if r.code != grpc.StatusCode.OK]
    reached = [r.profile_id for r in failed if r.profile_id in backends.proxy.arrivals]

    assert reached == []


async def test_sigterm_failures_are_shutdown_codes(load_run: LoadRun) -> None:
    # UNAVAILABLE: the call found no server (connection refused, or GOAWAY before it
    # was sent). CANCELLED: the server's transport had accepted the call, but the server
    # began its shutdown before it handed the call to the service, so gRPC cancelled it.
    codes = {r.code.name for r in load_run.results if r.code != grpc.StatusCode.OK}

    assert codes <= {"UNAVAILABLE", "CANCELLED"}


async def test_sigterm_no_failure_before_signal(load_run: LoadRun) -> None:
    early = [
        r.profile_id
        for r in load_run.results
        if r.code != grpc.StatusCode.OK and r.ended < load_run.signal_time
    ]

    assert early == []


async def test_sigterm_health_not_serving(load_run: LoadRun) -> None:
    assert load_run.health == [
        health_pb2.HealthCheckResponse.SERVING,
        health_pb2.HealthCheckResponse.NOT_SERVING,
    ]


async def test_sigterm_process_exits_zero(load_run: LoadRun) -> None:
    assert load_run.exit_code == 0
