"""CheckConsent and ListConsents: reads of the state hash, one Redis command each.

Nothing is cached: every check reads the requested pair fields, the ledger sequence,
the jurisdiction and the merge marker with one HMGET, which Redis executes atomically,
so a write acknowledged before the check started is always seen.
"""

import time
from collections.abc import Callable, Sequence
from typing import cast

import redis.asyncio as aioredis

from services.consent.errors import LedgerInconsistent, TokenAhead
from services.consent.jurisdictions import JurisdictionPolicy
from services.consent.keys import SubjectKeys, state_key
from services.consent.ledger import LedgerEntry, decode_entry, entry_hash
from services.consent.models import CheckAnswer, ConsentList, Pair, Verdict
from services.consent.state import (
    JURISDICTION_FIELD,
    MERGED_INTO_FIELD,
    SEQUENCE_FIELD,
    apply_expiry,
    decode_state,
    derive_state,
    evaluate,
    is_pair_field,
)
from services.consent.vocabulary import PAIR_FIELDS
from trustfirst.consent.v1 import consent_pb2 as pb

_TRAILING_FIELDS = [SEQUENCE_FIELD, JURISDICTION_FIELD, MERGED_INTO_FIELD]


class ConsentReader:
    """Reads verdicts and listings from the current state of a subject."""

    def __init__(
        self,
        redis: aioredis.Redis,
        policy: JurisdictionPolicy,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self._redis = redis
        self._policy = policy
        self._clock = clock

    async def check(
        self, subject_id: str, pairs: Sequence[Pair], min_sequence: int = 0
    ) -> CheckAnswer:
        """Return a verdict per pair, in order; pairs must be known (validated) pairs.

        The subject's jurisdiction decides a never-asked pair. Every pair of a
        subject merged into another profile is refused with reason SUBJECT_MERGED.
        Raises TokenAhead when the ledger read is older than min_sequence.
        """
        fields = [PAIR_FIELDS[pair] for pair in pairs]
        fields.extend(_TRAILING_FIELDS)
        # The client decodes replies to str (shared.redis_client sets decode_responses).
        reply = await self._redis.hmget(state_key(subject_id), fields)
        values = cast("list[str | None]", reply)
        merged_into = values.pop()
        stored_jurisdiction = values.pop()
        sequence = int(values.pop() or 0)
        if sequence < min_sequence:
            raise _token_ahead(subject_id, sequence, min_sequence)

        now = self._clock()
        jurisdiction, never_asked = self._policy.verdicts(stored_jurisdiction)
        verdicts = [
            evaluate(value, now, never_asked[pair])
            for pair, value in zip(pairs, values, strict=True)
        ]
        if merged_into is not None:
            verdicts = [
                Verdict(False, verdict.status, pb.CHECK_REASON_SUBJECT_MERGED)
                for verdict in verdicts
            ]
        return CheckAnswer(verdicts, sequence, jurisdiction, merged_into)

    async def list_consents(self, subject_id: str) -> ConsentList:
        """Return the state of every pair the subject changed, by purpose then channel.

        A grant whose expiry has passed is listed as denied, as a check reports it.
        """
        stored = await self.read_state(subject_id)

        now = self._clock()
        states = [
            apply_expiry(decode_state(field, value), now)
            for field, value in stored.items()
            if is_pair_field(field)
        ]
        states.sort(key=lambda state: (state.purpose, state.channel))
        jurisdiction, _ = self._policy.verdicts(stored.get(JURISDICTION_FIELD))
        return ConsentList(
            states,
            int(stored.get(SEQUENCE_FIELD) or 0),
            jurisdiction,
            stored.get(MERGED_INTO_FIELD),
        )

    async def list_at(self, subject_id: str, sequence: int) -> ConsentList:
        """Return the state as it was at ledger position sequence, by replaying the
        entries up to it. Expiry is not applied: grants are listed as recorded.

        Raises TokenAhead when the ledger is shorter than sequence, and
        LedgerInconsistent when an entry up to it does not decode.
        """
        keys = SubjectKeys.of(subject_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hget(keys.state, SEQUENCE_FIELD)
            pipe.lrange(keys.ledger, 0, sequence - 1)
            sequence_text, texts = await pipe.execute()
        current = int(sequence_text or 0)
        if current < sequence or len(texts) < sequence:
            raise _token_ahead(subject_id, current, sequence)

        entries: list[tuple[LedgerEntry, str]] = []
        for text in cast("list[str]", texts):
            try:
                entries.append((decode_entry(text), entry_hash(text)))
            except (ValueError, KeyError, TypeError) as error:
                raise LedgerInconsistent(
                    f"the ledger of subject {subject_id} has an entry that does not "
                    "decode; run VerifyLedger"
                ) from error
        state = derive_state(entries)
        states = [
            decode_state(field, value)
            for field, value in state.items()
            if is_pair_field(field)
        ]
        states.sort(key=lambda item: (item.purpose, item.channel))
        jurisdiction, _ = self._policy.verdicts(state.get(JURISDICTION_FIELD))
        return ConsentList(states, sequence, jurisdiction, state.get(MERGED_INTO_FIELD))

    async def read_state(self, subject_id: str) -> dict[str, str]:
        """Return the subject's whole state hash (empty for an unknown subject)."""
        reply = await self._redis.hgetall(state_key(subject_id))
        return cast("dict[str, str]", reply)


def _token_ahead(subject_id: str, sequence: int, min_sequence: int) -> TokenAhead:
    return TokenAhead(
        f"the consent ledger of subject {subject_id} is at sequence {sequence}, "
        f"behind the min_consistency_token at {min_sequence}; retry later",
        metadata={
            "ledger_sequence": str(sequence),
            "token_sequence": str(min_sequence),
        },
    )
