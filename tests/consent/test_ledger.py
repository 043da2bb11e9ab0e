"""The ledger: entry fields, the hash chain, and the entry format itself."""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import cast

import redis.asyncio as aioredis

from services.consent.ledger import (
    GENESIS_HASH,
    LedgerEntry,
    decode_entry,
    encode_entry,
    entry_hash,
)
from services.consent.models import Change, RecordRequest
from tests.consent.helpers import (
    SUBJECT,
    build_domain,
    change,
    record,
    record_request,
)
from trustfirst.consent.v1 import consent_pb2 as pb
from trustfirst.consent.v1 import consent_pb2_grpc

LEDGER_KEY = f"tf:consent:{{{SUBJECT}}}:ledger"
STATE_KEY = f"tf:consent:{{{SUBJECT}}}:state"


def chain_breaks(entries: list[str]) -> list[int]:
    """Return the sequences whose prev_hash is not the SHA-256 of the entry before."""
    previous = GENESIS_HASH
    breaks = []
    for text in entries:
        document = json.loads(text)
        if document["prev_hash"] != previous:
            breaks.append(document["sequence"])
        previous = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return breaks


async def ledger_entries(redis_client: aioredis.Redis) -> list[str]:
    """Return the subject's stored entries (the client decodes replies to str)."""
    return cast("list[str]", await redis_client.lrange(LEDGER_KEY, 0, -1))


async def write_three(stub: consent_pb2_grpc.ConsentServiceAsyncStub) -> None:
    await record(stub, change(pb.CONSENT_ACTION_GRANT))
    await record(stub, change(pb.CONSENT_ACTION_WITHDRAW), idempotency_key="k2")
    await record(
        stub,
        change(pb.CONSENT_ACTION_GRANT, channel=pb.CHANNEL_SMS, expire_in_seconds=60),
        change(pb.CONSENT_ACTION_DENY, pb.PURPOSE_PROFILING, pb.CHANNEL_WEB),
    )


async def test_ledger_entries_chain(
    stub: consent_pb2_grpc.ConsentServiceAsyncStub, redis_client: aioredis.Redis
) -> None:
    await write_three(stub)

    entries = await ledger_entries(redis_client)
    documents = [json.loads(text) for text in entries]

    assert [d["sequence"] for d in documents] == [1, 2, 3]
    assert documents[0]["prev_hash"] == "0" * 64
    assert documents[1]["prev_hash"] == hashlib.sha256(entries[0].encode()).hexdigest()
    assert documents[2]["prev_hash"] == hashlib.sha256(entries[1].encode()).hexdigest()
    assert chain_breaks(entries) == []


async def test_ledger_head_is_last_hash(
    stub: consent_pb2_grpc.ConsentServiceAsyncStub, redis_client: aioredis.Redis
) -> None:
    await write_three(stub)

    last = (await ledger_entries(redis_client))[-1]
    state = await redis_client.hgetall(STATE_KEY)

    assert state["ledger_head"] == hashlib.sha256(last.encode()).hexdigest()
    assert state["ledger_sequence"] == "3"


async def test_ledger_entry_fields(
    stub: consent_pb2_grpc.ConsentServiceAsyncStub, redis_client: aioredis.Redis
) -> None:
    await write_three(stub)

    entries = await ledger_entries(redis_client)
    second = json.loads(entries[1])
    third = json.loads(entries[2])

    assert second["version"] == 1
    assert second["type"] == "record"
    assert second["subject_id"] == SUBJECT
    assert second["source"] == "preference-center"
    assert second["notice_version"] == "2025-01"
    assert second["idempotency_key"] == "k2"
    assert second["time"].endswith("Z")
    assert second["changes"] == [
        {"purpose": "marketing", "channel": "email", "action": "withdraw"}
    ]
    assert "idempotency_key" not in third
    assert [c["action"] for c in third["changes"]] == ["grant", "deny"]
    assert third["changes"][0]["expire_time"].endswith("Z")


async def test_ledger_tamper_detected(
    stub: consent_pb2_grpc.ConsentServiceAsyncStub, redis_client: aioredis.Redis
) -> None:
    await write_three(stub)
    entries = await ledger_entries(redis_client)
    forged = entries[0].replace('"action":"grant"', '"action":"deny"')
    await redis_client.lset(LEDGER_KEY, 0, forged)

    tampered = await ledger_entries(redis_client)

    assert forged != entries[0]
    assert chain_breaks(tampered) == [2]


async def test_ledger_replay_adds_no_entry(
    stub: consent_pb2_grpc.ConsentServiceAsyncStub, redis_client: aioredis.Redis
) -> None:
    request = record_request(change(pb.CONSENT_ACTION_GRANT), idempotency_key="once")
    await stub.RecordConsent(request)
    await stub.RecordConsent(request)

    assert await redis_client.llen(LEDGER_KEY) == 1


def test_entry_canonical_json() -> None:
    entry = LedgerEntry(
        sequence=7,
        prev_hash="ab" * 32,
        subject_id="profile-ü",
        time_ns=1_735_689_600_123_456_789,
        source="pos",
        notice_version="v2",
        idempotency_key=None,
        changes=(
            Change(pb.PURPOSE_ANALYTICS, pb.CHANNEL_IN_APP, pb.CONSENT_ACTION_GRANT),
        ),
    )

    text = encode_entry(entry)

    assert text == (
        '{"changes":[{"action":"grant","channel":"in_app","purpose":"analytics"}],'
        '"notice_version":"v2","prev_hash":"' + "ab" * 32 + '","sequence":7,'
        '"source":"pos","subject_id":"profile-ü",'
        '"time":"2025-01-01T00:00:00.123456789Z","type":"record","version":1}'
    )
    assert entry_hash(text) == hashlib.sha256(text.encode("utf-8")).hexdigest()


def test_entry_round_trip() -> None:
    entry = LedgerEntry(
        sequence=1,
        prev_hash=GENESIS_HASH,
        subject_id=SUBJECT,
        time_ns=1_700_000_000_000_000_001,
        source="web",
        notice_version="v1",
        idempotency_key="key-1",
        changes=(
            Change(
                pb.PURPOSE_MARKETING,
                pb.CHANNEL_SMS,
                pb.CONSENT_ACTION_GRANT,
                expire_ns=1_800_000_000_000_000_999,
            ),
            Change(pb.PURPOSE_PROFILING, pb.CHANNEL_WEB, pb.CONSENT_ACTION_WITHDRAW),
        ),
    )

    assert decode_entry(encode_entry(entry)) == entry


async def test_recorder_concurrent_writes_chain(redis_client: aioredis.Redis) -> None:
    # Called directly, every write reads the same position before any appends, so all
    # but one must detect the conflict and rebuild their entry on the new head.
    recorder = build_domain(redis_client).recorder
    requests = [
        RecordRequest(
            subject_id=SUBJECT,
            changes=(Change(pb.PURPOSE_MARKETING, channel, pb.CONSENT_ACTION_GRANT),),
            source="pos",
            notice_version="v1",
        )
        for channel in (pb.CHANNEL_EMAIL, pb.CHANNEL_SMS, pb.CHANNEL_PUSH) * 4
    ]

    results = await asyncio.gather(*(recorder.record(r) for r in requests))
    entries = await ledger_entries(redis_client)

    assert sorted(result.sequence for result in results) == list(range(1, 13))
    assert len(entries) == 12
    assert chain_breaks(entries) == []
