"""The ``trustfirst`` client commands against the suite running as processes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import suite.cli
from suite.cli import main
from tests.suite.conftest import RunningSuite

EMAIL = "cli.user@example.com"


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any, str]:
    """Run ``trustfirst argv`` in this process; return exit status, parsed stdout, stderr."""
    status = 0
    try:
        main(list(argv))
    except SystemExit as exit_:
        status = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return status, json.loads(out) if status == 0 and out else out, err


@pytest.fixture(scope="module")
def targets(running_suite: RunningSuite) -> dict[str, list[str]]:
    """The address option of each service, for the commands' argument lists."""
    return {
        name: [f"--{name}", running_suite.target(name)]
        for name in ("identity", "consent", "decision")
    }


@pytest.fixture(scope="module")
def profile_id(targets: dict[str, list[str]]) -> str:
    """A profile resolved and granted by CLI processes: personalisation and marketing on
    the web."""
    out = subprocess.run(
        [sys.executable, "-c", "from suite.cli import main; main()", "resolve",
         "--email", EMAIL, "--loyalty-id", "CLI-0001", *targets["identity"]],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    resolved: str = json.loads(out)["profile_id"]
    subprocess.run(
        [sys.executable, "-c", "from suite.cli import main; main()", "grant", resolved,
         "--purpose", "personalisation", "--purpose", "marketing", "--channel", "web",
         "--notice-version", "2026-01", *targets["consent"]],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return resolved


def test_cli_resolve_creates_profile(
    capsys: pytest.CaptureFixture[str], targets: dict[str, list[str]]
) -> None:
    status, reply, _ = run_cli(
        capsys, "resolve", "--email", "new.cli@example.com", *targets["identity"]
    )

    assert status == 0
    assert reply["created"] is True
    assert reply["profile_id"] != ""


def test_cli_lookup_finds_profile(
    capsys: pytest.CaptureFixture[str], targets: dict[str, list[str]], profile_id: str
) -> None:
    status, reply, _ = run_cli(
        capsys, "lookup", "--id", "loyalty_id=CLI-0001", *targets["identity"]
    )

    assert status == 0
    assert reply["found"] is True
    assert reply["profile_id"] == profile_id


def test_cli_check_after_grant(
    capsys: pytest.CaptureFixture[str], targets: dict[str, list[str]], profile_id: str
) -> None:
    status, reply, _ = run_cli(
        capsys, "check", profile_id, "--purpose", "marketing", "--channel", "web",
        *targets["consent"],
    )  # fmt: skip

    assert status == 0
    assert reply["results"][0]["allowed"] is True
    assert reply["results"][0]["reason"] == "CHECK_REASON_GRANTED"


def test_cli_withdraw_then_check(
    capsys: pytest.CaptureFixture[str], targets: dict[str, list[str]]
) -> None:
    _, resolved, _ = run_cli(
        capsys, "resolve", "--email", "withdraw.cli@example.com", *targets["identity"]
    )
    subject = resolved["profile_id"]
    for command in ("grant", "withdraw"):
        status, _, err = run_cli(
            capsys, command, subject, "--purpose", "marketing", "--channel", "email",
            "--notice-version", "2026-01", *targets["consent"],
        )  # fmt: skip
        assert status == 0, err
    status, reply, _ = run_cli(
        capsys, "check", subject, "--purpose", "marketing", "--channel", "email",
        *targets["consent"],
    )  # fmt: skip

    assert status == 0
    assert reply["results"][0]["allowed"] is False
    assert reply["results"][0]["reason"] == "CHECK_REASON_WITHDRAWN"


def test_cli_decide_by_email(
    capsys: pytest.CaptureFixture[str], targets: dict[str, list[str]], profile_id: str
) -> None:
    status, reply, _ = run_cli(
        capsys, "decide", "--email", EMAIL, "--touchpoint", "checkout",
        "--channel", "web", *targets["decision"],
    )  # fmt: skip

    assert status == 0
    assert reply["profile_id"] == profile_id
    assert reply["decision_id"] != ""
    assert reply["consent_token"] != ""


def test_cli_outcome_applies_once(
    capsys: pytest.CaptureFixture[str], targets: dict[str, list[str]], profile_id: str
) -> None:
    args = ("outcome", "--profile-id", profile_id, "--amount-cents", "2599",
            "--event-id", "cli-order-1", *targets["decision"])  # fmt: skip
    first_status, first, _ = run_cli(capsys, *args)
    second_status, second, _ = run_cli(capsys, *args)

    assert first_status == 0
    assert first["duplicate"] is False
    assert second_status == 0
    assert second["duplicate"] is True


def test_cli_actions_lists_catalog(
    capsys: pytest.CaptureFixture[str], targets: dict[str, list[str]]
) -> None:
    status, reply, _ = run_cli(capsys, "actions", *targets["decision"])
    ids = {action["action_id"] for action in reply["actions"]}

    assert status == 0
    assert "web-free-shipping-banner" in ids


def test_cli_invalid_request_exits_1(
    capsys: pytest.CaptureFixture[str], targets: dict[str, list[str]]
) -> None:
    status, out, err = run_cli(
        capsys, "decide", "--touchpoint", "checkout", "--channel", "web",
        *targets["decision"],
    )  # fmt: skip

    assert status == 1
    assert out == ""
    assert "trustfirst decide: INVALID_ARGUMENT" in err
    assert "  profile_id: required" in err
    assert "reason INVALID_ARGUMENT (domain decision.trustfirst.dev)" in err


def test_cli_unreachable_service_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    from shared.embedded_redis import free_port

    target = f"127.0.0.1:{free_port()}"
    status, _, err = run_cli(capsys, "actions", "--decision", target, "--timeout", "2")

    assert status == 1
    assert "UNAVAILABLE" in err
    assert f"is decision running at {target}?" in err


def test_cli_bad_enum_names_choices(capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run_cli(
        capsys, "check", "p1", "--purpose", "ads", "--channel", "web"
    )

    assert status == 2
    assert "expected one of personalisation, marketing, profiling, analytics" in err


def test_cli_report_without_module(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(suite.cli, "REPORT_MODULE", "services.decision.no_such_report")
    status, _, err = run_cli(capsys, "report")

    assert status == 1
    assert "services.decision.no_such_report is not in this installation" in err


def test_cli_entry_point_reads_target_env(suite_env: dict[str, str]) -> None:
    # The console script installed next to this interpreter, as an operator runs it.
    command = shutil.which("trustfirst", path=str(Path(sys.executable).parent))
    assert command is not None

    result = subprocess.run(
        [command, "actions"], env=suite_env, capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["catalog_version"] != ""
