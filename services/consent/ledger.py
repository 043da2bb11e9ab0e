"""Format of the per-subject ledger entries and the hash rule that chains them.

An entry is one canonical JSON object (keys sorted, no spaces, UTF-8) stored as one
element of the subject's ledger list. Its hash is the SHA-256 of the stored bytes, in
lower-case hex. The next entry carries that hash as ``prev_hash``, and the first entry
carries 64 zeros. Changing, removing or reordering a stored entry therefore breaks the
chain at the next entry, and the state hash keeps the hash of the last entry.
Entries of every type share one chain. Optional fields are left out when unset, so an
entry's text depends only on the fields its type uses. docs/consent.md describes every
field.
"""

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from services.consent.models import Change
from services.consent.vocabulary import (
    ACTIONS_BY_NAME,
    CHANNEL_NAMES,
    CHANNELS_BY_NAME,
    LEDGER_ACTION_NAMES,
    PURPOSE_NAMES,
    PURPOSES_BY_NAME,
)

ENTRY_FORMAT_VERSION = 1
"""Value of the ``version`` field; bumped when a field changes meaning."""

GENESIS_HASH = "0" * 64
"""``prev_hash`` of the first entry of every ledger."""

RECORD_ENTRY_TYPE = "record"
"""``type`` of an entry written by RecordConsent."""

JURISDICTION_ENTRY_TYPE = "jurisdiction"
"""``type`` of an entry written by SetJurisdiction; it has no changes."""

MERGE_ENTRY_TYPE = "merge"
"""``type`` of the entry that folds a merged profile's state into the survivor."""

MERGED_INTO_ENTRY_TYPE = "merged_into"
"""``type`` of the last entry of a profile that identity merged into another."""

SPLIT_ENTRY_TYPE = "split"
"""``type`` of the entry that gives a profile split off another that one's refusals."""

ENTRY_TYPES = (
    RECORD_ENTRY_TYPE,
    JURISDICTION_ENTRY_TYPE,
    MERGE_ENTRY_TYPE,
    MERGED_INTO_ENTRY_TYPE,
    SPLIT_ENTRY_TYPE,
)

LINK_FIELDS = {
    MERGE_ENTRY_TYPE: "merged_from",
    MERGED_INTO_ENTRY_TYPE: "merged_into",
    SPLIT_ENTRY_TYPE: "split_from",
}
"""JSON field that contains an entry's SubjectLink, by entry type."""


@dataclass(frozen=True, slots=True)
class SubjectLink:
    """The other profile of a merge or split entry, and its ledger position then.

    ``sequence`` and ``head`` are the other ledger's ``ledger_sequence`` and
    ``ledger_head`` when the entry was built; a merged_into entry leaves them unset.
    """

    subject_id: str
    sequence: int | None = None
    head: str | None = None


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One ledger entry: a set of changes, or a jurisdiction, and their provenance.

    ``sequence`` starts at 1 and grows by one per entry. ``time_ns`` is the server's
    Unix time in ns when the entry was built. ``notice_version`` is set on record
    entries only; ``link`` and ``event_id`` on entries written from identity events.
    """

    sequence: int
    prev_hash: str
    subject_id: str
    time_ns: int
    source: str
    notice_version: str | None
    idempotency_key: str | None
    changes: tuple[Change, ...]
    type: str = RECORD_ENTRY_TYPE
    version: int = ENTRY_FORMAT_VERSION
    jurisdiction: str | None = None
    link: SubjectLink | None = None
    event_id: str | None = None


def encode_entry(entry: LedgerEntry) -> str:
    """Serialize entry as canonical JSON: the exact text that is stored and hashed."""
    document: dict[str, Any] = {
        "version": entry.version,
        "type": entry.type,
        "sequence": entry.sequence,
        "prev_hash": entry.prev_hash,
        "subject_id": entry.subject_id,
        "time": format_time(entry.time_ns),
        "source": entry.source,
        "changes": [_encode_change(change) for change in entry.changes],
    }
    optional = {
        "notice_version": entry.notice_version,
        "idempotency_key": entry.idempotency_key,
        "jurisdiction": entry.jurisdiction,
        "identity_event_id": entry.event_id,
    }
    for name, value in optional.items():
        if value is not None:
            document[name] = value
    if entry.link is not None:
        document[LINK_FIELDS[entry.type]] = _encode_link(entry.link)
    return json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )


def decode_entry(text: str) -> LedgerEntry:
    """Parse a stored entry.

    Raises ValueError, KeyError or TypeError when it is malformed, including an
    unknown entry type.
    """
    document = json.loads(text)
    entry_type = str(document["type"])
    if entry_type not in ENTRY_TYPES:
        raise ValueError(f"unknown entry type {entry_type!r}")

    link_document = document.get(LINK_FIELDS.get(entry_type, ""))
    return LedgerEntry(
        sequence=int(document["sequence"]),
        prev_hash=str(document["prev_hash"]),
        subject_id=str(document["subject_id"]),
        time_ns=parse_time(document["time"]),
        source=str(document["source"]),
        notice_version=_optional_text(document, "notice_version"),
        idempotency_key=_optional_text(document, "idempotency_key"),
        changes=tuple(_decode_change(change) for change in document["changes"]),
        type=entry_type,
        version=int(document["version"]),
        jurisdiction=_optional_text(document, "jurisdiction"),
        link=None if link_document is None else _decode_link(link_document),
        event_id=_optional_text(document, "identity_event_id"),
    )


def entry_hash(text: str) -> str:
    """Return the SHA-256 of a stored entry's UTF-8 bytes as lower-case hex."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def format_time(time_ns: int) -> str:
    """Format Unix time in ns as RFC 3339 UTC with 0, 3, 6 or 9 fraction digits."""
    timestamp = Timestamp()
    timestamp.FromNanoseconds(time_ns)
    return timestamp.ToJsonString()


def parse_time(text: str) -> int:
    """Parse an RFC 3339 time into Unix time in ns, exactly."""
    timestamp = Timestamp()
    timestamp.FromJsonString(text)
    return timestamp.ToNanoseconds()


def _optional_text(document: dict[str, Any], name: str) -> str | None:
    value = document.get(name)
    return None if value is None else str(value)


def _encode_link(link: SubjectLink) -> dict[str, Any]:
    document: dict[str, Any] = {"subject_id": link.subject_id}
    if link.sequence is not None:
        document["ledger_sequence"] = link.sequence
    if link.head is not None:
        document["ledger_head"] = link.head
    return document


def _decode_link(document: dict[str, Any]) -> SubjectLink:
    sequence = document.get("ledger_sequence")
    return SubjectLink(
        subject_id=str(document["subject_id"]),
        sequence=None if sequence is None else int(sequence),
        head=_optional_text(document, "ledger_head"),
    )


def _encode_change(change: Change) -> dict[str, str]:
    document = {
        "purpose": PURPOSE_NAMES[change.purpose],
        "channel": CHANNEL_NAMES[change.channel],
        "action": LEDGER_ACTION_NAMES[change.action],
    }
    if change.expire_ns is not None:
        document["expire_time"] = format_time(change.expire_ns)
    return document


def _decode_change(document: dict[str, str]) -> Change:
    expire_time = document.get("expire_time")
    return Change(
        purpose=PURPOSES_BY_NAME[document["purpose"]],
        channel=CHANNELS_BY_NAME[document["channel"]],
        action=ACTIONS_BY_NAME[document["action"]],
        expire_ns=None if expire_time is None else parse_time(expire_time),
    )
