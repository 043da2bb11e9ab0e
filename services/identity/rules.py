"""Linking rules of the identity graph: limits, unique kinds, priority, blocklist, quarantine.

The rules come from ``TRUSTFIRST_IDENTITY_*`` environment variables (JSON for the lists
and maps) or from a TOML file named by ``TRUSTFIRST_IDENTITY_RULES_FILE`` whose keys are
the same names in lower case. ``docs/identity.md`` describes each rule and its default.
"""

import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from services.identity.models import Kind

MAX_VALUES_CAP = 1000
"""Upper bound of a per-kind maximum. Limits bound the size of a profile, and so the
work of the atomic merge script, which blocks Redis while it runs."""

MAX_BLOCKED_PATTERNS = 100
"""Maximum number of blocklist patterns. Each value is matched against all of them."""

MAX_PATTERN_CHARS = 256
"""Maximum length of one blocklist pattern, in characters."""

DAY_SECONDS = 86_400

DEFAULT_MAX_VALUES: dict[Kind, int] = {
    Kind.ACCOUNT_ID: 1,
    Kind.LOYALTY_ID: 2,
    Kind.EMAIL: 5,
    Kind.PHONE: 3,
    Kind.POS_TOKEN: 5,
    Kind.DEVICE_ID: 5,
    Kind.COOKIE_ID: 5,
}

DEFAULT_WINDOWS_SECONDS: dict[Kind, int] = {Kind.COOKIE_ID: 7 * DAY_SECONDS}

DEFAULT_UNIQUE_KINDS: list[Kind] = [Kind.ACCOUNT_ID]

DEFAULT_PRIORITY: list[Kind] = [
    Kind.ACCOUNT_ID,
    Kind.LOYALTY_ID,
    Kind.EMAIL,
    Kind.PHONE,
    Kind.POS_TOKEN,
    Kind.DEVICE_ID,
    Kind.COOKIE_ID,
]

DEFAULT_BLOCKED_VALUES: list[str] = [
    "",
    "null",
    "undefined",
    "[object Object]",
    "0",
    "-1",
    "anonymous",
    "none",
    "nil",
    "nan",
    "unknown",
    "n/a",
    "test@test.com",
]

DEFAULT_BLOCKED_PATTERNS: list[str] = [
    # Only zeros, dots, dashes and spaces: "0000", "000-000", and the all-zero
    # advertising id 00000000-0000-0000-0000-000000000000.
    r"[0\s.\-]+",
    # One character repeated 8 or more times: "xxxxxxxx", "11111111".
    r"(.)\1{7,}",
]


class RulesError(ValueError):
    """The rules configuration is invalid, so the service must not start."""


class RuleSettings(BaseModel):
    """The rule settings, shared by the environment and the rules file."""

    model_config = ConfigDict(extra="forbid")

    max_values_per_kind: dict[Kind, int] = Field(
        default_factory=lambda: dict(DEFAULT_MAX_VALUES)
    )
    """Maximum number of values of each kind in one profile (1 to 1000). Kinds that are
    not named keep their default. A unique kind always has a maximum of 1."""

    max_values_window_seconds: dict[Kind, int] = Field(
        default_factory=lambda: dict(DEFAULT_WINDOWS_SECONDS)
    )
    """Window per kind, in seconds: only links made within it count toward the maximum.
    0 counts every link. Kinds that are not named keep their default."""

    unique_kinds: list[Kind] = Field(default_factory=lambda: list(DEFAULT_UNIQUE_KINDS))
    """Kinds of which a profile contains at most one value, ever. Two profiles with
    different values of such a kind are never merged."""

    kind_priority: list[Kind] = Field(default_factory=lambda: list(DEFAULT_PRIORITY))
    """Kinds from highest to lowest priority. Resolve links identifiers in this order,
    so on a conflict the lower-priority identifier is rejected. Kinds that are not
    named follow in their default order."""

    blocked_values: list[str] = Field(
        default_factory=lambda: list(DEFAULT_BLOCKED_VALUES)
    )
    """Placeholder values that are never linked, compared without regard to case."""

    blocked_patterns: list[str] = Field(
        default_factory=lambda: list(DEFAULT_BLOCKED_PATTERNS)
    )
    """Regular expressions (Python syntax) that block every value they match as a whole,
    without regard to case."""

    quarantine_threshold: int = Field(default=5, ge=0, le=10_000)
    """A value is quarantined when more than this many distinct profiles claimed it
    within the quarantine window; 0 turns quarantine off."""

    quarantine_window_seconds: int = Field(default=30 * DAY_SECONDS, ge=1)
    """How long a profile's claim on a value counts toward the quarantine threshold, in
    seconds."""

    tombstone_ttl_seconds: int = Field(default=0, ge=0)
    """How long an erased identifier's tombstone is kept, in seconds. 0 keeps it forever.
    Once it expires, a Resolve with that identifier links it again."""

    @field_validator("max_values_per_kind")
    @classmethod
    def _merge_max_values(cls, value: dict[Kind, int]) -> dict[Kind, int]:
        for kind, maximum in value.items():
            if not 1 <= maximum <= MAX_VALUES_CAP:
                raise ValueError(
                    f"the maximum of {kind} must be 1 to {MAX_VALUES_CAP}, not {maximum}"
                )
        return {**DEFAULT_MAX_VALUES, **value}

    @field_validator("max_values_window_seconds")
    @classmethod
    def _merge_windows(cls, value: dict[Kind, int]) -> dict[Kind, int]:
        for kind, seconds in value.items():
            if seconds < 0:
                raise ValueError(f"the window of {kind} must be 0 or more seconds")
        return {**DEFAULT_WINDOWS_SECONDS, **value}

    @field_validator("unique_kinds")
    @classmethod
    def _check_unique(cls, value: list[Kind]) -> list[Kind]:
        return _without_duplicates(value, "unique_kinds")

    @field_validator("kind_priority")
    @classmethod
    def _complete_priority(cls, value: list[Kind]) -> list[Kind]:
        named = _without_duplicates(value, "kind_priority")
        return named + [kind for kind in DEFAULT_PRIORITY if kind not in named]

    @field_validator("blocked_patterns")
    @classmethod
    def _check_patterns(cls, value: list[str]) -> list[str]:
        if len(value) > MAX_BLOCKED_PATTERNS:
            raise ValueError(f"at most {MAX_BLOCKED_PATTERNS} patterns are allowed")
        for index, pattern in enumerate(value):
            if len(pattern) > MAX_PATTERN_CHARS:
                raise ValueError(
                    f"pattern {index} is longer than {MAX_PATTERN_CHARS} characters"
                )
            try:
                re.compile(pattern)
            except re.error as error:
                raise ValueError(f"pattern {index} is invalid: {error}") from None
        return value


