"""A SIGKILL of Redis in the middle of 1,000 concurrent RecordConsent calls.

Redis runs with AOF and fsync on every write. Calls in flight when it dies may fail,
but every call that was acknowledged must find its entry after the restart, and every
ledger must still verify.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import grpc
import redis.asyncio as aioredis

from services.consent.app import create_service
from services.consent.ledger import decode_entry, entry_hash
from services.consent.tokens import decode_token
from shared.embedded_redis import EmbeddedRedis, free_port
from tests.consent.conftest import consent_settings
from tests.consent.helpers import CHANNELS, change, record_request
from trustfirst.consent.v1 import consent_pb2 as pb
from trustfirst.consent.v1 import consent_pb2_grpc

CALLS = 1000
SUBJECTS = 100
KILL_AFTER_ACKS = 300
ACTIONS = [pb.CONSENT_ACTION_GRANT, pb.CONSENT_ACTION_DENY, pb.CONSENT_ACTION_WITHDRAW]


@dataclass(frozen=True)
class Ack:
    subject_id: str
    idempotency_key: str
    sequence: int
    entry_hash: str


def request_for(index: int) -> pb.RecordConsentRequest:
    return record_request(
        change(ACTIONS[index % 3], channel=CHANNELS[index % len(CHANNELS)]),
        subject_id=f"crash-{index % SUBJECTS:03d}",
        idempotency_key=f"write-{index}",
    )


async def send_all(
    stub: consent_pb2_grpc.ConsentServiceAsyncStub,
    acks: list[Ack],
    failures: Counter[grpc.StatusCode],
    midway: asyncio.Event,
) -> list[asyncio.Task[None]]:
    """Start every call; midway is set once KILL_AFTER_ACKS calls are acknowledged."""

    async def send(index: int) -> None:
        request = request_for(index)
        try:
            response = await stub.RecordConsent(request, timeout=30)
        except grpc.aio.AioRpcError as error:
            failures[error.code()] += 1
            return
        sequence = decode_token(request.subject_id, response.consistency_token)
        acks.append(
            Ack(
                request.subject_id,
                request.idempotency_key,
                sequence,
                response.entry_hash,
            )
        )
        if len(acks) >= KILL_AFTER_ACKS:
            midway.set()

    return [asyncio.create_task(send(index)) for index in range(CALLS)]


async def test_crash_keeps_acknowledged_writes(tmp_path: Path) -> None:
    port = free_port()
    data_dir = tmp_path / "redis"
    redis_server = EmbeddedRedis(port=port, data_dir=data_dir, appendfsync="always")
    redis_server.start()
    service = create_service(consent_settings(redis_server.url))
    await service.start()
    acks: list[Ack] = []
    failures: Counter[grpc.StatusCode] = Counter()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel:
            stub = consent_pb2_grpc.ConsentServiceStub(channel)
            midway = asyncio.Event()
            tasks = await send_all(stub, acks, failures, midway)
            await asyncio.wait_for(midway.wait(), timeout=60)
            redis_server.kill()
            acked_before_kill = len(acks)
            await asyncio.sleep(0.2)
            redis_server = EmbeddedRedis(
                port=port, data_dir=data_dir, appendfsync="always"
            )
            redis_server.start()
            await asyncio.gather(*tasks)

            subjects = sorted({f"crash-{index:03d}" for index in range(SUBJECTS)})
            reports = [
                await stub.VerifyLedger(pb.VerifyLedgerRequest(subject_id=subject))
                for subject in subjects
            ]
        async with aioredis.Redis.from_url(
            redis_server.url, decode_responses=True
        ) as client:
            found = [
                cast(
                    "str | None",
                    await client.lindex(
                        f"tf:consent:{{{ack.subject_id}}}:ledger", ack.sequence - 1
                    ),
                )
                for ack in acks
            ]
    finally:
        await service.stop(grace=0)
        redis_server.stop()

    lost = [
        ack
        for ack, text in zip(acks, found, strict=True)
        if text is None
        or entry_hash(text) != ack.entry_hash
        or decode_entry(text).idempotency_key != ack.idempotency_key
    ]
    print(
        f"acknowledged before the kill {acked_before_kill}, in all {len(acks)}, failed {dict(failures)}"
    )
    assert KILL_AFTER_ACKS <= acked_before_kill < CALLS
    assert len(acks) + sum(failures.values()) == CALLS
    assert set(failures) <= {grpc.StatusCode.UNAVAILABLE}
    assert lost == []
    assert [r.problems for r in reports if not r.valid] == []
    assert sum(r.entry_count for r in reports) >= len(acks)
