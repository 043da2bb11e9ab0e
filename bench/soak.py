"""Soak benchmark: the suite as processes under a steady, moderate call rate for minutes,
with the resident memory of every process sampled every few seconds.

Run it from the repository root (not in CI; it takes as long as ``--minutes``):

    .venv/bin/python -m bench.soak --minutes 10 --rate 100 --out var/soak.json

It trains a model on the CDNOW history, starts Redis and the three services on loopback,
registers ``--customers`` customers (identifiers, consent, purchases), then sends calls
open-loop: call i is due at ``start + i / rate`` whatever happened to earlier calls. The
mix is Decide (most calls), Lookup, CheckConsent, RecordConsent with a fresh idempotency
key, RecordOutcome with a fresh event id, and Resolve of a known customer. The run is
bounded: at most ``rate * minutes * 60`` calls, and no more than ``--max-in-flight`` at once.

The JSON report has the counts of responses and errors per method, the silence reasons,
the latency percentiles and, per process, the RSS samples and their trend.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from google.protobuf.timestamp_pb2 import Timestamp

from services.decision.train import train_model
from suite.launcher import Suite, start_suite
from trustfirst.consent.v1 import consent_pb2, consent_pb2_grpc
from trustfirst.decision.v1 import decision_pb2, decision_pb2_grpc
from trustfirst.identity.v1 import identity_pb2, identity_pb2_grpc

CALL_TIMEOUT_SECONDS = 2.0
SAMPLE_EVERY_SECONDS = 5.0
WARMUP_SECONDS = 60.0
"""RSS samples of the first minute are left out of the trend: imports, caches and
connection pools settle then."""

GRANTED = [
    (consent_pb2.PURPOSE_PERSONALISATION, consent_pb2.CHANNEL_WEB),
    (consent_pb2.PURPOSE_MARKETING, consent_pb2.CHANNEL_WEB),
    (consent_pb2.PURPOSE_PERSONALISATION, consent_pb2.CHANNEL_EMAIL),
    (consent_pb2.PURPOSE_MARKETING, consent_pb2.CHANNEL_EMAIL),
]

# Share of each call kind in the load, in percent.
MIX = {
    "Decide": 60,
    "Lookup": 10,
    "CheckConsent": 10,
    "RecordOutcome": 10,
    "RecordConsent": 5,
    "Resolve": 5,
}


@dataclass
class Stubs:
    identity: identity_pb2_grpc.IdentityServiceStub
    consent: consent_pb2_grpc.ConsentServiceStub
    decision: decision_pb2_grpc.DecisionServiceStub


@dataclass
class Tally:
    """Counts of responses and errors per method, silences and latencies of one soak."""

    answers: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    silences: Counter[str] = field(default_factory=Counter)
    actions: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    skipped: int = 0


def _email(index: int) -> identity_pb2.Identifier:
    return identity_pb2.Identifier(
        kind=identity_pb2.IDENTIFIER_KIND_EMAIL, value=f"soak-{index}@example.com"
    )


def _timestamp(days_ago: float) -> Timestamp:
    return Timestamp(seconds=int(time.time() - days_ago * 86_400))


def _consent_request(profile_id: str, key: str) -> consent_pb2.RecordConsentRequest:
    return consent_pb2.RecordConsentRequest(
        subject_id=profile_id,
        source="soak",
        notice_version="2026-01",
        idempotency_key=key,
        changes=[
            consent_pb2.ConsentChange(
                purpose=purpose,
                channel=channel,
                action=consent_pb2.CONSENT_ACTION_GRANT,
            )
            for purpose, channel in GRANTED
        ],
    )


def _outcome_request(
    profile_id: str, event_id: str
) -> decision_pb2.RecordOutcomeRequest:
    return decision_pb2.RecordOutcomeRequest(
        profile_id=profile_id,
        kind=decision_pb2.OUTCOME_KIND_PURCHASE,
        amount_cents=random.randint(500, 9_000),
        quantity=random.randint(1, 4),
        event_time=_timestamp(random.uniform(0, 60)),
        event_id=event_id,
    )


async def register(stubs: Stubs, customers: int) -> list[str]:
    """Resolve, grant and record two purchases for each customer; return profile ids."""
    profiles: list[str] = []
    for index in range(customers):
        resolved = await stubs.identity.Resolve(
            identity_pb2.ResolveRequest(identifiers=[_email(index)], source="soak"),
            timeout=CALL_TIMEOUT_SECONDS,
        )
        profile_id = resolved.profile_id
        await stubs.consent.RecordConsent(
            _consent_request(profile_id, f"soak-setup-{index}"),
            timeout=CALL_TIMEOUT_SECONDS,
        )
        for purchase in range(2):
            await stubs.decision.RecordOutcome(
                _outcome_request(profile_id, f"soak-setup-{index}-{purchase}"),
                timeout=CALL_TIMEOUT_SECONDS,
            )
        profiles.append(profile_id)
    return profiles


def _call_for(
    kind: str, number: int, stubs: Stubs, profiles: list[str]
) -> Awaitable[Any]:
    """Return the call of the given kind that is the number-th of the run."""
    index = random.randrange(len(profiles))
    profile_id = profiles[index]
    if kind == "Decide":
        return stubs.decision.Decide(
            decision_pb2.DecideRequest(
                profile_id=profile_id,
                touchpoint=random.choice(["home", "checkout", "product"]),
                channel=consent_pb2.CHANNEL_WEB,
            ),
            timeout=CALL_TIMEOUT_SECONDS,
        )
    if kind == "Lookup":
        return stubs.identity.Lookup(
            identity_pb2.LookupRequest(identifiers=[_email(index)]),
            timeout=CALL_TIMEOUT_SECONDS,
        )
    if kind == "CheckConsent":
        return stubs.consent.CheckConsent(
            consent_pb2.CheckConsentRequest(
                subject_id=profile_id,
                pairs=[
                    consent_pb2.PurposeChannel(purpose=p, channel=c) for p, c in GRANTED
                ],
            ),
            timeout=CALL_TIMEOUT_SECONDS,
        )
    if kind == "RecordOutcome":
        return stubs.decision.RecordOutcome(
            _outcome_request(profile_id, f"soak-{number}"), timeout=CALL_TIMEOUT_SECONDS
        )
    if kind == "RecordConsent":
        return stubs.consent.RecordConsent(
            _consent_request(profile_id, f"soak-{number}"), timeout=CALL_TIMEOUT_SECONDS
        )
    return stubs.identity.Resolve(
        identity_pb2.ResolveRequest(identifiers=[_email(index)], source="soak"),
        timeout=CALL_TIMEOUT_SECONDS,
    )


async def _timed(kind: str, call: Awaitable[Any], due: float, tally: Tally) -> None:
    try:
        response = await call
    except grpc.aio.AioRpcError as error:
        tally.errors[f"{kind}:{error.code().name}"] += 1
        return
    tally.latencies_ms.append((time.monotonic() - due) * 1000)
    tally.answers[kind] += 1
    if kind == "Decide":
        if response.silent:
            tally.silences[
                decision_pb2.SilenceReason.Name(response.silence_reason)
            ] += 1
        else:
            tally.actions += 1


async def run_load(
    stubs: Stubs, profiles: list[str], rate: float, seconds: float, max_in_flight: int
) -> Tally:
    """Send calls open-loop at rate per second for seconds; return the tally."""
    tally = Tally()
    kinds = [kind for kind, share in MIX.items() for _ in range(share)]
    in_flight: set[asyncio.Task[None]] = set()
    start = time.monotonic()
    total = int(rate * seconds)
    for number in range(total):
        due = start + number / rate
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if len(in_flight) >= max_in_flight:
            tally.skipped += 1
            continue
        kind = random.choice(kinds)
        task = asyncio.create_task(
            _timed(kind, _call_for(kind, number, stubs, profiles), due, tally)
        )
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
    if in_flight:
        await asyncio.wait(in_flight)
    return tally


def rss_mb(pid: int) -> float | None:
    """Return the resident set size of pid in MB (10**6 bytes), or None if it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024 / 1e6
    return None


