"""Off-policy estimates of a policy's value from logged decisions.

With rows i = 1..n, the logged choice a_i drawn with probability p_i, its reward r_i, the
target policy's probability pi(a | x_i) of each choice and a reward model q(x, a):

- IPS:   mean of w_i r_i, with w_i = pi(a_i | x_i) / p_i
- SNIPS: sum of w_i r_i / sum of w_i
- DR:    mean of sum_a pi(a | x_i) q(x_i, a) + w_i (r_i - q(x_i, a_i))

Confidence intervals are normal approximations at 95%: mean +- 1.96 standard errors of the
per-row terms for IPS and DR, and the delta method for SNIPS, with standard error
sqrt(sum (w_i (r_i - V))^2) / sum w_i. The rows are taken as independent, which holds when
each customer contributes one decision; repeated decisions of one customer make the
intervals too narrow.
"""

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Z_95 = 1.959964


@dataclass(frozen=True)
class Estimate:
    """A policy value estimate in cents per decision, with its 95% interval."""

    estimator: str
    value: float
    std_error: float

    @property
    def low(self) -> float:
        return self.value - Z_95 * self.std_error

    @property
    def high(self) -> float:
        return self.value + Z_95 * self.std_error

    def contains(self, value: float) -> bool:
        """Return whether value lies within the 95% interval."""
        return self.low <= value <= self.high

    def to_json(self) -> dict[str, float | str]:
        return {
            "estimator": self.estimator,
            "value": round(self.value, 3),
            "std_error": round(self.std_error, 3),
            "low": round(self.low, 3),
            "high": round(self.high, 3),
        }


def _mean_estimate(name: str, terms: npt.NDArray[np.float64]) -> Estimate:
    count = terms.size
    if count < 2:
        raise ValueError(f"{name} needs at least 2 rows, got {count}")
    return Estimate(
        name, float(terms.mean()), float(terms.std(ddof=1) / math.sqrt(count))
    )


def importance_weights(
    target: npt.NDArray[np.float64],
    codes: npt.NDArray[np.int64],
    propensities: npt.NDArray[np.float64],
) -> npt.NDArray[np.float64]:
    """Return pi(a_i | x_i) / p_i for each row; target has one column per code."""
    chosen = target[np.arange(codes.size), codes]
    weights: npt.NDArray[np.float64] = chosen / propensities
    return weights


def ips(weights: npt.NDArray[np.float64], rewards: npt.NDArray[np.float64]) -> Estimate:
    """Return the inverse propensity score estimate."""
    return _mean_estimate("IPS", weights * rewards)


def snips(
    weights: npt.NDArray[np.float64], rewards: npt.NDArray[np.float64]
) -> Estimate:
    """Return the self-normalised IPS estimate, with a delta-method interval.

    Raises ValueError when no logged choice has target probability above 0.
    """
    total = float(weights.sum())
    if total <= 0.0:
        raise ValueError("SNIPS needs a logged choice that the target policy can make")
    value = float((weights * rewards).sum()) / total
    residuals = weights * (rewards - value)
    std_error = math.sqrt(float((residuals**2).sum())) / total
    return Estimate("SNIPS", value, std_error)


def doubly_robust(
    weights: npt.NDArray[np.float64],
    rewards: npt.NDArray[np.float64],
    target: npt.NDArray[np.float64],
    predicted: npt.NDArray[np.float64],
    codes: npt.NDArray[np.int64],
) -> Estimate:
    """Return the doubly robust estimate; predicted has one column per code."""
    direct = (target * predicted).sum(axis=1)
    logged = predicted[np.arange(codes.size), codes]
    return _mean_estimate("DR", direct + weights * (rewards - logged))


def estimate_policy(
    target: npt.NDArray[np.float64],
    codes: npt.NDArray[np.int64],
    propensities: npt.NDArray[np.float64],
    rewards: npt.NDArray[np.float64],
    predicted: npt.NDArray[np.float64],
) -> dict[str, Estimate]:
    """Return the IPS, SNIPS and DR estimates of the target policy's value."""
    weights = importance_weights(target, codes, propensities)
    return {
        "IPS": ips(weights, rewards),
        "SNIPS": snips(weights, rewards),
        "DR": doubly_robust(weights, rewards, target, predicted, codes),
    }


def on_policy(rewards: npt.NDArray[np.float64]) -> Estimate:
    """Return the mean logged reward: the logging policy's own value."""
    return _mean_estimate("logged", rewards)
