"""The lifetime-value report: treatment against the randomised holdout, from a log file.

Usage: python -m services.decision.report --log FILE --out DIR [--run-info FILE]

A profile is in the holdout when its decisions carry ``holdout: true``, else in
treatment. Every profile with a decision counts, whatever was served, so the comparison
is by intention to treat. Time runs in 30-day months from the first decision in the log to the log's
``observed_until``. Writes to DIR:

- ``retention.png``: share of customers with a purchase in each month;
- ``repeat_purchase.png``: share of customers with at least one purchase so far;
- ``basket_value.png``: mean list value of the month's orders;
- ``cumulative_margin.png``: margin per customer so far (margin rate x list value, less
  discounts and contact costs);
- ``README.md``: the numbers, the incremental margin per customer with a 95% interval
  (normal approximation of the difference of two means), and the decision mix.
"""

import argparse
import json
import math
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import numpy.typing as npt

from services.decision.features import SECONDS_PER_DAY
from services.decision.logfile import LogFormatError, read_header, read_profiles
from services.decision.ope import Z_95

MONTH_SECONDS = 30 * SECONDS_PER_DAY
GROUPS = ("treatment", "holdout")


@dataclass(frozen=True)
class Cohorts:
    """Per-customer, per-month totals of each group, arrays of shape (customers, months)."""

    months: int
    start: int
    """Seconds since the epoch of the first decision."""
    orders: dict[str, npt.NDArray[np.float64]]
    list_value: dict[str, npt.NDArray[np.float64]]
    margin: dict[str, npt.NDArray[np.float64]]
    """Margin less contact costs."""
    discount: dict[str, npt.NDArray[np.float64]]
    contact_cost: dict[str, npt.NDArray[np.float64]]
    decisions: Counter[tuple[str, str]]
    """(bundle version, choice or silence reason) counts."""


def read_cohorts(path: Path) -> Cohorts:
    """Read a log file into per-customer monthly totals by group.

    Raises LogFormatError for a malformed file and ValueError when it has no decision.
    """
    header = read_header(path)
    profiles = [p for p in read_profiles(path) if p.decisions]
    if not profiles:
        raise ValueError(f"{path}: no decision in the log")
    start = min(int(r["as_of"]) for p in profiles for r in p.decisions)
    months = max(1, math.ceil((header.observed_until - start) / MONTH_SECONDS))

    shapes: dict[str, list[dict[str, npt.NDArray[np.float64]]]] = {
        g: [] for g in GROUPS
    }
    decisions: Counter[tuple[str, str]] = Counter()
    for profile in profiles:
        group = (
            "holdout"
            if any(r.get("holdout") for r in profile.decisions)
            else "treatment"
        )
        totals = {
            k: np.zeros(months)
            for k in ("orders", "list", "margin", "discount", "cost")
        }
        margin_rate = float(profile.decisions[0].get("margin_rate", 0.0))
        for record in profile.decisions:
            month = _month(int(record["as_of"]), start, months)
            if month is not None:
                totals["cost"][month] += float(record.get("action_cost_cents", 0.0))
            choice = record.get("chosen") or record.get("silence_reason", "")
            decisions[(str(record.get("model_version", "")), choice)] += 1
        for entry in profile.outcomes:
            month = _month(entry.time, start, months)
            if month is None:
                continue
            totals["orders"][month] += 1
            totals["list"][month] += entry.amount_cents + entry.discount_cents
            totals["discount"][month] += entry.discount_cents
            totals["margin"][month] += entry.margin_cents(margin_rate)
        totals["margin"] -= totals["cost"]
        shapes[group].append(totals)

    def stack(key: str) -> dict[str, npt.NDArray[np.float64]]:
        return {
            g: np.array([t[key] for t in shapes[g]]).reshape(len(shapes[g]), months)
            for g in GROUPS
        }

    return Cohorts(
        months=months,
        start=start,
        orders=stack("orders"),
        list_value=stack("list"),
        margin=stack("margin"),
        discount=stack("discount"),
        contact_cost=stack("cost"),
        decisions=decisions,
    )


def _month(time: int, start: int, months: int) -> int | None:
    month = (time - start) // MONTH_SECONDS
    return int(month) if 0 <= month < months else None


def difference_interval(
    treatment: npt.NDArray[np.float64], holdout: npt.NDArray[np.float64]
) -> tuple[float, float, float]:
    """Return the difference of means and its 95% interval (normal approximation)."""
    difference = float(treatment.mean() - holdout.mean())
    if treatment.size < 2 or holdout.size < 2:
        return difference, math.nan, math.nan
    error = math.sqrt(
        treatment.var(ddof=1) / treatment.size + holdout.var(ddof=1) / holdout.size
    )
    return difference, difference - Z_95 * error, difference + Z_95 * error


