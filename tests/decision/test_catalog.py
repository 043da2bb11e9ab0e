"""The action catalog: the packaged file, candidate sets and validation errors."""

from pathlib import Path

import pytest

from services.decision.catalog import CatalogError, load_catalog, parse_catalog
from trustfirst.consent.v1 import consent_pb2
from trustfirst.decision.v1 import decision_pb2

VALID_ACTION = """
[[actions]]
id = "web-banner"
kind = "CONTENT"
channel = "WEB"
purposes = ["PERSONALISATION"]
touchpoints = ["home"]
cost_cents = 0
uplift = 0.01
"""
HEADER = "margin_rate = 0.3\ndefault_order_value_cents = 3500\n"


def _problems(text: str) -> list[str]:
    with pytest.raises(CatalogError) as caught:
        parse_catalog(text.encode(), "test.toml")
    return caught.value.problems


def test_packaged_catalog_loads() -> None:
    catalog = load_catalog()

    assert len(catalog.actions) == 7
    assert len(catalog.version) == 16
    assert catalog.margin_rate == 0.3


def test_packaged_catalog_covers_channels() -> None:
    channels = {action.channel for action in load_catalog().actions}

    assert channels == {
        consent_pb2.CHANNEL_EMAIL,
        consent_pb2.CHANNEL_WEB,
        consent_pb2.CHANNEL_IN_APP,
        consent_pb2.CHANNEL_PUSH,
        consent_pb2.CHANNEL_SMS,
    }


def test_candidates_by_touchpoint() -> None:
    catalog = load_catalog()

    candidates = catalog.candidates(consent_pb2.CHANNEL_EMAIL, "newsletter")

    assert [a.action_id for a in candidates.actions] == [
        "email-discount-10pct",
        "email-new-arrivals",
    ]
    assert candidates.pairs == (
        (consent_pb2.PURPOSE_MARKETING, consent_pb2.CHANNEL_EMAIL),
        (consent_pb2.PURPOSE_PERSONALISATION, consent_pb2.CHANNEL_EMAIL),
    )
    assert candidates.action_pairs == ((0, 1), (0,))
    assert candidates.discount_rate.tolist() == [0.1, 0.0]


def test_candidates_for_any_touchpoint() -> None:
    candidates = load_catalog().candidates(consent_pb2.CHANNEL_IN_APP, "anywhere")

    assert [a.action_id for a in candidates.actions] == ["app-recommendation-carousel"]


def test_candidates_none_offered() -> None:
    catalog = load_catalog()

    assert catalog.candidates(consent_pb2.CHANNEL_IN_STORE, "till").actions == ()
    assert catalog.candidates(consent_pb2.CHANNEL_WEB, "unknown").actions == ()


def test_catalog_from_path(tmp_path: Path) -> None:
    path = tmp_path / "catalog.toml"
    path.write_text(HEADER + VALID_ACTION)

    catalog = load_catalog(path)

    assert catalog.actions[0].action_id == "web-banner"
    assert catalog.actions[0].kind == decision_pb2.ACTION_KIND_CONTENT


def test_version_follows_content() -> None:
    first = parse_catalog((HEADER + VALID_ACTION).encode(), "a")
    second = parse_catalog(
        (HEADER + VALID_ACTION.replace("0.01", "0.02")).encode(), "b"
    )

    assert first.version != second.version


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        ('channel = "WEB"', 'channel = "FAX"', "actions[0].channel: invalid 'FAX'"),
        ('kind = "CONTENT"', 'kind = "BANNER"', "actions[0].kind: invalid 'BANNER'"),
        (
            '"PERSONALISATION"]',
            '"SELLING"]',
            "actions[0].purposes[0]: invalid 'SELLING'",
        ),
        ('["PERSONALISATION"]', "[]", "actions[0].purposes: expected a non-empty list"),
        ("cost_cents = 0", "cost_cents = -5", "actions[0].cost_cents: invalid -5"),
        ("cost_cents = 0\n", "", "actions[0].cost_cents: missing"),
        ("uplift = 0.01", "uplift = 1.5", "actions[0].uplift: invalid 1.5"),
        (
            'id = "web-banner"',
            'id = "Web Banner"',
            "actions[0].id: invalid 'Web Banner'",
        ),
        ('["home"]', '["two words"]', "actions[0].touchpoints[0]: invalid 'two words'"),
        ("uplift = 0.01", "lift = 0.01", "actions[0]: unknown key 'lift'"),
    ],
)
def test_invalid_action(old: str, new: str, problem: str) -> None:
    problems = _problems(HEADER + VALID_ACTION.replace(old, new))

    assert len(problems) == 1
    assert problems[0].startswith(problem)


