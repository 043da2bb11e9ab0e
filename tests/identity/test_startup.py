"""Starting the identity service: refusal without a key, and the real entry point."""

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.identity.app import create_service
from services.identity.hashing import HashKeyError
from services.identity.settings import IdentitySettings
from tests.identity.conftest import HASH_KEY

ROOT = Path(__file__).resolve().parents[2]


def service_environment(redis_url: str, **extra: str) -> dict[str, str]:
    """Return the process environment without identity settings, plus extra ones."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("TRUSTFIRST_")
    }
    env.update(REDIS_URL=redis_url, TRUSTFIRST_IDENTITY_PORT="0", **extra)
    return env


def test_create_service_without_key(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TRUSTFIRST_IDENTITY_HASH_KEY", raising=False)
    monkeypatch.delenv("TRUSTFIRST_IDENTITY_HASH_KEY_FILE", raising=False)

    with pytest.raises(HashKeyError, match="no identifier hash key"):
        create_service(IdentitySettings(port=0, redis_url=redis_url))


def test_entry_point_refuses_without_key(redis_url: str) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "services.identity"],
        cwd=ROOT,
        env=service_environment(redis_url),
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert completed.returncode == 2
    assert "no identifier hash key" in completed.stderr
    assert "TRUSTFIRST_IDENTITY_HASH_KEY_FILE" in completed.stderr


async def test_entry_point_serves_and_stops(redis_url: str) -> None:
    env = service_environment(
        redis_url,
        TRUSTFIRST_IDENTITY_HASH_KEY=HASH_KEY,
        TRUSTFIRST_IDENTITY_GRACE_SECONDS="0",
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.identity",
        cwd=ROOT,
        env=env,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None

    try:
        lines: list[str] = []
        address = await asyncio.wait_for(
            read_address(process.stderr, lines), timeout=30
        )
        async with grpc.aio.insecure_channel(address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            response = await health.Check(health_pb2.HealthCheckRequest())
        process.send_signal(signal.SIGTERM)
        returncode = await asyncio.wait_for(process.wait(), timeout=30)
        lines.append((await process.stderr.read()).decode())
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()

    assert response.status == health_pb2.HealthCheckResponse.SERVING
    assert returncode == 0
    assert "identity stopped" in "".join(lines)
    assert HASH_KEY not in "".join(lines)


async def read_address(stream: asyncio.StreamReader, lines: list[str]) -> str:
    """Read JSON log lines into lines until the service logs the address it listens on."""
    while line := await stream.readline():
        lines.append(line.decode())
        entry = json.loads(line)
        if entry.get("message") == "identity started":
            return str(entry["address"])
    raise AssertionError("the service exited before it logged its address")
