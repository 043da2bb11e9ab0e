"""Validation of consent requests and their conversion into domain types.

Every invalid field becomes a field violation whose path has the index, like
``pairs[3].channel``; all violations of a request are raised together as
InvalidArgument. An expiry already in the past is checked when the entry is built,
after the idempotency key is looked up, so a late retry of a short grant replays.
"""

from collections.abc import Collection

from services.consent.history import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from services.consent.models import (
    Action,
    Change,
    Channel,
    JurisdictionRequest,
    Pair,
    Purpose,
    RecordRequest,
)
from services.consent.tokens import InvalidToken, decode_token
from services.consent.vocabulary import (
    ACTION_NAMES,
    CHANNEL_NAMES,
    PAIR_FIELDS,
    PURPOSE_NAMES,
)
from shared.errors import Violations
from trustfirst.consent.v1 import consent_pb2 as pb

MAX_SUBJECT_ID_CHARS = 128
"""Maximum length of a subject id in characters, because it is part of every Redis key."""

MAX_PAIRS_PER_CHECK = 64
"""Maximum pairs in one CheckConsent: 4 purposes x 6 channels, with room to grow."""

MAX_CHANGES_PER_RECORD = 64
"""Maximum changes in one RecordConsent, so one ledger entry stays a few kilobytes."""

MAX_TEXT_CHARS = 128
"""Maximum length of source, notice_version and idempotency_key in characters."""

MAX_CHECKPOINTS = 64
"""Maximum checkpoints in one VerifyLedger request."""

RESERVED_KEY_PREFIX = "identity-"
"""Prefix of the idempotency keys that entries written from identity events use."""

_HEX_DIGITS = frozenset("0123456789abcdef")

# Range of google.protobuf.Timestamp: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
_MIN_TIMESTAMP_SECONDS = -62_135_596_800
_MAX_TIMESTAMP_SECONDS = 253_402_300_799
_MAX_NANOS = 999_999_999


def validate_check(request: pb.CheckConsentRequest) -> tuple[str, list[Pair], int]:
    """Return the subject id, the pairs and the minimum ledger sequence of a check."""
    violations = Violations()
    _check_subject_id(request.subject_id, "subject_id", violations)
    _check_batch_size(len(request.pairs), MAX_PAIRS_PER_CHECK, "pairs", violations)

    # An oversized batch is rejected as a whole, without a violation per item.
    pairs = []
    items = request.pairs if len(request.pairs) <= MAX_PAIRS_PER_CHECK else []
    for index, message in enumerate(items):
        pair = Pair(message.purpose, message.channel)
        if pair not in PAIR_FIELDS:
            _check_pair(pair, f"pairs[{index}]", violations)
        pairs.append(pair)

    min_sequence = 0
    if request.min_consistency_token and not violations.items:
        try:
            min_sequence = decode_token(
                request.subject_id, request.min_consistency_token
            )
        except InvalidToken as error:
            violations.add("min_consistency_token", str(error))

    violations.raise_if_any()
    return request.subject_id, pairs, min_sequence


def validate_record(request: pb.RecordConsentRequest) -> RecordRequest:
    """Return the domain request of a RecordConsent call."""
    violations = Violations()
    _check_subject_id(request.subject_id, "subject_id", violations)
    _check_batch_size(
        len(request.changes), MAX_CHANGES_PER_RECORD, "changes", violations
    )

    changes = []
    first_index: dict[Pair, int] = {}
    items = request.changes if len(request.changes) <= MAX_CHANGES_PER_RECORD else []
    for index, message in enumerate(items):
        path = f"changes[{index}]"
        change = _convert_change(message, path, violations)
        pair = Pair(change.purpose, change.channel)
        if pair in first_index:
            violations.add(
                path,
                f"repeats the purpose and channel of changes[{first_index[pair]}]; "
                "send one change per pair",
            )
        elif pair in PAIR_FIELDS:
            first_index[pair] = index
        changes.append(change)

    _check_text(request.source, "source", violations, required=True)
    _check_text(request.notice_version, "notice_version", violations, required=True)
    _check_idempotency_key(request.idempotency_key, violations)
    violations.raise_if_any()

    return RecordRequest(
        subject_id=request.subject_id,
        changes=tuple(changes),
        source=request.source,
        notice_version=request.notice_version,
        idempotency_key=request.idempotency_key or None,
    )


def validate_list(request: pb.ListConsentsRequest) -> tuple[str, int | None]:
    """Return the subject id of a ListConsents call and the ledger position it
    requests (None for the current state)."""
    violations = Violations()
    _check_subject_id(request.subject_id, "subject_id", violations)

    at_sequence = None
    if request.at_consistency_token and not violations.items:
        try:
            at_sequence = decode_token(request.subject_id, request.at_consistency_token)
        except InvalidToken as error:
            violations.add("at_consistency_token", str(error))
    violations.raise_if_any()
    return request.subject_id, at_sequence


def validate_set_jurisdiction(
    request: pb.SetJurisdictionRequest, codes: Collection[str]
) -> JurisdictionRequest:
    """Return the domain request of a SetJurisdiction call; codes are the configured
    jurisdictions."""
    violations = Violations()
    _check_subject_id(request.subject_id, "subject_id", violations)
    if not request.jurisdiction:
        violations.add("jurisdiction", "is required")
    elif request.jurisdiction not in codes:
        violations.add(
            "jurisdiction",
            f"{request.jurisdiction!r} is not a configured jurisdiction; use one of "
            f"{', '.join(sorted(codes))}",
        )
    _check_text(request.source, "source", violations, required=True)
    _check_idempotency_key(request.idempotency_key, violations)
    violations.raise_if_any()

    return JurisdictionRequest(
        subject_id=request.subject_id,
        jurisdiction=request.jurisdiction,
        source=request.source,
        idempotency_key=request.idempotency_key or None,
    )


