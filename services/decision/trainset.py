"""The training set of the value model, built from a decision log file.

Each logged decision with features, whose attribution window closed before the log's
``observed_until``, gives one row. A row has the decision features as served and the
chosen action's code (0 for silence). It has the margin of the outcomes attributed to the
decision (margin rate x list value - discount, before the action's cost). It also has the
probability with which the choice was drawn, and which actions were open (permitted,
eligible, under the caps).
"""

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from services.decision.features import DECISION_FEATURE_NAMES, SECONDS_PER_DAY
from services.decision.logfile import (
    ProfileLog,
    count_lines,
    read_header,
    read_profiles,
)
from services.decision.value_model import SILENCE_CODE, action_code_map


@dataclass(frozen=True)
class TrainingSet:
    """Rows of logged decisions, in log order."""

    features: npt.NDArray[np.float64]
    """DECISION_FEATURE_NAMES columns; NaN where undefined."""
    codes: npt.NDArray[np.int64]
    """Code of the served choice; SILENCE_CODE for silence."""
    margins: npt.NDArray[np.float64]
    """Margin attributed to the decision, before the chosen action's cost, in cents."""
    propensities: npt.NDArray[np.float64]
    """Probability with which the served choice was drawn."""
    open_mask: npt.NDArray[np.bool_]
    """(rows, codes): which choices were open; silence (column 0) always is."""
    holdout: npt.NDArray[np.bool_]
    action_codes: dict[str, int]
    """Action id to code; codes run from 1 to the number of actions."""
    action_costs: npt.NDArray[np.float64]
    """Cost of each code's action in cents (0 for silence)."""
    profile_ids: list[str]
    decision_ids: list[str]
    as_of: npt.NDArray[np.int64]
    horizon_days: int
    """The attribution window of the logged decisions, in days."""
    skipped: dict[str, int]
    """Logged decisions left out, by reason."""

    def __len__(self) -> int:
        return int(self.codes.size)

    @property
    def rewards(self) -> npt.NDArray[np.float64]:
        """Margins less the cost of the served choice."""
        result: npt.NDArray[np.float64] = self.margins - self.action_costs[self.codes]
        return result

    def subset(self, mask: npt.NDArray[np.bool_]) -> "TrainingSet":
        """Return the rows where mask is true."""
        return TrainingSet(
            features=self.features[mask],
            codes=self.codes[mask],
            margins=self.margins[mask],
            propensities=self.propensities[mask],
            open_mask=self.open_mask[mask],
            holdout=self.holdout[mask],
            action_codes=self.action_codes,
            action_costs=self.action_costs,
            profile_ids=[
                p for p, keep in zip(self.profile_ids, mask, strict=True) if keep
            ],
            decision_ids=[
                d for d, keep in zip(self.decision_ids, mask, strict=True) if keep
            ],
            as_of=self.as_of[mask],
            horizon_days=self.horizon_days,
            skipped=self.skipped,
        )


@dataclass
class _Row:
    features: list[float]
    chosen: str
    margin: float
    propensity: float
    open_actions: list[str]
    holdout: bool
    profile_id: str
    decision_id: str
    as_of: int


def build_training_set(
    path: Path,
    catalog_costs: Mapping[str, float] | None = None,
    progress: bool = True,
) -> TrainingSet:
    """Read a log file into a training set, with a progress bar over its profiles.

    Action costs come from the logged decisions that chose each action, else from
    catalog_costs, else 0. Raises LogFormatError for a malformed file and ValueError when
    the log mixes attribution windows or has no usable decision.
    """
    header = read_header(path)
    total = count_lines(path) if progress else None
    rows: list[_Row] = []
    skipped = {"no_features": 0, "window_open": 0}
    costs: dict[str, float] = dict(catalog_costs or {})
    actions: set[str] = set()
    windows: set[int] = set()
    profiles = tqdm(
        read_profiles(path),
        total=total,
        desc="training set",
        unit="profile",
        disable=not progress,
    )
    for profile in profiles:
        for record in profile.decisions:
            actions.update(c["action_id"] for c in record.get("candidates", []))
            if record.get("chosen"):
                costs[record["chosen"]] = float(record.get("action_cost_cents", 0.0))
        for row, reason in _rows(profile, header.observed_until, windows):
            if row is None:
                skipped[reason] += 1
            else:
                rows.append(row)

    if len(windows) > 1:
        raise ValueError(
            f"{path}: the decisions use attribution windows of {sorted(windows)} days; "
            "train from decisions with one window"
        )
    if not rows:
        raise ValueError(f"{path}: no logged decision has features and a closed window")
    return _assemble(rows, actions, costs, windows.pop(), skipped)


