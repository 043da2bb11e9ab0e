"""Open-loop latency benchmark of CheckConsent with 20 pairs per call.

The script starts a private redis-server (AOF, fsync on every write) and a real consent
server process (``python -m services.consent``) on loopback ports, records consent for a
population of subjects, then sends CheckConsent calls at fixed arrival times. Call i of a
run is due at ``start + i / rate`` whatever happened to earlier calls. Its latency is
counted from that due time, so a stall in the server or in the generator shows up as
latency instead of as a lower request rate. Client processes share the schedule: process
p of P sends calls p, p + P, p + 2P, ...; each sends every call as an asyncio task at its
due time, without waiting for the calls before it.

Usage (from the repository root, with the virtual environment active):

    python bench/consent_bench.py --rates 250,500,1000 --seconds 15

It prints one Markdown table row per rate: p50, p99, p99.9 and maximum latency in ms,
the offered and achieved rates, the CPU the server and Redis used, and the count of each
status code. ``--target HOST:PORT`` measures a consent server that is already running
(its Redis must already hold the subjects, for example from an earlier run's seeding).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import os
import platform
import random
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc
import redis
import redis.asyncio
from pydantic import SecretStr

from shared.embedded_redis import EmbeddedRedis, free_port
from trustfirst.consent.v1 import consent_pb2 as pb
from trustfirst.consent.v1 import consent_pb2_grpc

PAIRS = [
    pb.PurposeChannel(purpose=purpose, channel=channel)
    for purpose in pb.Purpose.values()[1:]
    for channel in pb.Channel.values()[1:]
][:20]
"""The 20 pairs of every CheckConsent call: 4 purposes x 6 channels, first 20."""

START_DELAY_SECONDS = 1.0
"""Time between handing a run to the client processes and its first due call."""

SUBJECT_HASH_KEY = "consent-benchmark-subject-hash-key-01234567"
"""subject_hash_key of the server the script starts; it only names erasure records."""


def subject_id(number: int) -> str:
    return f"bench-{number:06d}"


@dataclass(frozen=True)
class RunSpec:
    """One run of one client process: where, how fast, how long, and its share."""

    target: str
    rate: float
    warmup_seconds: float
    seconds: float
    subjects: int
    deadline_seconds: float
    start_at: float
    process_index: int
    processes: int


@dataclass
class ShareResult:
    """Measurements of one client process: latencies of the measured calls in ms, their
    status codes, and when the last of them completed (monotonic clock)."""

    latencies_ms: list[float] = field(default_factory=list)
    codes: Counter[str] = field(default_factory=Counter)
    last_done: float = 0.0
    late_sends: int = 0


@dataclass
class RunResult:
    """One row of the report."""

    rate: float
    seconds: float
    calls: int
    p50_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    achieved_rate: float
    codes: dict[str, int]
    late_sends: int
    server_cpu_percent: float | None = None
    redis_cpu_percent: float | None = None


def percentile(ordered: list[float], share: float) -> float:
    """Return the nearest-rank percentile of an ascending list (share in 0..1)."""
    if not ordered:
        return math.nan
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


async def _run_share(spec: RunSpec) -> ShareResult:
    result = ShareResult()
    loop = asyncio.get_running_loop()
    requests = [
        pb.CheckConsentRequest(subject_id=subject_id(number), pairs=PAIRS)
        for number in random.sample(range(spec.subjects), min(spec.subjects, 2000))
    ]
    total = int(spec.rate * (spec.warmup_seconds + spec.seconds))
    measured_from = spec.start_at + spec.warmup_seconds

    async with grpc.aio.insecure_channel(spec.target) as channel:
        await asyncio.wait_for(channel.channel_ready(), timeout=10)
        stub = consent_pb2_grpc.ConsentServiceStub(channel)

        async def call(due: float, request: pb.CheckConsentRequest) -> None:
            try:
                await stub.CheckConsent(request, timeout=spec.deadline_seconds)
                code = "OK"
            except grpc.aio.AioRpcError as error:
                code = error.code().name
            done = loop.time()
            if due >= measured_from:
                result.latencies_ms.append((done - due) * 1000)
                result.codes[code] += 1
                result.last_done = max(result.last_done, done)

        tasks = []
        for index in range(spec.process_index, total, spec.processes):
            due = spec.start_at + index / spec.rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -0.001 and due >= measured_from:
                result.late_sends += 1
            request = requests[index % len(requests)]
            tasks.append(asyncio.create_task(call(due, request)))
        await asyncio.gather(*tasks)
    return result


def _client_main(spec: RunSpec) -> ShareResult:
    """Entry point of a client process: run its share of the schedule."""
    # The default event loop's clock is time.monotonic, which is system-wide on Linux,
    # so every process reads start_at on the same clock.
    return asyncio.run(_run_share(spec))


def run_rate(
    pool: Any,
    target: str,
    rate: float,
    args: argparse.Namespace,
) -> RunResult:
    """Send one run at rate with every client process and merge their results."""
    start_at = time.monotonic() + START_DELAY_SECONDS
    specs = [
        RunSpec(
            target=target,
            rate=rate,
            warmup_seconds=args.warmup,
            seconds=args.seconds,
            subjects=args.subjects,
            deadline_seconds=args.deadline,
            start_at=start_at,
            process_index=index,
            processes=args.clients,
        )
        for index in range(args.clients)
    ]
    shares: list[ShareResult] = pool.map(_client_main, specs)

    latencies = sorted(value for share in shares for value in share.latencies_ms)
    codes: Counter[str] = Counter()
    for share in shares:
        codes.update(share.codes)
    measured_from = start_at + args.warmup
    last_done = max(share.last_done for share in shares)
    elapsed = max(last_done - measured_from, args.seconds)
    return RunResult(
        rate=rate,
        seconds=args.seconds,
        calls=len(latencies),
        p50_ms=percentile(latencies, 0.50),
        p99_ms=percentile(latencies, 0.99),
        p999_ms=percentile(latencies, 0.999),
        max_ms=latencies[-1] if latencies else math.nan,
        achieved_rate=codes["OK"] / elapsed,
        codes=dict(codes),
        late_sends=sum(share.late_sends for share in shares),
    )


class ConsentProcess:
    """A consent server process on a free loopback port, started and stopped here."""

    def __init__(self, redis_url: str) -> None:
        self.port = free_port()
        env = dict(
            os.environ,
            REDIS_URL=redis_url,
            TRUSTFIRST_CONSENT_HOST="127.0.0.1",
            TRUSTFIRST_CONSENT_PORT=str(self.port),
            TRUSTFIRST_CONSENT_LOG_LEVEL="WARNING",
            TRUSTFIRST_CONSENT_SUBJECT_HASH_KEY=SUBJECT_HASH_KEY,
        )
        self.process = subprocess.Popen(
            [sys.executable, "-m", "services.consent"], env=env
        )

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def cpu_seconds(pid: int) -> float:
    """Return the user plus system CPU seconds of a process, from /proc (Linux)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def redis_cpu_seconds(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def seed(target: str, subjects: int) -> None:
    """Record 12 pairs for every subject, and jurisdiction US for every third one."""
    rng = random.Random(7)
    actions = pb.ConsentAction.values()[1:]
    async with grpc.aio.insecure_channel(target) as channel:
        await asyncio.wait_for(channel.channel_ready(), timeout=30)
        stub = consent_pb2_grpc.ConsentServiceStub(channel)

        async def seed_one(number: int) -> None:
            changes = [
                pb.ConsentChange(
                    purpose=pair.purpose,
                    channel=pair.channel,
                    action=rng.choice(actions),
                )
                for pair in rng.sample(PAIRS, 12)
            ]
            await stub.RecordConsent(
                pb.RecordConsentRequest(
                    subject_id=subject_id(number),
                    changes=changes,
                    source="bench",
                    notice_version="v1",
                )
            )
            if number % 3 == 0:
                await stub.SetJurisdiction(
                    pb.SetJurisdictionRequest(
                        subject_id=subject_id(number), jurisdiction="US", source="bench"
                    )
                )

        for start in range(0, subjects, 100):
            await asyncio.gather(
                *(seed_one(n) for n in range(start, min(subjects, start + 100)))
            )


def render(results: list[RunResult], args: argparse.Namespace) -> str:
    """Return the Markdown report: machine, command and one row per rate."""
    lines = [
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, grpcio {grpc.__version__}",
        f"command: python bench/consent_bench.py {' '.join(sys.argv[1:])}",
        f"clients: {args.clients} processes; pairs per call: {len(PAIRS)}; "
        f"subjects: {args.subjects}; warmup {args.warmup} s; measured {args.seconds} s",
        "",
        "| offered/s | achieved/s | calls | p50 ms | p99 ms | p99.9 ms | max ms "
        "| server CPU | Redis CPU | late sends | status codes |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in results:
        server = (
            "-" if row.server_cpu_percent is None else f"{row.server_cpu_percent:.0f}%"
        )
        redis_cpu = (
            "-" if row.redis_cpu_percent is None else f"{row.redis_cpu_percent:.0f}%"
        )
        codes = ", ".join(
            f"{code} {count}" for code, count in sorted(row.codes.items())
        )
        lines.append(
            f"| {row.rate:.0f} | {row.achieved_rate:.0f} | {row.calls} | {row.p50_ms:.2f} "
            f"| {row.p99_ms:.2f} | {row.p999_ms:.2f} | {row.max_ms:.1f} | {server} "
            f"| {redis_cpu} | {row.late_sends} | {codes} |"
        )
    return "\n".join(lines)


def measure(
    args: argparse.Namespace, target: str, server_pid: int | None, redis_url: str | None
) -> list[RunResult]:
    results = []
    context = multiprocessing.get_context("spawn")
    redis_client = None if redis_url is None else redis.Redis.from_url(redis_url)
    with context.Pool(args.clients) as pool:
        for rate in args.rates:
            server_before = None if server_pid is None else cpu_seconds(server_pid)
            redis_before = (
                None if redis_client is None else redis_cpu_seconds(redis_client)
            )
            wall_before = time.monotonic()

            result = run_rate(pool, target, rate, args)

            wall = time.monotonic() - wall_before
            if server_pid is not None and server_before is not None:
                result.server_cpu_percent = (
                    100 * (cpu_seconds(server_pid) - server_before) / wall
                )
            if redis_client is not None and redis_before is not None:
                used = redis_cpu_seconds(redis_client) - redis_before
                result.redis_cpu_percent = 100 * used / wall
            results.append(result)
            print(render([result], args).splitlines()[-1], flush=True)
    return results


async def time_server_path(redis_url: str, subjects: int, calls: int) -> str:
    """Time the servicer's CheckConsent without gRPC, and a Redis PING, one at a time.

    The servicer is built by create_service in this process, on the seeded Redis, so
    the figure is validation, the HMGET and building the response, with no transport.
    """
    from services.consent.app import create_service
    from services.consent.settings import ConsentSettings

    service = create_service(
        ConsentSettings(
            port=0,
            redis_url=redis_url,
            identity_events=False,
            subject_hash_key=SecretStr(SUBJECT_HASH_KEY),
        )
    )
    servicer = service.servicer
    client = redis.asyncio.Redis.from_url(redis_url)
    path_ms: list[float] = []
    ping_ms: list[float] = []
    try:
        for number in range(calls):
            request = pb.CheckConsentRequest(
                subject_id=subject_id(number % subjects), pairs=PAIRS
            )
            started = time.perf_counter()
            await servicer.CheckConsent(request, None)
            path_ms.append((time.perf_counter() - started) * 1000)

            started = time.perf_counter()
            await client.ping()
            ping_ms.append((time.perf_counter() - started) * 1000)
    finally:
        await client.aclose()
        await service.stop(grace=0)

    path_ms.sort()
    ping_ms.sort()
    return (
        f"in-process CheckConsent servicer path, {calls} calls one at a time: "
        f"p50 {percentile(path_ms, 0.5):.3f} ms, p99 {percentile(path_ms, 0.99):.3f} ms; "
        f"Redis PING p50 {percentile(ping_ms, 0.5):.3f} ms, "
        f"p99 {percentile(ping_ms, 0.99):.3f} ms"
    )


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rates",
        type=lambda text: [float(part) for part in text.split(",")],
        default=[250.0, 500.0, 1000.0],
        help="comma-separated offered rates in calls per second (default 250,500,1000)",
    )
    parser.add_argument(
        "--seconds", type=float, default=15, help="measured seconds per rate"
    )
    parser.add_argument(
        "--warmup", type=float, default=3, help="unmeasured seconds before each run"
    )
    parser.add_argument(
        "--clients", type=int, default=1, help="client processes (default 1)"
    )
    parser.add_argument(
        "--subjects", type=int, default=2000, help="subjects seeded and checked"
    )
    parser.add_argument(
        "--deadline", type=float, default=1.0, help="deadline of each call in s"
    )
    parser.add_argument(
        "--target",
        help="HOST:PORT of a running consent server; skips start and seeding",
    )
    parser.add_argument(
        "--in-process-calls",
        type=int,
        default=5000,
        help="calls of the servicer path timed in this process first (0 skips it)",
    )
    parser.add_argument(
        "--json", type=Path, help="also write the results to this JSON file"
    )
    return parser.parse_args()


def main() -> None:
    args = parse_arguments()
    if args.target:
        results = measure(args, args.target, None, None)
    else:
        with EmbeddedRedis(appendfsync="always") as redis_server:
            server = ConsentProcess(redis_server.url)
            try:
                started = time.monotonic()
                asyncio.run(seed(server.target, args.subjects))
                print(
                    f"seeded {args.subjects} subjects in {time.monotonic() - started:.1f} s",
                    flush=True,
                )
                if args.in_process_calls:
                    summary = asyncio.run(
                        time_server_path(
                            redis_server.url, args.subjects, args.in_process_calls
                        )
                    )
                    print(summary, flush=True)
                results = measure(
                    args, server.target, server.process.pid, redis_server.url
                )
            finally:
                server.stop()

    print()
    print(render(results, args))
    if args.json:
        args.json.write_text(json.dumps([asdict(row) for row in results], indent=2))


if __name__ == "__main__":
    main()