def _plot(
    path: Path,
    title: str,
    ylabel: str,
    series: dict[str, npt.NDArray[np.float64]],
) -> None:
    figure, axes = plt.subplots(figsize=(7, 4), dpi=100)
    months = np.arange(1, 1 + max((v.size for v in series.values()), default=0))
    for group, values in series.items():
        axes.plot(months[: values.size], values, marker="o", label=group)
    axes.set_xticks(months)
    axes.set_title(title)
    axes.set_xlabel("month since the first decision")
    axes.set_ylabel(ylabel)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def _monthly(
    cohorts: Cohorts,
) -> dict[str, dict[str, npt.NDArray[np.float64]]]:
    curves: dict[str, dict[str, npt.NDArray[np.float64]]] = {
        "retention": {},
        "repeat": {},
        "basket": {},
        "margin": {},
    }
    for group in GROUPS:
        orders = cohorts.orders[group]
        if orders.shape[0] == 0:
            continue
        curves["retention"][group] = (orders > 0).mean(axis=0)
        curves["repeat"][group] = (np.cumsum(orders, axis=1) > 0).mean(axis=0)
        order_totals = orders.sum(axis=0)
        curves["basket"][group] = np.divide(
            cohorts.list_value[group].sum(axis=0) / 100,
            order_totals,
            out=np.full(cohorts.months, np.nan),
            where=order_totals > 0,
        )
        curves["margin"][group] = (
            np.cumsum(cohorts.margin[group], axis=1).mean(axis=0) / 100
        )
    return curves


def write_plots(
    cohorts: Cohorts, out: Path
) -> dict[str, dict[str, npt.NDArray[np.float64]]]:
    """Write the four PNG plots; return the plotted curves."""
    curves = _monthly(cohorts)
    _plot(
        out / "retention.png",
        "Customers with a purchase in the month",
        "share",
        curves["retention"],
    )
    _plot(
        out / "repeat_purchase.png",
        "Customers with a repeat purchase so far",
        "share",
        curves["repeat"],
    )
    _plot(
        out / "basket_value.png",
        "Mean basket (list value per order)",
        "dollars",
        curves["basket"],
    )
    _plot(
        out / "cumulative_margin.png",
        "Cumulative margin per customer, net of discounts and contact costs",
        "dollars",
        curves["margin"],
    )
    return curves


def _group_table(cohorts: Cohorts) -> list[str]:
    rows = [
        "| | treatment | holdout |",
        "|---|---:|---:|",
    ]

    def row(label: str, values: dict[str, str]) -> None:
        rows.append(f"| {label} | {values['treatment']} | {values['holdout']} |")

    def per_group(function: Any) -> dict[str, str]:
        return {g: function(g) for g in GROUPS}

    row("customers", per_group(lambda g: f"{cohorts.orders[g].shape[0]:,}"))
    row(
        "with a purchase in the period",
        per_group(lambda g: f"{(cohorts.orders[g].sum(axis=1) > 0).mean():.2%}"),
    )
    row(
        "orders per customer",
        per_group(lambda g: f"{cohorts.orders[g].sum(axis=1).mean():.3f}"),
    )
    row(
        "mean basket (list value)",
        per_group(
            lambda g: (
                f"${cohorts.list_value[g].sum() / max(cohorts.orders[g].sum(), 1) / 100:.2f}"
            )
        ),
    )
    row(
        "discount per customer",
        per_group(lambda g: f"${cohorts.discount[g].sum(axis=1).mean() / 100:.3f}"),
    )
    row(
        "contact cost per customer",
        per_group(lambda g: f"${cohorts.contact_cost[g].sum(axis=1).mean() / 100:.3f}"),
    )
    row(
        "margin per customer",
        per_group(lambda g: f"${cohorts.margin[g].sum(axis=1).mean() / 100:.3f}"),
    )
    return rows


