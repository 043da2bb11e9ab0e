"""Run the suite on the CDNOW purchase history and print what it decided.

The demo starts Redis and the three services and registers every CDNOW customer with
identity, under a synthetic email and loyalty id. It records a seeded mix of consents and
loads each customer's purchase features as of the day after the data ends. Then it replays
one Decide per customer at a touchpoint of the action catalog and prints a summary.
"""

import asyncio
import json
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import grpc
import numpy as np
from tqdm import tqdm

from shared.channels import create_channel
from suite.launcher import Suite, start_suite
from trustfirst.consent.v1 import consent_pb2, consent_pb2_grpc
from trustfirst.decision.v1 import decision_pb2, decision_pb2_grpc
from trustfirst.identity.v1 import identity_pb2, identity_pb2_grpc

T = TypeVar("T")

# Decisions are replayed as of the day after the last CDNOW purchase (1998-06-30).
REPLAY_TIME = datetime(1998, 7, 1, 12, 0, tzinfo=UTC)
LOAD_CONCURRENCY = 64
CALL_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class DemoConfig:
    """Data source, state folder, Redis and load of one demo run."""

    data_dir: Path
    data_path: Path | None = None
    redis_url: str | None = None
    limit: int = 0
    concurrency: int = 4
    seed: int = 7


@dataclass
class DemoReport:
    """Counts and latencies of one demo run."""

    customers: int = 0
    purchases: int = 0
    model_version: str = ""
    holdout_auc: float = 0.0
    load_seconds: dict[str, float] = field(default_factory=dict)
    actions: Counter[str] = field(default_factory=Counter)
    silences: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    replay_seconds: float = 0.0
    concurrency: int = 0

    def as_dict(self) -> dict[str, Any]:
        """Return the report as JSON-ready data, with latency percentiles."""
        return {
            "customers": self.customers,
            "purchases": self.purchases,
            "model_version": self.model_version,
            "holdout_auc": self.holdout_auc,
            "load_seconds": self.load_seconds,
            "decisions": len(self.latencies_ms),
            "replay_seconds": round(self.replay_seconds, 2),
            "concurrency": self.concurrency,
            "actions": dict(self.actions.most_common()),
            "silences": dict(self.silences.most_common()),
            "errors": dict(self.errors.most_common()),
            "latency_ms": latency_percentiles(self.latencies_ms),
        }


def latency_percentiles(latencies_ms: list[float]) -> dict[str, float]:
    """Return p50, p90, p99, p99.9 and max of latencies_ms, rounded to 0.01 ms."""
    if not latencies_ms:
        return {}
    values = np.asarray(latencies_ms)
    result = {
        f"p{q:g}": round(float(np.percentile(values, q)), 2) for q in (50, 90, 99, 99.9)
    }
    result["max"] = round(float(values.max()), 2)
    return result


def customer_identifiers(customer_id: str) -> list[identity_pb2.Identifier]:
    """Return the synthetic email and loyalty id the demo gives a CDNOW customer."""
    return [
        identity_pb2.Identifier(
            kind=identity_pb2.IDENTIFIER_KIND_EMAIL,
            value=f"  Customer.{customer_id}@CDNOW.example.com ",
        ),
        identity_pb2.Identifier(
            kind=identity_pb2.IDENTIFIER_KIND_LOYALTY_ID, value=f"CDN-{customer_id}"
        ),
    ]


def seeded_consents(
    customer_id: str, seed: int
) -> list[list[consent_pb2.ConsentChange]]:
    """Return the consent writes of one customer, in order, from a seeded mix.

    About 70% allow personalisation on web and in-app, 45% allow marketing email and 30%
    marketing push; one grant in ten is withdrawn afterwards. The rest are never asked,
    which the consent service treats as denied.
    """
    rng = random.Random(f"{seed}:{customer_id}")
    grants: list[consent_pb2.ConsentChange] = []
    withdrawals: list[consent_pb2.ConsentChange] = []
    plan = [
        (consent_pb2.PURPOSE_PERSONALISATION, consent_pb2.CHANNEL_WEB, 0.70),
        (consent_pb2.PURPOSE_PERSONALISATION, consent_pb2.CHANNEL_IN_APP, 0.70),
        (consent_pb2.PURPOSE_PERSONALISATION, consent_pb2.CHANNEL_EMAIL, 0.45),
        (consent_pb2.PURPOSE_MARKETING, consent_pb2.CHANNEL_EMAIL, 0.45),
        (consent_pb2.PURPOSE_PERSONALISATION, consent_pb2.CHANNEL_PUSH, 0.30),
        (consent_pb2.PURPOSE_MARKETING, consent_pb2.CHANNEL_PUSH, 0.30),
    ]
    for purpose, channel, share in plan:
        draw = rng.random()
        if draw < share:
            grants.append(_change(purpose, channel, consent_pb2.CONSENT_ACTION_GRANT))
            if rng.random() < 0.10:
                withdrawals.append(
                    _change(purpose, channel, consent_pb2.CONSENT_ACTION_WITHDRAW)
                )
        elif draw < share + 0.10:
            grants.append(_change(purpose, channel, consent_pb2.CONSENT_ACTION_DENY))
    return [batch for batch in (grants, withdrawals) if batch]


