"""Erasure of a subject's consent, keeping proof of it without identifiers.

Erasing deletes the subject's state, ledger and idempotency keys. What stays is an
erasure record named by a keyed hash of the subject id: the SHA-256 of every erased
entry, the ledger length and head, and the erase time. Anyone who kept an entry (a
customer's receipt, an export, a checkpoint from RecordConsent) can still show that it
was in the ledger. The holder of the subject id and the key can find the record, but
the record alone names no one. The record also marks the subject as erased, so a late
write or a replayed identity event does not bring its consent back.
"""

import hashlib
import hmac
import logging
import time
from collections.abc import Callable
from typing import Any, cast

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

from services.consent.durability import DurabilityGuard
from services.consent.errors import WriteConflict
from services.consent.keys import SubjectKeys, erasure_key
from services.consent.ledger import entry_hash, format_time, parse_time
from services.consent.models import ErasureRecord
from services.consent.state import SEQUENCE_FIELD

logger = logging.getLogger(__name__)

MAX_ERASE_ATTEMPTS = 16
"""Attempts of one erasure while writes to the subject keep moving its ledger."""

# KEYS: state hash, ledger list, idempotency hash. ARGV: the ledger_sequence and list
# length that were read. Deletes the three keys only if neither moved since.
_ERASE_SCRIPT = """
local current = redis.call('HGET', KEYS[1], 'ledger_sequence') or '0'
if current ~= ARGV[1] or redis.call('LLEN', KEYS[2]) ~= tonumber(ARGV[2]) then
  return 'conflict'
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
return 'ok'
"""


class SubjectHasher:
    """Keyed hash of subject ids for erasure records: HMAC-SHA256 in hex.

    Without a key the hash is a plain SHA-256, which a reader of Redis can match
    against guessed subject ids, so the service logs a warning at startup then.
    """

    def __init__(self, key: bytes | None) -> None:
        self._key = key

    @property
    def keyed(self) -> bool:
        return self._key is not None

    def hash(self, subject_id: str) -> str:
        """Return the hash that names the subject's erasure record."""
        data = subject_id.encode("utf-8")
        if self._key is None:
            return hashlib.sha256(data).hexdigest()
        return hmac.new(self._key, data, hashlib.sha256).hexdigest()


class SubjectEraser:
    """Erases subjects and reads their erasure records."""

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
        self._clock = clock
        self._erase = redis.register_script(_ERASE_SCRIPT)

    def record_key(self, subject_id: str) -> str:
        """Return the key of the subject's erasure record."""
        return erasure_key(self._hasher.hash(subject_id))

    async def erase(self, subject_id: str, reason: str) -> ErasureRecord:
        """Delete the subject's consent and keep its hashes; erasing twice is a no-op.

        reason is stored in the record (for example ``identity-erase``).
        """
        for _ in range(MAX_ERASE_ATTEMPTS):
            record = await self._erase_once(subject_id, reason)
            if record is not None:
                return record
        raise WriteConflict(
            f"the ledger of subject {subject_id} changed during {MAX_ERASE_ATTEMPTS} "
            "erase attempts; retry"
        )

    async def is_erased(self, subject_id: str) -> bool:
        """Tell whether the subject has an erasure record."""
        return bool(await self._redis.exists(self.record_key(subject_id)))

    async def read_record(self, subject_id: str) -> ErasureRecord | None:
        """Return the subject's erasure record, or None if it was never erased."""
        reply = await self._redis.hgetall(self.record_key(subject_id))
        stored = cast("dict[str, str]", reply)
        if not stored:
            return None
        hashes = stored.get("entry_hashes", "")
        return ErasureRecord(
            erase_ns=parse_time(stored["erase_time"]),
            sequence=int(stored["ledger_sequence"]),
            head=stored.get("ledger_head", ""),
            entry_hashes=tuple(hashes.split(",")) if hashes else (),
        )

    async def _erase_once(self, subject_id: str, reason: str) -> ErasureRecord | None:
        """Erase at the ledger position read; return None when a write moved it."""
        keys = SubjectKeys.of(subject_id)
        sequence_text, texts, existing = await self._read(keys)
        kept = await self.read_record(subject_id)
        if kept is not None and existing == 0:
            return kept

        record = _extend(kept, [entry_hash(text) for text in texts], self._clock())
        fields = _encode(record, reason)
        record_key = self.record_key(subject_id)
        # The record is written first: a write that reads the subject after this finds
        # it and is rejected, and one that read the subject before moves the ledger,
        # which makes the delete below fail and the erasure start again.
        # NOTE: a subject with no ledger at all is the exception. A first write that
        # read it before the record existed still expects sequence 0 after the empty
        # delete, so it can append a ledger to an erased subject. The record lives in
        # another cluster slot, so the append script cannot check it atomically.
        await self._guard.execute(lambda pipe: pipe.hset(record_key, mapping=fields))

        def queue_delete(pipe: Pipeline) -> None:
            pipe.evalsha(
                self._erase.sha,
                3,
                keys.state,
                keys.ledger,
                keys.idempotency,
                sequence_text,
                len(texts),
            )

        replies = await self._guard.execute(queue_delete, [self._erase])
        if replies[0] != "ok":
            return None
        logger.info(
            "consent erased",
            extra={
                "subject_id": subject_id,
                "ledger_sequence": len(texts),
                "reason": reason,
            },
        )
        return record

    async def _read(self, keys: SubjectKeys) -> tuple[str, list[str], int]:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hget(keys.state, SEQUENCE_FIELD)
            pipe.lrange(keys.ledger, 0, -1)
            pipe.exists(keys.state, keys.ledger, keys.idempotency)
            sequence_text, texts, existing = await pipe.execute()
        return sequence_text or "0", texts, int(existing)


def _extend(
    kept: ErasureRecord | None, hashes: list[str], now_ns: int
) -> ErasureRecord:
    """Return the record after erasing a ledger with these entry hashes.

    A ledger written again after an earlier erasure (a write that raced it) adds its
    hashes after the kept ones, so no erased entry's hash is dropped.
    """
    previous = list(kept.entry_hashes) if kept is not None else []
    if hashes[: len(previous)] == previous:
        combined = hashes
    else:
        combined = previous + [h for h in hashes if h not in previous]
    return ErasureRecord(
        erase_ns=now_ns,
        sequence=len(combined),
        head=combined[-1] if combined else "",
        entry_hashes=tuple(combined),
    )


def _encode(record: ErasureRecord, reason: str) -> dict[Any, str]:
    return {
        "erase_time": format_time(record.erase_ns),
        "ledger_sequence": str(record.sequence),
        "ledger_head": record.head,
        "entry_hashes": ",".join(record.entry_hashes),
        "reason": reason,
    }