def test_duplicate_action_id() -> None:
    problems = _problems(HEADER + VALID_ACTION + VALID_ACTION)

    assert problems == ["actions[1].id: duplicate action id 'web-banner'"]


def test_missing_top_level_keys() -> None:
    problems = _problems(VALID_ACTION)

    assert problems == ["margin_rate: missing", "default_order_value_cents: missing"]


def test_no_actions() -> None:
    problems = _problems(HEADER)

    assert problems == ["actions: expected at least one [[actions]] table"]


def test_invalid_toml() -> None:
    problems = _problems("margin_rate = [")

    assert problems[0].startswith("not valid UTF-8 TOML")


CAPS_AND_POLICY = """
[policy]
holdout_share = 0.1
holdout_salt = "s1"
exploration_share = 0.05

[[caps]]
channel = "EMAIL"
max_contacts = 1
period_days = 7
"""


def test_packaged_catalog_rules() -> None:
    catalog = load_catalog()

    assert catalog.policy.holdout_share == 0.1
    assert catalog.policy.exploration_share == 0.05
    assert catalog.caps_of(consent_pb2.CHANNEL_EMAIL)[0].period_days == 7
    assert catalog.contact_lookback_days == 30


def test_caps_and_policy_parsed() -> None:
    catalog = parse_catalog((HEADER + CAPS_AND_POLICY + VALID_ACTION).encode(), "t")

    assert catalog.policy.holdout_salt == "s1"
    assert catalog.caps[0].channel == consent_pb2.CHANNEL_EMAIL
    assert catalog.caps[0].max_contacts == 1
    assert catalog.candidates(consent_pb2.CHANNEL_WEB, "home").caps == ()


def test_candidate_set_carries_channel_caps() -> None:
    candidates = load_catalog().candidates(consent_pb2.CHANNEL_EMAIL, "newsletter")

    assert [cap.max_contacts for cap in candidates.caps] == [1]


def test_eligibility_keys_parsed() -> None:
    text = HEADER + VALID_ACTION.replace(
        "uplift = 0.01",
        "uplift = 0.01\nmin_recency_days = 10\nmax_recency_days = 90\n"
        "min_basket_cents = 500",
    )

    action = parse_catalog(text.encode(), "t").actions[0]

    assert action.min_recency_days == 10
    assert action.max_recency_days == 90
    assert action.min_basket_cents == 500


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        ('channel = "EMAIL"', 'channel = "FAX"', "caps[0].channel: invalid 'FAX'"),
        ("max_contacts = 1", "max_contacts = 0", "caps[0].max_contacts: invalid 0"),
        ("period_days = 7", "period_days = 400", "caps[0].period_days: invalid 400"),
        (
            "period_days = 7",
            "period_days = 7\nevery = 1",
            "caps[0]: unknown key 'every'",
        ),
        ("holdout_share = 0.1", "holdout_share = 0.9", "policy.holdout_share"),
        ('holdout_salt = "s1"', 'holdout_salt = ""', "policy.holdout_salt: missing"),
        (
            "exploration_share = 0.05",
            "exploration_share = 2",
            "policy.exploration_share: invalid 2",
        ),
        ("exploration_share", "explore", "policy: unknown key 'explore'"),
    ],
)
def test_invalid_caps_and_policy(old: str, new: str, problem: str) -> None:
    problems = _problems(HEADER + CAPS_AND_POLICY.replace(old, new) + VALID_ACTION)

    assert len(problems) == 1
    assert problems[0].startswith(problem)


def test_max_recency_below_min() -> None:
    text = HEADER + VALID_ACTION.replace(
        "uplift = 0.01", "min_recency_days = 30\nmax_recency_days = 10"
    )

    assert _problems(text) == [
        "actions[0].max_recency_days: invalid 10: below min_recency_days 30"
    ]
