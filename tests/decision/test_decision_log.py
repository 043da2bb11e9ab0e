"""The decision log's commit script: caps checked and contacts added atomically."""

import redis.asyncio as aioredis

from services.decision.decision_log import ContactWrite, DecisionLog
from services.decision.keys import contacts_key, decisions_key

WEEK = 7 * 86_400
EMAIL_CAP = ContactWrite(channel=1, caps=[(WEEK, 1)], keep_seconds=90 * 86_400)


def _record(decision_id: str, as_of: int) -> dict[str, object]:
    return {"decision_id": decision_id, "as_of": as_of, "features": None}


async def test_commit_adds_contact(redis_client: aioredis.Redis) -> None:
    log = DecisionLog(redis_client, 3600)

    written = await log.commit("p", "d1", _record("d1", 1_000_000), EMAIL_CAP)

    assert written is True
    assert await redis_client.zrange(contacts_key("p"), 0, -1) == ["d1:1"]
    assert await redis_client.zrange(decisions_key("p"), 0, -1) == ["d1"]


async def test_commit_refuses_over_cap(redis_client: aioredis.Redis) -> None:
    log = DecisionLog(redis_client, 3600)
    await log.commit("p", "d1", _record("d1", 1_000_000), EMAIL_CAP)

    second = await log.commit("p", "d2", _record("d2", 1_000_000 + 86_400), EMAIL_CAP)
    later = await log.commit("p", "d3", _record("d3", 1_000_000 + WEEK), EMAIL_CAP)

    assert second is False
    assert await log.load("p", "d2") is None
    assert later is True


async def test_commit_repeated_is_idempotent(redis_client: aioredis.Redis) -> None:
    # A retried call re-runs the script; it must not count its own contact.
    log = DecisionLog(redis_client, 3600)

    first = await log.commit("p", "d1", _record("d1", 1_000_000), EMAIL_CAP)
    again = await log.commit("p", "d1", _record("d1", 1_000_000), EMAIL_CAP)

    assert first is True
    assert again is True
    assert await redis_client.zcard(contacts_key("p")) == 1


async def test_silent_commit_adds_no_contact(redis_client: aioredis.Redis) -> None:
    log = DecisionLog(redis_client, 3600)

    await log.store("p", "d1", _record("d1", 1_000_000))

    assert await redis_client.zcard(contacts_key("p")) == 0
    assert await redis_client.ttl(decisions_key("p")) > 0
