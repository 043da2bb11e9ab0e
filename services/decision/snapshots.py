"""Training rows from a purchase history: features at cutoff dates and a repeat label.

At each cutoff, a customer with at least one purchase before the cutoff gives one row:
the features of those purchases as of the cutoff, and label 1 when the customer purchases
again in [cutoff, cutoff + horizon). Each line of the history is one purchase, the same
unit that RecordOutcome records, so training and serving aggregate alike.
"""

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from services.decision.cdnow import Purchase
from services.decision.features import (
    FEATURE_NAMES,
    SECONDS_PER_DAY,
    PurchaseAggregate,
    feature_vector,
)

_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()


@dataclass(frozen=True)
class Snapshots:
    """Training rows: features, labels, and the customer and cutoff of each row."""

    features: npt.NDArray[np.float64]
    labels: npt.NDArray[np.int8]
    customer_ids: list[str]
    cutoffs: list[dt.date]
    """The cutoff dates the rows were built at, in ascending order."""
    row_cutoffs: npt.NDArray[np.int64]
    """Index into cutoffs of each row."""


def date_to_time(date: dt.date) -> int:
    """Return midnight UTC of date in seconds since the epoch."""
    return (date.toordinal() - _EPOCH_ORDINAL) * SECONDS_PER_DAY


def aggregate_purchases(
    purchases: Iterable[Purchase], before: dt.date | None = None
) -> dict[str, PurchaseAggregate]:
    """Return each customer's aggregate of the purchases dated before ``before`` (all if None).

    A purchase counts as made at midnight UTC of its date. This is how a purchase history
    is turned into the feature store's content for bulk loading.
    """
    aggregates: dict[str, PurchaseAggregate] = {}
    for purchase in purchases:
        if before is not None and purchase.date >= before:
            continue
        aggregate = aggregates.get(purchase.customer_id)
        if aggregate is None:
            aggregate = aggregates[purchase.customer_id] = PurchaseAggregate()
        aggregate.add_purchase(
            date_to_time(purchase.date), purchase.amount_cents, purchase.quantity
        )
    return aggregates


def default_cutoffs(
    purchases: Sequence[Purchase], horizon_days: int, step_days: int
) -> list[dt.date]:
    """Return cutoffs every step_days, from one horizon after the first purchase to one
    horizon before the day after the last, so every label window lies inside the data.
    """
    if not purchases:
        return []
    first = min(purchase.date for purchase in purchases)
    end = max(purchase.date for purchase in purchases) + dt.timedelta(days=1)
    horizon = dt.timedelta(days=horizon_days)

    cutoffs: list[dt.date] = []
    cutoff = first + horizon
    while cutoff + horizon <= end:
        cutoffs.append(cutoff)
        cutoff += dt.timedelta(days=step_days)
    return cutoffs


def build_snapshots(
    purchases: Sequence[Purchase], cutoffs: Sequence[dt.date], horizon_days: int
) -> Snapshots:
    """Build one row per (customer, cutoff) where the customer purchased before the cutoff."""
    histories: dict[str, list[Purchase]] = defaultdict(list)
    for purchase in purchases:
        histories[purchase.customer_id].append(purchase)

    ordered_cutoffs = sorted(cutoffs)
    cutoff_times = [date_to_time(cutoff) for cutoff in ordered_cutoffs]
    horizon_seconds = horizon_days * SECONDS_PER_DAY

    rows: list[list[float]] = []
    labels: list[int] = []
    customer_ids: list[str] = []
    row_cutoffs: list[int] = []
    for customer_id, history in histories.items():
        # A stable sort keeps file order among purchases of one day, as the store would.
        history.sort(key=lambda purchase: purchase.date)
        times = [date_to_time(purchase.date) for purchase in history]
        aggregate = PurchaseAggregate()
        position = 0
        for cutoff_index, cutoff_time in enumerate(cutoff_times):
            while position < len(history) and times[position] < cutoff_time:
                purchase = history[position]
                aggregate.add_purchase(
                    times[position], purchase.amount_cents, purchase.quantity
                )
                position += 1
            if aggregate.purchase_count == 0:
                continue

            bought_again = position < len(history) and (
                times[position] < cutoff_time + horizon_seconds
            )
            rows.append(feature_vector(aggregate, cutoff_time))
            labels.append(int(bought_again))
            customer_ids.append(customer_id)
            row_cutoffs.append(cutoff_index)

    features = np.array(rows, dtype=np.float64).reshape(len(rows), len(FEATURE_NAMES))
    return Snapshots(
        features=features,
        labels=np.array(labels, dtype=np.int8),
        customer_ids=customer_ids,
        cutoffs=ordered_cutoffs,
        row_cutoffs=np.array(row_cutoffs, dtype=np.int64),
    )
