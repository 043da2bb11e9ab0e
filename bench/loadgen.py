"""Open-loop load generator for unary gRPC calls over loopback.

Call i of a run is due at ``start + i / rate`` whatever happened to earlier calls, and its
latency is counted from that due time, so a stalled server shows up as latency instead of
as a lower send rate. Client processes share the schedule: process p of P sends calls
p, p + P, p + 2P, ... and inside a process thread t of T sends every T-th of those as a
blocking call, sleeping until each call is due. A thread whose previous call is still
running sends its next call late, and that lateness stays in the latency (it is also
reported alone as send lag). With T threads in each of P processes the schedule is kept
while calls take less than P * T / rate seconds.

Requests are serialized once before the run and responses are not parsed, so the client
spends its CPU on the gRPC calls alone. Every run is bounded: it sends at most
``rate * (warmup + duration)`` calls, and a thread stops sending once it is more than one
call timeout behind the schedule, counting the calls it skipped as ``NOT_SENT``.
"""

import contextlib
import multiprocessing
import multiprocessing.connection
import resource
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import grpc
import numpy as np
import numpy.typing as npt

# Status names indexed by the code a client process records for each call.
STATUS_NAMES = (*(code.name for code in grpc.StatusCode), "NOT_SENT")
_OK = STATUS_NAMES.index("OK")
_NOT_SENT = STATUS_NAMES.index("NOT_SENT")

# Time between handing a run to the client processes and its first due call, so every
# process has received the run before the schedule starts.
START_DELAY_SECONDS = 0.3
# A client process gets this long beyond a run's own length to report back.
REPORT_GRACE_SECONDS = 30.0
CONNECT_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class LoadSpec:
    """One run: which method of which server, which requests, how fast and how long."""

    name: str
    target: str
    method: str
    requests: tuple[bytes, ...]
    rate: float
    duration_seconds: float
    warmup_seconds: float = 1.0
    timeout_seconds: float = 2.0

    @property
    def total_calls(self) -> int:
        return round(self.rate * (self.warmup_seconds + self.duration_seconds))


@dataclass
class ShareResult:
    """Latencies, statuses and CPU time of one client process in the measured window."""

    latencies_ms: npt.NDArray[np.float64]
    send_lags_ms: npt.NDArray[np.float64]
    statuses: dict[str, int]
    last_done: float
    cpu_seconds: float
    # Calls this process sent, warm-up included.
    calls_sent: int


@dataclass
class LoadResult:
    """Latency summary of one run, as every client process together measured it."""

    name: str
    rate: float
    duration_seconds: float
    calls: int
    achieved_rate: float
    latency_ms: dict[str, float]
    send_lag_ms: dict[str, float]
    errors: dict[str, int] = field(default_factory=dict)
    client_cpu_seconds: float = 0.0
    client_cpu_us_per_call: float = 0.0
    calls_sent: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "rate": self.rate,
            "duration_seconds": self.duration_seconds,
            "calls": self.calls,
            "achieved_rate": self.achieved_rate,
            "latency_ms": self.latency_ms,
            "send_lag_ms": self.send_lag_ms,
            "errors": self.errors,
            "client_cpu_seconds": self.client_cpu_seconds,
            "client_cpu_us_per_call": self.client_cpu_us_per_call,
            "calls_sent": self.calls_sent,
            **self.extra,
        }


def percentiles_ms(values: npt.NDArray[np.float64]) -> dict[str, float]:
    """Return p50, p90, p99, p99.9 and max of values (milliseconds), rounded to 1 us."""
    if values.size == 0:
        return {}
    points = np.percentile(values, [50, 90, 99, 99.9])
    summary = {
        name: round(float(point), 3)
        for name, point in zip(("p50", "p90", "p99", "p99.9"), points, strict=True)
    }
    summary["max"] = round(float(values.max()), 3)
    return summary


class ClientPool:
    """Client processes that run load specs together, started once and reused."""

    def __init__(self, processes: int = 2, threads_per_process: int = 16) -> None:
        if processes < 1 or threads_per_process < 1:
            raise ValueError("processes and threads_per_process must be at least 1")
        self.processes = processes
        self.threads_per_process = threads_per_process
        self._workers: list[
            tuple[
                multiprocessing.process.BaseProcess,
                multiprocessing.connection.Connection,
            ]
        ] = []

    def start(self) -> "ClientPool":
        # Spawned, not forked, because the parent process already has open gRPC channels.
        context = multiprocessing.get_context("spawn")
        for index in range(self.processes):
            parent_end, child_end = context.Pipe()
            process = context.Process(
                target=_client_main,
                args=(child_end, index, self.processes, self.threads_per_process),
                name=f"bench-client-{index}",
                daemon=True,
            )
            process.start()
            child_end.close()
            self._workers.append((process, parent_end))
        return self

    def run(self, spec: LoadSpec) -> LoadResult:
        """Run spec on every client process and merge what they measured."""
        if not self._workers:
            raise RuntimeError("ClientPool.run called before start()")
        start_at = time.monotonic() + START_DELAY_SECONDS
        for _, connection in self._workers:
            connection.send((spec, start_at))

        limit = (
            START_DELAY_SECONDS
            + spec.warmup_seconds
            + spec.duration_seconds
            + spec.timeout_seconds
            + REPORT_GRACE_SECONDS
        )
        shares: list[ShareResult] = []
        for process, connection in self._workers:
            if not connection.poll(max(0.0, start_at + limit - time.monotonic())):
                raise TimeoutError(f"client process {process.name} did not report")
            reply = connection.recv()
            if isinstance(reply, BaseException):
                raise RuntimeError(f"client process {process.name} failed") from reply
            shares.append(reply)
        return merge_shares(spec, start_at, shares)

    def close(self) -> None:
        for process, connection in self._workers:
            with contextlib.suppress(OSError):
                connection.send(None)
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
                process.join()
            connection.close()
        self._workers.clear()

    def __enter__(self) -> "ClientPool":
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def merge_shares(
    spec: LoadSpec, start_at: float, shares: list[ShareResult]
) -> LoadResult:
    """Combine the client processes' shares of one run into its summary."""
    latencies = np.concatenate([share.latencies_ms for share in shares])
    lags = np.concatenate([share.send_lags_ms for share in shares])
    statuses: Counter[str] = Counter()
    for share in shares:
        statuses.update(share.statuses)

    responded = sum(count for name, count in statuses.items() if name != "NOT_SENT")
    measured_from = start_at + spec.warmup_seconds
    last_done = max(share.last_done for share in shares)
    elapsed = last_done - measured_from
    achieved = responded / elapsed if elapsed > 0 else 0.0

    cpu_seconds = sum(share.cpu_seconds for share in shares)
    sent = sum(share.calls_sent for share in shares)
    return LoadResult(
        name=spec.name,
        rate=spec.rate,
        duration_seconds=spec.duration_seconds,
        calls=int(sum(statuses.values())),
        achieved_rate=round(achieved, 1),
        latency_ms=percentiles_ms(latencies),
        send_lag_ms=percentiles_ms(lags),
        errors={name: count for name, count in statuses.items() if name != "OK"},
        client_cpu_seconds=round(cpu_seconds, 3),
        client_cpu_us_per_call=round(1e6 * cpu_seconds / sent, 1) if sent else 0.0,
        calls_sent=sent,
    )


