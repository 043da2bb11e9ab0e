"""Decision log files: decision records and outcomes per profile, as JSON lines.

The first line is a header, ``{"type": "header", "format": 1, "observed_until": T,
"source": ...}``: outcomes are complete up to T (seconds since the epoch), so a decision
whose attribution window ends after T is still open. Each further line is one profile,
``{"type": "profile", "profile_id": ..., "decisions": [records], "outcomes": [entries]}``.
A path ending in ``.gz`` is gzip-compressed.

``python -m services.decision.logfile export`` writes such a file from the service's
Redis; the simulator writes the same format. Training, offline evaluation and the
lifetime-value report read it.
"""

import argparse
import asyncio
import gzip
import io
import json
import sys
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import redis.asyncio as aioredis
from tqdm import tqdm

from services.decision.decision_log import encode_record
from services.decision.keys import (
    DECISION_RECORD_PATTERN,
    outcomes_key,
    profile_of_key,
)
from services.decision.outcome_log import OutcomeEntry, outcome_from_json
from shared.redis_client import create_redis

LOG_FORMAT = 1
# Profiles read per pipelined round trip by the export.
EXPORT_CHUNK_PROFILES = 500


class LogFormatError(ValueError):
    """A decision log file is malformed; the message names the file and line."""


@dataclass(frozen=True)
class LogHeader:
    observed_until: int
    """Seconds since the epoch up to which outcomes are complete."""
    source: str
    format: int = LOG_FORMAT


@dataclass
class ProfileLog:
    """One profile's decision records and outcomes, oldest first."""

    profile_id: str
    decisions: list[dict[str, Any]] = field(default_factory=list)
    outcomes: list[OutcomeEntry] = field(default_factory=list)


def _open(path: Path, mode: str) -> IO[str]:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.GzipFile(path, mode + "b"), encoding="utf-8")
    return path.open(mode, encoding="utf-8")


def write_log(path: Path, header: LogHeader, profiles: Iterable[ProfileLog]) -> int:
    """Write a log file; return the number of profiles written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with _open(path, "w") as file:
        _write_header(file, header)
        for profile in profiles:
            file.write(_profile_line(profile) + "\n")
            count += 1
    return count


def _write_header(file: IO[str], header: LogHeader) -> None:
    data = {
        "type": "header",
        "format": header.format,
        "observed_until": header.observed_until,
        "source": header.source,
    }
    file.write(json.dumps(data) + "\n")


def _profile_line(profile: ProfileLog) -> str:
    decisions = ",".join(encode_record(record) for record in profile.decisions)
    outcomes = json.dumps(
        [entry.to_json() for entry in profile.outcomes], separators=(",", ":")
    )
    profile_id = json.dumps(profile.profile_id)
    return (
        f'{{"type":"profile","profile_id":{profile_id},'
        f'"decisions":[{decisions}],"outcomes":{outcomes}}}'
    )


def read_header(path: Path) -> LogHeader:
    """Return a log file's header. Raises LogFormatError when it is missing or invalid."""
    with _open(path, "r") as file:
        first = file.readline()
    try:
        data = json.loads(first)
        if data.get("type") != "header" or data.get("format") != LOG_FORMAT:
            raise ValueError(f"expected a format {LOG_FORMAT} header")
        return LogHeader(int(data["observed_until"]), str(data.get("source", "")))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise LogFormatError(f"{path}:1: invalid header: {exc}") from exc


def read_profiles(path: Path) -> Iterator[ProfileLog]:
    """Yield the profiles of a log file in file order.

    Raises LogFormatError for a malformed line.
    """
    with _open(path, "r") as file:
        file.readline()
        for number, line in enumerate(file, start=2):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                yield ProfileLog(
                    profile_id=str(data["profile_id"]),
                    decisions=list(data["decisions"]),
                    outcomes=[outcome_from_json(o) for o in data["outcomes"]],
                )
            except (ValueError, KeyError, TypeError) as exc:
                raise LogFormatError(
                    f"{path}:{number}: invalid profile line: {exc}"
                ) from exc


