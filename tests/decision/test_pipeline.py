"""From serving to training and reporting: the features the service logs equal the
training features, the exported log feeds training, and the CDNOW replay runs end to end
into the lifetime-value report.
"""

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest

from services.decision.cdnow import read_cdnow
from services.decision.features import DECISION_FEATURE_NAMES, FEATURE_NAMES
from services.decision.logfile import (
    LogFormatError,
    LogHeader,
    ProfileLog,
    export_log,
    read_header,
    read_profiles,
    write_log,
)
from services.decision.outcome_log import OutcomeEntry
from services.decision.replay import ReplayConfig, replay
from services.decision.report import difference_interval, write_report
from services.decision.snapshots import build_snapshots, date_to_time
from services.decision.trainset import build_training_set
from tests.decision.conftest import DecisionStack
from tests.decision.test_policy_service import _grant_email, _newsletter
from trustfirst.decision.v1 import decision_pb2

PB = decision_pb2
DAY = 86_400
PURCHASES = [
    ("19970103", 2, "29.97"),
    ("19970220", 1, "12.99"),
    ("19970611", 3, "45.50"),
]


async def test_serving_features_equal_training(
    stack: DecisionStack, tmp_path: Path
) -> None:
    # The same history, recorded through the service and read from a CDNOW file.
    history = tmp_path / "history.txt"
    history.write_text("".join(f"77 {d} {q} {a}\n" for d, q, a in PURCHASES))
    for number, purchase in enumerate(read_cdnow(history)):
        request = PB.RecordOutcomeRequest(
            profile_id="p-77",
            kind=PB.OUTCOME_KIND_PURCHASE,
            amount_cents=purchase.amount_cents,
            quantity=purchase.quantity,
            event_id=f"e-{number}",
        )
        request.event_time.FromSeconds(date_to_time(purchase.date))
        await stack.stub.RecordOutcome(request)
    await _grant_email(stack, "p-77")
    cutoff = dt.date(1997, 7, 1)
    first = await stack.stub.Decide(
        _newsletter("p-77", date_to_time(cutoff) - 10 * DAY)
    )
    second = await stack.stub.Decide(_newsletter("p-77", date_to_time(cutoff)))

    logged = await stack.stub.ExplainDecision(
        PB.ExplainDecisionRequest(profile_id="p-77", decision_id=second.decision_id)
    )
    served = [np.nan if f.missing else f.value for f in logged.features]
    snapshot = build_snapshots(read_cdnow(history), [cutoff], 90).features[0]
    log_path = tmp_path / "log.jsonl"
    await export_log(
        stack.redis, log_path, date_to_time(cutoff) + 91 * DAY, progress=False
    )
    rows = build_training_set(log_path, progress=False)
    row = rows.features[rows.decision_ids.index(second.decision_id)]

    assert first.action_id != ""
    assert [f.name for f in logged.features] == list(DECISION_FEATURE_NAMES)
    assert np.array_equal(served[: len(FEATURE_NAMES)], snapshot, equal_nan=True)
    assert np.array_equal(row, served, equal_nan=True)
    # The first decision's email is the second's contact history.
    assert served[DECISION_FEATURE_NAMES.index("days_since_contact")] == 10.0


def _entry(event_id: str, time: int, decision_ids: tuple[str, ...]) -> OutcomeEntry:
    return OutcomeEntry(event_id, time, 3000, 0, 1, decision_ids)


def _record(
    decision_id: str, as_of: int, holdout: bool, chosen: str
) -> dict[str, object]:
    return {
        "decision_id": decision_id,
        "profile_id": "p",
        "time": float(as_of),
        "as_of": as_of,
        "features": dict.fromkeys(DECISION_FEATURE_NAMES, 1.0),
        "candidates": [
            {"action_id": "a", "score": 1.0, "status": "X", "probability": 1.0}
        ],
        "open_actions": ["a"],
        "chosen": chosen,
        "propensity": 1.0,
        "holdout": holdout,
        "margin_rate": 0.3,
        "action_cost_cents": 2.0 if chosen else 0.0,
        "attribution_window_days": 30,
        "model_version": "v1",
        "silence_reason": "" if chosen else "SILENCE_REASON_HOLDOUT",
    }