def _client_main(
    connection: multiprocessing.connection.Connection,
    process_index: int,
    process_count: int,
    threads: int,
) -> None:
    """Run each spec that arrives on connection until None arrives."""
    # Threads that wake up for a due call wait at most this long for the GIL.
    sys.setswitchinterval(0.0005)
    channels: dict[str, grpc.Channel] = {}
    try:
        while True:
            message = connection.recv()
            if message is None:
                return
            spec, start_at = message
            try:
                channel = _channel(channels, spec.target)
                share = _run_share(
                    spec, start_at, channel, process_index, process_count, threads
                )
            except Exception as exc:
                connection.send(exc)
                continue
            connection.send(share)
    finally:
        for channel in channels.values():
            channel.close()


def _channel(channels: dict[str, grpc.Channel], target: str) -> grpc.Channel:
    if target not in channels:
        channel = grpc.insecure_channel(target)
        grpc.channel_ready_future(channel).result(timeout=CONNECT_TIMEOUT_SECONDS)
        channels[target] = channel
    return channels[target]


def _run_share(
    spec: LoadSpec,
    start_at: float,
    channel: grpc.Channel,
    process_index: int,
    process_count: int,
    threads: int,
) -> ShareResult:
    """Send this process's calls of spec on schedule and return what they measured."""
    # No serializers: requests go out as the bytes given and replies stay bytes.
    call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(spec.method)
    total = spec.total_calls
    latencies = np.full(total, np.nan)
    lags = np.full(total, np.nan)
    statuses = np.full(total, -1, dtype=np.int16)
    stop_sending_at = (
        start_at + spec.warmup_seconds + spec.duration_seconds + spec.timeout_seconds
    )

    def send(first: int, step: int) -> None:
        for index in range(first, total, step):
            due = start_at + index / spec.rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            sent = time.monotonic()
            if sent > stop_sending_at:
                statuses[index] = _NOT_SENT
                continue
            request = spec.requests[index % len(spec.requests)]
            try:
                call(request, timeout=spec.timeout_seconds)
                status = _OK
            except grpc.RpcError as error:
                status = STATUS_NAMES.index(error.code().name)
            latencies[index] = (time.monotonic() - due) * 1000
            lags[index] = (sent - due) * 1000
            statuses[index] = status

    usage_before = resource.getrusage(resource.RUSAGE_SELF)
    step = process_count * threads
    workers = [
        threading.Thread(target=send, args=(process_index + t * process_count, step))
        for t in range(threads)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    usage_after = resource.getrusage(resource.RUSAGE_SELF)

    return _summarise_share(
        spec, start_at, latencies, lags, statuses, usage_before, usage_after
    )


def _summarise_share(
    spec: LoadSpec,
    start_at: float,
    latencies: npt.NDArray[np.float64],
    lags: npt.NDArray[np.float64],
    statuses: npt.NDArray[np.int16],
    usage_before: resource.struct_rusage,
    usage_after: resource.struct_rusage,
) -> ShareResult:
    due = start_at + np.arange(latencies.size) / spec.rate
    mine = statuses >= 0
    measured = mine & (due >= start_at + spec.warmup_seconds)
    responded = measured & (statuses != _NOT_SENT)
    done = due[responded] + latencies[responded] / 1000
    counts = np.bincount(statuses[measured], minlength=len(STATUS_NAMES))
    cpu = (usage_after.ru_utime - usage_before.ru_utime) + (
        usage_after.ru_stime - usage_before.ru_stime
    )
    return ShareResult(
        latencies_ms=latencies[responded],
        send_lags_ms=lags[responded],
        statuses={
            STATUS_NAMES[code]: int(count) for code, count in enumerate(counts) if count
        },
        last_done=float(done.max()) if done.size else start_at,
        cpu_seconds=cpu,
        calls_sent=int(np.count_nonzero(mine & (statuses != _NOT_SENT))),
    )