def _rows(
    profile: ProfileLog, observed_until: int, windows: set[int]
) -> list[tuple[_Row | None, str]]:
    margins: dict[str, float] = {}
    for record in profile.decisions:
        margins[record["decision_id"]] = 0.0
    rates = {
        r["decision_id"]: float(r.get("margin_rate", 0.0)) for r in profile.decisions
    }
    for entry in profile.outcomes:
        for decision_id in entry.decision_ids:
            if decision_id in margins:
                margins[decision_id] += entry.margin_cents(rates[decision_id])

    result: list[tuple[_Row | None, str]] = []
    for record in profile.decisions:
        window = int(record.get("attribution_window_days", 0))
        if record.get("features") is None:
            result.append((None, "no_features"))
            continue
        if int(record["as_of"]) + window * SECONDS_PER_DAY > observed_until:
            result.append((None, "window_open"))
            continue
        windows.add(window)
        result.append((_row(profile.profile_id, record, margins), ""))
    return result


def _row(profile_id: str, record: dict[str, Any], margins: dict[str, float]) -> _Row:
    features = [
        np.nan if record["features"].get(name) is None else record["features"][name]
        for name in DECISION_FEATURE_NAMES
    ]
    return _Row(
        features=features,
        chosen=str(record.get("chosen", "")),
        margin=margins[record["decision_id"]],
        propensity=float(record.get("propensity", 1.0)),
        open_actions=list(record.get("open_actions", [])),
        holdout=bool(record.get("holdout", False)),
        profile_id=profile_id,
        decision_id=str(record["decision_id"]),
        as_of=int(record["as_of"]),
    )


def _assemble(
    rows: list[_Row],
    actions: set[str],
    costs: dict[str, float],
    horizon_days: int,
    skipped: dict[str, int],
) -> TrainingSet:
    codes_by_action = action_code_map(sorted(actions))
    width = len(codes_by_action) + 1
    open_mask = np.zeros((len(rows), width), dtype=bool)
    open_mask[:, SILENCE_CODE] = True
    for index, row in enumerate(rows):
        for action_id in row.open_actions:
            open_mask[index, codes_by_action[action_id]] = True

    action_costs = np.zeros(width)
    for action_id, code in codes_by_action.items():
        action_costs[code] = costs.get(action_id, 0.0)
    return TrainingSet(
        features=np.array([r.features for r in rows], dtype=np.float64).reshape(
            len(rows), len(DECISION_FEATURE_NAMES)
        ),
        codes=np.array(
            [codes_by_action[r.chosen] if r.chosen else SILENCE_CODE for r in rows],
            dtype=np.int64,
        ),
        margins=np.array([r.margin for r in rows], dtype=np.float64),
        propensities=np.array([r.propensity for r in rows], dtype=np.float64),
        open_mask=open_mask,
        holdout=np.array([r.holdout for r in rows], dtype=bool),
        action_codes=codes_by_action,
        action_costs=action_costs,
        profile_ids=[r.profile_id for r in rows],
        decision_ids=[r.decision_id for r in rows],
        as_of=np.array([r.as_of for r in rows], dtype=np.int64),
        horizon_days=horizon_days,
        skipped=skipped,
    )
