"""Train the repeat-purchase model from a CDNOW-format purchase history.

Usage: python -m services.decision.train [--data PATH] [--out DIR] [--seed N] [--catalog FILE]

The model estimates the probability that a customer purchases again within the label
horizon, from the features of their purchases so far. Customers are split into training
and holdout sets, so no customer's rows are in both. The artifact goes to
``<out>/<version>/`` and ``<out>/CURRENT`` names it.
"""

import argparse
import datetime as dt
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import numpy.typing as npt

from services.decision.artifact import (
    MANIFEST_FORMAT_VERSION,
    MODEL_FILE,
    sha256_file,
    write_artifact,
)
from services.decision.bundle import CATALOG_FILE
from services.decision.catalog import load_catalog
from services.decision.cdnow import default_cdnow_path, read_cdnow
from services.decision.evaluation import brier_score, calibration_table, roc_auc
from services.decision.features import FEATURE_NAMES
from services.decision.snapshots import Snapshots, build_snapshots, default_cutoffs

DEFAULT_OUT_DIR = Path("models/decision")
DEFAULT_SEED = 7
HORIZON_DAYS = 90
CUTOFF_STEP_DAYS = 30
HOLDOUT_FRACTION = 0.2
NUM_BOOST_ROUND = 200

# Small trees with large leaves: the data has few features and a noisy label, and the
# service scores one row at a time. Fixed rounds (no early stopping) keep the holdout
# untouched by training.
LGBM_PARAMS: dict[str, Any] = {
    "objective": "binary",
    "learning_rate": 0.05,
    "num_leaves": 15,
    "min_data_in_leaf": 200,
    "lambda_l2": 1.0,
    "deterministic": True,
    "force_row_wise": True,
    "num_threads": 2,
    "verbose": -1,
}


def split_customers(
    customer_ids: list[str], seed: int, holdout_fraction: float
) -> npt.NDArray[np.bool_]:
    """Return a mask of the rows whose customer is in the holdout set."""
    unique = sorted(set(customer_ids))
    rng = np.random.default_rng(seed)
    holdout_count = round(len(unique) * holdout_fraction)
    chosen = rng.permutation(len(unique))[:holdout_count]
    holdout = {unique[index] for index in chosen}
    return np.array([customer in holdout for customer in customer_ids], dtype=bool)


def evaluate(
    labels: npt.NDArray[np.int8], predicted: npt.NDArray[np.float64]
) -> dict[str, Any]:
    """Return the holdout metrics written into the manifest."""
    return {
        "holdout_auc": round(roc_auc(labels, predicted), 4),
        "holdout_brier": round(brier_score(labels, predicted), 4),
        "holdout_positive_rate": round(float(labels.mean()), 4),
        "holdout_mean_predicted": round(float(predicted.mean()), 4),
        "calibration": calibration_table(labels, predicted),
    }


def train_model(
    data_path: Path | str | None,
    out_dir: Path | str,
    seed: int = DEFAULT_SEED,
    horizon_days: int = HORIZON_DAYS,
    cutoff_step_days: int = CUTOFF_STEP_DAYS,
    catalog_path: Path | str | None = None,
) -> Path:
    """Train on a CDNOW-format file and write a versioned bundle; return its folder.

    data_path None means the CDNOW master file of the installed ``lifetimes`` package.
    The bundle carries a copy of the catalog at catalog_path (None for the packaged
    one) and no value model, so it scores with the catalog's prior uplift until a value
    model is trained from decision logs. Raises ValueError when the data gives no cutoff
    or only one label class, and CatalogError when the catalog is invalid.
    """
    data = Path(data_path) if data_path is not None else default_cdnow_path()
    purchases = read_cdnow(data)
    cutoffs = default_cutoffs(purchases, horizon_days, cutoff_step_days)
    if not cutoffs:
        raise ValueError(
            f"{data} spans less than two label horizons ({2 * horizon_days} days), "
            "so no cutoff leaves a full label window"
        )
    snapshots = build_snapshots(purchases, cutoffs, horizon_days)
    holdout = split_customers(snapshots.customer_ids, seed, HOLDOUT_FRACTION)
    _check_both_classes(snapshots, holdout)

    params = {**LGBM_PARAMS, "seed": seed}
    train_set = lgb.Dataset(
        snapshots.features[~holdout],
        label=snapshots.labels[~holdout],
        feature_name=list(FEATURE_NAMES),
        free_raw_data=True,
    )
    booster = lgb.train(params, train_set, num_boost_round=NUM_BOOST_ROUND)
    predicted = booster.predict(snapshots.features[holdout], num_threads=1)
    metrics = evaluate(snapshots.labels[holdout], np.asarray(predicted))

    catalog_bytes = read_catalog_bytes(catalog_path)
    model_text = booster.model_to_string()
    created = dt.datetime.now(dt.UTC)
    model_hash = hashlib.sha256(model_text.encode("utf-8")).hexdigest()
    bundle_hash = hashlib.sha256(model_text.encode("utf-8") + catalog_bytes).hexdigest()
    version = f"{created:%Y%m%dT%H%M%SZ}-{bundle_hash[:8]}"
    manifest = {
        "format_version": MANIFEST_FORMAT_VERSION,
        "version": version,
        "created_time": created.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "model_file": MODEL_FILE,
        "model_sha256": model_hash,
        "catalog_file": CATALOG_FILE,
        "catalog_version": hashlib.sha256(catalog_bytes).hexdigest()[:16],
        "feature_schema": list(FEATURE_NAMES),
        "label": {
            "horizon_days": horizon_days,
            "definition": "1 when the customer purchases in [cutoff, cutoff + horizon)",
        },
        "training": {
            "lightgbm_version": lgb.__version__,
            "params": params,
            "num_boost_round": NUM_BOOST_ROUND,
            "holdout_fraction": HOLDOUT_FRACTION,
            "cutoffs": [cutoff.isoformat() for cutoff in snapshots.cutoffs],
        },
        "data": _describe_data(
            data, purchases_count=len(purchases), snapshots=snapshots
        ),
        "rows": _count_rows(snapshots, holdout),
        "metrics": metrics,
    }
    return write_artifact(
        Path(out_dir),
        version,
        model_text,
        manifest,
        extra_files={CATALOG_FILE: catalog_bytes},
    )


