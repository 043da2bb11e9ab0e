"""A service process with invalid settings exits with code 2 and one message."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from shared.settings import SETTINGS_ERROR_EXIT_CODE

# Decision shares the entry point code but needs a trained model before it gets this far.
CASES = {
    "identity": {
        "TRUSTFIRST_IDENTITY_TLS_CERT_FILE": "/nonexistent/cert.pem",
        "TRUSTFIRST_IDENTITY_HASH_KEY": "startup-test-identity-key-0123456789abcdef",
    },
    "consent": {"TRUSTFIRST_CONSENT_AUTHZ_METHODS": '{"NoSuchMethod": ["admin"]}'},
}


@pytest.mark.parametrize("service", sorted(CASES))
def test_invalid_settings_exit_code(service: str) -> None:
    env = {
        **os.environ,
        **CASES[service],
        f"TRUSTFIRST_{service.upper()}_PORT": "0",
        # Nothing listens on port 1, so a service that got past its settings would fail.
        f"TRUSTFIRST_{service.upper()}_REDIS_URL": "redis://127.0.0.1:1/0",
    }
    result = subprocess.run(
        [sys.executable, "-m", f"services.{service}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    errors = [
        json.loads(line)
        for line in result.stderr.splitlines()
        if line.startswith("{") and '"ERROR"' in line
    ]

    assert result.returncode == SETTINGS_ERROR_EXIT_CODE, result.stderr[-2000:]
    assert len(errors) == 1
    assert errors[0]["message"].startswith("invalid settings")


# Values that fail before logging is configured: the message is a plain stderr line.
EARLY_CASES = {
    "authorization": (
        "identity",
        {"TRUSTFIRST_IDENTITY_AUTHORIZATION": "bogus"},
        "TRUSTFIRST_IDENTITY_AUTHORIZATION",
    ),
    "roles": ("identity", {"TRUSTFIRST_IDENTITY_AUTHZ_ROLES": "{{{"}, "authz_roles"),
    "port": ("consent", {"TRUSTFIRST_CONSENT_PORT": "-3"}, "TRUSTFIRST_CONSENT_PORT"),
}


@pytest.mark.parametrize("case", sorted(EARLY_CASES))
def test_unparsable_setting_exit_code(case: str) -> None:
    service, variables, named = EARLY_CASES[case]
    result = subprocess.run(
        [sys.executable, "-m", f"services.{service}"],
        env={**os.environ, **variables},
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = result.stderr.strip().splitlines()

    assert result.returncode == SETTINGS_ERROR_EXIT_CODE, result.stderr[-2000:]
    assert len(lines) == 1
    assert lines[0].startswith("invalid settings")
    assert named in lines[0]
