"""Off-policy estimators on hand-computed cases and on a synthetic bandit."""

import math

import numpy as np
import pytest

from services.decision.learn import baseline_policies, greedy_policy
from services.decision.ope import (
    Z_95,
    doubly_robust,
    estimate_policy,
    importance_weights,
    ips,
    on_policy,
    snips,
)


def test_weights() -> None:
    target = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    codes = np.array([0, 0, 1])
    propensities = np.array([0.5, 0.5, 0.25])

    assert importance_weights(target, codes, propensities).tolist() == [2.0, 0.0, 2.0]


def test_ips_written_out() -> None:
    # Terms 2 * 3, 0 * 5, 2 * 1: mean 8 / 3.
    estimate = ips(np.array([2.0, 0.0, 2.0]), np.array([3.0, 5.0, 1.0]))

    terms = np.array([6.0, 0.0, 2.0])
    assert estimate.value == pytest.approx(8 / 3)
    assert estimate.std_error == pytest.approx(terms.std(ddof=1) / math.sqrt(3))
    assert estimate.high - estimate.value == pytest.approx(Z_95 * estimate.std_error)


def test_snips_written_out() -> None:
    # (2 * 3 + 0 + 2 * 1) / (2 + 0 + 2) = 2.
    estimate = snips(np.array([2.0, 0.0, 2.0]), np.array([3.0, 5.0, 1.0]))

    assert estimate.value == pytest.approx(2.0)
    # Residuals 2 * (3 - 2), 0, 2 * (1 - 2): sqrt(8) / 4.
    assert estimate.std_error == pytest.approx(math.sqrt(8) / 4)


def test_snips_rejects_zero_weights() -> None:
    with pytest.raises(ValueError, match="SNIPS needs"):
        snips(np.zeros(3), np.ones(3))


def test_dr_with_perfect_model_has_no_variance() -> None:
    # When q equals the rewards exactly, DR is the model's value of the target policy.
    predicted = np.array([[1.0, 4.0], [2.0, 5.0]])
    codes = np.array([0, 1])
    rewards = np.array([1.0, 5.0])
    target = np.array([[0.0, 1.0], [0.0, 1.0]])

    estimate = doubly_robust(np.array([0.0, 2.0]), rewards, target, predicted, codes)

    assert estimate.value == pytest.approx(4.5)


def test_estimates_cover_true_value() -> None:
    # Uniform logging over three arms whose means depend on a binary context.
    rng = np.random.default_rng(5)
    count = 20_000
    context = rng.integers(0, 2, count)
    means = np.array([[1.0, 3.0, 0.0], [2.0, 0.0, 4.0]])
    codes = rng.integers(0, 3, count)
    rewards = means[context, codes] + rng.normal(0, 2.0, count)
    propensities = np.full(count, 1 / 3)
    target = np.zeros((count, 3))
    target[np.arange(count), np.where(context == 0, 1, 2)] = 1.0
    predicted = means[context] + 0.5

    estimates = estimate_policy(target, codes, propensities, rewards, predicted)

    # The target policy earns 3 in context 0 and 4 in context 1.
    truth = float(np.where(context == 0, 3.0, 4.0).mean())
    for name in ("IPS", "SNIPS", "DR"):
        assert estimates[name].contains(truth), name


def test_on_policy_mean() -> None:
    assert on_policy(np.array([1.0, 2.0, 3.0])).value == pytest.approx(2.0)


def test_greedy_policy_respects_open_and_silence() -> None:
    predicted = np.array([[0.0, 5.0, 9.0], [0.0, -1.0, -2.0], [0.0, 5.0, 9.0]])
    open_mask = np.array([[True, True, True], [True, True, True], [True, True, False]])

    policy = greedy_policy(predicted, open_mask)

    assert policy.argmax(axis=1).tolist() == [2, 0, 1]


def test_greedy_policy_exploration_share() -> None:
    policy = greedy_policy(
        np.array([[0.0, 5.0, 9.0]]), np.ones((1, 3), dtype=bool), 0.3
    )

    assert policy[0].tolist() == pytest.approx([0.1, 0.1, 0.8])


def test_baseline_always_falls_back_to_silence() -> None:
    open_mask = np.array([[True, True], [True, False]])

    always = baseline_policies(open_mask)["always:1"]

    assert always.tolist() == [[0.0, 1.0], [1.0, 0.0]]
