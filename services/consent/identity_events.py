"""Background consumer of identity's event stream, in the consumer group ``consent``.

Each entry is applied by the IdentityReconciler and acknowledged (XACK) only after its
effect is committed, so a crash before the XACK leaves it pending and it runs again.
The reconciler makes that second run change nothing. Entries are read in this order on
every poll:

1. this consumer's own pending entries, left by a failed attempt or a restart under
   the same consumer name (XREADGROUP from id 0);
2. entries another consumer left pending for longer than ``claim_idle_ms``, as a dead
   replica does (XAUTOCLAIM);
3. new entries (XREADGROUP ``>``), blocking up to ``block_ms``.

The group is created at id 0 when missing, so a new deployment applies every event the
stream still holds. A Redis error pauses the loop with a growing backoff. An entry that
fails ``max_attempts`` times for a reason other than Redis or durability is left
pending (XPENDING lists it for operators) and skipped by this process.
"""

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Sequence
from typing import Any, cast

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from services.consent.errors import StoreNotDurable
from services.consent.reconciler import IdentityEvent, IdentityReconciler

logger = logging.getLogger(__name__)

GROUP = "consent"
"""Consumer group of the consent service on identity's event stream."""

BACKOFF_SECONDS = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
"""Pauses after consecutive failed polls, in seconds; the last one repeats."""


class MalformedEvent(ValueError):
    """A stream entry without the fields an identity event needs."""


def default_consumer_name() -> str:
    """Return a name unique to this process: host name and process id."""
    # NOTE: every restart adds a consumer to the group, and nothing deletes the old
    # ones with XGROUP DELCONSUMER. XAUTOCLAIM moves their pending entries, so only
    # the XINFO CONSUMERS list grows.
    return f"{socket.gethostname()}-{os.getpid()}"


def parse_event(entry_id: str, fields: dict[str, str]) -> IdentityEvent:
    """Build an IdentityEvent from a stream entry; raises MalformedEvent."""
    event_type = fields.get("type", "")
    profile_id = fields.get("profile_id", "")
    if not event_type or not profile_id:
        raise MalformedEvent("type and profile_id are required")
    merged_ids = tuple(
        part.strip() for part in fields.get("merged_ids", "").split(",") if part.strip()
    )
    if event_type == "merge" and not merged_ids:
        raise MalformedEvent("a merge event needs merged_ids")
    if event_type == "split" and not fields.get("new_profile_id"):
        raise MalformedEvent("a split event needs new_profile_id")
    return IdentityEvent(
        event_id=entry_id,
        type=event_type,
        profile_id=profile_id,
        merged_ids=merged_ids,
        new_profile_id=fields.get("new_profile_id") or None,
    )


