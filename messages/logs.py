"""One throttled logger for every process: a flood of the same problem cannot flood the log.

The collector logs bad input at most once a second per kind of problem, the
agent its complaints about the collector and its outbox at most once every
ten seconds, a failing probe at most once every thirty: all through
:class:`ThrottledLog`, each with its own period and wording of the count.

This module imports nothing else of the project.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable

__all__ = ["SUPPRESSED", "ThrottledLog"]

SUPPRESSED = " (%d similar suppressed)"  # appended, with the count, to the first message after a quiet period


class ThrottledLog:
    """Logs each key at most once per ``period`` seconds, saying how many were suppressed.

    ``suffix`` (with one ``%d``) is appended to a message that follows
    suppressed ones; an empty suffix says nothing about them. ``clock``
    gives the time when a caller does not pass ``now``.
    """

    def __init__(
        self,
        logger: logging.Logger,
        period: float = 1.0,
        suffix: str = SUPPRESSED,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.period = period
        self.suffix = suffix
        self.clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: Counter[str] = Counter()

    def log(
        self, level: int, key: str, fmt: str, *args: object, now: float | None = None, exc_info: bool = False
    ) -> bool:
        """Log ``fmt % args`` at ``level`` under ``key`` unless the key was logged less than a period ago.

        Returns True when it logged, False when it suppressed the message.
        """
        now = self.clock() if now is None else now
        last = self._last.get(key)
        if last is not None and now - last < self.period:
            self._suppressed[key] += 1
            return False
        self._last[key] = now
        suppressed = self._suppressed.pop(key, 0)
        if suppressed and self.suffix:
            self.logger.log(level, fmt + self.suffix, *args, suppressed, exc_info=exc_info)
        else:
            self.logger.log(level, fmt, *args, exc_info=exc_info)
        return True

    def warning(self, key: str, fmt: str, *args: object) -> bool:
        """:meth:`log` at WARNING."""
        return self.log(logging.WARNING, key, fmt, *args)
