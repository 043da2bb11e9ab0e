"""Latency of one gRPC round trip at a time, with idle gaps between the calls.

Usage: python -m bench.roundtrip [--calls N] [--gaps MS [MS ...]]

It starts bench.health_server and makes sequential health checks, waiting a gap after
each one. Back-to-back calls keep the threads of both processes awake. Calls 10 or 50 ms
apart measure what a call costs when both processes were idle, which is the case of every
hop of a Decide at low request rates.
"""

import argparse
import time

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.floors import start_health_server
from bench.loadgen import percentiles_ms
from shared.embedded_redis import free_port

WARM_UP_CALLS = 200


def measure(
    stub: health_pb2_grpc.HealthStub, calls: int, gap_seconds: float
) -> dict[str, float]:
    """Return latency percentiles in ms of calls sequential checks, gap_seconds apart."""
    request = health_pb2.HealthCheckRequest()
    samples: list[float] = []
    for _ in range(calls):
        if gap_seconds:
            time.sleep(gap_seconds)
        started = time.perf_counter_ns()
        stub.Check(request, timeout=5)
        samples.append((time.perf_counter_ns() - started) / 1e6)
    return percentiles_ms(np.array(samples))


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.roundtrip", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--calls", type=int, default=300, help="calls per gap")
    parser.add_argument(
        "--gaps",
        type=float,
        nargs="+",
        default=[0.0, 10.0, 50.0],
        help="idle time between calls, in ms (default 0 10 50)",
    )
    args = parser.parse_args()

    port = free_port()
    server = start_health_server(port)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            measure(stub, WARM_UP_CALLS, 0.0)
            print("| gap between calls, ms | p50 ms | p90 ms | p99 ms |")
            print("|---|---|---|---|")
            for gap in args.gaps:
                result = measure(stub, args.calls, gap / 1000)
                print(
                    f"| {gap:g} | {result['p50']:.2f} | {result['p90']:.2f} "
                    f"| {result['p99']:.2f} |"
                )
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