async def sample_memory(
    pids: dict[str, int],
    samples: dict[str, list[tuple[float, float]]],
    load: list[float],
    stop: asyncio.Event,
) -> None:
    """Append (seconds since start, RSS MB) of every process, and the machine's 1-minute
    load average, every few seconds until stop."""
    start = time.monotonic()
    while not stop.is_set():
        now = time.monotonic() - start
        load.append(os.getloadavg()[0])
        for name, pid in pids.items():
            value = rss_mb(pid)
            if value is not None:
                samples[name].append((round(now, 1), round(value, 2)))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), SAMPLE_EVERY_SECONDS)


def memory_trend(points: list[tuple[float, float]]) -> dict[str, float]:
    """Summarise RSS samples after the warm-up: first and last minute means, and the
    least-squares slope in MB per minute."""
    steady = [(t, v) for t, v in points if t >= WARMUP_SECONDS]
    if len(steady) < 4:
        return {}
    times = np.array([t for t, _ in steady])
    values = np.array([v for _, v in steady])
    first = values[times < times[0] + 60].mean()
    last = values[times > times[-1] - 60].mean()
    slope = float(np.polyfit(times / 60, values, 1)[0])
    return {
        "first_minute_mb": round(float(first), 1),
        "last_minute_mb": round(float(last), 1),
        "growth_mb": round(float(last - first), 1),
        "slope_mb_per_minute": round(slope, 3),
        "peak_mb": round(float(values.max()), 1),
    }


