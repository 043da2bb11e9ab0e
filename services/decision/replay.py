"""Replay CDNOW customers through the running decision service, with the simulator's
responses, and write the lifetime-value report.

Usage: python -m services.decision.replay --out DIR [--customers N] [--rounds N]
       [--round-days N] [--learn-after N] [--seed N] [--report-out DIR]

Everything runs on this machine: a private redis-server, the consent service and the
decision service in-process, talking gRPC over loopback.

1. Train the repeat-purchase bundle on CDNOW with the packaged catalog, its exploration
   share raised (--exploration), and serve it from DIR/registry.
2. Load each customer's CDNOW purchases before --start as features, grant email consent
   to a seeded --consent-share of them, and build their simulated traits from the same
   history (Simulator.population_from_history).
3. Every --round-days from --start, ask Decide for every customer at the email
   newsletter, let the simulator draw the orders of the following round given the
   served action, and send them with RecordOutcome. The service attributes each order
   to the decisions of the previous --round-days (its attribution window).
4. After --learn-after rounds, export the log, learn a value model from it, promote the
   bundle, and wait until the service has hot-reloaded it.
5. After the last round, export the log to DIR/decisions.jsonl.gz and write the report.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import random
import re
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc
import numpy as np
from tqdm import tqdm

from services.consent.app import create_service as create_consent
from services.consent.settings import ConsentSettings
from services.decision.app import create_service
from services.decision.artifact import point_current
from services.decision.catalog import load_catalog
from services.decision.cdnow import Purchase, default_cdnow_path, read_cdnow
from services.decision.feature_store import FeatureStore
from services.decision.learn import evaluation_json, learn
from services.decision.logfile import export_log
from services.decision.report import write_report
from services.decision.settings import DecisionSettings
from services.decision.simulator import Population, SimAction, Simulator, sim_actions
from services.decision.snapshots import date_to_time
from services.decision.train import train_model
from shared.embedded_redis import EmbeddedRedis, free_port
from shared.redis_client import create_redis
from trustfirst.consent.v1 import consent_pb2, consent_pb2_grpc
from trustfirst.decision.v1 import decision_pb2, decision_pb2_grpc

T = TypeVar("T")

CHANNEL = consent_pb2.CHANNEL_EMAIL
TOUCHPOINT = "newsletter"
CALL_TIMEOUT_SECONDS = 30.0
_EXPLORATION_LINE = re.compile(r"^exploration_share = .*$", re.MULTILINE)


@dataclass(frozen=True)
class ReplayConfig:
    out: Path
    customers: int = 0
    """Customers replayed, lowest ids first; 0 replays all."""
    rounds: int = 6
    round_days: int = 30
    learn_after: int = 2
    """Rounds before the value model is learned and promoted; 0 never learns."""
    start: dt.date = dt.date(1998, 7, 1)
    seed: int = 7
    concurrency: int = 64
    consent_share: float = 0.9
    exploration_share: float = 0.2
    """Exploration share of the first bundle; the learned bundle keeps the packaged one."""
    data: Path | None = None
    progress: bool = True


@dataclass
class ReplayLog:
    """Record of the replay's rounds, bundles and timings, written to run.json and shown
    in the report."""

    settings: dict[str, Any]
    rounds: list[dict[str, Any]] = field(default_factory=list)
    bundles: list[str] = field(default_factory=list)
    learning: dict[str, Any] | None = None
    seconds: dict[str, float] = field(default_factory=dict)


def replay_catalog(exploration_share: float) -> bytes:
    """Return the packaged catalog with its exploration share replaced."""
    text = load_catalog().source.decode("utf-8")
    replaced, count = _EXPLORATION_LINE.subn(
        f"exploration_share = {exploration_share}", text
    )
    if count != 1:
        raise ValueError("the packaged catalog has no single exploration_share line")
    return replaced.encode("utf-8")


async def bounded(
    items: Iterable[T],
    worker: Callable[[T], Awaitable[None]],
    concurrency: int,
    label: str,
    progress: bool,
) -> None:
    """Run worker over items with at most concurrency calls in flight."""
    queue: asyncio.Queue[T] = asyncio.Queue()
    for item in items:
        queue.put_nowait(item)
    bar = tqdm(total=queue.qsize(), desc=label, disable=not progress, leave=False)

    async def drain() -> None:
        while not queue.empty():
            item = queue.get_nowait()
            await worker(item)
            bar.update(1)

    await asyncio.gather(*(drain() for _ in range(concurrency)))
    bar.close()


def load_histories(
    data: Path | None, limit: int
) -> tuple[list[str], list[list[Purchase]]]:
    """Return the customer ids (numeric order) and their purchases."""
    grouped: dict[str, list[Purchase]] = defaultdict(list)
    for purchase in read_cdnow(data or default_cdnow_path()):
        grouped[purchase.customer_id].append(purchase)
    ids = sorted(grouped, key=lambda text: (len(text), text))
    if limit > 0:
        ids = ids[:limit]
    return ids, [grouped[customer] for customer in ids]


class Replay:
    """One replay run against in-process services."""

    def __init__(self, config: ReplayConfig, redis_url: str, log: ReplayLog) -> None:
        self.config = config
        self.redis_url = redis_url
        self.log = log
        self.registry = config.out / "registry"
        self.simulator = Simulator(load_catalog().margin_rate)
        self.rng = np.random.default_rng(config.seed)

    async def run(
        self, profile_ids: list[str], histories: list[list[Purchase]]
    ) -> None:
        """Start the services, replay every round, and export the final log."""
        consent = create_consent(
            ConsentSettings(
                port=0, redis_url=self.redis_url, grace_seconds=0, durability="warn"
            )
        )
        await consent.start()
        settings = DecisionSettings(
            port=0,
            redis_url=self.redis_url,
            model_path=self.registry,
            consent_target=f"127.0.0.1:{consent.port}",
            identity_target=f"127.0.0.1:{free_port()}",
            attribution_window_days=self.config.round_days,
            reload_interval_seconds=0.5,
            grace_seconds=0,
            consent_deadline_ms=5000,
            features_deadline_ms=5000,
        )
        decision = create_service(settings)
        await decision.start()
        channels = [
            grpc.aio.insecure_channel(f"127.0.0.1:{decision.port}"),
            grpc.aio.insecure_channel(f"127.0.0.1:{consent.port}"),
        ]
        try:
            stub = decision_pb2_grpc.DecisionServiceStub(channels[0])
            consent_stub = consent_pb2_grpc.ConsentServiceStub(channels[1])
            population = await self._load(consent_stub, profile_ids, histories)
            await self._rounds(stub, population)
        finally:
            for channel in channels:
                await channel.close()
            await decision.stop(grace=0)
            await consent.stop(grace=0)

    async def _load(
        self,
        consent: consent_pb2_grpc.ConsentServiceAsyncStub,
        profile_ids: list[str],
        histories: list[list[Purchase]],
    ) -> Population:
        started = time.perf_counter()
        population = self.simulator.population_from_history(
            histories, profile_ids, self.config.start, self.config.seed
        )
        redis = create_redis(self.redis_url, timeout_seconds=30.0)
        try:
            await FeatureStore(redis, 86_400).put_many(
                dict(zip(profile_ids, population.aggregates, strict=True))
            )
        finally:
            await redis.aclose()

        draw = random.Random(self.config.seed)
        granted = [p for p in profile_ids if draw.random() < self.config.consent_share]

        async def grant(profile_id: str) -> None:
            await consent.RecordConsent(
                consent_pb2.RecordConsentRequest(
                    subject_id=profile_id,
                    changes=[
                        consent_pb2.ConsentChange(
                            purpose=purpose,
                            channel=CHANNEL,
                            action=consent_pb2.CONSENT_ACTION_GRANT,
                        )
                        for purpose in (
                            consent_pb2.PURPOSE_MARKETING,
                            consent_pb2.PURPOSE_PERSONALISATION,
                        )
                    ],
                    source="cdnow-replay",
                    notice_version="2026-01",
                ),
                timeout=CALL_TIMEOUT_SECONDS,
            )

        await bounded(
            granted, grant, self.config.concurrency, "consent", self.config.progress
        )
        self.log.seconds["load"] = round(time.perf_counter() - started, 1)
        return population

    async def _rounds(
        self, stub: decision_pb2_grpc.DecisionServiceAsyncStub, population: Population
    ) -> None:
        actions = sim_actions(load_catalog().candidates(CHANNEL, TOUCHPOINT))
        start_time = date_to_time(self.config.start)
        round_seconds = self.config.round_days * 86_400
        for number in range(self.config.rounds):
            as_of = start_time + number * round_seconds
            started = time.perf_counter()
            choices, summary = await self._decide_round(
                stub, population, actions, as_of
            )
            orders = self.simulator.sample_purchases(
                population, choices, actions, as_of, self.config.round_days, self.rng
            )
            await self._record_orders(stub, population, orders)
            self.simulator.apply(population, choices, actions, as_of, orders)
            summary["orders"] = sum(len(customer) for customer in orders)
            summary["seconds"] = round(time.perf_counter() - started, 1)
            self.log.rounds.append(summary)
            print(f"round {number + 1}: {json.dumps(summary)}", flush=True)
            if number + 1 == self.config.learn_after:
                await self._learn(stub, as_of + round_seconds)

        await export_log_file(
            self.redis_url,
            self.config.out / "decisions.jsonl.gz",
            start_time + self.config.rounds * round_seconds,
            self.config.progress,
        )

    async def _decide_round(
        self,
        stub: decision_pb2_grpc.DecisionServiceAsyncStub,
        population: Population,
        actions: Sequence[SimAction],
        as_of: int,
    ) -> tuple[np.ndarray[Any, np.dtype[np.int64]], dict[str, Any]]:
        index = {a.action_id: i for i, a in enumerate(actions)}
        choices = np.zeros(len(population), dtype=np.int64)
        outcomes: Counter[str] = Counter()
        versions: Counter[str] = Counter()
        context = decision_pb2.DecisionContext()
        context.event_time.FromSeconds(as_of)

        async def decide(position: int) -> None:
            reply = await stub.Decide(
                decision_pb2.DecideRequest(
                    profile_id=population.profile_ids[position],
                    touchpoint=TOUCHPOINT,
                    channel=CHANNEL,
                    context=context,
                ),
                timeout=CALL_TIMEOUT_SECONDS,
            )
            choices[position] = index[reply.action_id]
            versions[reply.model_version] += 1
            key = reply.action_id or decision_pb2.SilenceReason.Name(
                reply.silence_reason
            )
            outcomes[key] += 1

        await bounded(
            range(len(population)),
            decide,
            self.config.concurrency,
            "decide",
            self.config.progress,
        )
        return choices, {
            "as_of": dt.datetime.fromtimestamp(as_of, dt.UTC).date().isoformat(),
            "decisions": dict(sorted(outcomes.items())),
            "bundles": dict(versions),
        }

    async def _record_orders(
        self,
        stub: decision_pb2_grpc.DecisionServiceAsyncStub,
        population: Population,
        orders: Sequence[Sequence[Any]],
    ) -> None:
        requests: list[decision_pb2.RecordOutcomeRequest] = []
        for position, customer in enumerate(orders):
            for order in customer:
                request = decision_pb2.RecordOutcomeRequest(
                    profile_id=population.profile_ids[position],
                    kind=decision_pb2.OUTCOME_KIND_PURCHASE,
                    amount_cents=order.amount_cents,
                    discount_cents=order.discount_cents,
                    quantity=order.quantity,
                    event_id=f"replay-{population.profile_ids[position]}-{order.time}-"
                    f"{len(requests)}",
                )
                request.event_time.FromSeconds(order.time)
                requests.append(request)

        async def record(request: decision_pb2.RecordOutcomeRequest) -> None:
            await stub.RecordOutcome(request, timeout=CALL_TIMEOUT_SECONDS)

        await bounded(
            requests, record, self.config.concurrency, "outcomes", self.config.progress
        )

    async def _learn(
        self, stub: decision_pb2_grpc.DecisionServiceAsyncStub, observed_until: int
    ) -> None:
        started = time.perf_counter()
        log_path = self.config.out / "learning-decisions.jsonl.gz"
        await export_log_file(
            self.redis_url, log_path, observed_until, self.config.progress
        )
        packaged = load_catalog().source
        catalog_path = self.config.out / "learned-catalog.toml"
        catalog_path.write_bytes(packaged)
        folder, result = await asyncio.to_thread(
            learn,
            log_path,
            self.registry,
            None,
            catalog_path,
            self.config.seed,
            progress=self.config.progress,
        )
        point_current(self.registry, folder.name)
        await wait_for_bundle(stub, folder.name)
        self.log.learning = {
            "bundle": folder.name,
            "rows": result.rows,
            "evaluation": evaluation_json(result),
        }
        self.log.bundles.append(folder.name)
        self.log.seconds["learn"] = round(time.perf_counter() - started, 1)
        print(f"learned and promoted {folder.name}", flush=True)


async def export_log_file(
    redis_url: str, path: Path, observed_until: int, progress: bool
) -> None:
    redis = create_redis(redis_url, timeout_seconds=60.0)
    try:
        await export_log(redis, path, observed_until, "cdnow replay", progress)
    finally:
        await redis.aclose()


async def wait_for_bundle(
    stub: decision_pb2_grpc.DecisionServiceAsyncStub,
    version: str,
    timeout_seconds: float = 60.0,
) -> None:
    """Poll ListActions until the service serves version. Raises TimeoutError."""
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        reply = await stub.ListActions(decision_pb2.ListActionsRequest())
        if reply.bundle_version == version:
            return
        await asyncio.sleep(0.2)
    raise TimeoutError(
        f"the service did not load bundle {version} within {timeout_seconds} s"
    )


async def replay(config: ReplayConfig, report_out: Path | None = None) -> Path:
    """Run the replay and write the report; return the report's Markdown file."""
    started = time.perf_counter()
    config.out.mkdir(parents=True, exist_ok=True)
    settings = {k: str(v) for k, v in asdict(config).items() if k != "progress"}
    log = ReplayLog(settings=settings)

    catalog_path = config.out / "replay-catalog.toml"
    catalog_path.write_bytes(replay_catalog(config.exploration_share))
    first = train_model(
        config.data, config.out / "registry", config.seed, catalog_path=catalog_path
    )
    log.bundles.append(first.name)
    profile_ids_raw, histories = load_histories(config.data, config.customers)
    profile_ids = [f"cdnow-{customer}" for customer in profile_ids_raw]

    redis = EmbeddedRedis(appendfsync="everysec").start()
    try:
        await Replay(config, redis.url, log).run(profile_ids, histories)
    finally:
        redis.stop()

    log.seconds["total"] = round(time.perf_counter() - started, 1)
    run_info = asdict(log)
    (config.out / "run.json").write_text(json.dumps(run_info, indent=2) + "\n")
    return write_report(
        config.out / "decisions.jsonl.gz", report_out or config.out / "report", run_info
    )


