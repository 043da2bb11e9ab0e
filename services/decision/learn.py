"""Train the value model from decision logs, evaluate it offline, and write a bundle.

Usage: python -m services.decision.learn --log FILE --registry DIR [--base DIR]
       [--catalog FILE] [--seed N] [--eval-share F] [--promote] [--force]

1. Build the training set from the log file (a progress bar counts the profiles).
2. Split the rows by profile: eval_share of the profiles, drawn by a seeded hash, are
   kept out of training.
3. Train the value model on the other rows.
4. On the held-out rows outside the holdout, estimate with IPS, SNIPS and DR and 95%
   intervals (ope.py) the value of three kinds of policy. They are the new policy (greedy
   on the model's scores, mixed with the catalog's exploration share), the logging
   policy, and fixed baselines.
5. Write a new bundle version into the registry: the base bundle's repeat-purchase model,
   the catalog, and the value model. With --promote, point CURRENT at it when the DR
   estimate of the new policy is at least the logging policy's value. --force skips that
   check. A running service then hot-reloads the bundle.
"""

import argparse
import datetime as dt
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import numpy.typing as npt

from services.decision.artifact import MODEL_FILE, point_current, write_artifact
from services.decision.bundle import CATALOG_FILE, Bundle, load_bundle
from services.decision.catalog import CatalogError, parse_catalog
from services.decision.logfile import LogFormatError
from services.decision.model import ModelLoadError
from services.decision.ope import Estimate, estimate_policy, on_policy
from services.decision.trainset import TrainingSet, build_training_set
from services.decision.value_model import (
    SILENCE_CODE,
    VALUE_MODEL_FILE,
    VALUE_MODEL_PARAMS,
    VALUE_MODEL_ROUNDS,
    ValueModel,
    min_rows_per_leaf,
    train_value_booster,
)

DEFAULT_SEED = 7
DEFAULT_EVAL_SHARE = 0.3
LEARNED_POLICY = "learned"


@dataclass(frozen=True)
class LearnResult:
    """A trained value model and the offline evaluation of its policy."""

    booster: lgb.Booster
    action_codes: dict[str, int]
    estimates: dict[str, dict[str, Estimate]]
    """Policy name to estimator name to estimate, on the evaluation rows."""
    logged: Estimate
    """The logging policy's mean reward on the evaluation rows."""
    rows: dict[str, int]
    evaluation: TrainingSet
    """The rows the estimates were made on."""
    policies: dict[str, npt.NDArray[np.float64]]
    """Each evaluated policy's probability of each code on the evaluation rows."""


def evaluation_mask(
    profile_ids: list[str], share: float, seed: int
) -> npt.NDArray[np.bool_]:
    """Return which rows belong to profiles drawn for evaluation by a seeded hash."""
    mask = np.empty(len(profile_ids), dtype=bool)
    for index, profile_id in enumerate(profile_ids):
        digest = hashlib.sha256(f"{seed}:{profile_id}".encode()).digest()
        mask[index] = int.from_bytes(digest[:8], "big") / 2**64 < share
    return mask


