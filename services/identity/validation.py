"""Checks of request fields, with the field paths that INVALID_ARGUMENT errors name."""

from collections.abc import Sequence

from services.identity.hashing import IdentifierHasher
from services.identity.models import PROFILE_ID_PATTERN, HashedIdentifier, Kind
from services.identity.normalise import InvalidValue, Normaliser, has_control_character
from shared.errors import Violations
from trustfirst.identity.v1 import identity_pb2

MAX_IDENTIFIERS = 32
"""Maximum number of identifiers in one Resolve or Lookup. It bounds the work of one atomic script."""

MAX_SOURCE_CHARS = 64
"""Maximum length of the ``source`` of a Resolve, in characters. It is stored with every link."""

MAX_REQUEST_ID_CHARS = 64
"""Maximum length of the ``request_id`` of a Resolve, in characters (the same cap as ``x-request-id``)."""

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


def read_identifiers(
    items: Sequence[identity_pb2.Identifier],
    normaliser: Normaliser,
    hasher: IdentifierHasher,
    violations: Violations,
) -> list[HashedIdentifier]:
    """Normalise and hash the request's identifiers, adding a violation for each bad one."""
    if not 1 <= len(items) <= MAX_IDENTIFIERS:
        violations.add(
            "identifiers",
            f"must contain 1 to {MAX_IDENTIFIERS} identifiers, not {len(items)}",
        )
        return []

    hashed: list[HashedIdentifier] = []
    for index, item in enumerate(items):
        kind = KIND_FROM_PROTO.get(item.kind)
        if kind is None:
            violations.add(
                f"identifiers[{index}].kind",
                "must be a known identifier kind, not IDENTIFIER_KIND_UNSPECIFIED",
            )
            continue

        try:
            value = normaliser.normalise(kind, item.value)
        except InvalidValue as error:
            violations.add(f"identifiers[{index}].value", f"{kind} value {error}")
            continue
        hashed.append(hasher.hash(kind, value))
    return hashed


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


def check_profile_id(profile_id: str, violations: Violations) -> None:
    """Add a violation unless profile_id is ``p_`` and 32 lower-case hex digits."""
    if PROFILE_ID_PATTERN.fullmatch(profile_id) is None:
        violations.add("profile_id", "must be p_ followed by 32 lower-case hex digits")
