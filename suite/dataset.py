"""CDNOW customers, their purchase features and the model, for the demo and ``up``."""

import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from services.decision.artifact import MANIFEST_FILE, resolve_artifact_dir
from services.decision.cdnow import Purchase, default_cdnow_path, read_cdnow
from services.decision.feature_store import FeatureStore
from services.decision.snapshots import aggregate_purchases
from services.decision.train import format_report, train_model
from shared.redis_client import create_redis


@dataclass(frozen=True)
class Customer:
    """One CDNOW customer with their purchase lines."""

    customer_id: str
    purchases: list[Purchase]


def load_customers(data_path: Path | None, limit: int = 0) -> list[Customer]:
    """Read a CDNOW-format file and group it by customer, in customer id order.

    limit > 0 keeps only that many customers (the lowest ids).
    """
    path = data_path or default_cdnow_path()
    grouped: dict[str, list[Purchase]] = defaultdict(list)
    for purchase in read_cdnow(path):
        grouped[purchase.customer_id].append(purchase)
    ids = sorted(grouped, key=lambda text: (len(text), text))
    if limit > 0:
        ids = ids[:limit]
    return [Customer(customer_id, grouped[customer_id]) for customer_id in ids]


def ensure_model(models_dir: Path, data_path: Path | None, force: bool = False) -> Path:
    """Return models_dir once it contains a current model, training one if needed."""
    if not force:
        try:
            resolve_artifact_dir(models_dir)
            return models_dir
        except FileNotFoundError:
            pass
    print(f"Training a model into {models_dir} ...", flush=True)
    artifact = train_model(data_path, models_dir)
    print(format_report(artifact), flush=True)
    return models_dir


def model_summary(models_dir: Path) -> tuple[str, float]:
    """Return the current model's version and holdout AUC."""
    manifest = json.loads(
        (resolve_artifact_dir(models_dir) / MANIFEST_FILE).read_text()
    )
    return str(manifest["version"]), float(manifest["metrics"]["holdout_auc"])


async def load_features(
    redis_url: str,
    customers: list[Customer],
    profiles: dict[str, str],
    as_of: datetime,
) -> int:
    """Write each customer's purchase aggregate before as_of under their profile id.

    The aggregates come from the same function that builds the training snapshots.
    """
    purchases = [purchase for customer in customers for purchase in customer.purchases]
    by_customer = aggregate_purchases(purchases, before=as_of.date())
    aggregates = {
        profiles[customer_id]: aggregate
        for customer_id, aggregate in by_customer.items()
    }

    redis = create_redis(redis_url, timeout_seconds=10.0)
    try:
        return await FeatureStore(redis, event_ttl_seconds=1).put_many(aggregates)
    finally:
        await redis.aclose()
