"""Whether Redis keeps an acknowledged consent write through a crash, and WAIT.

A write is durable when Redis appends it to the AOF and fsyncs before replying
(``appendonly yes`` with ``appendfsync always``), or when a replica has received it
(``WAIT``). The guard reads ``CONFIG GET append*`` and ``INFO replication`` at startup
and again every ``recheck_seconds`` before a write, and picks one of three modes:

- ``fsync``: the reply to the write script is the acknowledgement;
- ``wait``: the write script and a ``WAIT`` go down one connection, and the write is
  acknowledged only when enough replicas confirm it;
- ``none``: with the ``require`` policy every write is rejected with UNAVAILABLE, with
  ``warn`` it is accepted and may be lost in a crash.
"""

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from services.consent.errors import StoreNotDurable

logger = logging.getLogger(__name__)

DurabilityPolicy = Literal["require", "warn"]

FSYNC = "fsync"
WAIT = "wait"
NONE = "none"


@dataclass(frozen=True, slots=True)
class DurabilityStatus:
    """The Redis settings the guard found and the mode it chose.

    ``wait_replicas`` is how many replicas must confirm each write (0 unless the mode
    is ``wait``). ``error`` explains a CONFIG GET that Redis rejected.
    """

    mode: str
    appendonly: str | None
    appendfsync: str | None
    replicas: int
    wait_replicas: int
    error: str | None = None

    def describe(self) -> str:
        """Return the settings found, for logs and error messages."""
        found = (
            f"appendonly={self.appendonly}, appendfsync={self.appendfsync}, "
            f"{self.replicas} connected replicas"
        )
        return (
            found if self.error is None else f"{found}, CONFIG GET failed: {self.error}"
        )