def predicted_rewards(
    model: ValueModel, features: npt.NDArray[np.float64], costs: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Return f(x, code) - cost(code) for every row and code, shape (rows, codes)."""
    codes = np.arange(costs.size, dtype=np.float64)
    result: npt.NDArray[np.float64] = model.predict_margins(features, codes) - costs
    return result


def greedy_policy(
    predicted: npt.NDArray[np.float64],
    open_mask: npt.NDArray[np.bool_],
    exploration_share: float = 0.0,
) -> npt.NDArray[np.float64]:
    """Return the policy's probability of each code per row.

    The best open code wins (silence on ties and when nothing beats it), as in
    arbitration.choose; exploration_share spreads that share uniformly over the open
    codes.
    """
    masked = np.where(open_mask, predicted, -np.inf)
    gain = masked - predicted[:, [SILENCE_CODE]]
    best = np.where(gain.max(axis=1) > 0.0, gain.argmax(axis=1), SILENCE_CODE)
    probabilities = np.zeros_like(predicted)
    probabilities[np.arange(best.size), best] = 1.0 - exploration_share
    uniform = open_mask / open_mask.sum(axis=1, keepdims=True)
    result: npt.NDArray[np.float64] = probabilities + exploration_share * uniform
    return result


def baseline_policies(
    open_mask: npt.NDArray[np.bool_],
) -> dict[str, npt.NDArray[np.float64]]:
    """Return silence, uniform random over the open codes, and each code when open."""
    silence = np.zeros(open_mask.shape)
    silence[:, SILENCE_CODE] = 1.0
    policies = {
        "silence": silence,
        "random": open_mask / open_mask.sum(axis=1, keepdims=True),
    }
    for code in range(1, open_mask.shape[1]):
        always = silence.copy()
        always[open_mask[:, code], SILENCE_CODE] = 0.0
        always[open_mask[:, code], code] = 1.0
        policies[f"always:{code}"] = always
    return policies


def fit_and_evaluate(
    data: TrainingSet,
    exploration_share: float,
    seed: int = DEFAULT_SEED,
    eval_share: float = DEFAULT_EVAL_SHARE,
    rounds: int = VALUE_MODEL_ROUNDS,
) -> LearnResult:
    """Train the value model on the training rows and evaluate it on the others.

    Raises ValueError when either side has fewer than 2 rows.
    """
    held_out = evaluation_mask(data.profile_ids, eval_share, seed)
    train = data.subset(~held_out)
    evaluation = data.subset(held_out & ~data.holdout)
    if len(train) < 2 or len(evaluation) < 2:
        raise ValueError(
            f"too few rows to train and evaluate: {len(train)} training rows, "
            f"{len(evaluation)} evaluation rows outside the holdout"
        )

    booster = train_value_booster(
        train.features, train.codes, train.margins, seed, rounds
    )
    model = ValueModel(booster, data.action_codes)
    predicted = predicted_rewards(model, evaluation.features, data.action_costs)
    rewards = evaluation.rewards

    policies = {
        LEARNED_POLICY: greedy_policy(
            predicted, evaluation.open_mask, exploration_share
        ),
        f"{LEARNED_POLICY}:greedy": greedy_policy(predicted, evaluation.open_mask),
    }
    names = {code: action for action, code in data.action_codes.items()}
    for name, policy in baseline_policies(evaluation.open_mask).items():
        if name.startswith("always:"):
            name = "always:" + names[int(name.split(":")[1])]
        policies[name] = policy
    estimates = {
        name: estimate_policy(
            policy, evaluation.codes, evaluation.propensities, rewards, predicted
        )
        for name, policy in policies.items()
    }
    rows = {
        "rows": len(data),
        "training_rows": len(train),
        "evaluation_rows": len(evaluation),
        "holdout_rows": int(data.holdout.sum()),
        **{f"skipped_{reason}": count for reason, count in data.skipped.items()},
    }
    return LearnResult(
        booster,
        dict(data.action_codes),
        estimates,
        on_policy(rewards),
        rows,
        evaluation,
        policies,
    )


def passes_gate(result: LearnResult) -> bool:
    """Return whether the new policy's DR estimate reaches the logging policy's value."""
    return result.estimates[LEARNED_POLICY]["DR"].value >= result.logged.value


def write_value_bundle(
    registry: Path,
    base: Bundle,
    catalog_bytes: bytes,
    result: LearnResult,
    data: TrainingSet,
    log_path: Path,
    seed: int,
) -> Path:
    """Write a bundle with base's repeat-purchase model, the catalog and the value model.

    The new version is not promoted. Returns its folder.
    """
    model_text = (base.path / MODEL_FILE).read_text(encoding="utf-8")
    value_text = result.booster.model_to_string()
    digest = hashlib.sha256(
        model_text.encode() + value_text.encode() + catalog_bytes
    ).hexdigest()
    created = dt.datetime.now(dt.UTC)
    version = f"{created:%Y%m%dT%H%M%SZ}-{digest[:8]}"

    manifest: dict[str, Any] = json.loads(json.dumps(base.manifest))
    manifest.update(
        {
            "version": version,
            "created_time": created.isoformat(timespec="seconds").replace(
                "+00:00", "Z"
            ),
            "base_version": base.version,
            "catalog_file": CATALOG_FILE,
            "catalog_version": hashlib.sha256(catalog_bytes).hexdigest()[:16],
            "value_model": {
                "file": VALUE_MODEL_FILE,
                "sha256": hashlib.sha256(value_text.encode()).hexdigest(),
                "action_codes": result.action_codes,
                "horizon_days": data.horizon_days,
                "params": {
                    **VALUE_MODEL_PARAMS,
                    "min_data_in_leaf": min_rows_per_leaf(result.rows["training_rows"]),
                    "seed": seed,
                },
                "num_boost_round": result.booster.current_iteration(),
                "log": {
                    "file_name": log_path.name,
                    "sha256": hashlib.sha256(log_path.read_bytes()).hexdigest(),
                },
                "rows": result.rows,
            },
            "offline_evaluation": evaluation_json(result),
        }
    )
    return write_artifact(
        registry,
        version,
        model_text,
        manifest,
        extra_files={
            CATALOG_FILE: catalog_bytes,
            VALUE_MODEL_FILE: value_text.encode(),
        },
        promote=False,
    )


def evaluation_json(result: LearnResult) -> dict[str, Any]:
    """Return the offline evaluation as written into the manifest."""
    return {
        "interval": "95% normal approximation (delta method for SNIPS)",
        "unit": "cents of margin per decision, net of discounts and action costs",
        "logged": result.logged.to_json(),
        "policies": {
            name: {key: estimate.to_json() for key, estimate in estimates.items()}
            for name, estimates in result.estimates.items()
        },
    }


def format_evaluation(result: LearnResult) -> str:
    """Return the offline evaluation as a table."""
    logged = result.logged
    lines = [
        f"rows: {result.rows}",
        f"logging policy: {logged.value:.1f} [{logged.low:.1f}, {logged.high:.1f}]",
        f"{'policy':<36} {'IPS':>24} {'SNIPS':>24} {'DR':>24}",
    ]
    for name, estimates in result.estimates.items():
        cells = [
            f"{e.value:8.1f} [{e.low:6.1f}, {e.high:6.1f}]"
            for e in (estimates["IPS"], estimates["SNIPS"], estimates["DR"])
        ]
        lines.append(f"{name:<36} " + " ".join(f"{c:>24}" for c in cells))
    return "\n".join(lines)


def learn(
    log_path: Path,
    registry: Path,
    base_path: Path | None = None,
    catalog_path: Path | None = None,
    seed: int = DEFAULT_SEED,
    eval_share: float = DEFAULT_EVAL_SHARE,
    progress: bool = True,
) -> tuple[Path, LearnResult]:
    """Run steps 1 to 4 and write the bundle; return its folder and the result.

    Raises ValueError (LogFormatError, CatalogError) for invalid input and
    ModelLoadError or OSError when the base bundle cannot be loaded.
    """
    base = load_bundle(base_path or registry)
    if catalog_path is not None:
        catalog_bytes = catalog_path.read_bytes()
    else:
        catalog_bytes = base.catalog.source
    catalog = parse_catalog(catalog_bytes, str(catalog_path or "base bundle catalog"))

    data = build_training_set(log_path, catalog.action_costs, progress=progress)
    result = fit_and_evaluate(data, catalog.policy.exploration_share, seed, eval_share)
    folder = write_value_bundle(
        registry, base, catalog_bytes, result, data, log_path, seed
    )
    return folder, result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m services.decision.learn",
        description="Train the value model from a decision log and evaluate it offline.",
    )
    parser.add_argument("--log", type=Path, required=True, help="decision log file")
    parser.add_argument(
        "--registry", type=Path, required=True, help="model registry folder"
    )
    parser.add_argument(
        "--base",
        type=Path,
        default=None,
        help="bundle whose repeat-purchase model and catalog are reused "
        "(default: the registry's CURRENT)",
    )
    parser.add_argument(
        "--catalog", type=Path, default=None, help="catalog TOML for the new bundle"
    )
    parser.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, help="split and model seed"
    )
    parser.add_argument(
        "--eval-share",
        type=float,
        default=DEFAULT_EVAL_SHARE,
        help="share of profiles held out for the offline evaluation, 0 to 1",
    )
    parser.add_argument(
        "--promote",
        action="store_true",
        help="promote the bundle if it passes the gate",
    )
    parser.add_argument(
        "--force", action="store_true", help="with --promote, skip the gate"
    )
    args = parser.parse_args(argv)
    if not 0.0 < args.eval_share < 1.0:
        parser.error("--eval-share must be between 0 and 1")

    try:
        folder, result = learn(
            args.log, args.registry, args.base, args.catalog, args.seed, args.eval_share
        )
    except (OSError, ValueError, ModelLoadError, LogFormatError, CatalogError) as exc:
        print(f"learning failed: {exc}", file=sys.stderr)
        raise SystemExit(1) from exc

    print(f"bundle {folder.name} written to {folder}")
    print(format_evaluation(result))
    if not args.promote:
        return
    if not args.force and not passes_gate(result):
        print(
            "not promoted: the DR estimate of the new policy is below the logging "
            "policy's value; rerun with --force to promote anyway",
            file=sys.stderr,
        )
        raise SystemExit(2)
    point_current(args.registry, folder.name)
    print(f"promoted {folder.name}")


if __name__ == "__main__":
    main()
