"""VerifyLedger: recompute a subject's hash chain and state and list the discrepancies.

The verifier reads the state hash, the list length and the first page of entries in
one MULTI, then the remaining pages. Entries up to the length read do not change while
the ledger is intact, so later pages belong to the same snapshot. It recomputes every
hash from the stored text, without re-serializing, and checks that:

- every entry decodes, carries its position as sequence and names the subject;
- every prev_hash is the hash of the entry before (64 zeros for the first);
- ledger_sequence is the number of entries and ledger_head the last entry's hash;
- replaying the entries derives exactly the stored state;
- the hash at each caller checkpoint is the hash the caller recorded.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeAlias, cast

import redis.asyncio as aioredis

from services.consent.erasure import SubjectEraser
from services.consent.errors import WriteConflict
from services.consent.keys import SubjectKeys
from services.consent.ledger import GENESIS_HASH, LedgerEntry, decode_entry, entry_hash
from services.consent.models import ErasureRecord
from services.consent.state import HEAD_FIELD, SEQUENCE_FIELD, derive_state
from trustfirst.consent.v1 import consent_pb2 as pb

ProblemKind: TypeAlias = pb.LedgerProblemKind.ValueType

PAGE_SIZE = 500
"""Entries read per LRANGE."""

MAX_PROBLEMS = 100
"""Problems reported at most; a broken ledger usually shows a few per damaged entry."""


@dataclass(frozen=True, slots=True)
class LedgerProblem:
    """One discrepancy; sequence is 0 when it concerns the state as a whole."""

    sequence: int
    kind: ProblemKind
    description: str


@dataclass(slots=True)
class VerifyReport:
    """Outcome of a verification at ledger position ``sequence``."""

    entry_count: int
    head_hash: str
    sequence: int
    problems: list[LedgerProblem] = field(default_factory=list)
    erasure: ErasureRecord | None = None

    @property
    def valid(self) -> bool:
        return not self.problems

    def add(self, sequence: int, kind: ProblemKind, description: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(LedgerProblem(sequence, kind, description))


class LedgerVerifier:
    """Verifies subjects' ledgers against their hash chain, state and checkpoints."""

    def __init__(self, redis: aioredis.Redis, eraser: SubjectEraser) -> None:
        self._redis = redis
        self._eraser = eraser

    async def verify(
        self, subject_id: str, checkpoints: Sequence[tuple[int, str]] = ()
    ) -> VerifyReport:
        """Return every problem found in the subject's ledger (none for a valid one)."""
        state, texts = await self._read(subject_id)
        hashes = [entry_hash(text) for text in texts]
        report = VerifyReport(
            entry_count=len(texts),
            head_hash=hashes[-1] if hashes else "",
            sequence=int(state.get(SEQUENCE_FIELD) or 0),
        )

        decoded = _check_chain(subject_id, texts, hashes, report)
        _check_state(state, report, decoded)
        for sequence, expected in checkpoints:
            _check_checkpoint(sequence, expected, hashes, report)

        if not texts and not state:
            report.erasure = await self._eraser.read_record(subject_id)
        return report

    async def _read(self, subject_id: str) -> tuple[dict[str, str], list[str]]:
        keys = SubjectKeys.of(subject_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(keys.state)
            pipe.llen(keys.ledger)
            pipe.lrange(keys.ledger, 0, PAGE_SIZE - 1)
            state, length, first = await pipe.execute()

        texts = cast("list[str]", first)
        while len(texts) < length:
            page = await self._redis.lrange(
                keys.ledger, len(texts), min(length, len(texts) + PAGE_SIZE) - 1
            )
            if not page:
                raise WriteConflict(
                    f"the ledger of subject {subject_id} shrank during verification; "
                    "retry"
                )
            texts.extend(cast("list[str]", page))
        return cast("dict[str, str]", state), texts[:length]


def _check_chain(
    subject_id: str, texts: list[str], hashes: list[str], report: VerifyReport
) -> list[tuple[LedgerEntry, str]] | None:
    """Check each entry and its link; return the decoded entries, or None if any
    entry is malformed (the state cannot be replayed then)."""
    decoded: list[tuple[LedgerEntry, str]] | None = []
    previous = GENESIS_HASH
    for position, (text, digest) in enumerate(zip(texts, hashes, strict=True), 1):
        try:
            entry = decode_entry(text)
        except (ValueError, KeyError, TypeError) as error:
            report.add(
                position,
                pb.LEDGER_PROBLEM_KIND_MALFORMED_ENTRY,
                f"entry {position} is not a valid ledger entry: {error}",
            )
            decoded = None
            previous = digest
            continue

        if entry.sequence != position:
            report.add(
                position,
                pb.LEDGER_PROBLEM_KIND_SEQUENCE_MISMATCH,
                f"entry {position} carries sequence {entry.sequence}",
            )
        if entry.prev_hash != previous:
            report.add(
                position,
                pb.LEDGER_PROBLEM_KIND_PREV_HASH_MISMATCH,
                f"entry {position} has prev_hash {entry.prev_hash}, but the entry "
                f"before it hashes to {previous}",
            )
        if entry.subject_id != subject_id:
            report.add(
                position,
                pb.LEDGER_PROBLEM_KIND_SUBJECT_MISMATCH,
                f"entry {position} names another subject",
            )
        if decoded is not None:
            decoded.append((entry, digest))
        previous = digest
    return decoded


def _check_state(
    state: dict[str, str],
    report: VerifyReport,
    decoded: list[tuple[LedgerEntry, str]] | None,
) -> None:
    if report.sequence != report.entry_count:
        report.add(
            0,
            pb.LEDGER_PROBLEM_KIND_LENGTH_MISMATCH,
            f"ledger_sequence is {report.sequence}, but the ledger has "
            f"{report.entry_count} entries",
        )
    if state.get(HEAD_FIELD, "") != report.head_hash:
        report.add(
            0,
            pb.LEDGER_PROBLEM_KIND_HEAD_MISMATCH,
            f"ledger_head is {state.get(HEAD_FIELD, '')!r}, but the last entry "
            f"hashes to {report.head_hash!r}",
        )
    if decoded is None:
        return

    expected = derive_state(decoded)
    # ledger_sequence and ledger_head were compared above, against the entries read.
    names = (set(expected) | set(state)) - {SEQUENCE_FIELD, HEAD_FIELD}
    for name in sorted(names):
        if expected.get(name) != state.get(name):
            report.add(
                0,
                pb.LEDGER_PROBLEM_KIND_STATE_MISMATCH,
                f"state field {name} is {_shown(state.get(name))}, but the ledger "
                f"derives {_shown(expected.get(name))}",
            )


def _check_checkpoint(
    sequence: int, expected: str, hashes: list[str], report: VerifyReport
) -> None:
    if sequence > len(hashes):
        report.add(
            sequence,
            pb.LEDGER_PROBLEM_KIND_CHECKPOINT_MISMATCH,
            f"the checkpoint is at sequence {sequence}, but the ledger has "
            f"{len(hashes)} entries",
        )
    elif hashes[sequence - 1] != expected:
        report.add(
            sequence,
            pb.LEDGER_PROBLEM_KIND_CHECKPOINT_MISMATCH,
            f"entry {sequence} hashes to {hashes[sequence - 1]}, not to the "
            f"checkpoint's {expected}",
        )


def _shown(value: str | None) -> str:
    return "absent" if value is None else repr(value)
