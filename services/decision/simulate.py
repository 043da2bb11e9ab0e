"""Learning incrementality on the simulator, checked against its ground truth.

Usage: python -m services.decision.simulate [--customers N] [--test-customers N]
       [--seed N] [--registry DIR] [--out DIR]

1. Draw a population and log one decision per customer at the email newsletter, with
   every choice (silence, the discount, the content mail) drawn uniformly, and the
   simulated orders of the following horizon as outcomes, in the decision log format.
2. Learn from that log exactly as ``services.decision.learn`` does: training set, value
   model, offline estimates on the held-out profiles.
3. Compare each offline estimate with the policy's true value on the same rows, which
   the simulator computes in closed form.
4. Serve the new bundle's scores to a fresh population and compare the true 90-day
   margin of the learned policy with always-discount, never-message and random.
"""

import argparse
import datetime as dt
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from services.decision.bundle import Bundle, load_bundle
from services.decision.catalog import CandidateSet
from services.decision.domain import CandidateResult, Decision
from services.decision.learn import (
    LearnResult,
    fit_and_evaluate,
    format_evaluation,
    write_value_bundle,
)
from services.decision.logfile import LogHeader, ProfileLog, write_log
from services.decision.outcome_log import OutcomeEntry
from services.decision.records import RecordContext, decision_record
from services.decision.scoring import score_rows
from services.decision.simulator import (
    SEGMENTS,
    Population,
    SimAction,
    SimPurchase,
    Simulator,
    sim_actions,
)
from services.decision.trainset import build_training_set
from trustfirst.consent.v1 import consent_pb2
from trustfirst.decision.v1 import decision_pb2

START_TIME: Final = 899_251_200
"""1998-07-01 00:00 UTC, the day after the CDNOW history ends."""
CHANNEL: Final = consent_pb2.CHANNEL_EMAIL
TOUCHPOINT: Final = "newsletter"
HORIZON_DAYS: Final = 90


@dataclass(frozen=True)
class ExperimentConfig:
    customers: int = 20_000
    """Customers whose logged decisions train and evaluate the model."""
    test_customers: int = 20_000
    """Fresh customers on which the policies' true values are compared."""
    seed: int = 7
    eval_share: float = 0.3


@dataclass(frozen=True)
class ExperimentResult:
    learn: LearnResult
    offline_truth: dict[str, float]
    """True value of each evaluated policy on the evaluation rows, cents per decision."""
    test_values: dict[str, float]
    """True 90-day margin per customer of each policy on the fresh population."""
    learned_silence_by_segment: dict[str, float]
    """Share of each segment that the learned policy leaves in silence."""
    learned_choices: dict[str, float]
    """Share of the fresh population given each choice by the learned policy."""
    bundle: Bundle


def logged_round(
    simulator: Simulator,
    population: Population,
    actions: list[SimAction],
    catalog_margin_rate: float,
    bundle_version: str,
    catalog_version: str,
    seed: int,
) -> list[ProfileLog]:
    """Draw one uniformly random choice per customer and return the decision log."""
    rng = np.random.default_rng(seed)
    choices = rng.integers(0, len(actions), len(population))
    orders = simulator.sample_purchases(
        population, choices, actions, START_TIME, HORIZON_DAYS, rng
    )
    features = simulator.features(population, START_TIME)
    probability = 1.0 / len(actions)
    logs: list[ProfileLog] = []
    for index, profile_id in enumerate(population.profile_ids):
        decision_id = f"{profile_id}-d0"
        record = _record(
            decision_id,
            profile_id,
            actions,
            int(choices[index]),
            probability,
            features[index].tolist(),
            catalog_margin_rate,
            (bundle_version, catalog_version),
        )
        outcomes = [
            _outcome(profile_id, number, order, decision_id)
            for number, order in enumerate(orders[index])
        ]
        logs.append(ProfileLog(profile_id, [record], outcomes))
    return logs