def _change(
    purpose: consent_pb2.Purpose.ValueType,
    channel: consent_pb2.Channel.ValueType,
    action: consent_pb2.ConsentAction.ValueType,
) -> consent_pb2.ConsentChange:
    return consent_pb2.ConsentChange(purpose=purpose, channel=channel, action=action)


async def bounded_gather(
    items: Iterable[T],
    worker: Callable[[T], Awaitable[None]],
    concurrency: int,
    progress: str = "",
) -> None:
    """Run worker over items with at most concurrency calls in flight.

    A non-empty progress labels a tqdm progress bar on stderr, drawn only when stderr is
    a terminal.
    """
    queue: asyncio.Queue[T] = asyncio.Queue()
    for item in items:
        queue.put_nowait(item)
    bar = tqdm(total=queue.qsize(), desc=progress, disable=None if progress else True)

    async def drain() -> None:
        while not queue.empty():
            await worker(queue.get_nowait())
            bar.update()

    try:
        await asyncio.gather(*(drain() for _ in range(concurrency)))
    finally:
        bar.close()


def print_report(report: DemoReport, out_path: Path) -> None:
    """Print the summary for a person and write it as JSON to out_path."""
    data = report.as_dict()
    decisions = data["decisions"]
    print()
    print(f"Customers {report.customers:,}, purchases {report.purchases:,}")
    print(f"Model {report.model_version} (holdout AUC {report.holdout_auc:.3f})")
    loads = ", ".join(f"{k} {v:.1f} s" for k, v in report.load_seconds.items())
    print(f"Loaded: {loads}")
    rate = decisions / report.replay_seconds if report.replay_seconds else 0.0
    print(
        f"Decisions: {decisions:,} in {report.replay_seconds:.1f} s "
        f"({rate:,.0f}/s, {report.concurrency} calls in flight)"
    )
    print("  actions chosen:")
    for action, count in report.actions.most_common():
        print(f"    {action:<32} {count:>7,}  {100 * count / max(decisions, 1):5.1f}%")
    print("  silences by reason:")
    for reason, count in report.silences.most_common():
        print(f"    {reason:<32} {count:>7,}  {100 * count / max(decisions, 1):5.1f}%")
    if report.errors:
        print("  errors:")
        for code, count in report.errors.most_common():
            print(f"    {code:<32} {count:>7,}")
    latency = "  ".join(f"{k} {v:.2f}" for k, v in data["latency_ms"].items())
    print(f"  Decide latency as the caller saw it (ms): {latency}")
    out_path.write_text(json.dumps(data, indent=2) + "\n")
    print(f"Summary written to {out_path}")


def run_demo(config: DemoConfig) -> DemoReport:
    """Run the whole demo and return its report."""
    from suite.dataset import ensure_model, load_customers, model_summary

    customers = load_customers(config.data_path, config.limit)
    models_dir = ensure_model(config.data_dir / "models", config.data_path)
    report = DemoReport(customers=len(customers), concurrency=config.concurrency)
    report.purchases = sum(len(c.purchases) for c in customers)
    report.model_version, report.holdout_auc = model_summary(models_dir)
    print(f"Starting the suite in {config.data_dir} ...", flush=True)

    with start_suite(config.data_dir, models_dir, config.redis_url) as suite:
        print(f"Redis at {suite.redis_url}; services up.", flush=True)
        asyncio.run(_load_and_replay(config, suite, customers, report))
    print_report(report, config.data_dir / "demo-summary.json")
    return report


