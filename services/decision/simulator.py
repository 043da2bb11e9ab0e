"""A seeded simulator of retail customers whose response to each action is known.

Every simulated customer has a purchase rate, an order value and one of four response
segments, which the decision service has no access to:

- ``buys_anyway``: purchases at their own rate whatever is sent; a discount only gives
  margin away.
- ``persuadable``: a discount adds purchases (content adds a few), less so when tired.
- ``unmoved``: no action changes their purchases.
- ``message_averse``: any message cuts their purchases and, lastingly, their goodwill.

Contact fatigue: each contact in the 30 days before a message lowers that message's effect
on everyone. Purchase rates and order values are calibrated on CDNOW (see ``calibrate``
and CDNOW_CALIBRATION). The segment depends on the customer's purchase-rate tier and
order-value half (SEGMENT_TABLE), so the purchase history carries a noisy signal of it.

Within one decision's horizon the number of purchases is Poisson with a mean the
simulator computes in closed form, so the expected margin of any action, and so the true
value of any policy, is exact (``expected_margin``).
"""

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt

from services.decision.catalog import CandidateSet
from services.decision.cdnow import Purchase
from services.decision.features import (
    DECISION_FEATURE_NAMES,
    SECONDS_PER_DAY,
    PurchaseAggregate,
    decision_features,
)
from services.decision.snapshots import date_to_time
from trustfirst.decision.v1 import decision_pb2

SEGMENTS: Final = ("buys_anyway", "persuadable", "unmoved", "message_averse")
BUYS_ANYWAY, PERSUADABLE, UNMOVED, MESSAGE_AVERSE = range(4)

SILENCE: Final = "silence"
CONTENT: Final = "content"
DISCOUNT: Final = "discount"

# Rate tiers by quantile of the 90-day purchase rate, and the segment shares in each tier
# for customers whose order value is below or above the median, in SEGMENTS order.
RATE_TIER_QUANTILES: Final = (0.40, 0.75)
SEGMENT_TABLE: Final = {
    # bottom 40% of rates: mostly lapsed customers
    (0, False): (0.00, 0.40, 0.60, 0.00),
    (0, True): (0.00, 0.20, 0.80, 0.00),
    # middle 35%
    (1, False): (0.00, 0.70, 0.30, 0.00),
    (1, True): (0.00, 0.30, 0.30, 0.40),
    # top 25%: frequent buyers
    (2, False): (0.80, 0.00, 0.00, 0.20),
    (2, True): (0.40, 0.00, 0.00, 0.60),
}


@dataclass(frozen=True)
class Calibration:
    """Purchase-rate and order-value distributions of a purchase history."""

    rate_shape: float
    """Gamma shape of the customers' purchase rates."""
    rate_scale_90_days: float
    """Gamma scale of the purchase rates, in purchases per 90 days."""
    log_value_mean: float
    """Mean over customers of their mean log order value (log of dollars)."""
    log_value_sd: float
    """Standard deviation over customers of their mean log order value."""
    order_log_sd: float
    """Standard deviation of one order's log value around its customer's mean."""
    mean_quantity: float
    """Mean number of items per order."""


# calibrate(read_cdnow(default_cdnow_path())) on the CDNOW master file of lifetimes 0.11.3
# (69,659 purchases, 23,570 customers); tests/decision/test_simulator.py recomputes it.
CDNOW_CALIBRATION: Final = Calibration(
    rate_shape=0.1595,
    rate_scale_90_days=1.9879,
    log_value_mean=3.2040,
    log_value_sd=0.6246,
    order_log_sd=0.5245,
    mean_quantity=2.4100,
)

# Calibration window: repeat purchases from the day after the first quarter of 1997, when
# every CDNOW customer made a first purchase, to the end of the data.
CALIBRATION_START: Final = (1997, 4, 1)
CALIBRATION_END: Final = (1998, 7, 1)


