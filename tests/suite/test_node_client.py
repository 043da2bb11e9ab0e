"""The Node.js client resolves a customer, records consent and gets a decision.

It needs node and the client's packages (``npm ci --prefix clients/node``). Without them
the tests skip, unless TRUSTFIRST_REQUIRE_NODE=1 makes them fail, as CI sets it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.suite.conftest import RunningSuite

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "clients" / "node"
SCRIPT = CLIENT / "bin" / "trustfirst-node.js"


def _node() -> str:
    """Return the node binary, or skip (or fail when required) without node or packages."""
    node = shutil.which("node")
    missing = ""
    if node is None:
        missing = "node is not installed"
    elif not (CLIENT / "node_modules" / "@grpc" / "grpc-js").is_dir():
        missing = "the client's packages are missing: npm ci --prefix clients/node"
    if missing:
        if os.environ.get("TRUSTFIRST_REQUIRE_NODE") == "1":
            pytest.fail(missing)
        pytest.skip(missing)
    assert node is not None
    return node


def run_node(suite_env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_node(), str(SCRIPT), *args],
        env=suite_env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def node_run(suite_env: dict[str, str]) -> dict[str, Any]:
    """One run of the client for a new customer, with the default grants."""
    result = run_node(
        suite_env, "--email", "node.user@example.com", "--loyalty-id", "NODE-0001"
    )
    assert result.returncode == 0, result.stderr
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def test_node_resolves_customer(node_run: dict[str, Any]) -> None:
    assert node_run["resolve"]["created"] is True
    assert node_run["resolve"]["profile_id"] != ""


def test_node_records_consent(node_run: dict[str, Any]) -> None:
    statuses = [record["status"] for record in node_run["record_consent"]["records"]]

    assert statuses == ["CONSENT_STATUS_GRANTED", "CONSENT_STATUS_GRANTED"]


def test_node_decides_for_profile(node_run: dict[str, Any]) -> None:
    decided = node_run["decide"]

    assert decided["profile_id"] == node_run["resolve"]["profile_id"]
    assert decided["decision_id"] != ""
    assert decided["consent_token"] != ""


def test_node_decision_is_action_or_silence(node_run: dict[str, Any]) -> None:
    decided = node_run["decide"]

    if decided["silent"]:
        assert decided["silence_reason"] != "SILENCE_REASON_UNSPECIFIED"
    else:
        assert decided["action_id"] != ""


def test_node_profile_is_known_to_python(
    node_run: dict[str, Any], running_suite: RunningSuite
) -> None:
    # The Python CLI finds the profile that the Node client created.
    result = subprocess.run(
        [sys.executable, "-c", "from suite.cli import main; main()", "lookup",
         "--email", "node.user@example.com",
         "--identity", running_suite.target("identity")],
        capture_output=True, text=True, check=True,
    )  # fmt: skip

    assert json.loads(result.stdout)["profile_id"] == node_run["resolve"]["profile_id"]


def test_node_invalid_identifier_exits_1(suite_env: dict[str, str]) -> None:
    result = run_node(suite_env, "--email", "not-an-email")

    assert result.returncode == 1
    assert result.stderr.startswith("trustfirst-node: INVALID_ARGUMENT:")
