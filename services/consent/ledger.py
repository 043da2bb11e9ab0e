"""Format of the per-subject ledger entries and the hash rule that chains them.

An entry is one canonical JSON object (keys sorted, no spaces, UTF-8) stored as one
element of the subject's ledger list. Its hash is the SHA-256 of the stored bytes, in
lower-case hex. The next entry carries that hash as ``prev_hash``, and the first entry
carries 64 zeros. Changing, removing or reordering a stored entry therefore breaks the
chain at the next entry, and the state hash keeps the hash of the last entry.
docs/consent.md describes every field.
"""

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from services.consent.models import Change
from services.consent.vocabulary import (
    ACTION_NAMES,
    ACTIONS_BY_NAME,
    CHANNEL_NAMES,
    CHANNELS_BY_NAME,
    PURPOSE_NAMES,
    PURPOSES_BY_NAME,
)

ENTRY_FORMAT_VERSION = 1
"""Value of the ``version`` field; bumped when a field changes meaning."""

GENESIS_HASH = "0" * 64
"""``prev_hash`` of the first entry of every ledger."""

RECORD_ENTRY_TYPE = "record"
"""``type`` of an entry written by RecordConsent. Later types share the chain."""


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One ledger entry: the changes of one RecordConsent call and their provenance.

    ``sequence`` starts at 1 and grows by one per entry. ``time_ns`` is the server's
    Unix time in ns when the entry was built.
    """

    sequence: int
    prev_hash: str
    subject_id: str
    time_ns: int
    source: str
    notice_version: str
    idempotency_key: str | None
    changes: tuple[Change, ...]
    type: str = RECORD_ENTRY_TYPE
    version: int = ENTRY_FORMAT_VERSION


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
        "notice_version": entry.notice_version,
        "changes": [_encode_change(change) for change in entry.changes],
    }
    if entry.idempotency_key is not None:
        document["idempotency_key"] = entry.idempotency_key
    return json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )


def decode_entry(text: str) -> LedgerEntry:
    """Parse a stored entry; raises ValueError or KeyError when it is malformed."""
    document = json.loads(text)
    return LedgerEntry(
        sequence=int(document["sequence"]),
        prev_hash=str(document["prev_hash"]),
        subject_id=str(document["subject_id"]),
        time_ns=parse_time(document["time"]),
        source=str(document["source"]),
        notice_version=str(document["notice_version"]),
        idempotency_key=document.get("idempotency_key"),
        changes=tuple(_decode_change(change) for change in document["changes"]),
        type=str(document["type"]),
        version=int(document["version"]),
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


def _encode_change(change: Change) -> dict[str, str]:
    document = {
        "purpose": PURPOSE_NAMES[change.purpose],
        "channel": CHANNEL_NAMES[change.channel],
        "action": ACTION_NAMES[change.action],
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
