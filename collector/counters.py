"""Counters of what the collector received, dropped and survived, and a throttled logger.

Bad input is counted and logged at most once a second per kind of problem, so a
flood of garbage cannot flood the log.
"""

from __future__ import annotations

import logging
import time
from collections import Counter

from messages.limits import saturate


class Counters(Counter[str]):
    """Named event counts (``frames``, ``reports``, ``bad-frame``, ``module-error:NAME``, ...)."""

    def snapshot(self) -> dict[str, int]:
        """A plain dict copy, sorted by name; a count beyond 2^64-1 (gaps a hostile node claims) saturates."""
        return {name: saturate(count) for name, count in sorted(self.items())}


class ThrottledLog:
    """Logs each key at most once per ``period`` seconds, saying how many were suppressed."""

    def __init__(self, logger: logging.Logger, period: float = 1.0) -> None:
        self.logger = logger
        self.period = period
        self._last: dict[str, float] = {}
        self._suppressed: Counter[str] = Counter()

    def warning(self, key: str, fmt: str, *args: object) -> bool:
        """Log ``fmt % args`` under ``key`` unless the key was logged less than a period ago.

        Returns True when it logged, False when it suppressed the message.
        """
        now = time.monotonic()
        if now - self._last.get(key, -self.period) < self.period:
            self._suppressed[key] += 1
            return False
        self._last[key] = now
        suppressed = self._suppressed.pop(key, 0)
        if suppressed:
            self.logger.warning(fmt + " (%d similar suppressed)", *args, suppressed)
        else:
            self.logger.warning(fmt, *args)
        return True
