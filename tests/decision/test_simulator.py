"""The simulator: calibration on CDNOW, segments, closed-form expectations, fatigue."""

import numpy as np
import pytest

from services.decision.catalog import load_catalog
from services.decision.cdnow import default_cdnow_path, read_cdnow
from services.decision.simulator import (
    BUYS_ANYWAY,
    CDNOW_CALIBRATION,
    MESSAGE_AVERSE,
    PERSUADABLE,
    Simulator,
    calibrate,
    sim_actions,
)
from trustfirst.consent.v1 import consent_pb2

START = 899_251_200
ACTIONS = sim_actions(
    load_catalog().candidates(consent_pb2.CHANNEL_EMAIL, "newsletter")
)
SILENCE, DISCOUNT, CONTENT = 0, 1, 2


@pytest.fixture(scope="module")
def simulator() -> Simulator:
    return Simulator(margin_rate=0.3)


def test_calibration_matches_cdnow() -> None:
    fitted = calibrate(read_cdnow(default_cdnow_path()))

    assert fitted == CDNOW_CALIBRATION


def test_actions_from_catalog() -> None:
    assert [(a.action_id, a.effect) for a in ACTIONS] == [
        ("", "silence"),
        ("email-discount-10pct", "discount"),
        ("email-new-arrivals", "content"),
    ]


def test_population_seeded(simulator: Simulator) -> None:
    first = simulator.sample_population(500, START, seed=3)
    again = simulator.sample_population(500, START, seed=3)

    assert first.segments.tolist() == again.segments.tolist()
    assert first.aggregates == again.aggregates


def test_population_has_every_segment(simulator: Simulator) -> None:
    population = simulator.sample_population(5_000, START, seed=3)

    shares = np.bincount(population.segments, minlength=4) / 5_000
    assert all(share > 0.1 for share in shares)
    assert all(a.purchase_count >= 1 for a in population.aggregates)


def test_silence_rate_matches_calibration(simulator: Simulator) -> None:
    population = simulator.sample_population(20_000, START, seed=4)
    choices = np.zeros(20_000, dtype=np.int64)

    purchases = simulator.expected_purchases(population, choices, ACTIONS, START, 90)

    expected = CDNOW_CALIBRATION.rate_shape * CDNOW_CALIBRATION.rate_scale_90_days
    assert purchases.mean() == pytest.approx(expected, rel=0.1)


def test_expected_margin_matches_sampling(simulator: Simulator) -> None:
    population = simulator.sample_population(2_000, START, seed=5)
    choices = np.full(2_000, DISCOUNT, dtype=np.int64)
    rng = np.random.default_rng(6)

    expected = simulator.expected_margin(population, choices, ACTIONS, START, 90).mean()
    sampled = []
    for _ in range(20):
        orders = simulator.sample_purchases(
            population, choices, ACTIONS, START, 90, rng
        )
        margins = [
            sum(0.3 * o.list_cents - o.discount_cents for o in customer) - 2
            for customer in orders
        ]
        sampled.append(np.mean(margins))

    assert np.mean(sampled) == pytest.approx(expected, rel=0.05)


def test_ground_truth_by_segment(simulator: Simulator) -> None:
    population = simulator.sample_population(10_000, START, seed=8)
    silence, discount, content = (
        simulator.expected_margin(
            population, np.full(10_000, choice, dtype=np.int64), ACTIONS, START, 90
        )
        for choice in (SILENCE, DISCOUNT, CONTENT)
    )
    segments = population.segments

    assert (discount - silence)[segments == BUYS_ANYWAY].max() < 0
    assert (discount - silence)[segments == PERSUADABLE].mean() > 0
    assert (content - silence)[segments == MESSAGE_AVERSE].max() < 0


def test_fatigue_lowers_discount_effect(simulator: Simulator) -> None:
    population = simulator.sample_population(3_000, START, seed=9)
    persuadable = np.flatnonzero(population.segments == PERSUADABLE)[:200]
    subset = population.subset(persuadable)
    choices = np.full(len(subset), DISCOUNT, dtype=np.int64)
    fresh = simulator.expected_purchases(subset, choices, ACTIONS, START, 90)

    for contacts in subset.contacts:
        contacts.extend([(START - 86_400 * day, 1) for day in (2, 5, 9)])
    tired = simulator.expected_purchases(subset, choices, ACTIONS, START, 90)

    assert (tired < fresh).all()


def test_apply_updates_state(simulator: Simulator) -> None:
    population = simulator.sample_population(300, START, seed=10)
    averse = int(np.flatnonzero(population.segments == MESSAGE_AVERSE)[0])
    choices = np.full(300, CONTENT, dtype=np.int64)
    rng = np.random.default_rng(1)
    before = population.aggregates[averse].purchase_count
    contacts_before = len(population.contacts[averse])

    orders = simulator.sample_purchases(population, choices, ACTIONS, START, 30, rng)
    simulator.apply(population, choices, ACTIONS, START, orders)

    assert population.goodwill[averse] == pytest.approx(0.7)
    assert len(population.contacts[averse]) == contacts_before + 1
    assert population.aggregates[averse].purchase_count == before + len(orders[averse])
