"""Checks of request fields, with the field paths that INVALID_ARGUMENT errors name."""

from collections.abc import Sequence
from dataclasses import dataclass, field

from services.identity.hashing import IdentifierHasher
from services.identity.models import (
    PROFILE_ID_PATTERN,
    VALUE_HASH_PATTERN,
    HashedIdentifier,
    Kind,
)
from services.identity.normalise import (
    MAX_VALUE_CHARS,
    InvalidValue,
    Normaliser,
    has_control_character,
)
from services.identity.rules import IdentityRules
from shared.errors import Violations
from trustfirst.identity.v1 import identity_pb2

MAX_IDENTIFIERS = 32
"""Maximum number of identifiers in one Resolve or Lookup. It bounds the work of one atomic script."""

MAX_SOURCE_CHARS = 64
"""Maximum length of the ``source`` of a Resolve, in characters. It is stored with every link."""

MAX_REQUEST_ID_CHARS = 64
"""Maximum length of the ``request_id`` of a Resolve, in characters (the same cap as ``x-request-id``)."""

MAX_PAGE_SIZE = 1000
"""Maximum ``page_size`` of ListQuarantinedValues."""

DEFAULT_PAGE_SIZE = 100
"""``page_size`` of ListQuarantinedValues when the request leaves it 0."""

KIND_FROM_PROTO: dict[identity_pb2.IdentifierKind.ValueType, Kind] = {
    identity_pb2.IDENTIFIER_KIND_EMAIL: Kind.EMAIL,
    identity_pb2.IDENTIFIER_KIND_PHONE: Kind.PHONE,
    identity_pb2.IDENTIFIER_KIND_ACCOUNT_ID: Kind.ACCOUNT_ID,
    identity_pb2.IDENTIFIER_KIND_LOYALTY_ID: Kind.LOYALTY_ID,
    identity_pb2.IDENTIFIER_KIND_DEVICE_ID: Kind.DEVICE_ID,
    identity_pb2.IDENTIFIER_KIND_COOKIE_ID: Kind.COOKIE_ID,
    identity_pb2.IDENTIFIER_KIND_POS_TOKEN: Kind.POS_TOKEN,
}

KIND_TO_PROTO: dict[Kind, identity_pb2.IdentifierKind.ValueType] = {
    kind: number for number, kind in KIND_FROM_PROTO.items()
}


@dataclass
class IdentifierBatch:
    """The usable identifiers of a request, with their indices, and the blocked indices."""

    indices: list[int] = field(default_factory=list)
    identifiers: list[HashedIdentifier] = field(default_factory=list)
    blocked: list[int] = field(default_factory=list)


class Blocked:
    """The outcome of reading a placeholder value that the blocklist stops."""


BLOCKED = Blocked()


class IdentifierReader:
    """Checks, normalises and hashes identifiers, and applies the blocklist."""

    def __init__(
        self, normaliser: Normaliser, hasher: IdentifierHasher, rules: IdentityRules
    ) -> None:
        self._normaliser = normaliser
        self._hasher = hasher
        self._rules = rules

    def read_batch(
        self,
        items: Sequence[identity_pb2.Identifier],
        violations: Violations,
        path: str = "identifiers",
    ) -> IdentifierBatch:
        """Read 1 to 32 identifiers, adding a violation for each invalid one."""
        batch = IdentifierBatch()
        if not 1 <= len(items) <= MAX_IDENTIFIERS:
            violations.add(
                path,
                f"must contain 1 to {MAX_IDENTIFIERS} identifiers, not {len(items)}",
            )
            return batch

        for index, item in enumerate(items):
            outcome = self.read_one(item, f"{path}[{index}]", violations)
            if outcome is BLOCKED:
                batch.blocked.append(index)
            elif isinstance(outcome, HashedIdentifier):
                batch.indices.append(index)
                batch.identifiers.append(outcome)
        return batch

    def read_one(
        self,
        item: identity_pb2.Identifier,
        path: str,
        violations: Violations,
        apply_blocklist: bool = True,
    ) -> HashedIdentifier | Blocked | None:
        """Return the hashed identifier, BLOCKED for a placeholder, or None when invalid.

        The blocklist is checked on the stripped value before normalising, so that a
        placeholder like ``null`` sent as an email is blocked rather than invalid, and
        again on the normalised value.
        """
        kind = KIND_FROM_PROTO.get(item.kind)
        if kind is None:
            violations.add(
                f"{path}.kind",
                unknown_kind_message(item.kind),
            )
            return None

        stripped = item.value.strip()
        # A value over the length limit is left to the normaliser, which rejects it,
        # so the patterns never run on a long input.
        check_blocklist = apply_blocklist and len(stripped) <= MAX_VALUE_CHARS
        if check_blocklist and self._rules.is_blocked(stripped):
            return BLOCKED

        try:
            value = self._normaliser.normalise(kind, item.value)
        except InvalidValue as error:
            violations.add(f"{path}.value", f"{kind} value {error}")
            return None

        if check_blocklist and self._rules.is_blocked(value):
            return BLOCKED
        return self._hasher.hash(kind, value)


