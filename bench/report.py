"""Markdown tables of a benchmark report, from the JSON form that run_benchmark stores."""

from typing import Any

# Targets of the suite on one 2-core machine, checked in the "Targets" table.
DECIDE_P99_TARGET_MS = 5.0
DECIDE_P99_TARGET_RATE = 500.0
HIGH_RATE = 1000.0
HIGH_RATE_P99_TARGET_MS = 10.0
SERVICE_RSS_TARGET_MB = 200.0
SERVICES = ("identity", "consent", "decision")
CPU_COLUMNS = ("decision", "consent", "identity", "redis", "mlserver", "health-floor")


def render(report: dict[str, Any]) -> str:
    """Return the report as Markdown: latency, CPU, comparison, targets, memory, floors."""
    sections = [
        _latency_table(report["runs"]),
        _cpu_table(report["runs"]),
        _comparison_table(report["runs"]),
        _search_section(report.get("search") or {}),
        _targets_table(report),
        _memory_table(report.get("memory_mb") or {}),
        _lightgbm_table(report.get("lightgbm_ms") or {}),
    ]
    return "\n\n".join(section for section in sections if section) + "\n"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines.extend("| " + " | ".join(row) + " |" for row in rows)
    return "\n".join(lines)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _errors(errors: dict[str, int]) -> str:
    return ", ".join(f"{name} {count}" for name, count in sorted(errors.items())) or "0"


def _latency_table(runs: list[dict[str, Any]]) -> str:
    rows = []
    for run in runs:
        latency = run["latency_ms"]
        rows.append(
            [
                run["name"],
                f"{run['rate']:.0f}",
                f"{run['achieved_rate']:.0f}",
                str(run["calls"]),
                _ms(latency.get("p50")),
                _ms(latency.get("p99")),
                _ms(latency.get("p99.9")),
                _ms(latency.get("max")),
                _errors(run["errors"]),
                _ms(run["send_lag_ms"].get("p99")),
                f"{run.get('load_average_1m', 0):.2f}",
                f"{run.get('other_cores_busy', 0):.2f}",
            ]
        )
    header = [
        "scenario", "offered /s", "achieved /s", "calls", "p50", "p99", "p99.9", "max",
        "errors", "send lag p99", "load 1m", "other cores busy",
    ]  # fmt: skip
    return "### Latency in ms, from each call's due time\n\n" + _table(header, rows)


def _cpu_table(runs: list[dict[str, Any]]) -> str:
    rows = []
    for run in runs:
        per_call = run.get("server_cpu_us_per_call", {})
        servers = sum(per_call.values())
        rows.append(
            [run["name"], f"{run['rate']:.0f}", f"{run['client_cpu_us_per_call']:.0f}"]
            + [
                f"{per_call[name]:.0f}" if name in per_call else "-"
                for name in CPU_COLUMNS
            ]
            + [f"{servers:.0f}"]
        )
    header = ["scenario", "rate /s", "client", *CPU_COLUMNS, "all servers"]
    return "### CPU time per call in us, by process\n\n" + _table(header, rows)


def _by_rate(runs: list[dict[str, Any]], name: str) -> dict[float, dict[str, Any]]:
    return {run["rate"]: run for run in runs if run["name"] == name}


def _ratio(numerator: float | None, denominator: float | None) -> str:
    if numerator is None or not denominator:
        return "-"
    return f"{numerator / denominator:.1f}x"


def _comparison_table(runs: list[dict[str, Any]]) -> str:
    decide = _by_rate(runs, "Decide")
    mlserver = _by_rate(runs, "MLServer ModelInfer")
    health = _by_rate(runs, "health check (floor)")
    rows = []
    for rate, run in sorted(decide.items()):
        ours = run["latency_ms"]
        theirs = mlserver.get(rate, {}).get("latency_ms", {})
        floor = health.get(rate, {}).get("latency_ms", {})
        rows.append(
            [
                f"{rate:.0f}",
                _ms(ours.get("p50")),
                _ms(ours.get("p99")),
                _ms(theirs.get("p50")),
                _ms(theirs.get("p99")),
                _ms(floor.get("p50")),
                _ms(floor.get("p99")),
                _ratio(ours.get("p99"), theirs.get("p99")),
                _ratio(ours.get("p50"), floor.get("p50")),
                _ratio(theirs.get("p50"), floor.get("p50")),
            ]
        )
    header = [
        "rate /s", "Decide p50", "Decide p99", "MLServer p50", "MLServer p99",
        "health p50", "health p99", "Decide / MLServer p99", "Decide / health p50",
        "MLServer / health p50",
    ]  # fmt: skip
    return "### Decide against MLServer and the floor (ms)\n\n" + _table(header, rows)


