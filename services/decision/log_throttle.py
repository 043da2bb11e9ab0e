"""Rate limiting of repeated warnings, so an outage of a dependency logs a few lines."""

import logging
import time
from collections.abc import Callable


class WarningThrottle:
    """Logs a warning per key at most once per interval, with the count it left out."""

    def __init__(
        self,
        logger: logging.Logger,
        interval_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._interval_seconds = interval_seconds
        self._clock = clock
        self._last_logged: dict[str, float] = {}
        self._left_out: dict[str, int] = {}

    def warning(self, key: str, message: str, *args: object) -> None:
        """Log message under key unless one was logged less than an interval ago."""
        now = self._clock()
        last = self._last_logged.get(key)
        if last is not None and now - last < self._interval_seconds:
            self._left_out[key] = self._left_out.get(key, 0) + 1
            return

        left_out = self._left_out.pop(key, 0)
        self._last_logged[key] = now
        self._logger.warning(message, *args, extra={"repeats_not_logged": left_out})