def validate_history(request: pb.ListConsentHistoryRequest) -> tuple[str, int, int]:
    """Return the subject id, first sequence and page size of a ListConsentHistory."""
    violations = Violations()
    _check_subject_id(request.subject_id, "subject_id", violations)
    if not 0 <= request.page_size <= MAX_PAGE_SIZE:
        violations.add("page_size", f"is {request.page_size}; use 0 to {MAX_PAGE_SIZE}")

    start = 1
    if request.page_token and not violations.items:
        try:
            start = decode_token(request.subject_id, request.page_token)
        except InvalidToken as error:
            violations.add("page_token", str(error))
        else:
            if start < 1:
                violations.add("page_token", "is not a page token from this service")
    violations.raise_if_any()
    return request.subject_id, start, request.page_size or DEFAULT_PAGE_SIZE


def validate_verify(
    request: pb.VerifyLedgerRequest,
) -> tuple[str, list[tuple[int, str]]]:
    """Return the subject id and the (sequence, hash) checkpoints of a VerifyLedger."""
    violations = Violations()
    _check_subject_id(request.subject_id, "subject_id", violations)
    count = len(request.checkpoints)
    if count > MAX_CHECKPOINTS:
        violations.add(
            "checkpoints", f"has {count} items; the maximum is {MAX_CHECKPOINTS}"
        )

    checkpoints = []
    items = request.checkpoints if count <= MAX_CHECKPOINTS else []
    for index, checkpoint in enumerate(items):
        path = f"checkpoints[{index}]"
        if checkpoint.sequence < 1:
            violations.add(f"{path}.sequence", "must be 1 or more")
        if len(checkpoint.hash) != 64 or not set(checkpoint.hash) <= _HEX_DIGITS:
            violations.add(f"{path}.hash", "must be 64 lower-case hex digits")
        checkpoints.append((checkpoint.sequence, checkpoint.hash))
    violations.raise_if_any()
    return request.subject_id, checkpoints


def _convert_change(
    message: pb.ConsentChange, path: str, violations: Violations
) -> Change:
    _check_pair(Pair(message.purpose, message.channel), path, violations)
    _check_enum(message.action, ACTION_NAMES, "action", path, violations)

    expire_ns = None
    if message.HasField("expire_time"):
        expire_path = f"{path}.expire_time"
        if message.action != pb.CONSENT_ACTION_GRANT:
            violations.add(expire_path, "is only allowed on a grant")
        elif _check_timestamp(message.expire_time.seconds, message.expire_time.nanos):
            expire_ns = message.expire_time.ToNanoseconds()
        else:
            violations.add(expire_path, "is not a valid timestamp")

    return Change(message.purpose, message.channel, message.action, expire_ns)


def _check_pair(pair: Pair, path: str, violations: Violations) -> None:
    _check_enum(pair.purpose, PURPOSE_NAMES, "purpose", path, violations)
    _check_enum(pair.channel, CHANNEL_NAMES, "channel", path, violations)


def _check_enum(
    value: Purpose | Channel | Action,
    names: dict[Purpose, str] | dict[Channel, str] | dict[Action, str],
    name: str,
    path: str,
    violations: Violations,
) -> None:
    if value == 0:
        violations.add(
            f"{path}.{name}", "is required; the unspecified value 0 is not allowed"
        )
    elif value not in names:
        violations.add(f"{path}.{name}", f"has the unknown value {value}")


def _check_subject_id(value: str, path: str, violations: Violations) -> None:
    if not value:
        violations.add(path, "is required")
    elif len(value) > MAX_SUBJECT_ID_CHARS:
        violations.add(
            path, f"has {len(value)} characters; the maximum is {MAX_SUBJECT_ID_CHARS}"
        )
    elif not value.isprintable():
        violations.add(path, "must contain printable characters only")


def _check_text(value: str, path: str, violations: Violations, required: bool) -> None:
    if not value:
        if required:
            violations.add(path, "is required")
    elif len(value) > MAX_TEXT_CHARS:
        violations.add(
            path, f"has {len(value)} characters; the maximum is {MAX_TEXT_CHARS}"
        )
    elif not value.isprintable():
        violations.add(path, "must contain printable characters only")


def _check_idempotency_key(value: str, violations: Violations) -> None:
    _check_text(value, "idempotency_key", violations, required=False)
    if value.startswith(RESERVED_KEY_PREFIX):
        violations.add(
            "idempotency_key",
            f"must not start with {RESERVED_KEY_PREFIX!r}, which identity events use",
        )


def _check_batch_size(
    count: int, maximum: int, path: str, violations: Violations
) -> None:
    if count == 0:
        violations.add(path, "must contain at least 1 item")
    elif count > maximum:
        violations.add(path, f"has {count} items; the maximum is {maximum}")


def _check_timestamp(seconds: int, nanos: int) -> bool:
    return (
        _MIN_TIMESTAMP_SECONDS <= seconds <= _MAX_TIMESTAMP_SECONDS
        and 0 <= nanos <= _MAX_NANOS
    )
