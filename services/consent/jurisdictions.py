"""Jurisdictions: the verdict on a pair the customer was never asked about.

The table comes from a TOML file (``jurisdictions.toml`` next to this module unless the
``jurisdictions_file`` setting names another). Each jurisdiction has a regime: opt-in
refuses a never-asked pair and opt-out allows it until the customer objects. Listed
pairs follow the other regime. The verdict of every pair is computed once at load,
so a check only looks it up.
"""

import logging
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.consent.models import Pair, Verdict
from services.consent.state import NEVER_ASKED, NO_OBJECTION
from services.consent.vocabulary import CHANNEL_NAMES, PAIRS_BY_FIELD, PURPOSE_NAMES

logger = logging.getLogger(__name__)

DEFAULT_FILE = Path(__file__).with_name("jurisdictions.toml")
"""The jurisdictions shipped with the service."""

OPT_IN = "opt-in"
OPT_OUT = "opt-out"

MAX_CODE_CHARS = 16
"""Maximum length of a jurisdiction code, such as ``EU``, ``US`` or ``US-CA``."""

_EXCEPTIONS_KEY = {OPT_IN: "opt_out_pairs", OPT_OUT: "opt_in_pairs"}

_FAIL_CLOSED: Mapping[Pair, Verdict] = dict.fromkeys(
    PAIRS_BY_FIELD.values(), NEVER_ASKED
)


class JurisdictionConfigError(ValueError):
    """The jurisdictions file or the default jurisdiction is invalid."""


@dataclass(frozen=True, slots=True)
class Jurisdiction:
    """One configured jurisdiction and the never-asked verdict of every pair."""

    code: str
    regime: str
    verdicts: Mapping[Pair, Verdict]

    @property
    def allowed_count(self) -> int:
        """Return how many pairs this jurisdiction allows without being asked."""
        return sum(verdict.allowed for verdict in self.verdicts.values())


class JurisdictionPolicy:
    """The configured jurisdictions and the default for subjects without one."""

    def __init__(self, jurisdictions: Mapping[str, Jurisdiction], default: str) -> None:
        if default not in jurisdictions:
            raise JurisdictionConfigError(
                f"default jurisdiction {default!r} is not configured; "
                f"configured: {', '.join(sorted(jurisdictions))}"
            )
        self._jurisdictions = dict(jurisdictions)
        self.default = default
        self._warned: set[str] = set()

    @classmethod
    def load(cls, path: Path | None, default: str) -> "JurisdictionPolicy":
        """Read the table from path (the shipped file when None) and check it."""
        source = path or DEFAULT_FILE
        try:
            document = tomllib.loads(source.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as error:
            raise JurisdictionConfigError(f"cannot read {source}: {error}") from error
        return cls(parse_jurisdictions(document, str(source)), default)

    @property
    def codes(self) -> frozenset[str]:
        """Return the configured jurisdiction codes."""
        return frozenset(self._jurisdictions)

    def verdicts(self, code: str | None) -> tuple[str, Mapping[Pair, Verdict]]:
        """Return the jurisdiction that applies and its never-asked verdicts.

        None means the subject has no jurisdiction, so the default applies. A stored
        code that is no longer configured refuses every never-asked pair.
        """
        if code is None:
            code = self.default
        jurisdiction = self._jurisdictions.get(code)
        if jurisdiction is not None:
            return code, jurisdiction.verdicts

        if code not in self._warned:
            self._warned.add(code)
            logger.warning(
                "a subject's jurisdiction is not configured; never-asked pairs are "
                "refused for it",
                extra={"jurisdiction": code},
            )
        return code, _FAIL_CLOSED

    def more_restrictive(self, first: str | None, second: str | None) -> str | None:
        """Return whichever of two subjects' jurisdictions allows fewer pairs unasked.

        None stands for the default. On a tie, or when both are None, first wins.
        """
        if second is None or first == second:
            return first
        if first is None:
            return second
        return second if self._allowed(second) < self._allowed(first) else first

    def _allowed(self, code: str) -> int:
        jurisdiction = self._jurisdictions.get(code)
        # An unconfigured code refuses everything, so it is the most restrictive.
        return -1 if jurisdiction is None else jurisdiction.allowed_count


def parse_jurisdictions(
    document: dict[str, Any], source: str
) -> dict[str, Jurisdiction]:
    """Build the jurisdictions of a parsed TOML document; source names it in errors."""
    table = document.get("jurisdictions")
    if not isinstance(table, dict) or not table:
        raise JurisdictionConfigError(f"{source}: needs a [jurisdictions.<code>] table")

    jurisdictions = {}
    for code, settings in table.items():
        where = f"{source}: jurisdictions.{code}"
        if not 1 <= len(code) <= MAX_CODE_CHARS or not code.isprintable():
            raise JurisdictionConfigError(
                f"{where}: a code has 1 to {MAX_CODE_CHARS} printable characters"
            )
        if not isinstance(settings, dict):
            raise JurisdictionConfigError(f"{where}: must be a table")
        jurisdictions[code] = _parse_jurisdiction(code, settings, where)
    return jurisdictions


def _parse_jurisdiction(
    code: str, settings: dict[str, Any], where: str
) -> Jurisdiction:
    regime = settings.get("regime")
    if regime not in _EXCEPTIONS_KEY:
        raise JurisdictionConfigError(
            f"{where}: regime must be {OPT_IN!r} or {OPT_OUT!r}, got {regime!r}"
        )
    exceptions_key = _EXCEPTIONS_KEY[regime]
    unknown = set(settings) - {"regime", exceptions_key}
    if unknown:
        raise JurisdictionConfigError(
            f"{where}: unknown keys {sorted(unknown)}; an {regime} regime takes "
            f"regime and {exceptions_key}"
        )

    patterns = settings.get(exceptions_key, [])
    if not isinstance(patterns, list):
        raise JurisdictionConfigError(f"{where}.{exceptions_key}: must be a list")
    excepted: set[Pair] = set()
    for pattern in patterns:
        excepted |= _expand(pattern, f"{where}.{exceptions_key}")

    usual, other = (NEVER_ASKED, NO_OBJECTION)
    if regime == OPT_OUT:
        usual, other = other, usual
    verdicts = {
        pair: other if pair in excepted else usual for pair in PAIRS_BY_FIELD.values()
    }
    return Jurisdiction(code, regime, verdicts)


def _expand(pattern: object, where: str) -> set[Pair]:
    """Return the pairs a ``<purpose>:<channel>`` pattern with ``*`` wildcards names."""
    if not isinstance(pattern, str) or pattern.count(":") != 1:
        raise JurisdictionConfigError(
            f"{where}: {pattern!r} is not a <purpose>:<channel> pattern"
        )
    purpose_name, channel_name = pattern.split(":")
    purposes = _match(purpose_name, PURPOSE_NAMES, "purpose", where)
    channels = _match(channel_name, CHANNEL_NAMES, "channel", where)
    return {Pair(purpose, channel) for purpose in purposes for channel in channels}


def _match(name: str, names: Mapping[Any, str], kind: str, where: str) -> list[Any]:
    if name == "*":
        return list(names)
    matches = [number for number, known in names.items() if known == name]
    if not matches:
        raise JurisdictionConfigError(
            f"{where}: unknown {kind} {name!r}; known: {', '.join(names.values())}"
        )
    return matches
