"""The action catalog: loading, validation and the candidate sets per channel and touchpoint.

The catalog is a TOML file: the one inside the served model bundle, or the packaged
``catalog.toml``. Besides the actions it contains the contact caps per channel and the
policy rules (holdout and exploration shares). Candidate sets are built once at load, with their
scoring and eligibility parameters as numpy arrays and the union of their consent pairs,
so a request only looks them up.
"""

import hashlib
import math
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

from services.decision.limits import TOUCHPOINT_PATTERN
from trustfirst.consent.v1 import consent_pb2
from trustfirst.decision.v1 import decision_pb2

Channel: TypeAlias = consent_pb2.Channel.ValueType
Purpose: TypeAlias = consent_pb2.Purpose.ValueType
ConsentPair: TypeAlias = tuple[Purpose, Channel]

# Bounds the per-request work and the size of ListActions responses.
MAX_ACTIONS = 256
MAX_DESCRIPTION_LENGTH = 256
ACTION_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
# A cap period longer than a year would need a contact history the service does not keep.
MAX_CAP_PERIOD_DAYS = 365
MAX_CAPS = 32
MAX_SALT_LENGTH = 64

_TOP_LEVEL_KEYS = {
    "margin_rate",
    "default_order_value_cents",
    "actions",
    "caps",
    "policy",
}
_POLICY_KEYS = {"holdout_share", "holdout_salt", "exploration_share"}
_CAP_KEYS = {"channel", "max_contacts", "period_days"}
_REQUIRED_ACTION_KEYS = {
    "id",
    "kind",
    "channel",
    "purposes",
    "touchpoints",
    "cost_cents",
}
_OPTIONAL_ACTION_KEYS = {
    "description",
    "uplift",
    "discount_rate",
    "discount_cents",
    "min_purchase_count",
    "min_recency_days",
    "max_recency_days",
    "min_basket_cents",
}


