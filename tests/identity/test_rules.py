"""Rule settings: defaults, environment, rules file, validation and the blocklist matcher."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from services.identity.models import Kind
from services.identity.rules import (
    IdentityRules,
    RulesError,
    RuleSettings,
    load_rules,
)
from services.identity.settings import IdentitySettings

ISSUE_PLACEHOLDERS = [
    "null",
    "undefined",
    "[object Object]",
    "0",
    "-1",
    "",
    "anonymous",
]


@pytest.fixture(autouse=True)
def no_rules_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in RuleSettings.model_fields:
        monkeypatch.delenv(f"TRUSTFIRST_IDENTITY_{name.upper()}", raising=False)
    monkeypatch.delenv("TRUSTFIRST_IDENTITY_RULES_FILE", raising=False)


def test_default_limits() -> None:
    rules = IdentityRules(RuleSettings())

    assert {kind: rule.max_values for kind, rule in rules.kinds.items()} == {
        Kind.ACCOUNT_ID: 1,
        Kind.LOYALTY_ID: 2,
        Kind.EMAIL: 5,
        Kind.PHONE: 3,
        Kind.POS_TOKEN: 5,
        Kind.DEVICE_ID: 5,
        Kind.COOKIE_ID: 5,
    }
    assert rules.kinds[Kind.COOKIE_ID].window_seconds == 7 * 86_400
    assert rules.kinds[Kind.EMAIL].window_seconds == 0


def test_default_unique_and_priority() -> None:
    rules = IdentityRules(RuleSettings())

    assert [kind for kind, rule in rules.kinds.items() if rule.unique] == [
        Kind.ACCOUNT_ID
    ]
    assert rules.priority == (
        Kind.ACCOUNT_ID,
        Kind.LOYALTY_ID,
        Kind.EMAIL,
        Kind.PHONE,
        Kind.POS_TOKEN,
        Kind.DEVICE_ID,
        Kind.COOKIE_ID,
    )
    assert rules.quarantine_threshold == 5
    assert rules.quarantine_window_seconds == 30 * 86_400
    assert rules.tombstone_ttl_seconds == 0


@pytest.mark.parametrize("value", ISSUE_PLACEHOLDERS)
def test_default_blocklist_placeholder(value: str) -> None:
    assert IdentityRules(RuleSettings()).is_blocked(value) is True


@pytest.mark.parametrize(
    "value",
    [
        "NULL",
        "Undefined",
        "[OBJECT OBJECT]",
        "0000",
        "000-000-0000",
        "00000000-0000-0000-0000-000000000000",
        "xxxxxxxx",
        "11111111",
        "Test@Test.com",
    ],
)
def test_default_blocklist_variant(value: str) -> None:
    assert IdentityRules(RuleSettings()).is_blocked(value) is True


@pytest.mark.parametrize(
    "value",
    [
        "ana@example.com",
        "+442079460958",
        "acct-0",
        "100",
        "3F2504E0-4F89-11D3-9A0C-0305E82C3301",
        "1111111",
        "nullable",
        "anonymous-42",
    ],
)
def test_default_blocklist_passes(value: str) -> None:
    assert IdentityRules(RuleSettings()).is_blocked(value) is False


def test_environment_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRUSTFIRST_IDENTITY_MAX_VALUES_PER_KIND", '{"device_id": 2}')
    monkeypatch.setenv("TRUSTFIRST_IDENTITY_KIND_PRIORITY", '["device_id", "email"]')
    monkeypatch.setenv("TRUSTFIRST_IDENTITY_BLOCKED_VALUES", '["guest"]')
    monkeypatch.setenv(
        "TRUSTFIRST_IDENTITY_UNIQUE_KINDS", '["account_id", "loyalty_id"]'
    )

    rules = load_rules(IdentitySettings(), None)

    assert rules.kinds[Kind.DEVICE_ID].max_values == 2
    assert rules.kinds[Kind.EMAIL].max_values == 5
    assert rules.priority[:3] == (Kind.DEVICE_ID, Kind.EMAIL, Kind.ACCOUNT_ID)
    assert len(rules.priority) == 7
    assert rules.is_blocked("GUEST") is True
    assert rules.is_blocked("null") is False
    assert rules.kinds[Kind.LOYALTY_ID].unique is True
    assert rules.kinds[Kind.LOYALTY_ID].max_values == 1


def test_unique_kind_ignores_window() -> None:
    config = RuleSettings(
        unique_kinds=[Kind.COOKIE_ID], max_values_window_seconds={Kind.COOKIE_ID: 60}
    )

    rule = IdentityRules(config).kinds[Kind.COOKIE_ID]

    assert rule.max_values == 1
    assert rule.window_seconds == 0


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"max_values_per_kind": {"email": 0}}, "must be 1 to 1000"),
        ({"max_values_per_kind": {"email": 1001}}, "must be 1 to 1000"),
        ({"max_values_per_kind": {"fax": 1}}, "fax"),
        ({"max_values_window_seconds": {"cookie_id": -1}}, "0 or more seconds"),
        ({"kind_priority": ["email", "email"]}, "names email twice"),
        ({"unique_kinds": ["account_id", "account_id"]}, "names account_id twice"),
        ({"blocked_patterns": ["(unclosed"]}, "pattern 0 is invalid"),
        ({"blocked_patterns": ["a" * 257]}, "longer than 256"),
        ({"quarantine_threshold": -1}, "greater than or equal to 0"),
        ({"quarantine_window_seconds": 0}, "greater than or equal to 1"),
    ],
)
def test_invalid_rules(values: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        RuleSettings.model_validate(values)

    assert message in str(caught.value)


def test_rules_file(tmp_path: Path) -> None:
    rules_file = tmp_path / "rules.toml"
    rules_file.write_text(
        "\n".join(
            [
                'unique_kinds = ["account_id", "loyalty_id"]',
                'kind_priority = ["loyalty_id"]',
                "quarantine_threshold = 12",
                'blocked_patterns = ["guest-\\\\d+"]',
                "[max_values_per_kind]",
                "device_id = 3",
                "[max_values_window_seconds]",
                "device_id = 86400",
            ]
        )
    )

    rules = load_rules(IdentitySettings(), rules_file)

    assert rules.kinds[Kind.LOYALTY_ID].unique is True
    assert rules.priority[0] == Kind.LOYALTY_ID
    assert rules.quarantine_threshold == 12
    assert rules.kinds[Kind.DEVICE_ID].max_values == 3
    assert rules.kinds[Kind.DEVICE_ID].window_seconds == 86_400
    assert rules.kinds[Kind.COOKIE_ID].window_seconds == 7 * 86_400
    assert rules.is_blocked("Guest-17") is True
    assert rules.is_blocked("null") is True


def test_rules_file_unknown_key(tmp_path: Path) -> None:
    rules_file = tmp_path / "rules.toml"
    rules_file.write_text("quarantine_limit = 3\n")

    with pytest.raises(RulesError, match="quarantine_limit"):
        load_rules(IdentitySettings(), rules_file)


def test_rules_file_and_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rules_file = tmp_path / "rules.toml"
    rules_file.write_text("quarantine_threshold = 3\n")
    monkeypatch.setenv("TRUSTFIRST_IDENTITY_QUARANTINE_THRESHOLD", "4")

    with pytest.raises(RulesError, match="quarantine_threshold set both"):
        load_rules(IdentitySettings(), rules_file)


def test_rules_file_with_other_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rules_file = tmp_path / "rules.toml"
    rules_file.write_text("quarantine_threshold = 3\n")
    monkeypatch.setenv("TRUSTFIRST_IDENTITY_TOMBSTONE_TTL_SECONDS", "60")

    rules = load_rules(IdentitySettings(), rules_file)

    assert rules.quarantine_threshold == 3
    assert rules.tombstone_ttl_seconds == 60


def test_rules_file_missing(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match="cannot read the rules file"):
        load_rules(IdentitySettings(), tmp_path / "absent.toml")


def test_rules_file_not_toml(tmp_path: Path) -> None:
    rules_file = tmp_path / "rules.toml"
    rules_file.write_text("quarantine_threshold = = 3\n")

    with pytest.raises(RulesError, match="not valid TOML"):
        load_rules(IdentitySettings(), rules_file)


def test_rules_file_invalid_value(tmp_path: Path) -> None:
    rules_file = tmp_path / "rules.toml"
    rules_file.write_text("[max_values_per_kind]\nemail = 0\n")

    with pytest.raises(RulesError, match="max_values_per_kind"):
        load_rules(IdentitySettings(), rules_file)


def test_script_argument() -> None:
    config = RuleSettings(
        kind_priority=[Kind.EMAIL],
        max_values_window_seconds={Kind.EMAIL: 2},
    )

    lines = IdentityRules(config).script_argument().splitlines()

    assert lines[0] == "email 5 2000 0"
    assert lines[1] == "account_id 1 0 1"
    assert len(lines) == 7
