"""RecordConsent: appends one hash-chained ledger entry and updates the state with it.

A write reads the ledger position and head hash, then builds the entry and its SHA-256
in Python, because Redis Lua has SHA-1 only. A Lua script then appends the entry and
updates the state and the idempotency hash, but only if the position is unchanged. When
another write got in first, the entry is rebuilt on the new head and tried again.
"""

import logging
import time
from collections.abc import Callable

import redis.asyncio as aioredis

from services.consent.errors import LedgerInconsistent, WriteConflict
from services.consent.keys import SubjectKeys
from services.consent.ledger import (
    GENESIS_HASH,
    LedgerEntry,
    decode_entry,
    encode_entry,
    entry_hash,
)
from services.consent.models import RecordRequest, RecordResult
from services.consent.state import (
    HEAD_FIELD,
    SEQUENCE_FIELD,
    encode_state,
    states_from_entry,
)
from services.consent.vocabulary import PAIR_FIELDS
from shared.errors import FieldViolation, InvalidArgument

logger = logging.getLogger(__name__)

MAX_WRITE_ATTEMPTS = 16
"""Attempts of one write while other writes to the same subject move the ledger.

Each lost attempt means another write succeeded, so the ledger always advances;
16 attempts cover 16 writers racing on one subject, far more than one customer makes.
"""

# KEYS: state hash, ledger list, idempotency hash. The script names the state fields
# ledger_sequence and ledger_head itself (SEQUENCE_FIELD and HEAD_FIELD in state.py).
# ARGV: expected sequence, entry, entry hash, idempotency key ('' for none), then
# field/value pairs of the changed pairs.
# Returns {outcome, sequence}: outcome is ok, replay (the key was applied at sequence),
# conflict (the ledger is at sequence) or inconsistent (the list has sequence entries).
_APPEND_SCRIPT = """
local state, ledger, idempotency = KEYS[1], KEYS[2], KEYS[3]
local expected = tonumber(ARGV[1])
local key = ARGV[4]
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
local sequence = tostring(expected + 1)
redis.call('HSET', state, 'ledger_sequence', sequence, 'ledger_head', ARGV[3],
  unpack(ARGV, 5))
if key ~= '' then
  redis.call('HSET', idempotency, key, sequence)
end
return {'ok', sequence}
"""


class ConsentRecorder:
    """Writes consent changes for one subject at a time; safe under concurrent writes."""

    def __init__(
        self, redis: aioredis.Redis, clock: Callable[[], int] = time.time_ns
    ) -> None:
        self._redis = redis
        self._clock = clock
        self._append = redis.register_script(_APPEND_SCRIPT)

    async def record(self, request: RecordRequest) -> RecordResult:
        """Append request as one ledger entry, or replay it if its key was applied."""
        keys = SubjectKeys.of(request.subject_id)
        for attempt in range(1, MAX_WRITE_ATTEMPTS + 1):
            sequence, head, applied = await self._read_position(keys, request)
            if applied is not None:
                return await self._replay(keys, request, applied)

            entry = self._build_entry(request, sequence, head)
            text = encode_entry(entry)
            outcome, value = await self._run_append(keys, request, entry, text)
            if outcome == "ok":
                logger.info(
                    "consent recorded",
                    extra={
                        "subject_id": request.subject_id,
                        "ledger_sequence": entry.sequence,
                        "changes": len(entry.changes),
                    },
                )
                return RecordResult(entry.sequence, states_from_entry(entry), False)
            if outcome == "replay":
                return await self._replay(keys, request, int(value))
            if outcome == "inconsistent":
                raise self._inconsistent(request.subject_id, sequence, value)

            logger.info(
                "ledger moved during a write, retrying",
                extra={"subject_id": request.subject_id, "attempt": attempt},
            )
        raise WriteConflict(
            f"the ledger of subject {request.subject_id} changed during "
            f"{MAX_WRITE_ATTEMPTS} attempts; retry the request"
        )

    async def _read_position(
        self, keys: SubjectKeys, request: RecordRequest
    ) -> tuple[int, str, int | None]:
        """Return the ledger sequence, head hash and the sequence the key applied."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hmget(keys.state, [SEQUENCE_FIELD, HEAD_FIELD])
            if request.idempotency_key is not None:
                pipe.hget(keys.idempotency, request.idempotency_key)
            replies = await pipe.execute()

        sequence_text, head = replies[0]
        applied = replies[1] if len(replies) > 1 else None
        return (
            int(sequence_text or 0),
            head or GENESIS_HASH,
            None if applied is None else int(applied),
        )

    def _build_entry(
        self, request: RecordRequest, sequence: int, head: str
    ) -> LedgerEntry:
        """Build the next entry; raises InvalidArgument for an expiry already past."""
        now = self._clock()
        past = [
            FieldViolation(f"changes[{index}].expire_time", "must be in the future")
            for index, change in enumerate(request.changes)
            if change.expire_ns is not None and change.expire_ns <= now
        ]
        if past:
            raise InvalidArgument(past)

        return LedgerEntry(
            sequence=sequence + 1,
            prev_hash=head,
            subject_id=request.subject_id,
            time_ns=now,
            source=request.source,
            notice_version=request.notice_version,
            idempotency_key=request.idempotency_key,
            changes=request.changes,
        )

    async def _run_append(
        self, keys: SubjectKeys, request: RecordRequest, entry: LedgerEntry, text: str
    ) -> tuple[str, str]:
        fields: list[str] = []
        for state in states_from_entry(entry):
            fields.append(PAIR_FIELDS[state.purpose, state.channel])
            fields.append(encode_state(state))

        # NOTE: the reply can come before the entry is on disk, unless Redis runs with
        # appendfsync always. A WAIT for a replica belongs here once one is configured.
        reply = await self._append(
            keys=[keys.state, keys.ledger, keys.idempotency],
            args=[
                entry.sequence - 1,
                text,
                entry_hash(text),
                request.idempotency_key or "",
                *fields,
            ],
        )
        return str(reply[0]), str(reply[1])

    async def _replay(
        self, keys: SubjectKeys, request: RecordRequest, sequence: int
    ) -> RecordResult:
        """Return the result of the entry the idempotency key wrote at sequence."""
        text = await self._redis.lindex(keys.ledger, sequence - 1)
        if not isinstance(text, str):
            raise self._inconsistent(request.subject_id, sequence, "missing")

        entry = decode_entry(text)
        same_request = (
            entry.changes == request.changes
            and entry.source == request.source
            and entry.notice_version == request.notice_version
        )
        if not same_request:
            raise InvalidArgument(
                [
                    FieldViolation(
                        "idempotency_key",
                        f"was already used at ledger sequence {sequence} for a "
                        "different request; use a new key for a new request",
                    )
                ]
            )

        logger.info(
            "consent write replayed",
            extra={"subject_id": request.subject_id, "ledger_sequence": sequence},
        )
        return RecordResult(sequence, states_from_entry(entry), True)

    @staticmethod
    def _inconsistent(subject_id: str, sequence: int, found: str) -> LedgerInconsistent:
        logger.error(
            "ledger and state disagree",
            extra={
                "subject_id": subject_id,
                "ledger_sequence": sequence,
                "found": found,
            },
        )
        return LedgerInconsistent(
            f"the consent ledger of subject {subject_id} is inconsistent at sequence "
            f"{sequence}; writes are stopped until it is repaired"
        )
