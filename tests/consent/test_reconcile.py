"""Merge, split and erase reconciliation, called directly on the domain objects."""

from __future__ import annotations

import hashlib
from typing import TypeAlias, cast

import pytest
import redis.asyncio as aioredis

from services.consent.errors import SubjectErased, SubjectMerged
from services.consent.ledger import decode_entry
from services.consent.models import (
    Change,
    JurisdictionRequest,
    Pair,
    RecordRequest,
)
from services.consent.reconciler import IdentityEvent
from tests.consent.helpers import Domain, build_domain
from trustfirst.consent.v1 import consent_pb2 as pb

SURVIVOR = "profile-s"
MERGED = "profile-l"
T0 = 1_800_000_000 * 10**9
MINUTE = 60 * 10**9

GRANT = pb.CONSENT_ACTION_GRANT
DENY = pb.CONSENT_ACTION_DENY
WITHDRAW = pb.CONSENT_ACTION_WITHDRAW


class Clock:
    """A settable clock in Unix ns."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def domain(redis_client: aioredis.Redis, clock: Clock) -> Domain:
    return build_domain(redis_client, clock)


def pair(purpose: int, channel: int) -> Pair:
    return Pair(pb.Purpose.ValueType(purpose), pb.Channel.ValueType(channel))


async def write(
    domain: Domain, subject_id: str, *changes: tuple[Pair, int, int | None]
) -> None:
    await domain.recorder.record(
        RecordRequest(
            subject_id=subject_id,
            changes=tuple(
                Change(p.purpose, p.channel, pb.ConsentAction.ValueType(action), expire)
                for p, action, expire in changes
            ),
            source="preference-center",
            notice_version="v1",
        )
    )


async def set_jurisdiction(domain: Domain, subject_id: str, code: str) -> None:
    await domain.recorder.set_jurisdiction(
        JurisdictionRequest(subject_id, code, "signup")
    )


def merge_event(survivor: str = SURVIVOR, *merged: str) -> IdentityEvent:
    return IdentityEvent("1-1", "merge", survivor, merged or (MERGED,))


async def ledger(redis_client: aioredis.Redis, subject_id: str) -> list[str]:
    texts = await redis_client.lrange(f"tf:consent:{{{subject_id}}}:ledger", 0, -1)
    return cast("list[str]", texts)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def state(redis_client: aioredis.Redis, subject_id: str) -> dict[str, str]:
    stored = await redis_client.hgetall(f"tf:consent:{{{subject_id}}}:state")
    return cast("dict[str, str]", stored)


EMAIL = pair(pb.PURPOSE_MARKETING, pb.CHANNEL_EMAIL)
SMS = pair(pb.PURPOSE_MARKETING, pb.CHANNEL_SMS)
PUSH = pair(pb.PURPOSE_MARKETING, pb.CHANNEL_PUSH)
IN_APP = pair(pb.PURPOSE_MARKETING, pb.CHANNEL_IN_APP)
WEB = pair(pb.PURPOSE_MARKETING, pb.CHANNEL_WEB)
IN_STORE = pair(pb.PURPOSE_MARKETING, pb.CHANNEL_IN_STORE)
PROFILING_WEB = pair(pb.PURPOSE_PROFILING, pb.CHANNEL_WEB)
ANALYTICS_WEB = pair(pb.PURPOSE_ANALYTICS, pb.CHANNEL_WEB)

# pair: (survivor's action, merged's action, expected reason after the merge). An
# action is (action, expiry in minutes from T0) or None for never asked.
Written: TypeAlias = tuple[int, int | None] | None
MERGE_TABLE: dict[Pair, tuple[Written, Written, int]] = {
    EMAIL: ((GRANT, None), (DENY, None), pb.CHECK_REASON_DENIED),
    SMS: ((GRANT, None), None, pb.CHECK_REASON_NEVER_ASKED),
    PUSH: (None, (GRANT, None), pb.CHECK_REASON_NEVER_ASKED),
    IN_APP: ((GRANT, 60), (GRANT, 10), pb.CHECK_REASON_GRANTED),
    WEB: ((GRANT, None), (GRANT, 1), pb.CHECK_REASON_EXPIRED),
    IN_STORE: ((DENY, None), (WITHDRAW, None), pb.CHECK_REASON_WITHDRAWN),
    PROFILING_WEB: ((WITHDRAW, None), (DENY, None), pb.CHECK_REASON_WITHDRAWN),
    ANALYTICS_WEB: ((GRANT, None), (GRANT, None), pb.CHECK_REASON_GRANTED),
}


async def write_table(domain: Domain, side: int) -> None:
    changes = []
    for target, (survivor, merged, _) in MERGE_TABLE.items():
        action = survivor if side == 0 else merged
        if action is not None:
            kind, minutes = action
            expire = None if minutes is None else T0 + minutes * MINUTE
            changes.append((target, kind, expire))
    await write(domain, SURVIVOR if side == 0 else MERGED, *changes)


async def test_merge_most_restrictive_per_pair(domain: Domain, clock: Clock) -> None:
    await write_table(domain, 0)
    await write_table(domain, 1)
    clock.now = T0 + 2 * MINUTE

    await domain.reconciler.apply(merge_event())
    answer = await domain.reader.check(SURVIVOR, list(MERGE_TABLE))

    assert [v.reason for v in answer.verdicts] == [
        row[2] for row in MERGE_TABLE.values()
    ]


async def test_merge_keeps_sooner_expiry(domain: Domain, clock: Clock) -> None:
    await write_table(domain, 0)
    await write_table(domain, 1)
    clock.now = T0 + 2 * MINUTE
    await domain.reconciler.apply(merge_event())

    clock.now = T0 + 11 * MINUTE
    answer = await domain.reader.check(SURVIVOR, [IN_APP])

    assert answer.verdicts[0].reason == pb.CHECK_REASON_EXPIRED


async def test_merge_entry_links_chains(
    domain: Domain, redis_client: aioredis.Redis
) -> None:
    await write(domain, SURVIVOR, (EMAIL, GRANT, None))
    await write(domain, MERGED, (EMAIL, DENY, None))

    await domain.reconciler.apply(merge_event())
    merged_ledger = await ledger(redis_client, MERGED)
    survivor_ledger = await ledger(redis_client, SURVIVOR)
    closing = decode_entry(merged_ledger[-1])
    folded = decode_entry(survivor_ledger[-1])
    merged_state = await state(redis_client, MERGED)

    assert closing.type == "merged_into"
    assert closing.link is not None
    assert closing.link.subject_id == SURVIVOR
    assert folded.type == "merge"
    assert folded.source == "identity-merge"
    assert folded.event_id == "1-1"
    assert folded.idempotency_key == f"identity-merge:{MERGED}"
    assert folded.link is not None
    assert folded.link.subject_id == MERGED
    assert folded.link.sequence == 2
    assert folded.link.head == merged_state["ledger_head"]
    assert [c.action for c in folded.changes] == [DENY]


async def test_merge_ledgers_verify(domain: Domain) -> None:
    await write_table(domain, 0)
    await write_table(domain, 1)

    await domain.reconciler.apply(merge_event())
    survivor = await domain.verifier.verify(SURVIVOR)
    merged = await domain.verifier.verify(MERGED)

    assert survivor.problems == []
    assert merged.problems == []


async def test_merge_twice_same_effect(
    domain: Domain, redis_client: aioredis.Redis
) -> None:
    await write_table(domain, 0)
    await write_table(domain, 1)

    await domain.reconciler.apply(merge_event())
    once = (await state(redis_client, SURVIVOR), await ledger(redis_client, MERGED))
    await domain.reconciler.apply(merge_event())
    twice = (await state(redis_client, SURVIVOR), await ledger(redis_client, MERGED))

    assert twice == once
    assert len(await ledger(redis_client, SURVIVOR)) == 2


async def test_merge_closes_merged_subject(domain: Domain) -> None:
    await write(domain, MERGED, (EMAIL, GRANT, None))
    await domain.reconciler.apply(merge_event())

    answer = await domain.reader.check(MERGED, [EMAIL])
    with pytest.raises(SubjectMerged) as raised:
        await write(domain, MERGED, (EMAIL, GRANT, None))

    assert answer.merged_into == SURVIVOR
    assert answer.verdicts[0].allowed is False
    assert answer.verdicts[0].reason == pb.CHECK_REASON_SUBJECT_MERGED
    assert raised.value.merged_into == SURVIVOR


async def test_merge_of_unknown_profile_resets_grants(domain: Domain) -> None:
    # Never asked beats granted, so merging in a profile with no consent at all
    # (an anonymous web profile, say) returns the survivor's grants to never asked.
    await write(domain, SURVIVOR, (EMAIL, GRANT, None), (SMS, DENY, None))

    await domain.reconciler.apply(merge_event())
    answer = await domain.reader.check(SURVIVOR, [EMAIL, SMS])

    assert [v.reason for v in answer.verdicts] == [
        pb.CHECK_REASON_NEVER_ASKED,
        pb.CHECK_REASON_DENIED,
    ]


async def test_merge_then_customer_decides(domain: Domain) -> None:
    await write(domain, SURVIVOR, (EMAIL, GRANT, None))
    await write(domain, MERGED, (EMAIL, WITHDRAW, None))
    await domain.reconciler.apply(merge_event())

    await write(domain, SURVIVOR, (EMAIL, GRANT, None))
    answer = await domain.reader.check(SURVIVOR, [EMAIL])

    assert answer.verdicts[0].allowed is True


async def test_merge_follows_moved_survivor(domain: Domain) -> None:
    # The survivor was itself merged into profile-t before this event was applied.
    await write(domain, "profile-t", (EMAIL, GRANT, None))
    await write(domain, SURVIVOR, (EMAIL, GRANT, None))
    await write(domain, MERGED, (EMAIL, DENY, None))
    await domain.reconciler.apply(merge_event("profile-t", SURVIVOR))

    await domain.reconciler.apply(merge_event())
    answer = await domain.reader.check("profile-t", [EMAIL])

    assert answer.verdicts[0].reason == pb.CHECK_REASON_DENIED


async def test_merge_jurisdiction_restrictive(domain: Domain) -> None:
    await set_jurisdiction(domain, SURVIVOR, "US")
    await set_jurisdiction(domain, MERGED, "EU")
    await set_jurisdiction(domain, "profile-x", "US")

    await domain.reconciler.apply(merge_event())
    await domain.reconciler.apply(merge_event("profile-y", "profile-x"))

    assert (await domain.reader.check(SURVIVOR, [EMAIL])).jurisdiction == "EU"
    assert (await domain.reader.check("profile-y", [EMAIL])).jurisdiction == "US"


async def test_split_copies_refusals(
    domain: Domain, redis_client: aioredis.Redis
) -> None:
    await set_jurisdiction(domain, "profile-p", "US")
    await write(
        domain,
        "profile-p",
        (EMAIL, DENY, None),
        (SMS, GRANT, None),
        (PUSH, WITHDRAW, None),
    )
    event = IdentityEvent("2-1", "split", "profile-p", new_profile_id="profile-n")

    await domain.reconciler.apply(event)
    await domain.reconciler.apply(event)
    answer = await domain.reader.check("profile-n", [EMAIL, SMS, PUSH, ANALYTICS_WEB])

    assert answer.jurisdiction == "US"
    assert [v.reason for v in answer.verdicts] == [
        pb.CHECK_REASON_DENIED,
        pb.CHECK_REASON_NEVER_ASKED,
        pb.CHECK_REASON_WITHDRAWN,
        pb.CHECK_REASON_NO_OBJECTION,
    ]
    assert len(await ledger(redis_client, "profile-n")) == 1


async def test_erase_removes_state_keeps_hashes(
    domain: Domain, redis_client: aioredis.Redis
) -> None:
    await write(domain, SURVIVOR, (EMAIL, GRANT, None))
    await write(domain, SURVIVOR, (EMAIL, WITHDRAW, None))
    texts = await ledger(redis_client, SURVIVOR)

    await domain.reconciler.apply(IdentityEvent("3-1", "erase", SURVIVOR))
    keys = await redis_client.keys("*")
    record = await domain.eraser.read_record(SURVIVOR)

    assert keys == [domain.eraser.record_key(SURVIVOR)]
    assert SURVIVOR not in keys[0]
    assert record is not None
    assert list(record.entry_hashes) == [sha256(text) for text in texts]
    assert record.sequence == 2
    assert record.head == sha256(texts[-1])


async def test_erase_record_names_no_one(
    domain: Domain, redis_client: aioredis.Redis
) -> None:
    await write(domain, SURVIVOR, (EMAIL, GRANT, None))

    await domain.eraser.erase(SURVIVOR, "identity-erase")
    stored = await redis_client.hgetall(domain.eraser.record_key(SURVIVOR))

    assert sorted(stored) == [
        "entry_hashes",
        "erase_time",
        "ledger_head",
        "ledger_sequence",
        "reason",
    ]
    assert all(SURVIVOR not in value for value in stored.values())


async def test_erase_then_write_rejected(domain: Domain) -> None:
    await write(domain, SURVIVOR, (EMAIL, GRANT, None))
    await domain.eraser.erase(SURVIVOR, "identity-erase")

    with pytest.raises(SubjectErased):
        await write(domain, SURVIVOR, (EMAIL, GRANT, None))


async def test_erase_twice_same_record(domain: Domain, clock: Clock) -> None:
    await write(domain, SURVIVOR, (EMAIL, GRANT, None))

    first = await domain.eraser.erase(SURVIVOR, "identity-erase")
    clock.now += MINUTE
    second = await domain.eraser.erase(SURVIVOR, "identity-erase")

    assert second == first


async def test_erase_event_covers_merged_ids(
    domain: Domain, redis_client: aioredis.Redis
) -> None:
    await write(domain, SURVIVOR, (EMAIL, GRANT, None))
    await write(domain, MERGED, (EMAIL, DENY, None))
    await domain.reconciler.apply(merge_event())

    await domain.reconciler.apply(IdentityEvent("4-1", "erase", SURVIVOR, (MERGED,)))
    keys = sorted(await redis_client.keys("*"))

    assert keys == sorted(
        [domain.eraser.record_key(SURVIVOR), domain.eraser.record_key(MERGED)]
    )


async def test_merge_after_erase_skipped(
    domain: Domain, redis_client: aioredis.Redis
) -> None:
    # An old merge event delivered after the survivor's erasure brings nothing back.
    await write(domain, MERGED, (EMAIL, DENY, None))
    await domain.eraser.erase(SURVIVOR, "identity-erase")

    await domain.reconciler.apply(merge_event())

    assert await ledger(redis_client, SURVIVOR) == []
    assert await state(redis_client, SURVIVOR) == {}


async def test_verify_erased_subject(domain: Domain) -> None:
    await write(domain, SURVIVOR, (EMAIL, GRANT, None))
    await domain.eraser.erase(SURVIVOR, "identity-erase")

    report = await domain.verifier.verify(SURVIVOR)

    assert report.valid is True
    assert report.entry_count == 0
    assert report.erasure is not None
    assert report.erasure.sequence == 1
