"""Latency of CheckConsent with 20 pairs, measured by a client in another process.

Not a test (pytest does not collect it). Run from the repository root:

    python -m tests.consent.bench_check [--rate 500] [--seconds 10]

It starts a private redis-server and ``python -m services.consent`` on free loopback
ports, records grants for 1000 subjects, then sends CheckConsent calls of 20 pairs
first one at a time (closed loop) and then at a fixed rate (open loop, latency counted
from each call's scheduled start, so a stalled server is not hidden).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import subprocess
import sys
import time

import grpc

from shared.embedded_redis import EmbeddedRedis, free_port
from trustfirst.consent.v1 import consent_pb2 as pb
from trustfirst.consent.v1 import consent_pb2_grpc

SUBJECTS = [f"bench-{index:05d}" for index in range(1000)]
PAIRS = [
    pb.PurposeChannel(purpose=purpose, channel=channel)
    for purpose in pb.Purpose.values()[1:]
    for channel in pb.Channel.values()[1:]
][:20]


def percentiles(samples_ms: list[float]) -> str:
    ordered = sorted(samples_ms)

    def at(share: float) -> float:
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))]

    return (
        f"n={len(ordered)} p50={at(0.50):.3f} ms p90={at(0.90):.3f} ms "
        f"p99={at(0.99):.3f} ms p99.9={at(0.999):.3f} ms max={ordered[-1]:.3f} ms"
    )


def check_request() -> pb.CheckConsentRequest:
    return pb.CheckConsentRequest(subject_id=random.choice(SUBJECTS), pairs=PAIRS)


async def seed(stub: consent_pb2_grpc.ConsentServiceAsyncStub) -> None:
    for subject in SUBJECTS:
        changes = [
            pb.ConsentChange(
                purpose=pair.purpose,
                channel=pair.channel,
                action=random.choice(pb.ConsentAction.values()[1:]),
            )
            for pair in PAIRS[:12]
        ]
        await stub.RecordConsent(
            pb.RecordConsentRequest(
                subject_id=subject, changes=changes, source="bench", notice_version="v1"
            )
        )


async def closed_loop(
    stub: consent_pb2_grpc.ConsentServiceAsyncStub, count: int
) -> None:
    samples = []
    for _ in range(count):
        request = check_request()
        start = time.perf_counter()
        await stub.CheckConsent(request)
        samples.append((time.perf_counter() - start) * 1000)
    print("closed loop, one call at a time:", percentiles(samples))


async def open_loop(
    stub: consent_pb2_grpc.ConsentServiceAsyncStub, rate: float, seconds: float
) -> None:
    from_schedule: list[float] = []
    from_send: list[float] = []
    loop = asyncio.get_running_loop()

    async def one(scheduled: float) -> None:
        sent = loop.time()
        await stub.CheckConsent(check_request())
        done = loop.time()
        from_schedule.append((done - scheduled) * 1000)
        from_send.append((done - sent) * 1000)

    tasks = []
    start = loop.time()
    for index in range(int(rate * seconds)):
        scheduled = start + index / rate
        delay = scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(scheduled)))
    await asyncio.gather(*tasks)
    print(
        f"open loop at {rate:.0f} calls/s, from schedule:", percentiles(from_schedule)
    )
    print(f"open loop at {rate:.0f} calls/s, from send:", percentiles(from_send))


async def run(port: int, rate: float, seconds: float) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        await asyncio.wait_for(channel.channel_ready(), timeout=10)
        stub = consent_pb2_grpc.ConsentServiceStub(channel)
        await seed(stub)
        await closed_loop(stub, 500)
        await closed_loop(stub, 5000)
        await open_loop(stub, rate, seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=500, help="open-loop calls/s")
    parser.add_argument(
        "--seconds", type=float, default=10, help="open-loop duration in seconds"
    )
    args = parser.parse_args()

    with EmbeddedRedis(appendfsync="everysec") as redis:
        port = free_port()
        env = dict(
            os.environ,
            REDIS_URL=redis.url,
            TRUSTFIRST_CONSENT_PORT=str(port),
            TRUSTFIRST_CONSENT_LOG_LEVEL="WARNING",
        )
        server = subprocess.Popen([sys.executable, "-m", "services.consent"], env=env)
        try:
            asyncio.run(run(port, args.rate, args.seconds))
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