def unknown_kind_message(kind: int) -> str:
    """Return the violation text for an identifier kind that is unspecified or unknown."""
    if kind == identity_pb2.IDENTIFIER_KIND_UNSPECIFIED:
        return "must be a known identifier kind, not IDENTIFIER_KIND_UNSPECIFIED"
    return f"has the unknown value {kind}; use one of the IDENTIFIER_KIND_ values"


def read_identifier_hash(
    item: identity_pb2.IdentifierHash, path: str, violations: Violations
) -> HashedIdentifier | None:
    """Return the identifier an IdentifierHash names, or None with a violation."""
    kind = KIND_FROM_PROTO.get(item.kind)
    if kind is None:
        violations.add(
            f"{path}.kind",
            unknown_kind_message(item.kind),
        )
        return None
    if VALUE_HASH_PATTERN.fullmatch(item.value_hash) is None:
        violations.add(f"{path}.value_hash", "must be 64 lower-case hex digits")
        return None
    return HashedIdentifier(kind, item.value_hash)


def check_source(source: str, violations: Violations) -> None:
    """Add a violation unless source is 1 to 64 characters, not blank, without control characters."""
    if not source.strip():
        violations.add(
            "source", "is required: name the channel or system, like web or pos"
        )
    elif len(source) > MAX_SOURCE_CHARS:
        violations.add("source", f"must be at most {MAX_SOURCE_CHARS} characters")
    elif has_control_character(source):
        violations.add("source", "must not contain control characters")


def check_request_id(request_id: str, violations: Violations) -> None:
    """Add a violation when the optional request id is too long or has control characters."""
    if len(request_id) > MAX_REQUEST_ID_CHARS:
        violations.add(
            "request_id", f"must be at most {MAX_REQUEST_ID_CHARS} characters"
        )
    elif has_control_character(request_id):
        violations.add("request_id", "must not contain control characters")


def check_profile_id(
    profile_id: str, violations: Violations, path: str = "profile_id"
) -> None:
    """Add a violation unless profile_id is ``p_`` and 32 lower-case hex digits."""
    if PROFILE_ID_PATTERN.fullmatch(profile_id) is None:
        violations.add(path, "must be p_ followed by 32 lower-case hex digits")


def check_page(
    page_size: int, page_token: str, violations: Violations
) -> tuple[int, int]:
    """Return the page size and offset of a list request, adding violations if invalid."""
    size = page_size or DEFAULT_PAGE_SIZE
    if not 1 <= size <= MAX_PAGE_SIZE:
        violations.add("page_size", f"must be 0 to {MAX_PAGE_SIZE}, not {page_size}")

    offset = 0
    if page_token:
        if not page_token.isdigit() or len(page_token) > 12:
            violations.add("page_token", "must be a next_page_token of this RPC")
        else:
            offset = int(page_token)
    return size, offset
