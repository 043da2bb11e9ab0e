"""Current state of a subject's pairs: how it is derived, stored and evaluated.

The state hash has one field per pair currently set (``marketing:email``) and the
reserved fields ``ledger_sequence``, ``ledger_head``, ``jurisdiction`` and
``merged_into``. A pair's value is
``<status code>|<expire ns or empty>|<JSON [sequence, update ns, source, notice]>``, so
a check reads the status and expiry with one split and never parses the JSON.
"""

import json
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from services.consent.ledger import (
    MERGED_INTO_ENTRY_TYPE,
    SPLIT_ENTRY_TYPE,
    LedgerEntry,
)
from services.consent.models import RESET, Action, Change, Pair, PairState, Verdict
from services.consent.vocabulary import PAIR_FIELDS, PAIRS_BY_FIELD
from trustfirst.consent.v1 import consent_pb2 as pb

SEQUENCE_FIELD = "ledger_sequence"
"""State hash field with the sequence of the last ledger entry (absent: 0)."""

HEAD_FIELD = "ledger_head"
"""State hash field with the hash of the last ledger entry."""

JURISDICTION_FIELD = "jurisdiction"
"""State hash field with the subject's jurisdiction code (absent: the default)."""

MERGED_INTO_FIELD = "merged_into"
"""State hash field with the survivor's id once identity merged the subject away."""

STATUS_BY_ACTION = {
    pb.CONSENT_ACTION_GRANT: pb.CONSENT_STATUS_GRANTED,
    pb.CONSENT_ACTION_DENY: pb.CONSENT_STATUS_DENIED,
    pb.CONSENT_ACTION_WITHDRAW: pb.CONSENT_STATUS_WITHDRAWN,
    RESET: pb.CONSENT_STATUS_NEVER_ASKED,
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
NO_OBJECTION = Verdict(
    True, pb.CONSENT_STATUS_NEVER_ASKED, pb.CHECK_REASON_NO_OBJECTION
)

_ACTION_BY_CODE: dict[str, Action] = {
    "G": pb.CONSENT_ACTION_GRANT,
    "D": pb.CONSENT_ACTION_DENY,
    "W": pb.CONSENT_ACTION_WITHDRAW,
}


_NO_EXPIRY_RANK = -(1 << 64)
"""Second rank element of a grant without expiry: below every grant that expires."""


@dataclass(slots=True)
class StateUpdate:
    """The state hash fields one ledger entry sets and deletes."""

    set: dict[str, str] = field(default_factory=dict)
    delete: list[str] = field(default_factory=list)


def states_from_entry(entry: LedgerEntry) -> list[PairState]:
    """Derive the state each change of entry sets, in the entry's order.

    A reset change gives a NEVER_ASKED state, which is deleted from the hash rather
    than stored.
    """
    return [
        PairState(
            purpose=change.purpose,
            channel=change.channel,
            status=STATUS_BY_ACTION[change.action],
            source=entry.source,
            notice_version=entry.notice_version or "",
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


def state_update(entry: LedgerEntry, entry_hash: str) -> StateUpdate:
    """Return the state hash changes that appending entry (with its hash) makes.

    This is the single definition of how the ledger derives the state: the write path
    applies it, and VerifyLedger replays it over the whole chain.
    """
    update = StateUpdate()
    update.set[SEQUENCE_FIELD] = str(entry.sequence)
    update.set[HEAD_FIELD] = entry_hash
    for state in states_from_entry(entry):
        pair_field = PAIR_FIELDS[state.purpose, state.channel]
        if state.status == pb.CONSENT_STATUS_NEVER_ASKED:
            update.delete.append(pair_field)
        else:
            update.set[pair_field] = encode_state(state)

    if entry.jurisdiction is not None:
        update.set[JURISDICTION_FIELD] = entry.jurisdiction
    if entry.type == MERGED_INTO_ENTRY_TYPE and entry.link is not None:
        update.set[MERGED_INTO_FIELD] = entry.link.subject_id
    if entry.type == SPLIT_ENTRY_TYPE:
        # A split reopens a profile id that identity had merged away and now reuses.
        update.delete.append(MERGED_INTO_FIELD)
    return update


def derive_state(entries: Iterable[tuple[LedgerEntry, str]]) -> dict[str, str]:
    """Return the state hash that a ledger of (entry, hash) pairs derives, in order."""
    state: dict[str, str] = {}
    for entry, entry_hash in entries:
        update = state_update(entry, entry_hash)
        for name in update.delete:
            state.pop(name, None)
        state.update(update.set)
    return state


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


def restriction_rank(value: str | None, now_ns: int) -> tuple[int, int]:
    """Rank a stored pair value by how much it restricts; a greater rank restricts more.

    Withdrawn (3) ranks above denied and expired grants (2), which rank above never
    asked (1), which ranks above a live grant (0). Between live grants, the one that
    expires first ranks higher; the second element orders them.
    """
    if value is None:
        return (1, 0)
    code, expire, _ = value.split("|", 2)
    if code == "G":
        if not expire:
            return (0, _NO_EXPIRY_RANK)
        if int(expire) <= now_ns:
            return (2, 0)
        return (0, -int(expire))
    if code == "W":
        return (3, 0)
    # "D", and any code this version does not know, ranks as a denial.
    return (2, 0)


def change_for_value(pair: Pair, value: str | None) -> Change:
    """Return the change that gives a pair the stored value of another subject's pair."""
    if value is None:
        return Change(pair.purpose, pair.channel, RESET)
    code, expire, _ = value.split("|", 2)
    action = _ACTION_BY_CODE.get(code, pb.CONSENT_ACTION_DENY)
    expire_ns = int(expire) if expire and action == pb.CONSENT_ACTION_GRANT else None
    return Change(pair.purpose, pair.channel, action, expire_ns)