def _search_section(search: dict[str, Any]) -> str:
    if not search:
        return ""
    rows = [
        [
            f"{probe['rate']:.0f}",
            f"{probe['achieved_rate']:.0f}",
            _ms(probe["latency_ms"].get("p50")),
            _ms(probe["latency_ms"].get("p99")),
            _errors(probe["errors"]),
            "pass" if probe["passed"] else "fail",
        ]
        for probe in search["probes"]
    ]
    best = search.get("max_passing_rate")
    verdict = (
        f"Highest Decide rate with p99 under {search['p99_limit_ms']:g} ms: "
        + (f"{best:.0f}/s" if best is not None else "none of the probed rates")
        + (
            f" (lowest failing probe {search['lowest_failing_rate']:.0f}/s)."
            if search.get("lowest_failing_rate") is not None
            else "."
        )
    )
    header = ["probe rate /s", "achieved /s", "p50", "p99", "errors", "result"]
    return (
        "### Highest Decide rate within the p99 limit\n\n"
        + verdict
        + "\n\n"
        + _table(header, rows)
    )


def _targets_table(report: dict[str, Any]) -> str:
    runs = report["runs"]
    decide = _by_rate(runs, "Decide")
    mlserver = _by_rate(runs, "MLServer ModelInfer")
    rows: list[list[str]] = []

    at_target = decide.get(DECIDE_P99_TARGET_RATE, {}).get("latency_ms", {}).get("p99")
    rows.append(_target_row(
        f"Decide p99 <= {DECIDE_P99_TARGET_MS:g} ms at {DECIDE_P99_TARGET_RATE:.0f}/s",
        at_target, at_target is not None and at_target <= DECIDE_P99_TARGET_MS,
    ))  # fmt: skip
    high = decide.get(HIGH_RATE, {})
    high_p99 = high.get("latency_ms", {}).get("p99")
    high_ok = (
        high_p99 is not None
        and high_p99 < HIGH_RATE_P99_TARGET_MS
        and not high.get("errors")
        and high.get("achieved_rate", 0) >= 0.95 * HIGH_RATE
    )
    rows.append(_target_row(
        f"Decide at {HIGH_RATE:.0f}/s with p99 < {HIGH_RATE_P99_TARGET_MS:g} ms",
        high_p99, high_ok,
    ))  # fmt: skip
    for rate, run in sorted(decide.items()):
        theirs = mlserver.get(rate, {}).get("latency_ms", {}).get("p99")
        ours = run["latency_ms"].get("p99")
        if theirs is None or ours is None:
            continue
        rows.append(_target_row(
            f"Decide p99 < MLServer p99 at {rate:.0f}/s ({theirs:.2f} ms)",
            ours, ours < theirs,
        ))  # fmt: skip
    memory = report.get("memory_mb") or {}
    for name in SERVICES:
        peak = memory.get(name, {}).get("peak_rss")
        rows.append(_target_row(
            f"{name} peak RSS < {SERVICE_RSS_TARGET_MB:g} MB",
            peak, peak is not None and peak < SERVICE_RSS_TARGET_MB, unit="MB",
        ))  # fmt: skip
    return "### Targets\n\n" + _table(["target", "measured", "result"], rows)


def _target_row(
    label: str, value: float | None, met: bool, unit: str = "ms"
) -> list[str]:
    if value is None:
        return [label, "-", "not measured"]
    return [label, f"{value:.2f} {unit}", "met" if met else "missed"]


def _memory_table(memory: dict[str, dict[str, float]]) -> str:
    if not memory:
        return ""
    rows = [
        [name, f"{values.get('peak_rss', 0):.1f}", f"{values.get('rss', 0):.1f}"]
        for name, values in memory.items()
    ]
    header = ["process", "peak RSS (MB)", "RSS at the end (MB)"]
    return "### Memory (1 MB = 10^6 bytes)\n\n" + _table(header, rows)


def _lightgbm_table(lightgbm: dict[str, dict[str, float]]) -> str:
    if not lightgbm:
        return ""
    labels = {
        "booster": "Booster.predict, one row, one thread",
        "model": "RepeatPurchaseModel.predict (as Decide calls it)",
    }
    rows = [
        [labels.get(name, name)]
        + [f"{1000 * values.get(key, 0):.1f}" for key in ("p50", "p99", "p99.9", "max")]
        for name, values in lightgbm.items()
    ]
    header = ["in-process call", "p50", "p99", "p99.9", "max"]
    return "### LightGBM in-process, per call in us\n\n" + _table(header, rows)
