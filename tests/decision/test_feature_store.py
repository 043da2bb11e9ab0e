"""The Redis feature store: atomic, idempotent purchase updates and bulk loading."""

import pytest
import redis.asyncio as aioredis

from services.decision.feature_store import (
    PUT_MANY_CHUNK_SIZE,
    FeatureDataError,
    FeatureStore,
    event_key,
    features_key,
)
from services.decision.features import PurchaseAggregate

TTL_SECONDS = 3600


@pytest.fixture
def store(redis_client: aioredis.Redis) -> FeatureStore:
    return FeatureStore(redis_client, event_ttl_seconds=TTL_SECONDS)


def test_keys_carry_hash_tag() -> None:
    assert features_key("p1") == "tf:decision:{p1}:features"
    assert event_key("p1", "e-9") == "tf:decision:{p1}:event:e-9"


async def test_get_unknown_profile(store: FeatureStore) -> None:
    assert await store.get("nobody") is None


async def test_record_matches_python_rule(store: FeatureStore) -> None:
    # Out of time order, with a tie on the latest time, as the Lua script must handle.
    purchases = [
        (200, 500, 1),
        (100, 700, 2),
        (300, 300, 3),
        (300, 900, 1),
        (250, 0, 1),
    ]
    expected = PurchaseAggregate()
    for number, (time, amount, quantity) in enumerate(purchases):
        await store.record_purchase("p1", f"e{number}", time, amount, quantity)
        expected.add_purchase(time, amount, quantity)

    assert await store.get("p1") == expected


async def test_record_written_out(store: FeatureStore) -> None:
    await store.record_purchase("p1", "e1", time=1000, amount_cents=2500, quantity=2)
    await store.record_purchase("p1", "e2", time=500, amount_cents=1500, quantity=1)

    assert await store.get("p1") == PurchaseAggregate(
        purchase_count=2,
        total_amount_cents=4000,
        total_quantity=3,
        first_purchase_time=500,
        last_purchase_time=1000,
        last_amount_cents=2500,
    )


async def test_duplicate_event_ignored(store: FeatureStore) -> None:
    first = await store.record_purchase(
        "p1", "e1", time=1000, amount_cents=2500, quantity=2
    )
    before = await store.get("p1")

    second = await store.record_purchase(
        "p1", "e1", time=2000, amount_cents=9900, quantity=9
    )

    assert first is True
    assert second is False
    assert await store.get("p1") == before


async def test_event_marker_expires(
    store: FeatureStore, redis_client: aioredis.Redis
) -> None:
    await store.record_purchase("p1", "e1", time=1000, amount_cents=100, quantity=1)

    ttl = await redis_client.ttl(event_key("p1", "e1"))

    assert 0 < ttl <= TTL_SECONDS


async def test_same_event_id_other_profile(store: FeatureStore) -> None:
    await store.record_purchase("p1", "e1", time=1000, amount_cents=100, quantity=1)

    applied = await store.record_purchase(
        "p2", "e1", time=1000, amount_cents=100, quantity=1
    )

    assert applied is True


async def test_put_many_across_chunks(store: FeatureStore) -> None:
    count = PUT_MANY_CHUNK_SIZE * 2 + 7
    aggregates = {
        f"c{number}": PurchaseAggregate(
            purchase_count=number % 5 + 1,
            total_amount_cents=number * 10,
            total_quantity=number % 5 + 1,
            first_purchase_time=number,
            last_purchase_time=number + 100,
            last_amount_cents=number,
        )
        for number in range(count)
    }

    written = await store.put_many(aggregates)

    assert written == count
    assert await store.get("c0") == aggregates["c0"]
    assert await store.get(f"c{count - 1}") == aggregates[f"c{count - 1}"]


async def test_put_many_replaces(store: FeatureStore) -> None:
    await store.record_purchase("p1", "e1", time=1000, amount_cents=100, quantity=1)
    loaded = PurchaseAggregate(3, 9000, 4, 10, 20, 3000)

    await store.put_many({"p1": loaded})

    assert await store.get("p1") == loaded


async def test_put_many_rejects_invalid_id(store: FeatureStore) -> None:
    with pytest.raises(ValueError, match="invalid profile id"):
        await store.put_many(
            {"good": PurchaseAggregate(1), "bad{id}": PurchaseAggregate(1)}
        )

    assert await store.get("good") is None


async def test_corrupt_hash(store: FeatureStore, redis_client: aioredis.Redis) -> None:
    await redis_client.hset(features_key("p1"), mapping={"count": "two"})

    with pytest.raises(FeatureDataError, match="'count'"):
        await store.get("p1")