@dataclass(frozen=True)
class GroundTruth:
    """The simulated response to actions; purchases are counted per decision horizon."""

    discount_lift: float = 0.30
    """Purchases a discount adds for a persuadable customer with no recent contact."""
    content_lift: float = 0.06
    """Purchases a content message adds for a persuadable customer."""
    averse_multiplier: float = 0.40
    """Factor on a message-averse customer's purchases after a message."""
    averse_goodwill_loss: float = 0.30
    """Share of a message-averse customer's purchase rate lost for good per message."""
    fatigue_per_contact: float = 0.05
    """Share of purchases a message loses per contact in the 30 days before it."""
    max_fatigue: float = 0.50
    """Upper bound of the fatigue loss."""
    background_contacts_30_days: float = 1.0
    """Mean number of contacts from other programmes in the 30 days before the start."""


@dataclass(frozen=True)
class SimAction:
    """One choice of a simulated decision, silence included."""

    action_id: str
    """Catalog action id; empty for silence."""
    effect: str
    """SILENCE, CONTENT or DISCOUNT."""
    channel: int = 0
    cost_cents: float = 0.0
    discount_rate: float = 0.0
    discount_cents: float = 0.0


def sim_actions(candidates: CandidateSet) -> list[SimAction]:
    """Return silence followed by the candidates as simulated actions.

    Discount actions act as discounts; content and recommendations as content.
    """
    actions = [SimAction("", SILENCE)]
    for action in candidates.actions:
        effect = (
            DISCOUNT if action.kind == decision_pb2.ACTION_KIND_DISCOUNT else CONTENT
        )
        actions.append(
            SimAction(
                action_id=action.action_id,
                effect=effect,
                channel=int(action.channel),
                cost_cents=float(action.cost_cents),
                discount_rate=action.discount_rate,
                discount_cents=float(action.discount_cents),
            )
        )
    return actions


@dataclass(frozen=True)
class SimPurchase:
    """One simulated order."""

    time: int
    list_cents: int
    discount_cents: int
    quantity: int

    @property
    def amount_cents(self) -> int:
        """Amount paid: the list value less the discount."""
        return self.list_cents - self.discount_cents


@dataclass
class Population:
    """Simulated customers: hidden traits and the state the service can observe."""

    profile_ids: list[str]
    segments: npt.NDArray[np.int8]
    rates_90_days: npt.NDArray[np.float64]
    """Purchases per 90 days with no action."""
    order_log_mean: npt.NDArray[np.float64]
    """Mean log of the customer's order value in dollars."""
    goodwill: npt.NDArray[np.float64]
    """Factor on the purchase rate; message-averse customers lose it to messages."""
    aggregates: list[PurchaseAggregate]
    contacts: list[list[tuple[int, int]]] = field(default_factory=list)
    """(time, channel) of every contact, oldest first."""

    def __len__(self) -> int:
        return len(self.profile_ids)

    def mean_order_cents(self, order_log_sd: float) -> npt.NDArray[np.float64]:
        """Return the expected list value of one order, in cents."""
        result: npt.NDArray[np.float64] = 100.0 * np.exp(
            self.order_log_mean + order_log_sd**2 / 2
        )
        return result

    def subset(self, indices: Sequence[int] | npt.NDArray[np.int64]) -> "Population":
        """Return the customers at indices, sharing their mutable state objects."""
        index = np.asarray(indices, dtype=np.int64)
        return Population(
            profile_ids=[self.profile_ids[i] for i in index],
            segments=self.segments[index],
            rates_90_days=self.rates_90_days[index],
            order_log_mean=self.order_log_mean[index],
            goodwill=self.goodwill[index],
            aggregates=[self.aggregates[i] for i in index],
            contacts=[self.contacts[i] for i in index],
        )