async def _load_and_replay(
    config: DemoConfig, suite: Suite, customers: list[Any], report: DemoReport
) -> None:
    from suite.dataset import load_features

    identity = create_channel(suite.target("identity"))
    consent = create_channel(suite.target("consent"))
    decision = create_channel(suite.target("decision"))
    try:
        started = time.perf_counter()
        profiles = await _resolve_all(identity, customers)
        report.load_seconds["identities"] = time.perf_counter() - started

        started = time.perf_counter()
        await _record_consents(consent, profiles, config.seed)
        report.load_seconds["consents"] = time.perf_counter() - started

        started = time.perf_counter()
        await load_features(suite.redis_url, customers, profiles, REPLAY_TIME)
        report.load_seconds["features"] = time.perf_counter() - started

        await _replay(decision, customers, profiles, config, report)
    finally:
        for channel in (identity, consent, decision):
            await channel.close()


async def _resolve_all(
    channel: grpc.aio.Channel, customers: list[Any]
) -> dict[str, str]:
    stub = identity_pb2_grpc.IdentityServiceStub(channel)
    profiles: dict[str, str] = {}

    async def resolve(customer: Any) -> None:
        reply = await stub.Resolve(
            identity_pb2.ResolveRequest(
                identifiers=customer_identifiers(customer.customer_id),
                source="cdnow-import",
            ),
            timeout=CALL_TIMEOUT_SECONDS,
        )
        profiles[customer.customer_id] = reply.profile_id

    print(f"Registering {len(customers):,} customers with identity ...", flush=True)
    await bounded_gather(customers, resolve, LOAD_CONCURRENCY, progress="identities")
    return profiles


async def _record_consents(
    channel: grpc.aio.Channel, profiles: dict[str, str], seed: int
) -> None:
    stub = consent_pb2_grpc.ConsentServiceStub(channel)

    async def record(item: tuple[str, str]) -> None:
        customer_id, profile_id = item
        for number, changes in enumerate(seeded_consents(customer_id, seed)):
            await stub.RecordConsent(
                consent_pb2.RecordConsentRequest(
                    subject_id=profile_id,
                    changes=changes,
                    source="cdnow-import",
                    notice_version="2026-01",
                    idempotency_key=f"cdnow-import:{customer_id}:{number}",
                ),
                timeout=CALL_TIMEOUT_SECONDS,
            )

    print("Recording a seeded mix of consents ...", flush=True)
    await bounded_gather(
        profiles.items(), record, LOAD_CONCURRENCY, progress="consents"
    )


async def _touchpoints(
    stub: "decision_pb2_grpc.DecisionServiceAsyncStub",
) -> list[tuple[str, consent_pb2.Channel.ValueType]]:
    """Return the (touchpoint, channel) pairs that the catalog offers actions at.

    An action with no touchpoints is offered at every touchpoint the catalog names.
    """
    catalog = await stub.ListActions(decision_pb2.ListActionsRequest())
    named = {tp for action in catalog.actions for tp in action.touchpoints}
    pairs = {
        (touchpoint, action.channel)
        for action in catalog.actions
        for touchpoint in (action.touchpoints or named)
    }
    return sorted(pairs)


async def _replay(
    channel: grpc.aio.Channel,
    customers: list[Any],
    profiles: dict[str, str],
    config: DemoConfig,
    report: DemoReport,
) -> None:
    stub = decision_pb2_grpc.DecisionServiceStub(channel)
    touchpoints = await _touchpoints(stub)
    rng = random.Random(config.seed)
    event_time = decision_pb2.DecisionContext()
    event_time.event_time.FromDatetime(REPLAY_TIME)
    requests = []
    for number, customer in enumerate(customers):
        touchpoint, channel_value = rng.choice(touchpoints)
        request = decision_pb2.DecideRequest(
            touchpoint=touchpoint,
            channel=channel_value,
            context=event_time,
            request_id=f"demo-{number}",
        )
        # Every other customer is named by identifiers, so identity is on the path too.
        if number % 2:
            request.identifiers.extend(customer_identifiers(customer.customer_id))
        else:
            request.profile_id = profiles[customer.customer_id]
        requests.append(request)

    async def decide(request: decision_pb2.DecideRequest) -> None:
        started = time.perf_counter()
        try:
            reply = await stub.Decide(request, timeout=CALL_TIMEOUT_SECONDS)
        except grpc.aio.AioRpcError as error:
            report.errors[error.code().name] += 1
            return
        report.latencies_ms.append((time.perf_counter() - started) * 1000)
        if reply.silent:
            report.silences[decision_pb2.SilenceReason.Name(reply.silence_reason)] += 1
        else:
            report.actions[reply.action_id] += 1

    print(f"Replaying {len(requests):,} decisions ...", flush=True)
    started = time.perf_counter()
    await bounded_gather(requests, decide, config.concurrency, progress="decisions")
    report.replay_seconds = time.perf_counter() - started
