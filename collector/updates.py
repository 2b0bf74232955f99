"""Update scheduling: when each module's ``getUpdateMessage`` is called, and where its result goes.

One greenlet per module that feeds an update type. A module with an interval
is asked every interval (a slow module skips ticks, never bursts); a module
with ``update_interval = 0`` is asked right after every ingest pass that
delivered reports ("push on change"). What it returns is handed to
``publish`` (the clients' side of the collector sends it to subscribers).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import gevent
import gevent.event

from collector.counters import Counters, ThrottledLog
from collector.host import ModuleHost, Running

__all__ = ["UpdateScheduler"]

log = logging.getLogger(__name__)

Publish = Callable[[str, Any], None]


class UpdateScheduler:
    """Asks the modules for their updates on time and publishes what they return."""

    def __init__(self, host: ModuleHost, publish: Publish, counters: Counters) -> None:
        self.host = host
        self.publish = publish
        self.counters = counters
        self.throttled = ThrottledLog(log)
        self._ingest_waiters: list[gevent.event.Event] = []

    def loops(self) -> list[tuple[Callable[[Running], None], Running]]:
        """One ``(run, module)`` per module that feeds an update type, to spawn as greenlets."""
        return [(self.update_loop, running) for running in self.host.updaters()]

    def update_loop(self, running: Running) -> None:
        """Call one module's getUpdateMessage() every interval and publish what it returns.

        An interval of 0 means "push on change": the module is asked right after
        every ingest pass that delivered reports, so an update leaves within
        about a millisecond of the report that caused it.
        """
        if running.update_interval == 0:
            self._push_on_change(running)
        deadline = time.monotonic()
        while True:
            now = time.monotonic()
            deadline = max(deadline + running.update_interval, now)  # a slow module skips ticks, never bursts
            gevent.sleep(deadline - now)
            self.update_once(running)

    def _push_on_change(self, running: Running) -> None:
        ingested = gevent.event.Event()
        self._ingest_waiters.append(ingested)
        while True:
            ingested.wait()
            ingested.clear()
            self.update_once(running)
            gevent.sleep(0)  # let ingest run between pushes

    def update_once(self, running: Running) -> None:
        """Ask ``running`` for its update now and publish it when there is one."""
        assert running.updatetype is not None
        payload = self.host.update(running)
        if payload is None:
            return
        try:
            self.publish(running.updatetype, payload)
        except (TypeError, ValueError, OverflowError) as exc:  # e.g. an int msgpack cannot hold
            key = f"module-error:{running.name}"
            self.counters[key] += 1
            self.throttled.warning(key, "module %s returned an update that cannot be sent: %s", running.name, exc)

    def notify_ingest(self) -> bool:
        """Wake the push-on-change modules (reports were just delivered); True when there are any."""
        for ingested in self._ingest_waiters:
            ingested.set()
        return bool(self._ingest_waiters)