class CatalogError(ValueError):
    """The catalog file is invalid; ``problems`` lists each problem with its location."""

    def __init__(self, source: str, problems: list[str]) -> None:
        super().__init__(f"invalid action catalog {source}: " + "; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class CatalogAction:
    """One action with the consent it needs and the parameters of its score."""

    action_id: str
    kind: decision_pb2.ActionKind.ValueType
    channel: Channel
    purposes: tuple[Purpose, ...]
    touchpoints: tuple[str, ...]
    """Touchpoints where the action is offered; empty means every touchpoint."""
    cost_cents: int
    """Cost of showing the action once (message cost, display cost), in cents."""
    description: str = ""
    uplift: float = 0.0
    """Share of the customers who would not purchase that the action makes purchase."""
    discount_rate: float = 0.0
    """Share of the order value given away on an order placed with the action."""
    discount_cents: int = 0
    """Fixed amount given away on an order placed with the action, in cents."""
    min_purchase_count: int = 0
    """The action is ineligible for customers with fewer purchases on record."""
    min_recency_days: int = 0
    """The action is ineligible for customers whose latest purchase is more recent; 0
    means no rule. A customer with no purchase passes."""
    max_recency_days: int = 0
    """The action is ineligible for customers whose latest purchase is older; 0 means no
    rule. A customer with no purchase fails."""
    min_basket_cents: int = 0
    """The action is ineligible when the request's basket is worth less, in cents."""


@dataclass(frozen=True)
class ContactCap:
    """At most max_contacts chosen actions on channel in any rolling period_days."""

    channel: Channel
    max_contacts: int
    period_days: int


@dataclass(frozen=True)
class PolicyRules:
    """Holdout and exploration rules of the decision policy."""

    holdout_share: float = 0.0
    """Share of profiles, picked by a salted hash of the profile id, that always get
    silence."""
    holdout_salt: str = ""
    """Salt of the holdout hash; changing it draws a new holdout."""
    exploration_share: float = 0.0
    """Share of decisions whose choice is drawn uniformly among the permitted, eligible
    actions and silence."""


@dataclass(frozen=True)
class CandidateSet:
    """The actions offered at one channel and touchpoint, ready to score."""

    actions: tuple[CatalogAction, ...]
    pairs: tuple[ConsentPair, ...]
    """The union of the actions' purpose x channel pairs, each once."""
    action_pairs: tuple[tuple[int, ...], ...]
    """For each action, the indices into pairs that it needs."""
    uplift: npt.NDArray[np.float64] = field(repr=False)
    discount_rate: npt.NDArray[np.float64] = field(repr=False)
    discount_cents: npt.NDArray[np.float64] = field(repr=False)
    cost_cents: npt.NDArray[np.float64] = field(repr=False)
    min_purchase_count: npt.NDArray[np.int64] = field(repr=False)
    min_recency_days: npt.NDArray[np.float64] = field(repr=False)
    max_recency_days: npt.NDArray[np.float64] = field(repr=False)
    """0 (no rule) is stored as infinity."""
    min_basket_cents: npt.NDArray[np.float64] = field(repr=False)
    caps: tuple[ContactCap, ...] = ()
    """Contact caps of the candidates' channel (every candidate of a set shares it)."""

    @property
    def action_ids(self) -> tuple[str, ...]:
        return tuple(action.action_id for action in self.actions)


def build_candidate_set(
    actions: Sequence[CatalogAction], caps: Sequence[ContactCap] = ()
) -> CandidateSet:
    """Precompute the consent pairs and scoring arrays of actions."""
    pairs: dict[ConsentPair, int] = {}
    action_pairs: list[tuple[int, ...]] = []
    for action in actions:
        indices = []
        for purpose in action.purposes:
            pair = (purpose, action.channel)
            indices.append(pairs.setdefault(pair, len(pairs)))
        action_pairs.append(tuple(indices))

    def column(name: str) -> npt.NDArray[np.float64]:
        return np.array([getattr(a, name) for a in actions], dtype=np.float64)

    return CandidateSet(
        actions=tuple(actions),
        pairs=tuple(pairs),
        action_pairs=tuple(action_pairs),
        uplift=column("uplift"),
        discount_rate=column("discount_rate"),
        discount_cents=column("discount_cents"),
        cost_cents=column("cost_cents"),
        min_purchase_count=np.array(
            [a.min_purchase_count for a in actions], dtype=np.int64
        ),
        min_recency_days=column("min_recency_days"),
        max_recency_days=np.array(
            [a.max_recency_days or math.inf for a in actions], dtype=np.float64
        ),
        min_basket_cents=column("min_basket_cents"),
        caps=tuple(caps),
    )


class Catalog:
    """A validated catalog, its version, and its candidate sets by channel and touchpoint."""

    def __init__(
        self,
        actions: Sequence[CatalogAction],
        margin_rate: float,
        default_order_value_cents: int,
        version: str,
        caps: Sequence[ContactCap] = (),
        policy: PolicyRules = PolicyRules(),
        source: bytes = b"",
    ) -> None:
        self.actions = tuple(actions)
        self.margin_rate = margin_rate
        self.default_order_value_cents = default_order_value_cents
        self.version = version
        self.caps = tuple(caps)
        self.policy = policy
        self.source = source
        """The TOML bytes the catalog was parsed from; empty when built in code."""
        self.action_costs = {a.action_id: float(a.cost_cents) for a in self.actions}

        self._any_touchpoint: dict[Channel, CandidateSet] = {}
        self._by_touchpoint: dict[tuple[Channel, str], CandidateSet] = {}
        for channel in {action.channel for action in self.actions}:
            on_channel = [a for a in self.actions if a.channel == channel]
            channel_caps = self.caps_of(channel)
            self._any_touchpoint[channel] = build_candidate_set(
                [a for a in on_channel if not a.touchpoints], channel_caps
            )
            for touchpoint in {t for a in on_channel for t in a.touchpoints}:
                offered = [
                    a
                    for a in on_channel
                    if not a.touchpoints or touchpoint in a.touchpoints
                ]
                self._by_touchpoint[(channel, touchpoint)] = build_candidate_set(
                    offered, channel_caps
                )
        self._empty = build_candidate_set([])

    def caps_of(self, channel: Channel) -> tuple[ContactCap, ...]:
        """Return the contact caps that apply to channel."""
        return tuple(cap for cap in self.caps if cap.channel == channel)

    @property
    def contact_lookback_days(self) -> int:
        """Return the longest cap period, in days (0 without caps)."""
        return max((cap.period_days for cap in self.caps), default=0)

    def candidates(self, channel: Channel, touchpoint: str) -> CandidateSet:
        """Return the actions offered on channel at touchpoint, in catalog order."""
        found = self._by_touchpoint.get((channel, touchpoint))
        if found is not None:
            return found
        return self._any_touchpoint.get(channel, self._empty)


def load_catalog(path: Path | None = None) -> Catalog:
    """Load and validate the catalog at path, or the packaged one when path is None.

    Raises CatalogError when the file is invalid and OSError when it cannot be read.
    """
    if path is None:
        data = (
            resources.files("services.decision").joinpath("catalog.toml").read_bytes()
        )
        return parse_catalog(data, "catalog.toml (packaged)")
    return parse_catalog(Path(path).read_bytes(), str(path))


def parse_catalog(data: bytes, source: str) -> Catalog:
    """Validate catalog TOML; the version is a hash of the bytes.

    Raises CatalogError listing every problem found.
    """
    try:
        document = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise CatalogError(source, [f"not valid UTF-8 TOML: {exc}"]) from exc

    problems: list[str] = []
    for key in sorted(set(document) - _TOP_LEVEL_KEYS):
        problems.append(f"unknown key {key!r}")
    margin_rate = _number(document, "margin_rate", "", problems, low=0.0, high=1.0)
    default_value = _integer(document, "default_order_value_cents", "", problems)
    actions = _parse_actions(document.get("actions"), problems)
    caps = _parse_caps(document.get("caps", []), problems)
    policy = _parse_policy(document.get("policy", {}), problems)
    if problems:
        raise CatalogError(source, problems)

    version = hashlib.sha256(data).hexdigest()[:16]
    return Catalog(
        actions,
        margin_rate,
        default_value,
        version,
        caps=caps,
        policy=policy,
        source=data,
    )


def _parse_caps(raw: Any, problems: list[str]) -> list[ContactCap]:
    if not isinstance(raw, list):
        problems.append("caps: expected [[caps]] tables")
        return []
    if len(raw) > MAX_CAPS:
        problems.append(f"caps: {len(raw)} caps, at most {MAX_CAPS} allowed")
        return []

    caps: list[ContactCap] = []
    for index, entry in enumerate(raw):
        where = f"caps[{index}]"
        if not isinstance(entry, dict):
            problems.append(f"{where}: expected a table")
            continue
        before = len(problems)
        for key in sorted(set(entry) - _CAP_KEYS):
            problems.append(f"{where}: unknown key {key!r}")
        if "channel" not in entry:
            problems.append(f"{where}.channel: missing")
        channel = _enum(
            entry, "channel", where, consent_pb2.Channel, "CHANNEL_", problems
        )
        max_contacts = _integer(entry, "max_contacts", where, problems)
        period_days = _integer(entry, "period_days", where, problems)
        if "max_contacts" in entry and max_contacts < 1:
            problems.append(f"{where}.max_contacts: invalid 0: expected 1 or more")
        if "period_days" in entry and not 1 <= period_days <= MAX_CAP_PERIOD_DAYS:
            problems.append(
                f"{where}.period_days: invalid {period_days}: expected 1 to "
                f"{MAX_CAP_PERIOD_DAYS}"
            )
        if len(problems) == before:
            caps.append(
                ContactCap(
                    consent_pb2.Channel.ValueType(channel), max_contacts, period_days
                )
            )
    return caps


def _parse_policy(raw: Any, problems: list[str]) -> PolicyRules:
    if not isinstance(raw, dict):
        problems.append("policy: expected a [policy] table")
        return PolicyRules()
    for key in sorted(set(raw) - _POLICY_KEYS):
        problems.append(f"policy: unknown key {key!r}")

    holdout = _number(
        raw, "holdout_share", "policy", problems, low=0.0, high=0.5, default=0.0
    )
    exploration = _number(
        raw, "exploration_share", "policy", problems, low=0.0, high=1.0, default=0.0
    )
    salt = raw.get("holdout_salt", "")
    if not isinstance(salt, str) or len(salt) > MAX_SALT_LENGTH:
        problems.append(
            f"policy.holdout_salt: expected text of at most {MAX_SALT_LENGTH} characters"
        )
        salt = ""
    if holdout > 0 and not salt:
        problems.append("policy.holdout_salt: missing: a holdout needs a salt")
    return PolicyRules(
        holdout_share=holdout, holdout_salt=str(salt), exploration_share=exploration
    )


def _parse_actions(raw: Any, problems: list[str]) -> list[CatalogAction]:
    if not isinstance(raw, list) or not raw:
        problems.append("actions: expected at least one [[actions]] table")
        return []
    if len(raw) > MAX_ACTIONS:
        problems.append(f"actions: {len(raw)} actions, at most {MAX_ACTIONS} allowed")
        return []

    actions: list[CatalogAction] = []
    seen: set[str] = set()
    for index, entry in enumerate(raw):
        where = f"actions[{index}]"
        action = _parse_action(entry, where, problems)
        if action is None:
            continue
        if action.action_id in seen:
            problems.append(f"{where}.id: duplicate action id {action.action_id!r}")
        seen.add(action.action_id)
        actions.append(action)
    return actions


def _parse_action(entry: Any, where: str, problems: list[str]) -> CatalogAction | None:
    if not isinstance(entry, dict):
        problems.append(f"{where}: expected a table")
        return None
    before = len(problems)
    for key in sorted(_REQUIRED_ACTION_KEYS - set(entry)):
        problems.append(f"{where}.{key}: missing")
    for key in sorted(set(entry) - _REQUIRED_ACTION_KEYS - _OPTIONAL_ACTION_KEYS):
        problems.append(f"{where}: unknown key {key!r}")

    action_id = entry.get("id")
    if "id" in entry and not (
        isinstance(action_id, str) and ACTION_ID_PATTERN.match(action_id)
    ):
        problems.append(
            f"{where}.id: invalid {action_id!r}: expected 1 to 64 lower-case letters, "
            "digits, '.', '_' or '-'"
        )
    kind = _enum(
        entry, "kind", where, decision_pb2.ActionKind, "ACTION_KIND_", problems
    )
    channel = _enum(entry, "channel", where, consent_pb2.Channel, "CHANNEL_", problems)
    purposes = _purposes(entry, where, problems)
    touchpoints = _touchpoints(entry, where, problems)
    # A missing cost_cents was reported with the other required keys.
    cost_cents = _integer(entry, "cost_cents", where, problems, default=0)
    description = entry.get("description", "")
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION_LENGTH:
        problems.append(
            f"{where}.description: expected text of at most {MAX_DESCRIPTION_LENGTH} characters"
        )
    uplift = _number(entry, "uplift", where, problems, low=0.0, high=1.0, default=0.0)
    discount_rate = _number(
        entry, "discount_rate", where, problems, low=0.0, high=1.0, default=0.0
    )
    discount_cents = _integer(entry, "discount_cents", where, problems, default=0)
    min_count = _integer(entry, "min_purchase_count", where, problems, default=0)
    min_recency = _integer(entry, "min_recency_days", where, problems, default=0)
    max_recency = _integer(entry, "max_recency_days", where, problems, default=0)
    if max_recency and min_recency > max_recency:
        problems.append(
            f"{where}.max_recency_days: invalid {max_recency}: below "
            f"min_recency_days {min_recency}"
        )
    min_basket = _integer(entry, "min_basket_cents", where, problems, default=0)
    if len(problems) > before:
        return None

    return CatalogAction(
        action_id=str(action_id),
        kind=decision_pb2.ActionKind.ValueType(kind),
        channel=consent_pb2.Channel.ValueType(channel),
        purposes=purposes,
        touchpoints=touchpoints,
        cost_cents=cost_cents,
        description=str(description),
        uplift=uplift,
        discount_rate=discount_rate,
        discount_cents=discount_cents,
        min_purchase_count=min_count,
        min_recency_days=min_recency,
        max_recency_days=max_recency,
        min_basket_cents=min_basket,
    )


def _enum(
    entry: Mapping[str, Any],
    key: str,
    where: str,
    enum: Any,
    prefix: str,
    problems: list[str],
) -> int:
    if key not in entry:
        return 0
    return _enum_value(entry[key], f"{where}.{key}", enum, prefix, problems)


def _enum_value(
    value: Any, location: str, enum: Any, prefix: str, problems: list[str]
) -> int:
    """Return the number of the enum value named ``prefix + value``, or 0 if invalid."""
    names = [
        name.removeprefix(prefix)
        for name in enum.DESCRIPTOR.values_by_name
        if not name.endswith("UNSPECIFIED")
    ]
    if isinstance(value, str) and value in names:
        return int(enum.Value(prefix + value))
    problems.append(
        f"{location}: invalid {value!r}: expected one of {', '.join(names)}"
    )
    return 0


def _purposes(
    entry: Mapping[str, Any], where: str, problems: list[str]
) -> tuple[Purpose, ...]:
    raw = entry.get("purposes")
    if "purposes" not in entry:
        return ()
    if not isinstance(raw, list) or not raw:
        problems.append(f"{where}.purposes: expected a non-empty list of purposes")
        return ()
    purposes: list[Purpose] = []
    for index, value in enumerate(raw):
        location = f"{where}.purposes[{index}]"
        number = _enum_value(value, location, consent_pb2.Purpose, "PURPOSE_", problems)
        purpose = consent_pb2.Purpose.ValueType(number)
        if number and purpose in purposes:
            problems.append(f"{where}.purposes[{index}]: duplicate purpose {value!r}")
        purposes.append(purpose)
    return tuple(purposes)


def _touchpoints(
    entry: Mapping[str, Any], where: str, problems: list[str]
) -> tuple[str, ...]:
    raw = entry.get("touchpoints")
    if "touchpoints" not in entry:
        return ()
    if not isinstance(raw, list):
        problems.append(
            f"{where}.touchpoints: expected a list (empty for every touchpoint)"
        )
        return ()
    for index, value in enumerate(raw):
        if not isinstance(value, str) or not TOUCHPOINT_PATTERN.match(value):
            problems.append(
                f"{where}.touchpoints[{index}]: invalid {value!r}: expected 1 to 64 "
                "printable characters without spaces"
            )
    return tuple(str(value) for value in raw)


def _integer(
    entry: Mapping[str, Any],
    key: str,
    where: str,
    problems: list[str],
    default: int | None = None,
) -> int:
    location = f"{where}.{key}" if where else key
    if key not in entry:
        if default is None:
            problems.append(f"{location}: missing")
            return 0
        return default
    value = entry[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        problems.append(f"{location}: invalid {value!r}: expected an integer >= 0")
        return 0
    return value


def _number(
    entry: Mapping[str, Any],
    key: str,
    where: str,
    problems: list[str],
    low: float,
    high: float,
    default: float | None = None,
) -> float:
    location = f"{where}.{key}" if where else key
    if key not in entry:
        if default is None:
            problems.append(f"{location}: missing")
            return 0.0
        return default
    value = entry[key]
    valid = isinstance(value, int | float) and not isinstance(value, bool)
    if not valid or not math.isfinite(value) or not low <= value <= high:
        problems.append(
            f"{location}: invalid {value!r}: expected a number in [{low}, {high}]"
        )
        return 0.0
    return float(value)
