"""VerifyLedger over gRPC: a valid ledger, and every kind of tamper made in Redis."""

from __future__ import annotations

import hashlib
import json
from typing import TypeAlias, cast

import redis.asyncio as aioredis

from services.consent.tokens import decode_token
from tests.consent.helpers import SUBJECT, change, record
from trustfirst.consent.v1 import consent_pb2 as pb
from trustfirst.consent.v1 import consent_pb2_grpc

LEDGER_KEY = f"tf:consent:{{{SUBJECT}}}:ledger"
STATE_KEY = f"tf:consent:{{{SUBJECT}}}:state"
Stub: TypeAlias = "consent_pb2_grpc.ConsentServiceAsyncStub"


async def write_four(stub: Stub) -> list[pb.RecordConsentResponse]:
    return [
        await record(stub, change(pb.CONSENT_ACTION_GRANT)),
        await record(stub, change(pb.CONSENT_ACTION_DENY, channel=pb.CHANNEL_SMS)),
        await record(stub, change(pb.CONSENT_ACTION_WITHDRAW)),
        await record(stub, change(pb.CONSENT_ACTION_GRANT, channel=pb.CHANNEL_PUSH)),
    ]


async def verify(
    stub: Stub, *checkpoints: pb.LedgerCheckpoint
) -> pb.VerifyLedgerResponse:
    return await stub.VerifyLedger(
        pb.VerifyLedgerRequest(subject_id=SUBJECT, checkpoints=checkpoints)
    )


def kinds(response: pb.VerifyLedgerResponse) -> list[tuple[int, int]]:
    return [(p.sequence, p.kind) for p in response.problems]


async def entries(redis_client: aioredis.Redis) -> list[str]:
    return cast("list[str]", await redis_client.lrange(LEDGER_KEY, 0, -1))


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def test_verify_valid_ledger(stub: Stub) -> None:
    written = await write_four(stub)

    response = await verify(stub)

    assert response.valid is True
    assert list(response.problems) == []
    assert response.entry_count == 4
    assert response.head_hash == written[-1].entry_hash
    assert decode_token(SUBJECT, response.consistency_token) == 4
    assert response.HasField("erasure") is False


async def test_verify_empty_subject(stub: Stub) -> None:
    response = await verify(stub)

    assert response.valid is True
    assert response.entry_count == 0
    assert response.head_hash == ""


async def test_verify_changed_entry(stub: Stub, redis_client: aioredis.Redis) -> None:
    await write_four(stub)
    original = (await entries(redis_client))[1]
    await redis_client.lset(LEDGER_KEY, 1, original.replace('"deny"', '"grant"'))

    response = await verify(stub)

    # The link after the edit breaks, and the edited entry no longer derives the
    # stored state of marketing:sms.
    assert response.valid is False
    assert kinds(response) == [
        (3, pb.LEDGER_PROBLEM_KIND_PREV_HASH_MISMATCH),
        (0, pb.LEDGER_PROBLEM_KIND_STATE_MISMATCH),
    ]


async def test_verify_changed_last_entry(
    stub: Stub, redis_client: aioredis.Redis
) -> None:
    await write_four(stub)
    last = (await entries(redis_client))[3]
    await redis_client.lset(LEDGER_KEY, 3, last.replace('"push"', '"web"'))

    response = await verify(stub)

    assert (0, pb.LEDGER_PROBLEM_KIND_HEAD_MISMATCH) in kinds(response)
    assert response.valid is False


async def test_verify_removed_entry(stub: Stub, redis_client: aioredis.Redis) -> None:
    await write_four(stub)
    second = (await entries(redis_client))[1]
    await redis_client.lrem(LEDGER_KEY, 1, second)

    found = kinds(await verify(stub))

    assert (2, pb.LEDGER_PROBLEM_KIND_SEQUENCE_MISMATCH) in found
    assert (2, pb.LEDGER_PROBLEM_KIND_PREV_HASH_MISMATCH) in found
    assert (0, pb.LEDGER_PROBLEM_KIND_LENGTH_MISMATCH) in found


async def test_verify_removed_last_entry(
    stub: Stub, redis_client: aioredis.Redis
) -> None:
    await write_four(stub)
    await redis_client.rpop(LEDGER_KEY)

    found = kinds(await verify(stub))

    assert (0, pb.LEDGER_PROBLEM_KIND_LENGTH_MISMATCH) in found
    assert (0, pb.LEDGER_PROBLEM_KIND_HEAD_MISMATCH) in found


