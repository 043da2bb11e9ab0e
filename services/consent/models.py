"""Domain types of the consent service.

Purposes, channels, actions, statuses and reasons are the enum values of the
``trustfirst.consent.v1`` contract, used as plain ints: the contract is the vocabulary,
so the domain does not copy it into enums of its own.
"""

from dataclasses import dataclass
from typing import NamedTuple, TypeAlias

from trustfirst.consent.v1 import consent_pb2

Purpose: TypeAlias = consent_pb2.Purpose.ValueType
Channel: TypeAlias = consent_pb2.Channel.ValueType
Action: TypeAlias = consent_pb2.ConsentAction.ValueType
Status: TypeAlias = consent_pb2.ConsentStatus.ValueType
Reason: TypeAlias = consent_pb2.CheckReason.ValueType

RESET = Action(-1)
"""Ledger-only action that returns a pair to never asked. Only merge reconciliation
writes it; RecordConsent rejects it because it is not a value of the proto enum."""


class Pair(NamedTuple):
    """One purpose x channel pair; hashes like the plain tuple ``(purpose, channel)``."""

    purpose: Purpose
    channel: Channel


@dataclass(frozen=True, slots=True)
class Change:
    """One requested change of a pair; ``expire_ns`` (Unix time in ns) only on a grant."""

    purpose: Purpose
    channel: Channel
    action: Action
    expire_ns: int | None = None


@dataclass(frozen=True, slots=True)
class RecordRequest:
    """A validated RecordConsent request: all its changes form one ledger entry."""

    subject_id: str
    changes: tuple[Change, ...]
    source: str
    notice_version: str
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class PairState:
    """The state of one pair as set by a ledger entry; times are Unix time in ns."""

    purpose: Purpose
    channel: Channel
    status: Status
    source: str
    notice_version: str
    update_ns: int
    expire_ns: int | None
    ledger_sequence: int


@dataclass(frozen=True, slots=True)
class RecordResult:
    """Outcome of a write: the ledger position after it and the new state of each pair.

    ``replayed`` is true when the idempotency key had already been applied; the
    sequence, states and hash are then those of the original write.
    """

    sequence: int
    states: list[PairState]
    replayed: bool
    entry_hash: str = ""


@dataclass(frozen=True, slots=True)
class JurisdictionRequest:
    """A validated SetJurisdiction request."""

    subject_id: str
    jurisdiction: str
    source: str
    idempotency_key: str | None = None


class Verdict(NamedTuple):
    """Result of a check for one pair: whether it is allowed, its status and the reason."""

    allowed: bool
    status: Status
    reason: Reason


@dataclass(frozen=True, slots=True)
class CheckAnswer:
    """Verdicts in request order and the ledger position they were read at.

    ``jurisdiction`` decided the never-asked pairs. ``merged_into`` is the survivor's id
    when identity merged the subject away; every verdict is then a refusal.
    """

    verdicts: list[Verdict]
    sequence: int
    jurisdiction: str = ""
    merged_into: str | None = None


@dataclass(frozen=True, slots=True)
class ConsentList:
    """Current state of every pair the subject was asked about, at a ledger position."""

    states: list[PairState]
    sequence: int
    jurisdiction: str = ""
    merged_into: str | None = None


@dataclass(frozen=True, slots=True)
class ErasureRecord:
    """What is kept of an erased subject's ledger: hashes only, no identifiers.

    ``erase_ns`` is the Unix time in ns of the last erasure that deleted entries;
    ``entry_hashes`` are in ledger order and ``head`` is the last one ("" if none).
    """

    erase_ns: int
    sequence: int
    head: str
    entry_hashes: tuple[str, ...]
