"""Server-sent events: the node table, live, to a bounded number of browsers.

One greenlet (:meth:`NodeFeed.run`) builds the node view every ``interval``
seconds while anyone listens and wakes the listeners when it changed; each
listener's response is a generator that waits on a gevent Event, so a
browser that reads slowly costs its own greenlet, never the collector's loop.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import gevent
import gevent.event

from collector.greenwait import wait_event
from messages.logs import ThrottledLog

__all__ = ["KEEPALIVE", "MAX_LISTENERS", "NodeFeed"]

log = logging.getLogger(__name__)

MAX_LISTENERS = 16  # browsers streaming at once; beyond: 503
KEEPALIVE = 15.0  # seconds between comments that keep idle connections (and proxies) open


class NodeFeed:
    """The latest node view as JSON text, with a version that grows whenever it changes."""

    def __init__(self, snapshot: Callable[[], list[dict[str, Any]]], interval: float = 0.5) -> None:
        self.snapshot = snapshot
        self.interval = interval
        self.version = 0
        self.text = ""
        self.listeners = 0
        self._changed = gevent.event.Event()
        self.throttled = ThrottledLog(log)

    def run(self) -> None:
        """Refresh the view forever while someone listens; runs in its own greenlet."""
        while True:
            if self.listeners:
                try:
                    self.refresh()
                except Exception as exc:  # a module's answer went wrong: the page waits, the collector goes on
                    self.throttled.warning(
                        "web-feed", "web page: cannot build the node view: %s: %s", type(exc).__name__, exc
                    )
            gevent.sleep(self.interval)

    def refresh(self) -> None:
        """Build the view now; wake the listeners when it changed."""
        text = json.dumps(self.snapshot(), separators=(",", ":"))
        if text == self.text:
            return
        self.text = text
        self.version += 1
        changed, self._changed = self._changed, gevent.event.Event()
        changed.set()

    def full(self) -> bool:
        """True when MAX_LISTENERS browsers are streaming already."""
        return self.listeners >= MAX_LISTENERS

    def events(self, keepalive: float = KEEPALIVE) -> Iterator[bytes]:
        """One listener's SSE body: the view now, then every change, with a comment when idle."""
        self.listeners += 1
        try:
            self.refresh()  # the feed sleeps while nobody listens: start from the present
            seen = 0
            yield b"retry: 2000\n\n"
            while True:
                if self.version != seen:
                    seen = self.version
                    yield f"event: nodes\ndata: {self.text}\n\n".encode()
                elif not wait_event(self._changed, keepalive):  # shared by every listener: collector/greenwait.py
                    yield b": keepalive\n\n"
        finally:
            self.listeners -= 1