def _record(
    decision_id: str,
    profile_id: str,
    actions: list[SimAction],
    choice: int,
    probability: float,
    features: list[float],
    margin_rate: float,
    versions: tuple[str, str],
) -> dict[str, Any]:
    chosen = actions[choice]
    candidates = tuple(
        CandidateResult(
            a.action_id,
            0.0,
            decision_pb2.CANDIDATE_STATUS_CHOSEN
            if a is chosen
            else decision_pb2.CANDIDATE_STATUS_OUTSCORED,
        )
        for a in actions[1:]
    )
    decision = Decision(
        decision_id=decision_id,
        profile_id=profile_id,
        action_id=chosen.action_id,
        silence_reason=decision_pb2.SILENCE_REASON_UNSPECIFIED
        if chosen.action_id
        else decision_pb2.SILENCE_REASON_EXPLORATION,
        candidates=candidates,
        model_version=versions[0],
        consent_token="simulated",
        repeat_probability=0.0,
        catalog_version=versions[1],
        propensity=probability,
        explored=True,
    )
    context = RecordContext(
        time=float(START_TIME),
        as_of=START_TIME,
        touchpoint=TOUCHPOINT,
        channel=CHANNEL,
        basket=(),
        features=features,
        open_actions=[a.action_id for a in actions[1:]],
        probabilities=[probability] * (len(actions) - 1),
        silence_probability=probability,
        best_action="",
        margin_rate=margin_rate,
        action_cost_cents=chosen.cost_cents,
        attribution_window_days=HORIZON_DAYS,
    )
    return decision_record(decision, context)


def _outcome(
    profile_id: str, number: int, order: SimPurchase, decision_id: str
) -> OutcomeEntry:
    return OutcomeEntry(
        event_id=f"{profile_id}-o{number}",
        time=order.time,
        amount_cents=order.amount_cents,
        discount_cents=order.discount_cents,
        quantity=order.quantity,
        decision_ids=(decision_id,),
    )


def true_margins(
    simulator: Simulator,
    population: Population,
    actions: list[SimAction],
    action_codes: dict[str, int],
) -> npt.NDArray[np.float64]:
    """Return each customer's exact expected margin per code, shape (customers, codes)."""
    margins = np.zeros((len(population), len(action_codes) + 1))
    for index, action in enumerate(actions):
        code = action_codes[action.action_id] if action.action_id else 0
        choices = np.full(len(population), index, dtype=np.int64)
        margins[:, code] = simulator.expected_margin(
            population, choices, actions, START_TIME, HORIZON_DAYS
        )
    return margins


def learned_choices(
    bundle: Bundle, features: npt.NDArray[np.float64], candidates: CandidateSet
) -> npt.NDArray[np.int64]:
    """Return the served choice per row as an index into sim_actions (0 is silence).

    Scores come from the serving path; every candidate is open, as in the simulation.
    """
    _, scores = score_rows(bundle, features, candidates)
    best = scores.argmax(axis=1)
    positive = scores[np.arange(best.size), best] > 0.0
    result: npt.NDArray[np.int64] = np.where(positive, best + 1, 0)
    return result


def run_experiment(
    config: ExperimentConfig, base: Bundle, workdir: Path
) -> ExperimentResult:
    """Run steps 1 to 4 with base's repeat-purchase model and catalog.

    The log and the new bundle are written under workdir.
    """
    catalog = base.catalog
    candidates = catalog.candidates(CHANNEL, TOUCHPOINT)
    actions = sim_actions(candidates)
    simulator = Simulator(catalog.margin_rate)

    population = simulator.sample_population(config.customers, START_TIME, config.seed)
    logs = logged_round(
        simulator,
        population,
        actions,
        catalog.margin_rate,
        base.version,
        catalog.version,
        config.seed + 1,
    )
    log_path = workdir / "simulated-decisions.jsonl.gz"
    write_log(
        log_path, LogHeader(START_TIME + HORIZON_DAYS * 86_400, "simulator"), logs
    )

    data = build_training_set(log_path, catalog.action_costs, progress=False)
    result = fit_and_evaluate(
        data, catalog.policy.exploration_share, config.seed, config.eval_share
    )
    truth = true_margins(simulator, population, actions, data.action_codes)
    index = {p: i for i, p in enumerate(population.profile_ids)}
    rows = np.array([index[p] for p in result.evaluation.profile_ids], dtype=np.int64)
    offline_truth = {
        name: float((policy * truth[rows]).sum(axis=1).mean())
        for name, policy in result.policies.items()
    }

    folder = write_value_bundle(
        workdir / "bundles", base, catalog.source, result, data, log_path, config.seed
    )
    bundle = load_bundle(folder)
    return _compare_on_fresh(
        config, simulator, bundle, candidates, actions, result, offline_truth
    )


