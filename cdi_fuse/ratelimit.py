"""Log a repeating failure once, then at most once per interval with how often it repeated.

A node agent retries for as long as the node lives; a failure that repeats every backoff step must not
fill the node's disk with the same line.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

__all__ = ["RateLimitedLog"]


class RateLimitedLog:
    def __init__(
        self, logger: logging.Logger, *, interval: float = 300.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._logger = logger
        self._interval = interval
        self._clock = clock
        self._message: str | None = None
        self._logged_at = 0.0
        self._repeats = 0

    def warning(self, message: str) -> None:
        self._log(logging.WARNING, message)

    def error(self, message: str) -> None:
        self._log(logging.ERROR, message)

    def clear(self) -> None:
        """The failure is over: the next one is logged at once."""
        self._message = None
        self._repeats = 0

    def _log(self, level: int, message: str) -> None:
        now = self._clock()
        if message == self._message and now - self._logged_at < self._interval:
            self._repeats += 1
            return
        suffix = f" (repeated {self._repeats} more times)" if message == self._message and self._repeats else ""
        self._logger.log(level, "%s%s", message, suffix)
        self._message, self._logged_at, self._repeats = message, now, 0