def calibrate(purchases: Sequence[Purchase]) -> Calibration:
    """Fit the simulator's distributions to a CDNOW-format purchase history.

    Purchase rates: the counts of purchases per customer in the calibration window are
    taken as Poisson with a gamma-distributed rate, fitted by the method of moments
    (shape = mean^2 / (variance - mean)). Order values: customers' mean log order value
    (orders above 0), its spread over customers, and the spread of orders around their
    customer's mean (customers with two orders or more).
    """
    start = dt.date(*CALIBRATION_START)
    end = dt.date(*CALIBRATION_END)
    window_days = (end - start).days
    counts: dict[str, int] = {}
    logs: dict[str, list[float]] = {}
    quantities = 0
    for purchase in purchases:
        counts.setdefault(purchase.customer_id, 0)
        if start <= purchase.date < end:
            counts[purchase.customer_id] += 1
        if purchase.amount_cents > 0:
            logs.setdefault(purchase.customer_id, []).append(
                math.log(purchase.amount_cents / 100)
            )
        quantities += purchase.quantity

    values = np.array(list(counts.values()), dtype=np.float64)
    mean = float(values.mean())
    variance = float(values.var())
    scale = (variance - mean) / mean
    customer_means = np.array([np.mean(v) for v in logs.values()])
    deviations = np.concatenate(
        [np.asarray(v) - np.mean(v) for v in logs.values() if len(v) >= 2]
    )
    return Calibration(
        rate_shape=round(mean / scale, 4),
        rate_scale_90_days=round(scale * 90 / window_days, 4),
        log_value_mean=round(float(customer_means.mean()), 4),
        log_value_sd=round(float(customer_means.std()), 4),
        order_log_sd=round(float(deviations.std()), 4),
        mean_quantity=round(quantities / len(purchases), 4),
    )


def assign_segments(
    rates: npt.NDArray[np.float64],
    order_log_mean: npt.NDArray[np.float64],
    rng: np.random.Generator,
) -> npt.NDArray[np.int8]:
    """Draw each customer's segment from SEGMENT_TABLE by rate tier and value half."""
    low, high = np.quantile(rates, RATE_TIER_QUANTILES)
    tiers = np.where(rates <= low, 0, np.where(rates <= high, 1, 2))
    high_value = order_log_mean > np.median(order_log_mean)
    draws = rng.random(len(rates))
    segments = np.empty(len(rates), dtype=np.int8)
    for (tier, value_half), shares in SEGMENT_TABLE.items():
        mask = (tiers == tier) & (high_value == value_half)
        edges = np.cumsum(shares)
        segments[mask] = np.searchsorted(edges, draws[mask], side="right").clip(0, 3)
    return segments


