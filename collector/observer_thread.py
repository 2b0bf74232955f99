"""Delivering observer calls off the ingest path: a bounded queue and one real OS thread.

The collector's loop :meth:`ObserverThread.post`\\ s an event (a ``deque``
append and, when the thread is idle, the release of a native lock: it never
blocks); the thread calls every observer's method, one call at a time. The
thread and its locks are real even in a monkey-patched process
(``gevent.monkey.get_original``, as collector/dist_runner.py does), so an
observer may block or sleep without stalling the collector.

A full queue drops the event (``observer-dropped``); an observer that raises
is counted (``observer-errors``) and one that takes longer than
``SLOW_CALL`` seconds is counted (``observer-slow``); both logged at most once
a minute per observer and method.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Any

from collector.counters import Counters
from collector.dist_runner import Signal
from collector.native import start_thread
from collector.observer import CollectorObserver
from messages.logs import ThrottledLog

__all__ = ["SLOW_CALL", "STOP_WAIT", "ObserverThread"]

log = logging.getLogger(__name__)

SLOW_CALL = 1.0  # seconds: a call that takes longer counts as slow
STOP_WAIT = 2.0  # seconds stop() waits for the queued events to be delivered
LOG_PERIOD = 60.0  # seconds between two log lines about the same observer and method
_STOP = ("", ())


class ObserverThread:
    """Queues events for the observers and delivers them from one OS thread."""

    def __init__(self, observers: list[CollectorObserver], queue_max: int = 10_000) -> None:
        self.observers = observers
        self.queue_max = queue_max
        self.queue: deque[tuple[str, tuple[Any, ...]]] = deque()
        self.wake = Signal()
        self.done = Signal()
        self.idle = False
        self.throttled = ThrottledLog(log, period=LOG_PERIOD)
        self.started = False
        # Counted here, copied into the collector's counters on the loop by count(): the thread never
        # touches a dict the loop iterates.
        self.errors = self.slow = self.dropped = 0

    def count(self, counters: Counters) -> None:
        """Set the ``observer-*`` counters (only when observers exist)."""
        if self.observers:
            counters["observer-errors"] = self.errors
            counters["observer-slow"] = self.slow
            counters["observer-dropped"] = self.dropped

    def start(self) -> None:
        """Start the delivery thread (nothing happens without observers)."""
        if self.observers and not self.started:
            self.started = True
            start_thread(self._run)

    def post(self, method: str, *args: Any) -> None:
        """Queue one event for every observer; never blocks (a full queue drops it, counted)."""
        if not self.started:
            return
        if len(self.queue) >= self.queue_max:
            self.dropped += 1
            self.throttled.warning("dropped", "observer queue full (%d events): dropped %s", self.queue_max, method)
            return
        self.queue.append((method, args))
        if self.idle:
            self.wake.set()

    def stop(self, timeout: float = STOP_WAIT) -> bool:
        """Deliver what is queued (up to ``timeout`` s), then end the thread; False when it was left behind."""
        if not self.started:
            return True
        self.started = False
        self.queue.append(_STOP)
        self.wake.set()
        if self.done.wait(timeout):
            return True
        log.warning("observers did not finish within %g s; %d events left undelivered", timeout, len(self.queue))
        return False

    def _run(self) -> None:
        while True:
            self.idle = True
            if not self.queue:
                self.wake.wait(1.0)
            self.idle = False
            while self.queue:
                method, args = self.queue.popleft()
                if not method:
                    self.done.set()
                    return
                self._deliver(method, args)

    def _deliver(self, method: str, args: tuple[Any, ...]) -> None:
        for observer in self.observers:
            name = type(observer).__name__
            started = time.monotonic()
            try:
                getattr(observer, method)(*args)
            except Exception as exc:  # an observer's bug is counted and logged, never the collector's
                self.errors += 1
                self.throttled.warning(
                    f"{name}.{method}", "observer %s raised in %s: %s: %s", name, method, type(exc).__name__, exc
                )
            took = time.monotonic() - started
            if took > SLOW_CALL:
                self.slow += 1
                self.throttled.warning(f"{name}.{method}.slow", "observer %s took %.1f s in %s", name, took, method)