def _percentiles(latencies: list[float]) -> dict[str, float]:
    if not latencies:
        return {}
    values = np.array(latencies)
    return {
        f"p{q}": round(float(np.percentile(values, q)), 2) for q in (50, 90, 99, 99.9)
    }


async def soak(suite: Suite, args: argparse.Namespace) -> dict[str, Any]:
    channels = {
        name: grpc.aio.insecure_channel(suite.target(name)) for name in suite.services
    }
    stubs = Stubs(
        identity_pb2_grpc.IdentityServiceStub(channels["identity"]),
        consent_pb2_grpc.ConsentServiceStub(channels["consent"]),
        decision_pb2_grpc.DecisionServiceStub(channels["decision"]),
    )
    profiles = await register(stubs, args.customers)

    pids = {name: service.process.pid for name, service in suite.services.items()}
    if suite.embedded_redis is not None and suite.embedded_redis.process is not None:
        pids["redis"] = suite.embedded_redis.process.pid
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in pids}
    load: list[float] = []
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_memory(pids, samples, load, stop))
    started = time.monotonic()
    tally = await run_load(
        stubs, profiles, args.rate, args.minutes * 60, args.max_in_flight
    )
    elapsed = time.monotonic() - started
    stop.set()
    await sampler
    for channel in channels.values():
        await channel.close()

    return {
        "minutes": args.minutes,
        "rate_per_second": args.rate,
        "customers": args.customers,
        "elapsed_seconds": round(elapsed, 1),
        "calls_answered": sum(tally.answers.values()),
        "answers": dict(tally.answers),
        "errors": dict(tally.errors),
        "not_sent_over_in_flight_limit": tally.skipped,
        "decide_actions": tally.actions,
        "decide_silences": dict(tally.silences.most_common()),
        "latency_ms": _percentiles(tally.latencies_ms),
        "cpus": os.cpu_count(),
        "load_average_1m": {
            "mean": round(float(np.mean(load)), 2),
            "max": round(float(np.max(load)), 2),
        },
        "memory": {name: memory_trend(points) for name, points in samples.items()},
        "rss_samples": samples,
        "processes_alive": {
            name: service.process.poll() is None
            for name, service in suite.services.items()
        },
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--minutes", type=float, default=10.0, help="length of the load, in minutes"
    )
    parser.add_argument(
        "--rate", type=float, default=100.0, help="calls per second, all kinds together"
    )
    parser.add_argument(
        "--customers",
        type=int,
        default=500,
        help="customers registered before the load",
    )
    parser.add_argument(
        "--max-in-flight",
        type=int,
        default=200,
        help="calls outstanding at once; more are not sent",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("var/soak.json"), help="JSON report file"
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="folder for Redis, the model and logs (default: a new temporary folder)",
    )
    args = parser.parse_args(argv)

    random.seed(7)
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="trustfirst-soak-"))
    print(f"training the model in {data_dir}")
    train_model(None, data_dir / "models")
    with start_suite(data_dir, data_dir / "models") as suite:
        print(f"suite started; load for {args.minutes} min at {args.rate}/s")
        report = asyncio.run(soak(suite, args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    summary = {key: value for key, value in report.items() if key != "rss_samples"}
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