class DurabilityGuard:
    """Decides before each write whether it may go ahead and whether to WAIT after it."""

    def __init__(
        self,
        redis: aioredis.Redis,
        policy: DurabilityPolicy = "require",
        wait_replicas: int = 0,
        wait_timeout_ms: int = 500,
        recheck_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis = redis
        self.policy = policy
        self._configured_replicas = wait_replicas
        self._cluster = isinstance(redis, RedisCluster)
        self.wait_timeout_ms = wait_timeout_ms
        self._recheck_seconds = recheck_seconds
        self._clock = clock
        self._status: DurabilityStatus | None = None
        self._checked_at = 0.0
        self._lock = asyncio.Lock()

    @property
    def status(self) -> DurabilityStatus | None:
        """Return the status of the last check, or None before the first."""
        return self._status

    async def startup(self) -> DurabilityStatus | None:
        """Check Redis once and log the outcome.

        A Redis that is unreachable is logged and checked again before the first write.
        """
        try:
            status = await self.refresh()
        except (RedisConnectionError, RedisTimeoutError) as error:
            logger.warning(
                "could not check Redis durability at startup; checking before the "
                "first write",
                extra={"error": type(error).__name__},
            )
            return None
        self._log_startup(status)
        return status

    async def refresh(self) -> DurabilityStatus:
        """Read the AOF settings and replica count and choose the mode."""
        # NOTE: on a Redis Cluster, redis-py sends INFO and CONFIG GET to one node, so
        # the check reflects that node only; every master must use the same settings.
        info = await self._redis.info("replication")
        replicas = int(info.get("connected_slaves", 0))
        appendonly = appendfsync = error = None
        try:
            config = await self._redis.config_get("append*")
            appendonly = config.get("appendonly")
            appendfsync = config.get("appendfsync")
        except ResponseError as rejected:
            # Managed Redis services often rename or disable CONFIG.
            error = str(rejected)

        status = self._choose(appendonly, appendfsync, replicas, error)
        self._status = status
        self._checked_at = self._clock()
        return status

    async def before_write(self) -> int:
        """Return how many replicas to WAIT for after the write (0: none).

        Raises StoreNotDurable when the policy is ``require`` and Redis is not durable.
        """
        status = self._status
        if status is None or self._clock() - self._checked_at >= self._recheck_seconds:
            async with self._lock:
                status = self._status
                if (
                    status is None
                    or self._clock() - self._checked_at >= self._recheck_seconds
                ):
                    previous = status
                    status = await self.refresh()
                    if previous is not None and previous.mode != status.mode:
                        logger.warning(
                            "Redis durability changed",
                            extra={"from": previous.mode, "to": status.mode},
                        )

        if status.mode == NONE and self.policy == "require":
            raise StoreNotDurable(
                "consent writes are rejected because Redis would not keep them through "
                f"a crash ({status.describe()}); set appendfsync always or add a replica"
            )
        return status.wait_replicas

    async def execute(
        self,
        queue: Callable[[Pipeline], object],
        scripts: Sequence[AsyncScript] = (),
    ) -> list[Any]:
        """Send the writes that queue adds to a pipeline, durably, and return replies.

        The writes and, in ``wait`` mode, a WAIT go down one connection, because WAIT
        counts the writes of its own connection only. A script the server does not
        have yet (after a restart) is loaded from scripts and the pipeline sent again.
        The resend is safe because EVALSHA of an unknown script runs nothing.
        Raises StoreNotDurable as before_write and after_wait do.
        """
        wait_replicas = await self.before_write()
        for attempt in (1, 2):
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    queue(pipe)
                    if wait_replicas:
                        pipe.wait(wait_replicas, self.wait_timeout_ms)
                    replies: list[Any] = await pipe.execute()
                break
            except NoScriptError:
                if attempt == 2:
                    raise
                for script in scripts:
                    await self._redis.script_load(script.script)

        if wait_replicas:
            self.after_wait(int(replies.pop()), wait_replicas)
        return replies

    def after_wait(self, acknowledged: int, required: int) -> None:
        """Raise StoreNotDurable when fewer replicas than required confirmed a write.

        The write stays applied on the primary, so the caller's retry with the same
        idempotency key replays it. The next write checks Redis again.
        """
        if acknowledged >= required:
            return
        self._checked_at = float("-inf")
        logger.warning(
            "a consent write reached fewer replicas than required",
            extra={"acknowledged": acknowledged, "required": required},
        )
        raise StoreNotDurable(
            f"the write reached {acknowledged} of {required} replicas within "
            f"{self.wait_timeout_ms} ms, so it is not acknowledged; retry with the same "
            "idempotency key"
        )

    def _choose(
        self,
        appendonly: str | None,
        appendfsync: str | None,
        replicas: int,
        error: str | None,
    ) -> DurabilityStatus:
        fsync = appendonly == "yes" and appendfsync == "always"
        if self._cluster:
            # redis-py sends a keyless WAIT to one default node, not to the master that
            # took the write, so on a cluster only fsync counts.
            mode = FSYNC if fsync and self._configured_replicas == 0 else NONE
            return DurabilityStatus(mode, appendonly, appendfsync, replicas, 0, error)

        if self._configured_replicas > 0:
            mode, wait_replicas = WAIT, self._configured_replicas
        elif fsync:
            mode, wait_replicas = FSYNC, 0
        elif replicas > 0:
            mode, wait_replicas = WAIT, 1
        else:
            mode, wait_replicas = NONE, 0
        return DurabilityStatus(
            mode, appendonly, appendfsync, replicas, wait_replicas, error
        )

    def _log_startup(self, status: DurabilityStatus) -> None:
        extra = {"mode": status.mode, "durability_policy": self.policy}
        if status.mode == FSYNC:
            logger.info(
                "consent writes are durable: AOF with fsync on every write", extra=extra
            )
        elif status.mode == WAIT:
            logger.info(
                "consent writes are durable once %d replicas confirm them (WAIT)",
                status.wait_replicas,
                extra=extra,
            )
        elif self.policy == "require":
            logger.error(
                "Redis would lose acknowledged writes in a crash (%s); consent writes "
                "are rejected until it runs with appendfsync always or has a replica",
                status.describe(),
                extra=extra,
            )
        else:
            logger.error(
                "Redis would lose acknowledged writes in a crash (%s); consent writes "
                "are accepted anyway because durability is set to warn",
                status.describe(),
                extra=extra,
            )
