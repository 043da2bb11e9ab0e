"""The floors: a bare gRPC health check server, and LightGBM scoring in-process."""

import subprocess
import sys
import time
from pathlib import Path

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.loadgen import percentiles_ms
from services.decision.model import load_model


def start_health_server(
    port: int, timeout_seconds: float = 10.0
) -> subprocess.Popen[bytes]:
    """Start bench.health_server on 127.0.0.1:port and wait until it responds."""
    process = subprocess.Popen([sys.executable, "-m", "bench.health_server", str(port)])
    deadline = time.monotonic() + timeout_seconds
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(
                    f"bench.health_server exited with {process.returncode}"
                )
            try:
                stub.Check(health_pb2.HealthCheckRequest(), timeout=0.5)
                return process
            except grpc.RpcError:
                time.sleep(0.1)
    process.terminate()
    process.wait()
    raise RuntimeError(f"bench.health_server did not respond on port {port}")


def lightgbm_floor(
    model_path: Path, rows: list[list[float]], calls: int
) -> dict[str, dict[str, float]]:
    """Time single-row predictions of the served model, one row per call, in-process.

    Returns latency percentiles in milliseconds of ``booster.predict`` with one thread
    (``booster``) and of the decision service's RepeatPurchaseModel.predict, which wraps
    it (``model``). Rows are cycled; the first 200 calls warm up and are not counted.
    """
    model = load_model(model_path)
    arrays = [np.array([row], dtype=np.float64) for row in rows]
    results: dict[str, dict[str, float]] = {}
    for name in ("booster", "model"):
        samples = np.empty(calls)
        for index in range(-200, calls):
            row = arrays[index % len(arrays)]
            started = time.perf_counter_ns()
            if name == "booster":
                model.booster.predict(row, num_threads=1)
            else:
                model.predict(row)
            elapsed = time.perf_counter_ns() - started
            if index >= 0:
                samples[index] = elapsed / 1e6
        results[name] = percentiles_ms(samples)
    return results