def _without_duplicates(kinds: list[Kind], name: str) -> list[Kind]:
    seen: list[Kind] = []
    for kind in kinds:
        if kind in seen:
            raise ValueError(f"{name} names {kind} twice")
        seen.append(kind)
    return seen


@dataclass(frozen=True)
class KindRule:
    """The effective limit of one kind."""

    kind: Kind
    max_values: int
    window_seconds: int
    """Only links made within this many seconds count toward the maximum, or every link
    when it is 0."""
    unique: bool


class IdentityRules:
    """The compiled rules: per-kind limits in priority order and the blocklist matcher."""

    def __init__(self, config: RuleSettings) -> None:
        unique = set(config.unique_kinds)
        self.priority: tuple[Kind, ...] = tuple(config.kind_priority)
        self.kinds: dict[Kind, KindRule] = {
            kind: KindRule(
                kind=kind,
                max_values=1 if kind in unique else config.max_values_per_kind[kind],
                window_seconds=(
                    0
                    if kind in unique
                    else config.max_values_window_seconds.get(kind, 0)
                ),
                unique=kind in unique,
            )
            for kind in self.priority
        }
        self._rank = {kind: rank for rank, kind in enumerate(self.priority)}
        self._blocked = frozenset(value.casefold() for value in config.blocked_values)
        self._patterns = [
            re.compile(pattern, re.IGNORECASE) for pattern in config.blocked_patterns
        ]
        self.quarantine_threshold = config.quarantine_threshold
        self.quarantine_window_seconds = config.quarantine_window_seconds
        self.tombstone_ttl_seconds = config.tombstone_ttl_seconds

    def rank(self, kind: Kind) -> int:
        """Return the position of kind in the priority order, where 0 is the highest."""
        return self._rank[kind]

    def is_blocked(self, value: str) -> bool:
        """Return True when value is on the blocklist or matches a blocked pattern."""
        if value.casefold() in self._blocked:
            return True
        return any(pattern.fullmatch(value) for pattern in self._patterns)

    def script_argument(self) -> str:
        """Return the per-kind rules as the Lua scripts read them.

        One line per kind in priority order: ``<kind> <max> <window ms> <1 if unique>``.
        """
        lines = [
            f"{rule.kind} {rule.max_values} {rule.window_seconds * 1000} {int(rule.unique)}"
            for rule in self.kinds.values()
        ]
        return "\n".join(lines)


RULE_FIELDS = tuple(RuleSettings.model_fields)


def load_rules(config: RuleSettings, rules_file: Path | None) -> IdentityRules:
    """Compile the rules from config, or from rules_file when one is named.

    Raises RulesError when the file cannot be read or parsed, when it names an unknown
    key, or when a rule is set both in the file and in the environment.
    """
    if rules_file is None:
        return IdentityRules(config)

    data = _read_rules_file(rules_file)
    from_environment = config.model_fields_set & set(RULE_FIELDS)
    both = sorted(set(data) & from_environment)
    if both:
        raise RulesError(
            f"{', '.join(both)} set both in {rules_file} and in the environment: "
            "set each rule in one place"
        )

    values = {name: getattr(config, name) for name in from_environment}
    try:
        return IdentityRules(RuleSettings.model_validate({**values, **data}))
    except ValidationError as error:
        raise RulesError(
            f"invalid rules in {rules_file}: {_describe(error.errors())}"
        ) from None


def _read_rules_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as stream:
            return tomllib.load(stream)
    except OSError as error:
        raise RulesError(
            f"cannot read the rules file {path}: {error.strerror}"
        ) from None
    except tomllib.TOMLDecodeError as error:
        raise RulesError(f"the rules file {path} is not valid TOML: {error}") from None


def _describe(errors: Iterable[Any]) -> str:
    parts = []
    for item in errors:
        location = ".".join(str(part) for part in item["loc"])
        parts.append(f"{location}: {item['msg']}")
    return "; ".join(parts)
