"""Purchase aggregates and the feature vector built from them."""

import math

import pytest

from services.decision.features import (
    CONTACT_FEATURE_NAMES,
    DECISION_FEATURE_NAMES,
    FEATURE_NAMES,
    SECONDS_PER_DAY,
    PurchaseAggregate,
    contact_features,
    decision_features,
    feature_vector,
)

DAY = SECONDS_PER_DAY


def test_feature_names_order() -> None:
    assert FEATURE_NAMES == (
        "recency_days",
        "frequency",
        "tenure_days",
        "monetary_total_cents",
        "monetary_mean_cents",
        "last_amount_cents",
        "basket_trend",
        "mean_quantity",
        "mean_gap_days",
        "recency_to_gap",
        "purchases_per_30_days",
    )


def test_features_of_known_aggregate() -> None:
    # Three purchases on days 0, 10 and 30: 2000, 1000 and 3000 cents, 6 items in all.
    aggregate = PurchaseAggregate(
        purchase_count=3,
        total_amount_cents=6000,
        total_quantity=6,
        first_purchase_time=0,
        last_purchase_time=30 * DAY,
        last_amount_cents=3000,
    )

    features = dict(
        zip(FEATURE_NAMES, feature_vector(aggregate, 60 * DAY), strict=True)
    )

    assert features["recency_days"] == 30.0
    assert features["frequency"] == 3.0
    assert features["tenure_days"] == 60.0
    assert features["monetary_total_cents"] == 6000.0
    assert features["monetary_mean_cents"] == 2000.0
    assert features["last_amount_cents"] == 3000.0
    assert features["basket_trend"] == 2.0
    assert features["mean_quantity"] == 2.0
    assert features["mean_gap_days"] == 15.0
    assert features["recency_to_gap"] == 2.0
    assert features["purchases_per_30_days"] == 1.5


def test_features_of_one_purchase() -> None:
    aggregate = PurchaseAggregate()
    aggregate.add_purchase(time=5 * DAY, amount_cents=1200, quantity=2)

    features = dict(zip(FEATURE_NAMES, feature_vector(aggregate, 5 * DAY), strict=True))

    assert features["recency_days"] == 0.0
    assert features["tenure_days"] == 0.0
    assert math.isnan(features["basket_trend"])
    assert math.isnan(features["mean_gap_days"])
    assert math.isnan(features["recency_to_gap"])
    assert features["purchases_per_30_days"] == 30.0


def test_features_of_empty_aggregate() -> None:
    features = dict(
        zip(FEATURE_NAMES, feature_vector(PurchaseAggregate(), 0), strict=True)
    )

    assert features["frequency"] == 0.0
    assert features["monetary_total_cents"] == 0.0
    assert math.isnan(features["recency_days"])
    assert math.isnan(features["monetary_mean_cents"])


def test_features_clamp_future_purchase() -> None:
    aggregate = PurchaseAggregate()
    aggregate.add_purchase(time=10 * DAY, amount_cents=100, quantity=1)

    features = feature_vector(aggregate, 4 * DAY)

    assert features[0] == 0.0
    assert features[2] == 0.0


def test_add_purchase_out_of_order() -> None:
    aggregate = PurchaseAggregate()
    aggregate.add_purchase(time=20, amount_cents=500, quantity=1)
    aggregate.add_purchase(time=10, amount_cents=700, quantity=2)
    aggregate.add_purchase(time=30, amount_cents=300, quantity=3)

    assert aggregate == PurchaseAggregate(
        purchase_count=3,
        total_amount_cents=1500,
        total_quantity=6,
        first_purchase_time=10,
        last_purchase_time=30,
        last_amount_cents=300,
    )


@pytest.mark.parametrize(("amounts", "last"), [((500, 800), 800), ((800, 500), 500)])
def test_add_purchase_same_time(amounts: tuple[int, int], last: int) -> None:
    aggregate = PurchaseAggregate()
    for amount in amounts:
        aggregate.add_purchase(time=100, amount_cents=amount, quantity=1)

    assert aggregate.last_amount_cents == last


def test_contact_features_counts() -> None:
    now = 100 * DAY
    times = [now - 2 * DAY, now - 10 * DAY, now - 40 * DAY, now - 95 * DAY, now + DAY]

    features = dict(
        zip(CONTACT_FEATURE_NAMES, contact_features(times, now), strict=True)
    )

    assert features == {
        "contacts_7_days": 1.0,
        "contacts_30_days": 2.0,
        "days_since_contact": 2.0,
    }


def test_contact_features_without_contacts() -> None:
    features = contact_features([], 100 * DAY)

    assert features[:2] == [0.0, 0.0]
    assert math.isnan(features[2])


def test_decision_features_append_contacts() -> None:
    aggregate = PurchaseAggregate()
    aggregate.add_purchase(time=5 * DAY, amount_cents=1200, quantity=2)

    features = decision_features(aggregate, [9 * DAY], 10 * DAY)

    assert len(features) == len(DECISION_FEATURE_NAMES)
    assert features[: len(FEATURE_NAMES)] == feature_vector(aggregate, 10 * DAY)
    assert features[-1] == 1.0
