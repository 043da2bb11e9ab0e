"""Validation of consent requests and their conversion into domain types.

Every invalid field becomes a field violation whose path has the index, like
``pairs[3].channel``; all violations of a request are raised together as
InvalidArgument. An expiry already in the past is checked when the entry is built,
after the idempotency key is looked up, so a late retry of a short grant replays.
"""

from services.consent.models import (
    Action,
    Change,
    Channel,
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
    _check_text(request.idempotency_key, "idempotency_key", violations, required=False)
    violations.raise_if_any()

    return RecordRequest(
        subject_id=request.subject_id,
        changes=tuple(changes),
        source=request.source,
        notice_version=request.notice_version,
        idempotency_key=request.idempotency_key or None,
    )


def validate_list(request: pb.ListConsentsRequest) -> str:
    """Return the subject id of a ListConsents call."""
    violations = Violations()
    _check_subject_id(request.subject_id, "subject_id", violations)
    violations.raise_if_any()
    return request.subject_id


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
