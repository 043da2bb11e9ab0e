"""Open-loop latency benchmark of the identity service's Resolve and Lookup.

The script starts a private redis-server and a real identity server process on loopback
ports, loads a population of profiles, then, for each operation and rate, sends requests
at fixed arrival times. Each latency is measured from the request's scheduled send time,
not from when the generator managed to send it, so a stall in the server or in the
generator shows up as latency instead of as a lower request rate.

Usage (from the repository root, with the virtual environment active):

    python bench/identity_bench.py --rates 250,500,1000 --seconds 15

It prints one Markdown table row per operation and rate: p50, p99, p99.9 and maximum
latency in ms, the achieved rate, and the count of each status code.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import secrets
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeAlias

import grpc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "gen" / "python"))

from shared.embedded_redis import EmbeddedRedis, free_port  # noqa: E402
from trustfirst.identity.v1 import identity_pb2, identity_pb2_grpc  # noqa: E402

EMAIL = identity_pb2.IDENTIFIER_KIND_EMAIL
LOYALTY_ID = identity_pb2.IDENTIFIER_KIND_LOYALTY_ID
DEVICE_ID = identity_pb2.IDENTIFIER_KIND_DEVICE_ID
COOKIE_ID = identity_pb2.IDENTIFIER_KIND_COOKIE_ID

CALL_TIMEOUT_SECONDS = 2.0
"""Deadline of every benchmark call, in seconds. A call past it counts as DEADLINE_EXCEEDED."""

CHANNELS = 4
"""Client channels the calls are spread over, so one HTTP/2 connection is not the limit."""

Stub: TypeAlias = "identity_pb2_grpc.IdentityServiceAsyncStub"
"""The type of a stub on an asyncio channel. It exists only in the type stubs."""

Call: TypeAlias = Callable[[Stub, random.Random], Awaitable[object]]


def ident(
    kind: identity_pb2.IdentifierKind.ValueType, value: str
) -> identity_pb2.Identifier:
    return identity_pb2.Identifier(kind=kind, value=value)


def customer(number: int) -> list[identity_pb2.Identifier]:
    """Return the four identifiers of preloaded customer number."""
    return [
        ident(EMAIL, f"customer{number}@example.com"),
        ident(LOYALTY_ID, f"LOY-{number:08d}"),
        ident(DEVICE_ID, f"device-{number}"),
        ident(COOKIE_ID, f"cookie-{number}-0"),
    ]


@dataclass
class Workload:
    """The request mixes of the two measured operations over a preloaded population."""

    population: int
    fresh: int = 0
    """Counter for identifiers no earlier request used."""

    async def lookup(self, stub: Stub, rng: random.Random) -> object:
        """Look up a known email in nine calls out of ten, else an unknown one."""
        number = rng.randrange(self.population)
        if rng.random() < 0.1:
            number += 10 * self.population
        request = identity_pb2.LookupRequest(
            identifiers=[ident(EMAIL, f"customer{number}@example.com")]
        )
        return await stub.Lookup(request, timeout=CALL_TIMEOUT_SECONDS)

    async def resolve(self, stub: Stub, rng: random.Random) -> object:
        """Resolve a returning customer (70 %), a known customer with a new cookie (20 %)
        or a new customer (10 %)."""
        draw = rng.random()
        self.fresh += 1
        if draw < 0.1:
            identifiers = [
                ident(EMAIL, f"new{self.fresh}@example.com"),
                ident(DEVICE_ID, f"new-device-{self.fresh}"),
            ]
        else:
            number = rng.randrange(self.population)
            known = customer(number)
            identifiers = [known[0], known[2]]
            if draw < 0.3:
                identifiers.append(ident(COOKIE_ID, f"cookie-{number}-{self.fresh}"))
        request = identity_pb2.ResolveRequest(identifiers=identifiers, source="bench")
        return await stub.Resolve(request, timeout=CALL_TIMEOUT_SECONDS)


@dataclass
class RunResult:
    operation: str
    rate: int
    seconds: float
    latencies_ms: list[float] = field(default_factory=list)
    codes: Counter[str] = field(default_factory=Counter)
    span_seconds: float = 0.0
    server_cpu_seconds: float = 0.0
    error_samples: dict[str, str] = field(default_factory=dict)
    """The details of the first error of each status code."""

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.latencies_ms)
        if not ordered:
            return float("nan")
        position = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
        return ordered[position]

    def row(self) -> str:
        """Return the result as a row of the Markdown table that main prints."""
        count = len(self.latencies_ms)
        achieved = count / self.span_seconds if self.span_seconds else 0.0
        codes = ", ".join(f"{code} {n}" for code, n in sorted(self.codes.items()))
        cpu_ms = 1000 * self.server_cpu_seconds / max(1, count)
        cells = [
            self.operation,
            str(self.rate),
            f"{achieved:.0f}",
            f"{self.percentile(0.5):.2f}",
            f"{self.percentile(0.99):.2f}",
            f"{self.percentile(0.999):.2f}",
            f"{max(self.latencies_ms, default=0):.2f}",
            f"{cpu_ms:.2f}",
            codes,
        ]
        return "| " + " | ".join(cells) + " |"


async def open_loop(
    stubs: list[Stub],
    call: Call,
    operation: str,
    rate: int,
    seconds: float,
    seed: int,
) -> RunResult:
    """Send rate requests per second for seconds at fixed times and record each latency
    from its scheduled time."""
    loop = asyncio.get_running_loop()
    rng = random.Random(seed)
    result = RunResult(operation, rate, seconds)
    total = int(rate * seconds)
    start = loop.time() + 0.05
    tasks = []

    async def one(index: int, scheduled: float) -> None:
        code = "OK"
        try:
            await call(stubs[index % len(stubs)], rng)
        except grpc.aio.AioRpcError as error:
            code = error.code().name
            result.error_samples.setdefault(code, error.details() or "")
        finished = loop.time()
        result.latencies_ms.append((finished - scheduled) * 1000)
        result.codes[code] += 1
        result.span_seconds = max(result.span_seconds, finished - start)

    for index in range(total):
        scheduled = start + index / rate
        delay = scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(index, scheduled)))
    await asyncio.gather(*tasks)
    return result


async def preload(stubs: list[Stub], population: int) -> float:
    """Resolve every customer once, 64 calls at a time, and return the seconds it took."""
    started = time.perf_counter()
    queue = iter(range(population))

    async def worker(stub: Stub) -> None:
        for number in queue:
            request = identity_pb2.ResolveRequest(
                identifiers=customer(number), source="preload"
            )
            await stub.Resolve(request, timeout=10)

    await asyncio.gather(*(worker(stubs[i % len(stubs)]) for i in range(64)))
    return time.perf_counter() - started


class IdentityProcess:
    """The identity server as a child process, with its stderr drained by a thread."""

    def __init__(self, redis_url: str) -> None:
        env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith("TRUSTFIRST_")
        }
        # The WARNING level hides the "identity started" line, so the port is chosen here.
        port = free_port()
        env.update(
            REDIS_URL=redis_url,
            TRUSTFIRST_IDENTITY_PORT=str(port),
            TRUSTFIRST_IDENTITY_HASH_KEY=secrets.token_hex(32),
            TRUSTFIRST_IDENTITY_LOG_LEVEL="WARNING",
            TRUSTFIRST_IDENTITY_GRACE_SECONDS="1",
            PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "gen" / "python")]),
        )
        self.address = f"127.0.0.1:{port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "services.identity"],
            cwd=ROOT,
            env=env,
            stderr=subprocess.PIPE,
        )
        self.errors: list[str] = []
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.errors.append(line.decode(errors="replace"))

    def cpu_seconds(self) -> float:
        """Return the user and system CPU time the server process used so far (Linux)."""
        try:
            fields = (
                Path(f"/proc/{self.process.pid}/stat")
                .read_text()
                .rsplit(")", 1)[1]
                .split()
            )
        except OSError:
            return 0.0
        ticks = int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


async def wait_ready(address: str, timeout_seconds: float = 30) -> None:
    deadline = time.monotonic() + timeout_seconds
    async with grpc.aio.insecure_channel(address) as channel:
        while True:
            try:
                await asyncio.wait_for(channel.channel_ready(), timeout=1)
                return
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"identity server at {address} did not start"
                    ) from None


async def run(args: argparse.Namespace) -> list[RunResult]:
    with EmbeddedRedis(appendfsync="everysec") as redis_server:
        server = IdentityProcess(redis_server.url)
        try:
            await wait_ready(server.address)
            channels = [
                grpc.aio.insecure_channel(
                    server.address, options=[("grpc.use_local_subchannel_pool", 1)]
                )
                for _ in range(CHANNELS)
            ]
            stubs = [
                identity_pb2_grpc.IdentityServiceStub(channel) for channel in channels
            ]
            loaded = await preload(stubs, args.profiles)
            print(
                f"preloaded {args.profiles} customers in {loaded:.1f} s",
                file=sys.stderr,
            )

            workload = Workload(args.profiles)
            operations: dict[str, Call] = {
                "Lookup": workload.lookup,
                "Resolve": workload.resolve,
            }
            results = []
            for name in args.operations:
                for rate in args.rates:
                    call = operations[name]
                    await open_loop(stubs, call, name, rate, args.warmup, seed=rate)
                    cpu_before = server.cpu_seconds()
                    result = await open_loop(
                        stubs, call, name, rate, args.seconds, seed=rate + 1
                    )
                    result.server_cpu_seconds = server.cpu_seconds() - cpu_before
                    print(result.row(), result.error_samples or "", file=sys.stderr)
                    results.append(result)
            for channel in channels:
                await channel.close()
        finally:
            server.stop()
        if server.errors:
            print("".join(server.errors[-20:]), file=sys.stderr)
    return results


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rates",
        default="250,500,1000",
        type=lambda text: [int(item) for item in text.split(",")],
        help="comma-separated request rates to measure, in requests per second",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=15.0,
        help="length of each measured run, in seconds",
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=3.0,
        help="unmeasured run before each rate, in seconds",
    )
    parser.add_argument(
        "--profiles", type=int, default=20_000, help="customers loaded before measuring"
    )
    parser.add_argument(
        "--operations",
        default="Lookup,Resolve",
        type=lambda text: text.split(","),
        help="comma-separated operations to measure: Lookup, Resolve",
    )
    parser.add_argument(
        "--json", type=Path, help="also write the raw results to this file"
    )
    return parser.parse_args()


def main() -> None:
    args = parse_arguments()
    results = asyncio.run(run(args))

    machine = f"{platform.machine()}, {os.cpu_count()} CPUs"
    print(f"machine: {machine}, Python {platform.python_version()}")
    print(f"load average (1 min) after the run: {os.getloadavg()[0]:.2f}")
    print(
        "| RPC | target rate/s | achieved rate/s | p50 ms | p99 ms | p99.9 ms | max ms "
        "| server CPU ms per call | status codes |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for result in results:
        print(result.row())
    if args.json:
        payload = [
            {
                "operation": item.operation,
                "rate": item.rate,
                "latencies_ms": item.latencies_ms,
                "codes": dict(item.codes),
                "error_samples": item.error_samples,
                "server_cpu_seconds": item.server_cpu_seconds,
            }
            for item in results
        ]
        args.json.write_text(json.dumps(payload))


if __name__ == "__main__":
    main()