def render_markdown(
    cohorts: Cohorts,
    curves: dict[str, dict[str, npt.NDArray[np.float64]]],
    run_info: dict[str, Any] | None,
) -> str:
    """Return the report's Markdown text."""
    difference, low, high = difference_interval(
        cohorts.margin["treatment"].sum(axis=1), cohorts.margin["holdout"].sum(axis=1)
    )
    lines = [
        "# Lifetime-value report: treatment against holdout",
        "",
        f"{cohorts.months} months of 30 days from the first decision. Money in dollars; "
        "margin is the catalog's margin rate times the orders' list value, less the "
        "discounts granted and the contact costs of the actions sent.",
        "",
        *_group_table(cohorts),
        "",
        f"**Incremental margin per treated customer: ${difference / 100:.3f}** "
        f"(95% interval ${low / 100:.3f} to ${high / 100:.3f}, normal approximation of "
        "the difference of the two groups' means).",
        "",
        "## Curves",
        "",
        "![retention](retention.png)",
        "![repeat purchase](repeat_purchase.png)",
        "![basket value](basket_value.png)",
        "![cumulative margin](cumulative_margin.png)",
        "",
        "| month | "
        + " | ".join(
            f"{name} {g}"
            for name in ("active", "repeat so far", "margin so far $")
            for g in GROUPS
        )
        + " |",
        "|---:|" + "---:|" * 6,
    ]
    for month in range(cohorts.months):
        cells = [
            f"{curves[key][g][month]:.4f}"
            if key != "margin"
            else f"{curves[key][g][month]:.3f}"
            for key in ("retention", "repeat", "margin")
            for g in GROUPS
            if g in curves[key]
        ]
        lines.append(f"| {month + 1} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Decisions by bundle",
        "",
        "| bundle | choice | decisions |",
        "|---|---|---:|",
    ]
    for (bundle, choice), count in sorted(cohorts.decisions.items()):
        lines.append(f"| `{bundle}` | {choice} | {count:,} |")
    if run_info:
        lines += _run_section(run_info)
    return "\n".join(lines) + "\n"


def _run_section(run_info: dict[str, Any]) -> list[str]:
    # The working folder is a local path of the run, so it is left out.
    settings = {k: v for k, v in run_info.get("settings", {}).items() if k != "out"}
    command = (
        "python -m services.decision.replay --out DIR "
        f"--rounds {settings.get('rounds')} --round-days {settings.get('round_days')} "
        f"--learn-after {settings.get('learn_after')} --seed {settings.get('seed')}"
    )
    lines = [
        "",
        "## Run",
        "",
        f"Made with `{command}`: CDNOW customers, decisions by the running service, "
        "responses drawn by the simulator (docs/model.md). Settings:",
        "",
        "```",
        json.dumps(settings, indent=2),
        "```",
    ]
    seconds = run_info.get("seconds")
    if seconds:
        lines += ["", f"Wall time in seconds: {json.dumps(seconds)}."]
    learning = run_info.get("learning")
    if learning:
        evaluation = learning["evaluation"]
        lines += [
            "",
            f"Offline evaluation of bundle `{learning['bundle']}` before its promotion, "
            f"on {learning['rows'].get('evaluation_rows', 0):,} held-out decisions "
            f"({evaluation['unit']}; {evaluation['interval']}):",
            "",
            "| policy | IPS | SNIPS | DR |",
            "|---|---:|---:|---:|",
        ]
        logged = evaluation["logged"]
        lines.append(
            f"| logging policy (mean reward) | {logged['value']:.1f} "
            f"[{logged['low']:.1f}, {logged['high']:.1f}] | | |"
        )
        for name, estimates in evaluation["policies"].items():
            cells = [
                f"{e['value']:.1f} [{e['low']:.1f}, {e['high']:.1f}]"
                for e in (estimates["IPS"], estimates["SNIPS"], estimates["DR"])
            ]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines += [
            "",
            "The intervals treat decisions as independent. The log has several decisions "
            "per customer, whose outcomes are correlated, so the intervals are too narrow.",
        ]
    rounds = run_info.get("rounds", [])
    if rounds:
        lines += ["", "Rounds:", ""]
        lines += [f"- {json.dumps(r)}" for r in rounds]
    return lines


def write_report(
    log_path: Path, out: Path, run_info: dict[str, Any] | None = None
) -> Path:
    """Write the plots and README.md for a log file into out; return README.md's path."""
    out.mkdir(parents=True, exist_ok=True)
    cohorts = read_cohorts(log_path)
    curves = write_plots(cohorts, out)
    readme = out / "README.md"
    readme.write_text(render_markdown(cohorts, curves, run_info), encoding="utf-8")
    return readme


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m services.decision.report",
        description="Write the lifetime-value report (PNG plots and Markdown) from a "
        "decision log file.",
    )
    parser.add_argument("--log", type=Path, required=True, help="decision log file")
    parser.add_argument("--out", type=Path, required=True, help="report folder")
    parser.add_argument(
        "--run-info",
        type=Path,
        default=None,
        help="run.json of a replay, shown in the report",
    )
    args = parser.parse_args(argv)
    try:
        run_info = json.loads(args.run_info.read_text()) if args.run_info else None
        readme = write_report(args.log, args.out, run_info)
    except (OSError, ValueError, LogFormatError) as exc:
        print(f"report failed: {exc}", file=sys.stderr)
        raise SystemExit(1) from exc
    print(f"report written to {readme}")


if __name__ == "__main__":
    main()