async def test_verify_reordered_entries(
    stub: Stub, redis_client: aioredis.Redis
) -> None:
    await write_four(stub)
    stored = await entries(redis_client)
    await redis_client.lset(LEDGER_KEY, 1, stored[2])
    await redis_client.lset(LEDGER_KEY, 2, stored[1])

    found = kinds(await verify(stub))

    assert (2, pb.LEDGER_PROBLEM_KIND_SEQUENCE_MISMATCH) in found
    assert (3, pb.LEDGER_PROBLEM_KIND_SEQUENCE_MISMATCH) in found
    assert (2, pb.LEDGER_PROBLEM_KIND_PREV_HASH_MISMATCH) in found


async def test_verify_edited_state(stub: Stub, redis_client: aioredis.Redis) -> None:
    await write_four(stub)
    withdrawn = cast(
        "str | None", await redis_client.hget(STATE_KEY, "marketing:email")
    )
    assert withdrawn is not None
    await redis_client.hset(STATE_KEY, "marketing:email", "G" + withdrawn[1:])
    await redis_client.hset(STATE_KEY, "profiling:web", withdrawn)

    response = await verify(stub)

    assert kinds(response) == [
        (0, pb.LEDGER_PROBLEM_KIND_STATE_MISMATCH),
        (0, pb.LEDGER_PROBLEM_KIND_STATE_MISMATCH),
    ]
    assert "marketing:email" in response.problems[0].description
    assert "profiling:web" in response.problems[1].description


async def test_verify_entry_moved_from_other_subject(
    stub: Stub, redis_client: aioredis.Redis
) -> None:
    await record(stub, change(pb.CONSENT_ACTION_GRANT), subject_id="profile-0002")
    await record(stub, change(pb.CONSENT_ACTION_DENY))
    foreign = cast(
        "str | None", await redis_client.lindex("tf:consent:{profile-0002}:ledger", 0)
    )
    assert foreign is not None
    await redis_client.lset(LEDGER_KEY, 0, foreign)

    found = kinds(await verify(stub))

    assert (1, pb.LEDGER_PROBLEM_KIND_SUBJECT_MISMATCH) in found


async def test_verify_malformed_entry(stub: Stub, redis_client: aioredis.Redis) -> None:
    await write_four(stub)
    await redis_client.lset(LEDGER_KEY, 0, '{"sequence": 1}')

    found = kinds(await verify(stub))

    assert found[0] == (1, pb.LEDGER_PROBLEM_KIND_MALFORMED_ENTRY)
    assert (2, pb.LEDGER_PROBLEM_KIND_PREV_HASH_MISMATCH) in found


async def test_verify_rewritten_chain_needs_checkpoint(
    stub: Stub, redis_client: aioredis.Redis
) -> None:
    # Someone with write access to Redis rewrites entry 1 and recomputes every later
    # hash and the head, so the chain is consistent again. Only a hash kept outside
    # Redis, such as RecordConsent's entry_hash, shows the rewrite.
    written = await write_four(stub)
    documents = [json.loads(text) for text in await entries(redis_client)]
    documents[0]["changes"][0]["action"] = "deny"
    previous = "0" * 64
    for index, document in enumerate(documents):
        document["prev_hash"] = previous
        text = json.dumps(document, sort_keys=True, separators=(",", ":"))
        await redis_client.lset(LEDGER_KEY, index, text)
        previous = sha256(text)
    await redis_client.hset(STATE_KEY, "ledger_head", previous)

    without = await verify(stub)
    checkpoint = pb.LedgerCheckpoint(sequence=1, hash=written[0].entry_hash)
    with_checkpoint = await verify(stub, checkpoint)

    assert without.valid is True
    assert with_checkpoint.valid is False
    assert kinds(with_checkpoint) == [(1, pb.LEDGER_PROBLEM_KIND_CHECKPOINT_MISMATCH)]


async def test_verify_checkpoints_match(stub: Stub) -> None:
    written = await write_four(stub)
    checkpoints = [
        pb.LedgerCheckpoint(sequence=index, hash=response.entry_hash)
        for index, response in enumerate(written, 1)
    ]

    response = await verify(stub, *checkpoints)

    assert response.valid is True


async def test_verify_checkpoint_beyond_ledger(stub: Stub) -> None:
    written = await write_four(stub)

    response = await verify(
        stub, pb.LedgerCheckpoint(sequence=5, hash=written[0].entry_hash)
    )

    assert kinds(response) == [(5, pb.LEDGER_PROBLEM_KIND_CHECKPOINT_MISMATCH)]