def _compare_on_fresh(
    config: ExperimentConfig,
    simulator: Simulator,
    bundle: Bundle,
    candidates: CandidateSet,
    actions: list[SimAction],
    result: LearnResult,
    offline_truth: dict[str, float],
) -> ExperimentResult:
    test = simulator.sample_population(
        config.test_customers, START_TIME, config.seed + 2, id_prefix="test"
    )
    features = simulator.features(test, START_TIME)
    choices = learned_choices(bundle, features, candidates)
    count = len(test)

    def value(selected: npt.NDArray[np.int64]) -> float:
        margins = simulator.expected_margin(
            test, selected, actions, START_TIME, HORIZON_DAYS
        )
        return float(margins.mean())

    per_action = {
        (a.action_id or "silence"): value(np.full(count, i, dtype=np.int64))
        for i, a in enumerate(actions)
    }
    test_values = {
        "learned": value(choices),
        "never-message": per_action["silence"],
        "random": float(np.mean(list(per_action.values()))),
        **{f"always:{a}": v for a, v in per_action.items() if a != "silence"},
    }
    silence = {
        name: float((choices[test.segments == code] == 0).mean())
        for code, name in enumerate(SEGMENTS)
    }
    shares = {
        (a.action_id or "silence"): float((choices == i).mean())
        for i, a in enumerate(actions)
    }
    return ExperimentResult(result, offline_truth, test_values, silence, shares, bundle)


def format_result(result: ExperimentResult) -> str:
    """Return the experiment's outcome as text."""
    lines = [format_evaluation(result.learn), "", "offline estimates against truth:"]
    for name, estimates in result.learn.estimates.items():
        truth = result.offline_truth[name]
        cells = " ".join(
            f"{key} {'in' if e.contains(truth) else 'OUT'}"
            for key, e in estimates.items()
        )
        lines.append(f"  {name:<34} true {truth:8.1f}  {cells}")
    lines.append("")
    lines.append("true 90-day margin per customer on a fresh population (cents):")
    for name, value in result.test_values.items():
        lines.append(f"  {name:<34} {value:8.1f}")
    lines.append("learned policy's choices: " + json.dumps(result.learned_choices))
    lines.append(
        "learned policy's silence by segment: "
        + json.dumps(
            {k: round(v, 3) for k, v in result.learned_silence_by_segment.items()}
        )
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m services.decision.simulate",
        description="Learn incrementality on the simulator and check it against the truth.",
    )
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--test-customers", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--registry",
        type=Path,
        default=None,
        help="registry whose CURRENT bundle gives the repeat-purchase model and "
        "catalog; nothing is written there (default: train one on CDNOW into a "
        "temporary folder)",
    )
    args = parser.parse_args(argv)
    config = ExperimentConfig(args.customers, args.test_customers, args.seed)

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tf-simulate-") as temporary:
        workdir = Path(temporary)
        registry = args.registry or workdir / "registry"
        if args.registry is None:
            from services.decision.train import train_model

            train_model(None, registry, seed=args.seed)
        try:
            result = run_experiment(config, load_bundle(registry), workdir)
        except (OSError, ValueError) as exc:
            print(f"simulation failed: {exc}", file=sys.stderr)
            raise SystemExit(1) from exc
    print(format_result(result))
    print(
        f"{config.customers:,} logged and {config.test_customers:,} test customers, "
        f"seed {config.seed}, {time.perf_counter() - started:.1f} s, "
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d}"
    )


if __name__ == "__main__":
    main()
