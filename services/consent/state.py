"""Current state of a subject's pairs: how it is derived, stored and evaluated.

The state hash has one field per pair ever changed (``marketing:email``) and the
reserved fields ``ledger_sequence`` and ``ledger_head``. A pair's value is
``<status code>|<expire ns or empty>|<JSON [sequence, update ns, source, notice]>``, so
a check reads the status and expiry with one split and never parses the JSON.
"""

import json
from dataclasses import replace

from services.consent.ledger import LedgerEntry
from services.consent.models import PairState, Verdict
from services.consent.vocabulary import PAIRS_BY_FIELD
from trustfirst.consent.v1 import consent_pb2 as pb

SEQUENCE_FIELD = "ledger_sequence"
"""State hash field with the sequence of the last ledger entry (absent: 0)."""

HEAD_FIELD = "ledger_head"
"""State hash field with the hash of the last ledger entry."""

STATUS_BY_ACTION = {
    pb.CONSENT_ACTION_GRANT: pb.CONSENT_STATUS_GRANTED,
    pb.CONSENT_ACTION_DENY: pb.CONSENT_STATUS_DENIED,
    pb.CONSENT_ACTION_WITHDRAW: pb.CONSENT_STATUS_WITHDRAWN,
}

_CODE_BY_STATUS = {
    pb.CONSENT_STATUS_GRANTED: "G",
    pb.CONSENT_STATUS_DENIED: "D",
    pb.CONSENT_STATUS_WITHDRAWN: "W",
}
_STATUS_BY_CODE = {code: status for status, code in _CODE_BY_STATUS.items()}

GRANTED = Verdict(True, pb.CONSENT_STATUS_GRANTED, pb.CHECK_REASON_GRANTED)
EXPIRED = Verdict(False, pb.CONSENT_STATUS_DENIED, pb.CHECK_REASON_EXPIRED)
DENIED = Verdict(False, pb.CONSENT_STATUS_DENIED, pb.CHECK_REASON_DENIED)
WITHDRAWN = Verdict(False, pb.CONSENT_STATUS_WITHDRAWN, pb.CHECK_REASON_WITHDRAWN)
NEVER_ASKED = Verdict(False, pb.CONSENT_STATUS_NEVER_ASKED, pb.CHECK_REASON_NEVER_ASKED)


def resolve_never_asked() -> Verdict:
    """Return the verdict for a pair the subject was never asked about: denied.

    TODO: resolve by the subject's jurisdiction (opt-out regimes may allow some pairs).
    The jurisdiction would be one more field of the state hash, read by the same HMGET
    as the pairs, and passed here.
    """
    return NEVER_ASKED


def states_from_entry(entry: LedgerEntry) -> list[PairState]:
    """Derive the state each change of entry sets, in the entry's order."""
    return [
        PairState(
            purpose=change.purpose,
            channel=change.channel,
            status=STATUS_BY_ACTION[change.action],
            source=entry.source,
            notice_version=entry.notice_version,
            update_ns=entry.time_ns,
            expire_ns=change.expire_ns,
            ledger_sequence=entry.sequence,
        )
        for change in entry.changes
    ]


def encode_state(state: PairState) -> str:
    """Serialize a pair's state as the value of its state hash field."""
    expire = "" if state.expire_ns is None else str(state.expire_ns)
    details = json.dumps(
        [state.ledger_sequence, state.update_ns, state.source, state.notice_version],
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return f"{_CODE_BY_STATUS[state.status]}|{expire}|{details}"


def decode_state(field: str, value: str) -> PairState:
    """Parse a state hash field and its value; raises KeyError or ValueError if invalid."""
    pair = PAIRS_BY_FIELD[field]
    code, expire, details = value.split("|", 2)
    sequence, update_ns, source, notice_version = json.loads(details)
    return PairState(
        purpose=pair.purpose,
        channel=pair.channel,
        status=_STATUS_BY_CODE[code],
        source=source,
        notice_version=notice_version,
        update_ns=int(update_ns),
        expire_ns=int(expire) if expire else None,
        ledger_sequence=int(sequence),
    )


def evaluate(value: str | None, now_ns: int, never_asked: Verdict) -> Verdict:
    """Return the verdict for one stored value (None when the pair was never changed)."""
    if value is None:
        return never_asked
    code, expire, _ = value.split("|", 2)
    if code == "G":
        if expire and int(expire) <= now_ns:
            return EXPIRED
        return GRANTED
    if code == "W":
        return WITHDRAWN
    # "D", and any code this version does not know, fails closed.
    return DENIED


def apply_expiry(state: PairState, now_ns: int) -> PairState:
    """Return state as a check at now_ns reports it: an expired grant is denied."""
    if (
        state.status == pb.CONSENT_STATUS_GRANTED
        and state.expire_ns is not None
        and state.expire_ns <= now_ns
    ):
        return replace(state, status=pb.CONSENT_STATUS_DENIED)
    return state


def is_pair_field(field: str) -> bool:
    """Tell a pair's field from the reserved ledger fields of the state hash."""
    return field in PAIRS_BY_FIELD