class Simulator:
    """Samples populations, their responses, and the exact expected margin of choices."""

    def __init__(
        self,
        margin_rate: float,
        calibration: Calibration = CDNOW_CALIBRATION,
        truth: GroundTruth | None = None,
    ) -> None:
        self.margin_rate = margin_rate
        self.calibration = calibration
        self.truth = truth or GroundTruth()

    def sample_population(
        self,
        count: int,
        start_time: int,
        seed: int,
        id_prefix: str = "sim",
        history_days: int = 546,
    ) -> Population:
        """Draw count customers with a purchase history up to start_time.

        Each made a first purchase in the 90 days from history_days before start_time, as
        CDNOW's cohort did in the first quarter of 1997, then purchased at their rate.
        """
        rng = np.random.default_rng(seed)
        cal = self.calibration
        rates = rng.gamma(cal.rate_shape, cal.rate_scale_90_days, count)
        order_log_mean = rng.normal(cal.log_value_mean, cal.log_value_sd, count)
        segments = assign_segments(rates, order_log_mean, rng)
        population = Population(
            profile_ids=[f"{id_prefix}-{index:06d}" for index in range(count)],
            segments=segments,
            rates_90_days=rates,
            order_log_mean=order_log_mean,
            goodwill=np.ones(count),
            aggregates=[PurchaseAggregate() for _ in range(count)],
            contacts=[[] for _ in range(count)],
        )
        first_start = start_time - history_days * SECONDS_PER_DAY
        for index in range(count):
            first = first_start + int(rng.integers(0, 90 * SECONDS_PER_DAY))
            first = first - first % SECONDS_PER_DAY
            self._add_history(population, index, first, start_time, rng)
        self._add_background_contacts(population, start_time, rng)
        return population

    def _add_history(
        self,
        population: Population,
        index: int,
        first: int,
        until: int,
        rng: np.random.Generator,
    ) -> None:
        aggregate = population.aggregates[index]
        aggregate.add_purchase(first, self._order_cents(population, index, rng), 1)
        span_days = (until - first) / SECONDS_PER_DAY
        repeats = rng.poisson(population.rates_90_days[index] * span_days / 90)
        for offset in rng.uniform(0, until - first, repeats):
            time = first + int(offset)
            time -= time % SECONDS_PER_DAY
            quantity = 1 + int(rng.poisson(self.calibration.mean_quantity - 1))
            aggregate.add_purchase(
                time, self._order_cents(population, index, rng), quantity
            )

    def _order_cents(
        self, population: Population, index: int, rng: np.random.Generator
    ) -> int:
        log_value = rng.normal(
            population.order_log_mean[index], self.calibration.order_log_sd
        )
        return round(100 * math.exp(log_value))

    def _add_background_contacts(
        self, population: Population, start_time: int, rng: np.random.Generator
    ) -> None:
        mean = self.truth.background_contacts_30_days
        for contacts in population.contacts:
            for _ in range(int(rng.poisson(mean))):
                offset = int(rng.integers(1, 30 * SECONDS_PER_DAY))
                contacts.append((start_time - offset, 0))
            contacts.sort()

    def population_from_history(
        self,
        histories: Sequence[Sequence[Purchase]],
        profile_ids: Sequence[str],
        start: dt.date,
        seed: int,
    ) -> Population:
        """Build customers from real purchase histories up to start (exclusive).

        A customer's rate is the gamma-Poisson posterior mean given their repeat
        purchases since their first one, and their mean log order value is shrunk
        towards the population's by the calibrated spreads. The aggregates are the
        real histories; the segments are drawn as for sampled customers.
        """
        cal = self.calibration
        rates = np.empty(len(histories))
        order_log_mean = np.empty(len(histories))
        aggregates: list[PurchaseAggregate] = []
        prior_weight = cal.order_log_sd**2 / cal.log_value_sd**2
        for index, history in enumerate(histories):
            before = [p for p in history if p.date < start]
            aggregate = PurchaseAggregate()
            for purchase in before:
                aggregate.add_purchase(
                    date_to_time(purchase.date),
                    purchase.amount_cents,
                    purchase.quantity,
                )
            aggregates.append(aggregate)
            exposure_days = (start - min(p.date for p in before)).days if before else 0
            repeats = max(0, len(before) - 1)
            rates[index] = (cal.rate_shape + repeats) / (
                1 / cal.rate_scale_90_days + exposure_days / 90
            )
            logs = [
                math.log(p.amount_cents / 100) for p in before if p.amount_cents > 0
            ]
            order_log_mean[index] = (sum(logs) + prior_weight * cal.log_value_mean) / (
                len(logs) + prior_weight
            )

        rng = np.random.default_rng(seed)
        return Population(
            profile_ids=list(profile_ids),
            segments=assign_segments(rates, order_log_mean, rng),
            rates_90_days=rates,
            order_log_mean=order_log_mean,
            goodwill=np.ones(len(histories)),
            aggregates=aggregates,
            contacts=[[] for _ in histories],
        )

    def features(self, population: Population, as_of: int) -> npt.NDArray[np.float64]:
        """Return the decision features of every customer at as_of, as served."""
        rows = [
            decision_features(aggregate, [t for t, _ in contacts], as_of)
            for aggregate, contacts in zip(
                population.aggregates, population.contacts, strict=True
            )
        ]
        return np.array(rows, dtype=np.float64).reshape(
            len(rows), len(DECISION_FEATURE_NAMES)
        )

    def expected_purchases(
        self,
        population: Population,
        choices: npt.NDArray[np.int64],
        actions: Sequence[SimAction],
        as_of: int,
        horizon_days: int,
    ) -> npt.NDArray[np.float64]:
        """Return the mean number of purchases in the horizon after each choice.

        choices index into actions (0 is silence).
        """
        truth = self.truth
        base = population.rates_90_days * horizon_days / 90 * population.goodwill
        effects = np.array([a.effect for a in actions])[choices]
        message = effects != SILENCE

        recent = np.array(
            [_recent_contacts(contacts, as_of) for contacts in population.contacts],
            dtype=np.float64,
        )
        fatigue = np.minimum(truth.max_fatigue, truth.fatigue_per_contact * recent)
        lift = np.where(
            effects == DISCOUNT,
            truth.discount_lift,
            np.where(effects == CONTENT, truth.content_lift, 0.0),
        ) / (1.0 + recent)

        segments = population.segments
        mean = base.copy()
        mean = np.where(message & (segments == PERSUADABLE), base + lift, mean)
        mean = np.where(
            message & (segments == MESSAGE_AVERSE), base * truth.averse_multiplier, mean
        )
        result: npt.NDArray[np.float64] = np.where(message, mean * (1 - fatigue), mean)
        return result

    def expected_margin(
        self,
        population: Population,
        choices: npt.NDArray[np.int64],
        actions: Sequence[SimAction],
        as_of: int,
        horizon_days: int,
    ) -> npt.NDArray[np.float64]:
        """Return each choice's expected margin in the horizon, less discount and cost.

        margin_rate x list value of the orders, less the discount on the first order of
        a discount action, less the action's cost.
        """
        mean = self.expected_purchases(
            population, choices, actions, as_of, horizon_days
        )
        order_value = population.mean_order_cents(self.calibration.order_log_sd)
        rate = np.array([a.discount_rate for a in actions])[choices]
        fixed = np.array([a.discount_cents for a in actions])[choices]
        cost = np.array([a.cost_cents for a in actions])[choices]
        any_order = 1.0 - np.exp(-mean)
        result: npt.NDArray[np.float64] = (
            self.margin_rate * order_value * mean
            - any_order * (rate * order_value + fixed)
            - cost
        )
        return result

    def sample_purchases(
        self,
        population: Population,
        choices: npt.NDArray[np.int64],
        actions: Sequence[SimAction],
        as_of: int,
        horizon_days: int,
        rng: np.random.Generator,
    ) -> list[list[SimPurchase]]:
        """Draw each customer's orders in [as_of, as_of + horizon), oldest first.

        A discount action's discount applies to the first order: discount_rate of its
        list value plus discount_cents, at most the list value.
        """
        mean = self.expected_purchases(
            population, choices, actions, as_of, horizon_days
        )
        counts = rng.poisson(mean)
        horizon_seconds = horizon_days * SECONDS_PER_DAY
        orders: list[list[SimPurchase]] = []
        for index, count in enumerate(counts):
            action = actions[int(choices[index])]
            times = np.sort(rng.integers(0, horizon_seconds, count)) + as_of
            customer: list[SimPurchase] = []
            for number, time in enumerate(times):
                list_cents = self._order_cents(population, index, rng)
                discount = 0
                if number == 0 and action.effect == DISCOUNT:
                    offered = action.discount_rate * list_cents + action.discount_cents
                    discount = min(list_cents, round(offered))
                quantity = 1 + int(rng.poisson(self.calibration.mean_quantity - 1))
                customer.append(SimPurchase(int(time), list_cents, discount, quantity))
            orders.append(customer)
        return orders

    def apply(
        self,
        population: Population,
        choices: npt.NDArray[np.int64],
        actions: Sequence[SimAction],
        as_of: int,
        orders: Sequence[Sequence[SimPurchase]],
    ) -> None:
        """Advance the state: contacts, lost goodwill, and purchases into aggregates."""
        loss = 1.0 - self.truth.averse_goodwill_loss
        for index, choice in enumerate(choices):
            action = actions[int(choice)]
            if action.effect != SILENCE:
                population.contacts[index].append((as_of, action.channel))
                if population.segments[index] == MESSAGE_AVERSE:
                    population.goodwill[index] *= loss
            for order in orders[index]:
                population.aggregates[index].add_purchase(
                    order.time, order.amount_cents, order.quantity
                )


def _recent_contacts(contacts: Sequence[tuple[int, int]], as_of: int) -> int:
    since = as_of - 30 * SECONDS_PER_DAY
    return sum(1 for time, _ in contacts if since < time <= as_of)