class IdentityEventConsumer:
    """Reads identity events in a background task and applies them to consent."""

    def __init__(
        self,
        redis: aioredis.Redis,
        reconciler: IdentityReconciler,
        stream: str,
        group: str = GROUP,
        consumer: str | None = None,
        batch_size: int = 100,
        block_ms: int = 1000,
        claim_idle_ms: int = 60_000,
        max_attempts: int = 5,
    ) -> None:
        self._redis = redis
        self._reconciler = reconciler
        self.stream = stream
        self.group = group
        self.consumer = consumer or default_consumer_name()
        self._batch_size = batch_size
        self._block_ms = block_ms
        self._claim_idle_ms = claim_idle_ms
        self._max_attempts = max_attempts
        self._group_ready = False
        self._check_own_pending = True
        self._attempts: dict[str, int] = {}
        self._failed = 0
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self.applied = 0
        """Entries applied and acknowledged by this consumer since it started."""

    def start(self) -> None:
        """Start the background task; call stop() to end it."""
        if self._task is None:
            self._stopping.clear()
            self._task = asyncio.create_task(self._run(), name="identity-events")
            logger.info(
                "identity event consumer started",
                extra={
                    "stream": self.stream,
                    "group": self.group,
                    "consumer": self.consumer,
                },
            )

    async def stop(self) -> None:
        """End the background task and wait for it; an entry being applied is
        interrupted before its XACK, so it stays pending and runs again later."""
        task, self._task = self._task, None
        if task is None:
            return
        # The flag ends the loop even when a cancellation is lost: the redis-py 8.2
        # asyncio client was seen to swallow one that arrives during a command.
        self._stopping.set()
        for _ in range(2):
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=self._block_ms / 1000 + 1)
            if done:
                break
        if not task.done():
            logger.warning("identity event consumer did not stop in time")
        elif not task.cancelled() and task.exception() is not None:
            logger.error("identity event consumer failed", exc_info=task.exception())
        logger.info("identity event consumer stopped", extra={"applied": self.applied})

    async def poll(self, block_ms: int | None = None) -> int:
        """Read and apply one round of entries; return how many were acknowledged.

        block_ms None reads without blocking. Redis errors propagate.
        """
        await self._ensure_group()
        acknowledged = 0
        try:
            if self._check_own_pending:
                acknowledged += await self._apply_own_pending()
            acknowledged += await self._apply_claimed()
            reply = await self._redis.xreadgroup(
                self.group,
                self.consumer,
                {self.stream: ">"},
                count=self._batch_size,
                block=block_ms,
            )
            acknowledged += await self._apply_all(_entries(reply))
        except ResponseError as error:
            if "NOGROUP" not in str(error):
                raise
            # The stream or the group was deleted: create both again on the next poll.
            logger.warning("identity event group missing; creating it again")
            self._group_ready = False
        return acknowledged

    async def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            self._failed = 0
            try:
                await self.poll(self._block_ms)
            except (RedisError, OSError, StoreNotDurable) as error:
                logger.warning(
                    "reading identity events failed; retrying",
                    extra={"error": repr(error), "failures": failures + 1},
                )
                self._failed += 1
            if not self._failed:
                failures = 0
                continue
            # A failed entry is retried on the next poll, so the pause paces retries.
            pause = BACKOFF_SECONDS[min(failures, len(BACKOFF_SECONDS) - 1)]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), pause)
            failures += 1

    async def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            await self._redis.xgroup_create(
                self.stream, self.group, id="0", mkstream=True
            )
            logger.info(
                "identity event group created",
                extra={"stream": self.stream, "group": self.group},
            )
        except ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise
        self._group_ready = True
        self._check_own_pending = True

    async def _apply_own_pending(self) -> int:
        """Apply this consumer's pending entries, paging past those it skips."""
        self._check_own_pending = False
        acknowledged = 0
        start = "0"
        while True:
            reply = await self._redis.xreadgroup(
                self.group, self.consumer, {self.stream: start}, count=self._batch_size
            )
            entries = _entries(reply)
            acknowledged += await self._apply_all(entries)
            if len(entries) < self._batch_size:
                break
            start = entries[-1][0]
        return acknowledged

    async def _apply_claimed(self) -> int:
        reply = await self._redis.xautoclaim(
            self.stream,
            self.group,
            self.consumer,
            self._claim_idle_ms,
            start_id="0-0",
            count=self._batch_size,
        )
        claimed = [entry for entry in reply[1] if entry[0] is not None]
        if claimed:
            logger.info(
                "claimed identity events left pending by another consumer",
                extra={"count": len(claimed)},
            )
        return await self._apply_all(claimed)

    async def _apply_all(self, entries: Sequence[tuple[str, dict[str, str]]]) -> int:
        acknowledged = 0
        for entry_id, fields in entries:
            if self._attempts.get(entry_id, 0) >= self._max_attempts:
                continue
            if await self._apply(entry_id, fields):
                await self._redis.xack(self.stream, self.group, entry_id)
                self._attempts.pop(entry_id, None)
                acknowledged += 1
        self.applied += acknowledged
        return acknowledged

    async def _apply(self, entry_id: str, fields: dict[str, str]) -> bool:
        """Apply one entry; return True when it may be acknowledged."""
        if not fields:
            # Identity trimmed the entry from the stream before it was applied.
            logger.warning(
                "identity event was trimmed before it was applied",
                extra={"event_id": entry_id},
            )
            return True
        try:
            event = parse_event(entry_id, fields)
        except MalformedEvent as error:
            logger.error(
                "malformed identity event skipped: %s",
                error,
                extra={"event_id": entry_id},
            )
            return True

        try:
            await self._reconciler.apply(event)
        except (RedisError, OSError, StoreNotDurable):
            self._check_own_pending = True
            raise
        except Exception as error:
            # Anything else will fail again the same way, so attempts are counted.
            attempts = self._attempts.get(entry_id, 0) + 1
            self._attempts[entry_id] = attempts
            self._check_own_pending = True
            log = logger.error if attempts >= self._max_attempts else logger.warning
            self._failed += 1
            log(
                "applying an identity event failed",
                extra={
                    "event_id": entry_id,
                    "event_type": event.type,
                    "attempt": attempts,
                    "left_pending": attempts >= self._max_attempts,
                    "error": repr(error),
                },
            )
            return False
        return True


def _entries(reply: Any) -> list[tuple[str, dict[str, str]]]:
    """Return the (id, fields) entries of an XREADGROUP reply on one stream.

    The reply is RESP2's ``[[stream, entries]]``, the protocol create_redis uses.
    """
    if not reply:
        return []
    return cast("list[tuple[str, dict[str, str]]]", reply[0][1])
