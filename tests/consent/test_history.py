"""ListConsentHistory over gRPC: the trail, its pages and the entries' hashes."""

from __future__ import annotations

import hashlib
import json

import redis.asyncio as aioredis

from services.consent.tokens import decode_token
from tests.consent.helpers import SUBJECT, change, record
from trustfirst.consent.v1 import consent_pb2 as pb
from trustfirst.consent.v1 import consent_pb2_grpc

LEDGER_KEY = f"tf:consent:{{{SUBJECT}}}:ledger"


async def history(
    stub: consent_pb2_grpc.ConsentServiceAsyncStub, page_size: int = 0, token: str = ""
) -> pb.ListConsentHistoryResponse:
    return await stub.ListConsentHistory(
        pb.ListConsentHistoryRequest(
            subject_id=SUBJECT, page_size=page_size, page_token=token
        )
    )


async def test_history_empty_subject(
    stub: consent_pb2_grpc.ConsentServiceAsyncStub,
) -> None:
    response = await history(stub)

    assert list(response.entries) == []
    assert response.next_page_token == ""
    assert decode_token(SUBJECT, response.consistency_token) == 0


async def test_history_entry_fields(
    stub: consent_pb2_grpc.ConsentServiceAsyncStub,
) -> None:
    first = await record(stub, change(pb.CONSENT_ACTION_GRANT, expire_in_seconds=600))
    second = await record(
        stub, change(pb.CONSENT_ACTION_WITHDRAW), idempotency_key="withdraw-1"
    )

    entries = (await history(stub)).entries

    assert [e.sequence for e in entries] == [1, 2]
    assert [e.type for e in entries] == [pb.LEDGER_ENTRY_TYPE_RECORD] * 2
    assert entries[0].prev_hash == "0" * 64
    assert entries[1].prev_hash == entries[0].hash
    assert entries[0].hash == first.entry_hash
    assert entries[1].hash == second.entry_hash
    assert entries[1].idempotency_key == "withdraw-1"
    assert entries[0].source == "preference-center"
    assert entries[0].notice_version == "2025-01"
    assert entries[0].changes[0].status == pb.CONSENT_STATUS_GRANTED
    assert entries[0].changes[0].expire_time == first.records[0].expire_time
    assert entries[1].changes[0].status == pb.CONSENT_STATUS_WITHDRAWN
    assert entries[0].time == first.records[0].update_time


async def test_history_json_is_hashed_text(
    stub: consent_pb2_grpc.ConsentServiceAsyncStub, redis_client: aioredis.Redis
) -> None:
    await record(stub, change(pb.CONSENT_ACTION_GRANT))

    entry = (await history(stub)).entries[0]
    stored = await redis_client.lindex(LEDGER_KEY, 0)

    assert entry.canonical_json == stored
    assert entry.hash == hashlib.sha256(entry.canonical_json.encode()).hexdigest()


async def test_history_pages(stub: consent_pb2_grpc.ConsentServiceAsyncStub) -> None:
    for action in [pb.CONSENT_ACTION_GRANT, pb.CONSENT_ACTION_DENY] * 3 + [
        pb.CONSENT_ACTION_GRANT
    ]:
        await record(stub, change(action))

    pages = [await history(stub, page_size=3)]
    while pages[-1].next_page_token:
        pages.append(await history(stub, 3, pages[-1].next_page_token))

    assert [[e.sequence for e in page.entries] for page in pages] == [
        [1, 2, 3],
        [4, 5, 6],
        [7],
    ]
    assert {decode_token(SUBJECT, page.consistency_token) for page in pages} == {7}


async def test_history_exact_last_page(
    stub: consent_pb2_grpc.ConsentServiceAsyncStub,
) -> None:
    await record(stub, change(pb.CONSENT_ACTION_GRANT))
    await record(stub, change(pb.CONSENT_ACTION_DENY))

    first = await history(stub, page_size=2)

    assert len(first.entries) == 2
    assert first.next_page_token == ""


async def test_history_shows_malformed_entry(
    stub: consent_pb2_grpc.ConsentServiceAsyncStub, redis_client: aioredis.Redis
) -> None:
    await record(stub, change(pb.CONSENT_ACTION_GRANT))
    await record(stub, change(pb.CONSENT_ACTION_DENY))
    await redis_client.lset(LEDGER_KEY, 0, "not json")

    entries = (await history(stub)).entries

    assert entries[0].type == pb.LEDGER_ENTRY_TYPE_UNSPECIFIED
    assert entries[0].sequence == 1
    assert entries[0].canonical_json == "not json"
    assert entries[1].type == pb.LEDGER_ENTRY_TYPE_RECORD


async def test_history_entry_decodes_to_json(
    stub: consent_pb2_grpc.ConsentServiceAsyncStub,
) -> None:
    await record(stub, change(pb.CONSENT_ACTION_GRANT))

    entry = (await history(stub)).entries[0]
    document = json.loads(entry.canonical_json)

    assert document["sequence"] == entry.sequence
    assert document["prev_hash"] == entry.prev_hash
    assert document["subject_id"] == SUBJECT