def read_catalog_bytes(catalog_path: Path | str | None) -> bytes:
    """Return the bytes of a valid catalog file (None for the packaged one).

    Raises CatalogError when the catalog is invalid.
    """
    catalog = load_catalog(Path(catalog_path) if catalog_path is not None else None)
    return catalog.source


def _check_both_classes(snapshots: Snapshots, holdout: npt.NDArray[np.bool_]) -> None:
    for name, mask in (("training", ~holdout), ("holdout", holdout)):
        labels = snapshots.labels[mask]
        if labels.size == 0 or labels.min() == labels.max():
            raise ValueError(
                f"the {name} rows hold a single label class ({labels.size} rows); "
                "use a longer or larger purchase history"
            )


def _describe_data(
    data: Path, purchases_count: int, snapshots: Snapshots
) -> dict[str, Any]:
    return {
        "file_name": data.name,
        "sha256": sha256_file(data),
        "purchases": purchases_count,
        "customers_with_rows": len(set(snapshots.customer_ids)),
    }


def _count_rows(snapshots: Snapshots, holdout: npt.NDArray[np.bool_]) -> dict[str, int]:
    holdout_customers = {
        c for c, h in zip(snapshots.customer_ids, holdout, strict=True) if h
    }
    all_customers = set(snapshots.customer_ids)
    return {
        "train": int((~holdout).sum()),
        "holdout": int(holdout.sum()),
        "train_customers": len(all_customers - holdout_customers),
        "holdout_customers": len(holdout_customers),
        "train_positive": int(snapshots.labels[~holdout].sum()),
        "holdout_positive": int(snapshots.labels[holdout].sum()),
    }


def format_report(artifact: Path) -> str:
    """Return the human-readable summary of an artifact's manifest."""
    manifest = json.loads((artifact / "manifest.json").read_text(encoding="utf-8"))
    rows = manifest["rows"]
    metrics = manifest["metrics"]
    lines = [
        f"model {manifest['version']} written to {artifact}",
        f"data {manifest['data']['file_name']}: {manifest['data']['purchases']} purchases",
        f"rows: {rows['train']} training ({rows['train_customers']} customers), "
        f"{rows['holdout']} holdout ({rows['holdout_customers']} customers)",
        f"label: purchase within {manifest['label']['horizon_days']} days; "
        f"holdout positive rate {metrics['holdout_positive_rate']}",
        f"holdout AUC {metrics['holdout_auc']}, Brier score {metrics['holdout_brier']}",
        "calibration by decile (bin, rows, mean predicted, observed rate):",
    ]
    for entry in metrics["calibration"]:
        lines.append(
            f"  {entry['bin']:>2} {entry['rows']:>7} "
            f"{entry['mean_predicted']:.4f} {entry['observed_rate']:.4f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m services.decision.train",
        description="Train the repeat-purchase model from a CDNOW-format file.",
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="CDNOW-format purchase file (default: CDNOW_master.txt of the installed "
        "lifetimes package)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT_DIR,
        help=f"folder that receives <version>/ and CURRENT (default: {DEFAULT_OUT_DIR})",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=DEFAULT_SEED,
        help="seed of the split and of LightGBM",
    )
    parser.add_argument(
        "--catalog",
        type=Path,
        default=None,
        help="catalog TOML file copied into the bundle (default: the packaged catalog)",
    )
    args = parser.parse_args(argv)

    try:
        artifact = train_model(
            args.data, args.out, seed=args.seed, catalog_path=args.catalog
        )
    except (OSError, ValueError) as exc:
        print(f"training failed: {exc}", file=sys.stderr)
        raise SystemExit(1) from exc
    print(format_report(artifact))


if __name__ == "__main__":
    main()
