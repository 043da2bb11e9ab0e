"""CheckConsent and ListConsents: reads of the state hash, one Redis command each.

Nothing is cached: every check reads the requested pair fields and the ledger sequence
with one HMGET, which Redis executes atomically, so a write acknowledged before the
check started is always seen.
"""

import time
from collections.abc import Callable, Sequence
from typing import cast

import redis.asyncio as aioredis

from services.consent.errors import TokenAhead
from services.consent.keys import state_key
from services.consent.models import CheckAnswer, ConsentList, Pair
from services.consent.state import (
    SEQUENCE_FIELD,
    apply_expiry,
    decode_state,
    evaluate,
    is_pair_field,
    resolve_never_asked,
)
from services.consent.vocabulary import PAIR_FIELDS


class ConsentReader:
    """Reads verdicts and listings from the current state of a subject."""

    def __init__(
        self, redis: aioredis.Redis, clock: Callable[[], int] = time.time_ns
    ) -> None:
        self._redis = redis
        self._clock = clock

    async def check(
        self, subject_id: str, pairs: Sequence[Pair], min_sequence: int = 0
    ) -> CheckAnswer:
        """Return a verdict per pair, in order; pairs must be known (validated) pairs.

        Raises TokenAhead when the ledger read is older than min_sequence.
        """
        fields = [PAIR_FIELDS[pair] for pair in pairs]
        fields.append(SEQUENCE_FIELD)
        # The client decodes replies to str (shared.redis_client sets decode_responses).
        reply = await self._redis.hmget(state_key(subject_id), fields)
        values = cast("list[str | None]", reply)

        sequence = int(values.pop() or 0)
        if sequence < min_sequence:
            raise _token_ahead(subject_id, sequence, min_sequence)

        now = self._clock()
        never_asked = resolve_never_asked()
        verdicts = [evaluate(value, now, never_asked) for value in values]
        return CheckAnswer(verdicts, sequence)

    async def list_consents(self, subject_id: str) -> ConsentList:
        """Return the state of every pair the subject changed, by purpose then channel.

        A grant whose expiry has passed is listed as denied, as a check reports it.
        """
        reply = await self._redis.hgetall(state_key(subject_id))
        stored = cast("dict[str, str]", reply)

        now = self._clock()
        states = [
            apply_expiry(decode_state(field, value), now)
            for field, value in stored.items()
            if is_pair_field(field)
        ]
        states.sort(key=lambda state: (state.purpose, state.channel))
        return ConsentList(states, int(stored.get(SEQUENCE_FIELD) or 0))


def _token_ahead(subject_id: str, sequence: int, min_sequence: int) -> TokenAhead:
    return TokenAhead(
        f"the consent ledger of subject {subject_id} is at sequence {sequence}, "
        f"behind the min_consistency_token at {min_sequence}; retry later",
        metadata={
            "ledger_sequence": str(sequence),
            "token_sequence": str(min_sequence),
        },
    )
