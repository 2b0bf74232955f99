"""Real OS threads and native locks, even in a process gevent has monkey-patched.

The embedded collector's thread, the observers' thread and the locks they meet
on must never become greenlets or gevent locks (``gevent.monkey.get_original``
returns the unpatched ones, and the plain ones in an unpatched process).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from gevent import monkey

__all__ = ["Gate", "allocate_lock", "new_event_loop", "start_thread"]

_start_new_thread = monkey.get_original("_thread", "start_new_thread")
allocate_lock: Callable[[], Any] = monkey.get_original("_thread", "allocate_lock")


def new_event_loop() -> asyncio.AbstractEventLoop:
    """An asyncio loop on the real (unpatched) selector, for an OS thread of its own.

    In a patched process ``asyncio.new_event_loop()`` gets gevent's selector, which runs a hub in
    the thread and costs: measured here, nats-py fetching from JetStream 9k messages/s on it
    against 22k/s on the real one.
    """
    selector = monkey.get_original("selectors", "DefaultSelector")
    return asyncio.SelectorEventLoop(selector())


def start_thread(run: Callable[[], None]) -> None:
    """Run ``run()`` in a new OS thread."""
    _start_new_thread(run, ())


class Gate:
    """A one-way gate on a native lock: closed until :meth:`open`; any number of threads wait for it."""

    def __init__(self) -> None:
        self._lock = allocate_lock()
        self._lock.acquire()
        self.is_open = False

    def open(self) -> None:
        """Let every waiter (and every later one) through; opening twice is opening once."""
        if not self.is_open:
            self.is_open = True
            self._lock.release()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the gate is open (at most ``timeout`` s); True when it is."""
        if self.is_open:
            return True
        if not self._lock.acquire(True, -1 if timeout is None else max(0.0, timeout)):
            return False
        self._lock.release()
        return True