def _small_log(path: Path) -> Path:
    start = 1_000 * DAY
    profiles = [
        ProfileLog(
            "treated",
            [
                _record("d1", start, False, "a"),
                _record("d2", start + 30 * DAY, False, "a"),
            ],
            [
                _entry("o1", start + DAY, ("d1",)),
                _entry("o2", start + 40 * DAY, ("d2",)),
            ],
        ),
        ProfileLog(
            "held",
            [_record("d3", start, True, "")],
            [_entry("o3", start + 5 * DAY, ("d3",))],
        ),
    ]
    write_log(path, LogHeader(start + 60 * DAY, "test"), profiles)
    return path


@pytest.mark.parametrize("name", ["log.jsonl", "log.jsonl.gz"])
def test_log_round_trip(tmp_path: Path, name: str) -> None:
    path = _small_log(tmp_path / name)

    profiles = list(read_profiles(path))

    assert read_header(path).observed_until == 1_060 * DAY
    assert [p.profile_id for p in profiles] == ["treated", "held"]
    assert profiles[0].outcomes[1].decision_ids == ("d2",)
    assert profiles[1].decisions[0]["holdout"] is True


def test_log_rejects_missing_header(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"type": "profile"}\n')

    with pytest.raises(LogFormatError, match=r"bad\.jsonl:1"):
        read_header(path)


def test_training_set_margins(tmp_path: Path) -> None:
    data = build_training_set(_small_log(tmp_path / "log.jsonl"), progress=False)

    # 0.3 x 3000 = 900 per attributed order; the treated decisions chose "a" (cost 2).
    assert data.margins.tolist() == [900.0, 900.0, 900.0]
    assert data.rewards.tolist() == [898.0, 898.0, 900.0]
    assert data.holdout.tolist() == [False, False, True]
    assert data.open_mask.tolist() == [[True, True]] * 3


def test_training_set_skips_open_window(tmp_path: Path) -> None:
    path = _small_log(tmp_path / "log.jsonl")
    profiles = list(read_profiles(path))
    write_log(path, LogHeader(1_040 * DAY, "test"), profiles)

    data = build_training_set(path, progress=False)

    assert len(data) == 2
    assert data.skipped["window_open"] == 1


def test_report_from_log(tmp_path: Path) -> None:
    readme = write_report(_small_log(tmp_path / "log.jsonl"), tmp_path / "report")

    text = readme.read_text()
    assert "| customers | 1 | 1 |" in text
    # Treated: 2 orders x 900 - 2 x 2 contact cost; holdout: 900.
    assert "| margin per customer | $17.960 | $9.000 |" in text
    for name in ("retention", "repeat_purchase", "basket_value", "cumulative_margin"):
        assert (tmp_path / "report" / f"{name}.png").stat().st_size > 1_000


def test_difference_interval() -> None:
    difference, low, high = difference_interval(
        np.array([1.0, 3.0, 5.0]), np.array([0.0, 2.0])
    )

    assert difference == pytest.approx(2.0)
    # sqrt(4 / 3 + 2 / 2) = 1.5275
    assert high - difference == pytest.approx(1.959964 * 1.527525, rel=1e-4)
    assert difference - low == pytest.approx(high - difference)


async def test_replay_end_to_end(synthetic_cdnow: Path, tmp_path: Path) -> None:
    config = ReplayConfig(
        out=tmp_path / "replay",
        customers=150,
        rounds=2,
        learn_after=1,
        start=dt.date(1998, 1, 1),
        concurrency=16,
        data=synthetic_cdnow,
        progress=False,
    )

    readme = await replay(config)

    run = json.loads((config.out / "run.json").read_text())
    learned = run["learning"]["bundle"]
    assert readme.is_file()
    assert (readme.parent / "cumulative_margin.png").is_file()
    assert run["rounds"][0]["bundles"] == {run["bundles"][0]: 150}
    assert run["rounds"][1]["bundles"] == {learned: 150}
    assert (config.out / "registry" / "CURRENT").read_text().strip() == learned
    assert "Incremental margin per treated customer" in readme.read_text()
