"""Purchase aggregates, contact history, and the feature vectors built from them.

Training and serving both call ``feature_vector`` and ``decision_features``, so a model
always sees features computed by the same code. Money is kept in integer cents and times in integer seconds since the Unix
epoch (UTC). Features that are undefined for a customer (the mean gap between purchases of a
one-time buyer, for example) are NaN, which LightGBM treats as missing.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass

SECONDS_PER_DAY = 86_400

# The order of the model's input columns. It is written into every model manifest, and
# loading a model whose manifest lists other names fails.
FEATURE_NAMES: tuple[str, ...] = (
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

# Contact features, from the times of the actions chosen for the profile on any channel.
CONTACT_FEATURE_NAMES: tuple[str, ...] = (
    "contacts_7_days",
    "contacts_30_days",
    "days_since_contact",
)
# The value models' input columns: purchase features, then contact features.
DECISION_FEATURE_NAMES: tuple[str, ...] = FEATURE_NAMES + CONTACT_FEATURE_NAMES
# Contacts older than this do not enter the features; days_since_contact is missing then.
CONTACT_LOOKBACK_DAYS = 90


@dataclass(slots=True)
class PurchaseAggregate:
    """Summary of one customer's purchases: counts, sums and the latest purchase.

    ``add_purchase`` is the one update rule; the feature store's Lua script applies the same
    rule inside Redis.
    """

    purchase_count: int = 0
    total_amount_cents: int = 0
    total_quantity: int = 0
    first_purchase_time: int = 0
    """Seconds since the epoch of the earliest purchase; 0 when there is none."""
    last_purchase_time: int = 0
    """Seconds since the epoch of the latest purchase; 0 when there is none."""
    last_amount_cents: int = 0
    """Amount of the latest purchase; of the one recorded last when several share a time."""

    def add_purchase(self, time: int, amount_cents: int, quantity: int) -> None:
        """Fold one purchase into the aggregate, in any time order."""
        if self.purchase_count == 0:
            self.first_purchase_time = time
            self.last_purchase_time = time
            self.last_amount_cents = amount_cents
        else:
            self.first_purchase_time = min(self.first_purchase_time, time)
            if time >= self.last_purchase_time:
                self.last_purchase_time = time
                self.last_amount_cents = amount_cents

        self.purchase_count += 1
        self.total_amount_cents += amount_cents
        self.total_quantity += quantity


def feature_vector(aggregate: PurchaseAggregate, as_of: int) -> list[float]:
    """Return the features of aggregate at time as_of (seconds since the epoch).

    The values follow FEATURE_NAMES. A purchase after as_of counts as made at as_of, so
    recency and tenure are never negative.
    """
    count = aggregate.purchase_count
    if count == 0:
        nan = math.nan
        return [nan, 0.0, nan, 0.0, nan, nan, nan, nan, nan, nan, nan]

    recency_days = max(0, as_of - aggregate.last_purchase_time) / SECONDS_PER_DAY
    tenure_days = max(0, as_of - aggregate.first_purchase_time) / SECONDS_PER_DAY
    total = aggregate.total_amount_cents
    mean_amount = total / count

    basket_trend = math.nan
    mean_gap_days = math.nan
    recency_to_gap = math.nan
    if count > 1:
        earlier_mean = (total - aggregate.last_amount_cents) / (count - 1)
        if earlier_mean > 0:
            basket_trend = aggregate.last_amount_cents / earlier_mean
        span = aggregate.last_purchase_time - aggregate.first_purchase_time
        mean_gap_days = span / SECONDS_PER_DAY / (count - 1)
        if mean_gap_days > 0:
            recency_to_gap = recency_days / mean_gap_days

    return [
        recency_days,
        float(count),
        tenure_days,
        float(total),
        mean_amount,
        float(aggregate.last_amount_cents),
        basket_trend,
        aggregate.total_quantity / count,
        mean_gap_days,
        recency_to_gap,
        count * 30.0 / max(tenure_days, 1.0),
    ]


def contact_features(contact_times: Sequence[int], as_of: int) -> list[float]:
    """Return the contact features at as_of, following CONTACT_FEATURE_NAMES.

    contact_times are seconds since the epoch; contacts after as_of or more than
    CONTACT_LOOKBACK_DAYS before it are left out.
    """
    lookback_start = as_of - CONTACT_LOOKBACK_DAYS * SECONDS_PER_DAY
    last_7 = as_of - 7 * SECONDS_PER_DAY
    last_30 = as_of - 30 * SECONDS_PER_DAY
    count_7 = 0
    count_30 = 0
    latest = -1
    for time in contact_times:
        if time > as_of or time < lookback_start:
            continue
        count_7 += time > last_7
        count_30 += time > last_30
        latest = max(latest, time)

    since = (as_of - latest) / SECONDS_PER_DAY if latest >= 0 else math.nan
    return [float(count_7), float(count_30), since]


def decision_features(
    aggregate: PurchaseAggregate, contact_times: Sequence[int], as_of: int
) -> list[float]:
    """Return the value models' features, following DECISION_FEATURE_NAMES."""
    return feature_vector(aggregate, as_of) + contact_features(contact_times, as_of)
