"""The value model: expected margin within the attribution window, given the action.

One LightGBM regression model takes the decision features plus the action as a
categorical column (code 0 is silence) and predicts the margin of the orders attributed
to a decision, net of the discounts given on them (an S-learner). The incremental value
of an action over silence is f(x, action) - f(x, silence), and its score subtracts the
action's cost. All candidates of one decision are predicted in one call: K + 1 rows that
share the features and differ only in the action column.
"""

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import numpy.typing as npt

from services.decision.features import DECISION_FEATURE_NAMES
from services.decision.model import ModelLoadError

logger = logging.getLogger(__name__)

VALUE_MODEL_FILE = "value_model.txt"
ACTION_COLUMN = "action"
SILENCE_CODE = 0
VALUE_MODEL_COLUMNS: tuple[str, ...] = (*DECISION_FEATURE_NAMES, ACTION_COLUMN)

# Heavily regularised trees: per-customer margins are noisy (a few orders of very
# different value) and the action effects are small next to the differences between
# customers, so small trees on large leaves keep the action splits from fitting noise.
# min_data_in_leaf is set per training set by min_rows_per_leaf.
VALUE_MODEL_PARAMS: dict[str, Any] = {
    "objective": "regression",
    "learning_rate": 0.03,
    "num_leaves": 7,
    "lambda_l2": 10.0,
    "cat_smooth": 50.0,
    "min_data_per_group": 200,
    "deterministic": True,
    "force_row_wise": True,
    "num_threads": 2,
    "verbose": -1,
}
VALUE_MODEL_ROUNDS = 150


def min_rows_per_leaf(rows: int) -> int:
    """Return min_data_in_leaf for a training set: 5% of its rows, at least 50."""
    return max(50, rows // 20)


class ValueModelError(ModelLoadError):
    """A value model file or its description in the manifest is unusable."""


@dataclass(frozen=True)
class CodePlan:
    """The action column of one candidate set: silence first, then each candidate."""

    codes: npt.NDArray[np.float64]
    """SILENCE_CODE, then each candidate's code (SILENCE_CODE when unknown)."""
    unknown: npt.NDArray[np.bool_]
    """Candidates the model never saw."""
    any_unknown: bool


@dataclass(frozen=True)
class ValueModel:
    """A loaded value model and the action codes it was trained with."""

    booster: lgb.Booster
    action_codes: Mapping[str, int]
    """Catalog action id to its code in the action column; silence is SILENCE_CODE."""
    _plans: dict[tuple[str, ...], CodePlan] = field(
        default_factory=dict, repr=False, compare=False
    )

    def plan_for(self, action_ids: tuple[str, ...]) -> CodePlan:
        """Return the action column for action_ids, built once per candidate set."""
        plan = self._plans.get(action_ids)
        if plan is None:
            unknown = np.array([a not in self.action_codes for a in action_ids])
            codes = [float(self.action_codes.get(a, SILENCE_CODE)) for a in action_ids]
            plan = CodePlan(
                codes=np.array([float(SILENCE_CODE), *codes]),
                unknown=unknown,
                any_unknown=bool(unknown.any()),
            )
            self._plans[action_ids] = plan
        return plan

    def predict_margins(
        self, features: npt.NDArray[np.float64], codes: npt.NDArray[np.float64]
    ) -> npt.NDArray[np.float64]:
        """Return f(x, code) for every row of features and code, shape (rows, codes).

        One LightGBM call on rows x codes stacked rows, with one thread.
        """
        rows = features.shape[0]
        stacked = np.empty((rows * codes.size, features.shape[1] + 1))
        stacked[:, :-1] = np.repeat(features, codes.size, axis=0)
        stacked[:, -1] = np.tile(codes, rows)
        predicted = np.asarray(self.booster.predict(stacked, num_threads=1))
        result: npt.NDArray[np.float64] = predicted.reshape(rows, codes.size)
        return result

    def incremental_values(
        self, features: npt.NDArray[np.float64], action_ids: tuple[str, ...]
    ) -> npt.NDArray[np.float64]:
        """Return f(x, action) - f(x, silence) per row and action, in cents.

        An action unknown to the model gets NaN. features has DECISION_FEATURE_NAMES
        columns.
        """
        plan = self.plan_for(action_ids)
        margins = self.predict_margins(features, plan.codes)
        values = margins[:, 1:] - margins[:, :1]
        if plan.any_unknown:
            values[:, plan.unknown] = np.nan
        return values


def train_value_booster(
    features: npt.NDArray[np.float64],
    codes: npt.NDArray[np.int64],
    margins: npt.NDArray[np.float64],
    seed: int,
    rounds: int = VALUE_MODEL_ROUNDS,
) -> lgb.Booster:
    """Train the value model on logged decisions: features, action codes and margins."""
    params = {
        **VALUE_MODEL_PARAMS,
        "min_data_in_leaf": min_rows_per_leaf(len(margins)),
        "seed": seed,
    }
    data = np.column_stack([features, codes.astype(np.float64)])
    dataset = lgb.Dataset(
        data,
        label=margins,
        feature_name=list(VALUE_MODEL_COLUMNS),
        categorical_feature=[ACTION_COLUMN],
        free_raw_data=True,
    )
    return lgb.train(params, dataset, num_boost_round=rounds)


def load_value_model(path: Path, action_codes: Mapping[str, Any]) -> ValueModel:
    """Load a value model file with the action codes listed in its manifest.

    Raises ValueModelError when the file cannot be loaded, its columns differ from
    VALUE_MODEL_COLUMNS, or the codes are invalid.
    """
    try:
        booster = lgb.Booster(model_file=str(path))
    except (lgb.basic.LightGBMError, OSError) as exc:
        raise ValueModelError(f"{path}: LightGBM cannot load it: {exc}") from exc
    if tuple(booster.feature_name()) != VALUE_MODEL_COLUMNS:
        raise ValueModelError(
            f"{path}: the value model's columns {booster.feature_name()} differ from "
            f"the service's {list(VALUE_MODEL_COLUMNS)}; retrain it with this version"
        )
    codes: dict[str, int] = {}
    for action_id, code in action_codes.items():
        if not isinstance(code, int) or isinstance(code, bool) or code <= SILENCE_CODE:
            raise ValueModelError(
                f"{path}: invalid code {code!r} of action {action_id!r}: expected an "
                f"integer above {SILENCE_CODE}"
            )
        codes[str(action_id)] = code
    return ValueModel(booster=booster, action_codes=codes)


def action_code_map(action_ids: Sequence[str]) -> dict[str, int]:
    """Return codes 1, 2, ... for action_ids in sorted order."""
    return {action_id: code for code, action_id in enumerate(sorted(action_ids), 1)}