def _parse_args(argv: list[str] | None) -> tuple[ReplayConfig, Path | None]:
    parser = argparse.ArgumentParser(
        prog="python -m services.decision.replay",
        description="Replay CDNOW customers through the decision service with simulated "
        "responses, and write the lifetime-value report.",
    )
    defaults = ReplayConfig(out=Path("."))
    add = parser.add_argument
    add("--out", type=Path, required=True, help="working folder of the run")
    add("--customers", type=int, default=0, help="customers replayed; 0 replays all")
    add("--rounds", type=int, default=defaults.rounds, help="decision rounds")
    add("--round-days", type=int, default=defaults.round_days, help="days per round")
    add(
        "--learn-after",
        type=int,
        default=defaults.learn_after,
        help="rounds before the value model is learned and promoted; 0 never learns",
    )
    add("--seed", type=int, default=defaults.seed, help="seed of every random draw")
    add(
        "--concurrency",
        type=int,
        default=defaults.concurrency,
        help="requests in flight at once",
    )
    add(
        "--exploration",
        type=float,
        default=defaults.exploration_share,
        help="exploration share of the first bundle, 0 to 1",
    )
    add(
        "--consent-share",
        type=float,
        default=defaults.consent_share,
        help="share of customers who grant email consent, 0 to 1",
    )
    add(
        "--data",
        type=Path,
        default=None,
        help="CDNOW-format file (default: lifetimes')",
    )
    add(
        "--report-out",
        type=Path,
        default=None,
        help="report folder (default: OUT/report)",
    )
    args = parser.parse_args(argv)

    config = ReplayConfig(
        out=args.out,
        customers=args.customers,
        rounds=args.rounds,
        round_days=args.round_days,
        learn_after=args.learn_after,
        seed=args.seed,
        concurrency=args.concurrency,
        consent_share=args.consent_share,
        exploration_share=args.exploration,
        data=args.data,
        progress=sys.stderr.isatty(),
    )
    return config, args.report_out


def main(argv: list[str] | None = None) -> None:
    config, report_out = _parse_args(argv)

    try:
        report = asyncio.run(replay(config, report_out))
    except (OSError, ValueError, TimeoutError, grpc.aio.AioRpcError) as exc:
        print(f"replay failed: {exc}", file=sys.stderr)
        raise SystemExit(1) from exc
    print(f"report written to {report}")


if __name__ == "__main__":
    main()
