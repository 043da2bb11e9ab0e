"""ListConsentHistory: a subject's ledger entries in order, one page at a time."""

from dataclasses import dataclass
from typing import cast

import redis.asyncio as aioredis

from services.consent.keys import SubjectKeys
from services.consent.ledger import LedgerEntry, decode_entry, entry_hash
from services.consent.state import SEQUENCE_FIELD

DEFAULT_PAGE_SIZE = 100
"""Entries per page when the request leaves page_size at 0."""

MAX_PAGE_SIZE = 1000
"""Maximum entries per page, so one response stays well under the message limit."""


@dataclass(frozen=True, slots=True)
class HistoryItem:
    """One stored entry: its text and hash, and the decoded entry (None if malformed)."""

    sequence: int
    text: str
    hash: str
    entry: LedgerEntry | None


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """Entries from one position on, the next position (None at the end) and the
    ledger sequence the page was read at."""

    items: list[HistoryItem]
    next_sequence: int | None
    sequence: int


class HistoryReader:
    """Reads pages of a subject's ledger."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    async def page(self, subject_id: str, start: int, size: int) -> HistoryPage:
        """Return up to size entries from sequence start (1 for the first entry)."""
        keys = SubjectKeys.of(subject_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hget(keys.state, SEQUENCE_FIELD)
            pipe.lrange(keys.ledger, start - 1, start + size - 2)
            sequence_text, texts = await pipe.execute()

        sequence = int(sequence_text or 0)
        # Entries past ledger_sequence would belong to no acknowledged write; VerifyLedger
        # reports them, and the history stops at the position the state records.
        texts = cast("list[str]", texts)[: max(0, sequence - start + 1)]
        items = [_item(start + offset, text) for offset, text in enumerate(texts)]
        end = start + len(items)
        next_sequence = end if end <= sequence else None
        return HistoryPage(items, next_sequence, sequence)


def _item(sequence: int, text: str) -> HistoryItem:
    try:
        entry: LedgerEntry | None = decode_entry(text)
    except (ValueError, KeyError, TypeError):
        entry = None
    return HistoryItem(sequence, text, entry_hash(text), entry)
