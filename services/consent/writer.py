"""Appends hash-chained entries to a subject's ledger and applies them to its state.

Every write (RecordConsent, SetJurisdiction, and the entries written from identity
events) goes through LedgerWriter.append:

1. One pipelined round trip reads the ledger position and head, the reserved state
   fields (or the whole state when the caller needs it), the sequence an idempotency
   key wrote, and whether the subject has an erasure record.
2. The caller's build function turns that snapshot into a draft, and the writer makes
   the entry and its SHA-256 in Python, because Redis Lua has SHA-1 only.
3. A Lua script appends the entry and applies its state update, but only if the
   ledger is still at the position read. When another write got in first, the steps
   repeat on the new head.

The durability guard decides whether the script's reply is the acknowledgement or a
WAIT for replicas must follow it on the same connection.
"""

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

from services.consent.durability import DurabilityGuard
from services.consent.erasure import SubjectHasher
from services.consent.errors import (
    LedgerInconsistent,
    SubjectErased,
    SubjectMerged,
    WriteConflict,
)
from services.consent.keys import SubjectKeys, erasure_key
from services.consent.ledger import (
    GENESIS_HASH,
    RECORD_ENTRY_TYPE,
    LedgerEntry,
    SubjectLink,
    decode_entry,
    encode_entry,
    entry_hash,
)
from services.consent.models import Change
from services.consent.state import (
    HEAD_FIELD,
    JURISDICTION_FIELD,
    MERGED_INTO_FIELD,
    SEQUENCE_FIELD,
    state_update,
)

logger = logging.getLogger(__name__)

MAX_WRITE_ATTEMPTS = 16
"""Attempts of one write while other writes to the same subject move the ledger.

Each lost attempt means another write succeeded, so the ledger always advances;
16 attempts cover 16 writers racing on one subject, far more than one customer makes.
"""

MAX_CONCURRENT_WRITES = 128
"""Appends one process sends to Redis at once; more wait their turn. A burst of writes
then queues instead of taking every connection of the client's pool (create_redis
allows 256), which would fail the excess writes and starve the checks."""

_RESERVED_FIELDS = [SEQUENCE_FIELD, HEAD_FIELD, JURISDICTION_FIELD, MERGED_INTO_FIELD]

