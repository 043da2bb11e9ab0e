"""The benchmark's pure parts: merging client shares, the rate search, request framing."""

import struct
from pathlib import Path

import grpc
import numpy as np
from grpc_health.v1 import health_pb2_grpc

from bench.__main__ import build_parser, config_from_args
from bench.floors import start_health_server
from bench.loadgen import LoadResult, LoadSpec, ShareResult, merge_shares
from bench.mlserver_process import read_length_prefixed
from bench.report import render
from bench.roundtrip import measure
from bench.runner import BenchConfig, _next_probe, passes
from shared.embedded_redis import free_port

SPEC = LoadSpec(
    name="Decide",
    target="127.0.0.1:1",
    method="/m",
    requests=(b"",),
    rate=100.0,
    duration_seconds=1.0,
    warmup_seconds=0.5,
)


def share(
    latencies: list[float], statuses: dict[str, int], last_done: float
) -> ShareResult:
    values = np.array(latencies)
    return ShareResult(
        latencies_ms=values,
        send_lags_ms=np.zeros_like(values),
        statuses=statuses,
        last_done=last_done,
        cpu_seconds=0.05,
        calls_sent=75,
    )


def result(p99: float, errors: dict[str, int], achieved: float) -> LoadResult:
    return LoadResult(
        name="Decide",
        rate=100.0,
        duration_seconds=1.0,
        calls=100,
        achieved_rate=achieved,
        latency_ms={"p50": 1.0, "p99": p99},
        send_lag_ms={},
        errors=errors,
    )


def test_merge_counts_errors_by_status() -> None:
    merged = merge_shares(
        SPEC,
        start_at=10.0,
        shares=[
            share([1.0, 2.0], {"OK": 49, "UNAVAILABLE": 1}, last_done=11.5),
            share([3.0], {"OK": 48, "NOT_SENT": 2}, last_done=11.4),
        ],
    )

    assert merged.calls == 100
    assert merged.errors == {"UNAVAILABLE": 1, "NOT_SENT": 2}


def test_merge_rate_counts_responses() -> None:
    merged = merge_shares(
        SPEC,
        start_at=10.0,
        shares=[
            share([1.0], {"OK": 50}, last_done=11.5),
            share([1.0], {"OK": 48, "NOT_SENT": 2}, last_done=11.0),
        ],
    )

    # 98 calls got a response between the end of the warm-up (10.5) and the last one (11.5).
    assert merged.achieved_rate == 98.0


def test_merge_client_cpu_per_call() -> None:
    merged = merge_shares(
        SPEC, start_at=10.0, shares=[share([1.0], {"OK": 1}, last_done=11.0)] * 2
    )

    assert merged.client_cpu_us_per_call == round(1e6 * 0.1 / 150, 1)


def test_passes_needs_low_p99() -> None:
    assert passes(result(4.9, {}, 100.0), p99_limit_ms=5.0)
    assert not passes(result(5.0, {}, 100.0), p99_limit_ms=5.0)


def test_passes_needs_no_errors() -> None:
    assert not passes(result(1.0, {"DEADLINE_EXCEEDED": 1}, 100.0), p99_limit_ms=5.0)


def test_passes_needs_achieved_rate() -> None:
    assert not passes(result(1.0, {}, 90.0), p99_limit_ms=5.0)


def test_search_grows_until_a_failure() -> None:
    config = BenchConfig(out_dir=Path("unused"))

    assert _next_probe(passed=100.0, failed=None, config=config) == 150.0


def test_search_bisects_after_a_failure() -> None:
    config = BenchConfig(out_dir=Path("unused"))

    assert _next_probe(passed=300.0, failed=450.0, config=config) == 380.0


def test_search_stops_at_resolution() -> None:
    config = BenchConfig(out_dir=Path("unused"))

    assert _next_probe(passed=400.0, failed=420.0, config=config) is None


def test_search_halves_when_first_probe_fails() -> None:
    config = BenchConfig(out_dir=Path("unused"))

    assert _next_probe(passed=None, failed=100.0, config=config) == 50.0


def test_length_prefixed_round_trip() -> None:
    messages = [b"", b"a", b"\x00" * 300]
    data = b"".join(struct.pack(">I", len(m)) + m for m in messages)

    assert read_length_prefixed(data) == messages


def test_render_marks_missing_targets() -> None:
    report = {"runs": [result(4.0, {}, 100.0).as_dict()]}

    markdown = render(report)

    assert "| Decide p99 <= 5 ms at 500/s | - | not measured |" in markdown


def test_default_out_dir_absolute() -> None:
    config = config_from_args(build_parser().parse_args([]))

    assert config.out_dir.is_absolute()


def test_given_out_dir_absolute() -> None:
    config = config_from_args(build_parser().parse_args(["--out", "var/run"]))

    assert config.out_dir == Path("var/run").absolute()


def test_roundtrip_measures_every_call() -> None:
    port = free_port()
    server = start_health_server(port)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            result = measure(health_pb2_grpc.HealthStub(channel), 5, 0.001)
    finally:
        server.terminate()
        server.wait()

    assert set(result) == {"p50", "p90", "p99", "p99.9", "max"}
    assert 0 < result["p50"] <= result["max"]