def count_lines(path: Path) -> int:
    """Return the number of profile lines, for progress bars."""
    with _open(path, "r") as file:
        return max(0, sum(1 for _ in file) - 1)


@dataclass(frozen=True)
class ExportSummary:
    profiles: int
    decisions: int
    outcomes: int


async def export_log(
    redis: "aioredis.Redis",
    path: Path,
    observed_until: int,
    source: str = "redis export",
    progress: bool = True,
) -> ExportSummary:
    """Write every decision record in Redis, with its profile's outcomes, to path.

    Records are found with SCAN, so decisions made during the export may be missing.
    """
    # NOTE: SCAN visits one server; on Redis Cluster run the export against each
    # primary and concatenate the profile lines.
    keys_by_profile: dict[str, list[str]] = defaultdict(list)
    async for key in redis.scan_iter(match=DECISION_RECORD_PATTERN, count=1000):
        keys_by_profile[profile_of_key(str(key))].append(str(key))

    profiles = sorted(keys_by_profile)
    decisions = outcomes = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with (
        _open(path, "w") as file,
        tqdm(
            total=len(profiles), desc="export", unit="profile", disable=not progress
        ) as bar,
    ):
        _write_header(file, LogHeader(observed_until, source))
        for start in range(0, len(profiles), EXPORT_CHUNK_PROFILES):
            chunk = profiles[start : start + EXPORT_CHUNK_PROFILES]
            for profile in await _read_chunk(redis, chunk, keys_by_profile):
                decisions += len(profile.decisions)
                outcomes += len(profile.outcomes)
                file.write(_profile_line(profile) + "\n")
            bar.update(len(chunk))
    return ExportSummary(len(profiles), decisions, outcomes)


async def _read_chunk(
    redis: "aioredis.Redis", profiles: list[str], keys: dict[str, list[str]]
) -> list[ProfileLog]:
    pipeline = redis.pipeline(transaction=False)
    for profile_id in profiles:
        pipeline.mget(keys[profile_id])
        pipeline.zrange(outcomes_key(profile_id), 0, -1)
    replies = await pipeline.execute()

    logs: list[ProfileLog] = []
    for index, profile_id in enumerate(profiles):
        payloads, outcome_payloads = replies[2 * index], replies[2 * index + 1]
        records = [json.loads(p) for p in payloads if p is not None]
        records.sort(key=lambda record: (record["as_of"], record["time"]))
        outcomes = [outcome_from_json(json.loads(p)) for p in outcome_payloads]
        logs.append(ProfileLog(profile_id, records, outcomes))
    return logs


def _export_command(args: argparse.Namespace) -> None:
    observed_until = args.observed_until or int(time.time())

    async def run() -> ExportSummary:
        redis = create_redis(args.redis_url, timeout_seconds=30.0)
        try:
            return await export_log(redis, args.out, observed_until)
        finally:
            await redis.aclose()

    summary = asyncio.run(run())
    print(
        f"exported {summary.decisions} decisions and {summary.outcomes} outcomes of "
        f"{summary.profiles} profiles to {args.out}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m services.decision.logfile",
        description="Export the decision service's records and outcomes to a log file.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    export = commands.add_parser("export", help="write a log file from Redis")
    export.add_argument("--redis-url", required=True, help="Redis URL of the service")
    export.add_argument(
        "--out", type=Path, required=True, help="log file (.jsonl or .jsonl.gz)"
    )
    export.add_argument(
        "--observed-until",
        type=int,
        default=0,
        help="seconds since the epoch up to which outcomes are complete (default: now)",
    )
    args = parser.parse_args(argv)
    try:
        _export_command(args)
    except OSError as exc:
        print(f"export failed: {exc}", file=sys.stderr)
        raise SystemExit(1) from exc


if __name__ == "__main__":
    main()