# KEYS: state hash, ledger list, idempotency hash.
# ARGV: expected sequence, entry, entry hash, idempotency key ('' for none), the number
# of state fields to set, those field/value pairs (ledger_sequence and ledger_head
# among them), then the state fields to delete.
# Returns {outcome, sequence}: outcome is ok, replay (the key was applied at sequence),
# conflict (the ledger is at sequence) or inconsistent (the list has sequence entries).
_APPEND_SCRIPT = """
local state, ledger, idempotency = KEYS[1], KEYS[2], KEYS[3]
local expected = tonumber(ARGV[1])
local key = ARGV[4]
local last_set = 5 + 2 * tonumber(ARGV[5])
if key ~= '' then
  local applied = redis.call('HGET', idempotency, key)
  if applied then
    return {'replay', applied}
  end
end
local current = tonumber(redis.call('HGET', state, 'ledger_sequence') or '0')
if current ~= expected then
  -- A client retry after a lost reply finds its own entry already appended.
  if current == expected + 1 and redis.call('HGET', state, 'ledger_head') == ARGV[3] then
    return {'ok', tostring(current)}
  end
  return {'conflict', tostring(current)}
end
local length = redis.call('LLEN', ledger)
if length ~= expected then
  return {'inconsistent', tostring(length)}
end
redis.call('RPUSH', ledger, ARGV[2])
redis.call('HSET', state, unpack(ARGV, 6, last_set))
if #ARGV > last_set then
  redis.call('HDEL', state, unpack(ARGV, last_set + 1))
end
local sequence = tostring(expected + 1)
if key ~= '' then
  redis.call('HSET', idempotency, key, sequence)
end
return {'ok', sequence}
"""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A subject's ledger position and state as one write read them.

    ``fields`` is the whole state hash when the write asked for it, else empty.
    """

    subject_id: str
    sequence: int
    head: str
    jurisdiction: str | None
    merged_into: str | None
    fields: dict[str, str]


@dataclass(frozen=True, slots=True)
class Draft:
    """The entry a build function requests; the writer adds position and time."""

    source: str
    changes: tuple[Change, ...] = ()
    type: str = RECORD_ENTRY_TYPE
    notice_version: str | None = None
    jurisdiction: str | None = None
    link: SubjectLink | None = None
    event_id: str | None = None


@dataclass(frozen=True, slots=True)
class Appended:
    """An entry in the ledger: the one just written, or the one a key had written."""

    entry: LedgerEntry
    text: str
    hash: str
    replayed: bool


BuildEntry = Callable[[Snapshot], Draft | None]
"""Turns a snapshot into a draft, or None when nothing needs writing."""


class LedgerWriter:
    """Appends entries to subjects' ledgers; safe under concurrent writes."""

    def __init__(
        self,
        redis: aioredis.Redis,
        hasher: SubjectHasher,
        guard: DurabilityGuard,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self._redis = redis
        self._hasher = hasher
        self._guard = guard
        self.clock = clock
        self._append = redis.register_script(_APPEND_SCRIPT)
        self._slots = asyncio.Semaphore(MAX_CONCURRENT_WRITES)

    async def append(
        self,
        subject_id: str,
        build: BuildEntry,
        idempotency_key: str | None = None,
        full_state: bool = False,
        accept_merged: bool = False,
    ) -> Appended | None:
        """Append the entry build makes from the current snapshot, or replay the key.

        Returns None when build returns None. Raises SubjectErased for an erased
        subject, SubjectMerged for a subject merged away (unless accept_merged),
        WriteConflict after MAX_WRITE_ATTEMPTS lost races, and StoreNotDurable.
        """
        async with self._slots:
            return await self._append_now(
                subject_id, build, idempotency_key, full_state, accept_merged
            )

    async def _append_now(
        self,
        subject_id: str,
        build: BuildEntry,
        idempotency_key: str | None,
        full_state: bool,
        accept_merged: bool,
    ) -> Appended | None:
        keys = SubjectKeys.of(subject_id)
        for attempt in range(1, MAX_WRITE_ATTEMPTS + 1):
            snapshot, applied = await self._read(
                keys, subject_id, idempotency_key, full_state
            )
            if applied is not None:
                return await self.read_entry(subject_id, applied, replayed=True)
            if snapshot.merged_into is not None and not accept_merged:
                raise SubjectMerged(subject_id, snapshot.merged_into)

            draft = build(snapshot)
            if draft is None:
                return None
            entry = self._make_entry(snapshot, draft, idempotency_key)
            text = encode_entry(entry)
            digest = entry_hash(text)
            outcome, value = await self._run_append(keys, entry, text, digest)
            if outcome == "ok":
                return Appended(entry, text, digest, replayed=False)
            if outcome == "replay":
                return await self.read_entry(subject_id, int(value), replayed=True)
            if outcome == "inconsistent":
                raise _inconsistent(subject_id, snapshot.sequence, value)

            logger.info(
                "ledger moved during a write, retrying",
                extra={"subject_id": subject_id, "attempt": attempt},
            )
        raise WriteConflict(
            f"the ledger of subject {subject_id} changed during "
            f"{MAX_WRITE_ATTEMPTS} attempts; retry the request"
        )

    async def read_entry(
        self, subject_id: str, sequence: int, replayed: bool = False
    ) -> Appended:
        """Return the stored entry at sequence; raises LedgerInconsistent if missing."""
        text = await self._redis.lindex(SubjectKeys.of(subject_id).ledger, sequence - 1)
        if not isinstance(text, str):
            raise _inconsistent(subject_id, sequence, "missing")
        return Appended(decode_entry(text), text, entry_hash(text), replayed)

    async def _read(
        self,
        keys: SubjectKeys,
        subject_id: str,
        idempotency_key: str | None,
        full_state: bool,
    ) -> tuple[Snapshot, int | None]:
        async with self._redis.pipeline(transaction=False) as pipe:
            if full_state:
                pipe.hgetall(keys.state)
            else:
                pipe.hmget(keys.state, _RESERVED_FIELDS)
            pipe.exists(erasure_key(self._hasher.hash(subject_id)))
            if idempotency_key is not None:
                pipe.hget(keys.idempotency, idempotency_key)
            replies = await pipe.execute()

        if replies[1]:
            raise SubjectErased(subject_id)
        if full_state:
            fields = cast("dict[str, str]", replies[0])
            reserved = [fields.get(name) for name in _RESERVED_FIELDS]
        else:
            fields = {}
            reserved = cast("list[str | None]", replies[0])
        sequence_text, head, jurisdiction, merged_into = reserved
        applied = replies[2] if idempotency_key is not None else None

        snapshot = Snapshot(
            subject_id=subject_id,
            sequence=int(sequence_text or 0),
            head=head or GENESIS_HASH,
            jurisdiction=jurisdiction,
            merged_into=merged_into,
            fields=fields,
        )
        return snapshot, None if applied is None else int(applied)

    def _make_entry(
        self, snapshot: Snapshot, draft: Draft, idempotency_key: str | None
    ) -> LedgerEntry:
        return LedgerEntry(
            sequence=snapshot.sequence + 1,
            prev_hash=snapshot.head,
            subject_id=snapshot.subject_id,
            time_ns=self.clock(),
            source=draft.source,
            notice_version=draft.notice_version,
            idempotency_key=idempotency_key,
            changes=draft.changes,
            type=draft.type,
            jurisdiction=draft.jurisdiction,
            link=draft.link,
            event_id=draft.event_id,
        )

    async def _run_append(
        self, keys: SubjectKeys, entry: LedgerEntry, text: str, digest: str
    ) -> tuple[str, str]:
        update = state_update(entry, digest)
        args: list[str | int] = [
            entry.sequence - 1,
            text,
            digest,
            entry.idempotency_key or "",
            len(update.set),
        ]
        for name, value in update.set.items():
            args.extend((name, value))
        args.extend(update.delete)

        def queue(pipe: Pipeline) -> None:
            pipe.evalsha(
                self._append.sha, 3, keys.state, keys.ledger, keys.idempotency, *args
            )

        replies = await self._guard.execute(queue, [self._append])
        reply = replies[0]
        return str(reply[0]), str(reply[1])


def _inconsistent(subject_id: str, sequence: int, found: str) -> LedgerInconsistent:
    logger.error(
        "ledger and state disagree",
        extra={"subject_id": subject_id, "ledger_sequence": sequence, "found": found},
    )
    return LedgerInconsistent(
        f"the consent ledger of subject {subject_id} is inconsistent at sequence "
        f"{sequence}; writes are stopped until it is repaired"
    )
