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
