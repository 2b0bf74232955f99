"""One NATS connection on an OS thread of its own, between the collector's gevent loop and NATS.

The commands down the tree (collector/top_commands.py at the top,
collector/site_responder.py at a site) publish and receive on NATS without
ever blocking the gevent loop, as the ingest does (collector/ingest.py): a real
OS thread runs an asyncio loop on the real selector (collector/native.py) with
nats-py. The gevent side queues messages with :meth:`NatsThread.post` (the
thread is woken through ``call_soon_threadsafe``); what arrives is appended to
:attr:`NatsThread.inbox` and the gevent side is woken through gevent's
``run_callback_threadsafe``. Both queues hold at most a stream's credit of
chunks per request; their bounds are the caller's (:meth:`full`).
"""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import Any

import gevent
import gevent.event

from collector import sites
from collector.native import new_event_loop, start_thread
from messages.logs import ThrottledLog

__all__ = ["NatsThread", "OversizeError"]

log = logging.getLogger(__name__)
throttled = ThrottledLog(log, period=30.0)  # NATS away: once per 30 s, not once per retry

IDLE = 0.5  # seconds the thread sleeps when nothing is queued (a post wakes it at once)
RETRY = 1.0  # seconds between attempts to reach NATS


class OversizeError(ValueError):
    """A message the server would refuse: its body and headers are above the server's max_payload."""


class NatsThread:
    """A NATS connection in its own thread; subclasses subscribe in :meth:`on_connect`."""

    name = "labscope"

    def __init__(self, servers: list[str], auth: dict[str, Any], limit: int) -> None:
        self.servers = servers
        self.auth = auth
        self.limit = limit  # messages queued each way at most
        self.outbox: collections.deque[tuple[str, bytes, dict[str, str], str]] = collections.deque()
        self.inbox: collections.deque[Any] = collections.deque()
        self.wake = gevent.event.Event()
        self.hub = gevent.get_hub()
        self.running = True
        self.connected = False
        self.publish_failed = 0  # written by the thread only
        self.nc: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready: asyncio.Event | None = None

    def start(self) -> None:
        """Start the thread."""
        start_thread(self._thread_main)

    def stop(self) -> None:
        """Ask the thread to end (it closes the connection)."""
        self.running = False
        self._kick()

    def full(self) -> bool:
        """Whether the outbox holds ``limit`` messages: the caller refuses or drops instead of queueing."""
        return len(self.outbox) >= self.limit

    def post(self, subject: str, data: bytes, headers: dict[str, str] | None = None, reply: str = "") -> None:
        """Queue one message for NATS (from the gevent loop); the thread publishes it in order."""
        self.outbox.append((subject, data, headers or {}, reply))
        self._kick()

    def hand_back(self, item: Any) -> None:
        """From the thread: queue ``item`` for the gevent side and wake it."""
        self.inbox.append(item)
        self.hub.loop.run_callback_threadsafe(self.wake.set)

    def _kick(self) -> None:
        loop, ready = self._loop, self._ready
        if loop is not None and ready is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(ready.set)
            except RuntimeError:  # the loop closed meanwhile
                pass

    async def on_connect(self, nc: Any) -> None:
        """Hook: subscribe on a fresh connection."""

    # ------------------------------------------------------------ the thread

    def _thread_main(self) -> None:
        loop = new_event_loop()
        try:
            loop.run_until_complete(self._run())
        except Exception as exc:  # never expected: logged; the collector keeps running
            log.error("%s: the NATS thread stopped: %s: %s", self.name, type(exc).__name__, exc)
        finally:
            loop.close()

    async def _run(self) -> None:
        import nats

        self._loop, self._ready = asyncio.get_running_loop(), asyncio.Event()
        while self.running:
            if self.nc is None:
                await self._connect(nats)
                continue
            self._ready.clear()
            await self._publish_queued()
            try:
                await asyncio.wait_for(self._ready.wait(), IDLE)
            except TimeoutError:
                pass
        if self.nc is not None:
            await self.nc.close()

    async def _connect(self, nats: Any) -> None:
        try:
            self.nc = await nats.connect(
                self.servers,
                connect_timeout=5,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,
                name=self.name,
                **self.auth,
                **sites.client_callbacks(log, self.name),
            )
            await self.on_connect(self.nc)
            self.connected = True
        except Exception as exc:  # NATS away or this user refused: try again, said once per 30 s
            throttled.warning(self.name, "%s: cannot reach NATS at %s: %s", self.name, ",".join(self.servers), exc)
            if self.nc is not None:
                await self.nc.close()
            self.nc = None
            await asyncio.sleep(RETRY)

    async def _publish_queued(self) -> None:
        while self.outbox:
            subject, data, headers, reply = self.outbox.popleft()
            try:
                size, most = sites.wire_size(data, headers), self.nc.max_payload
                if most and size > most:  # never sent: the server would refuse it
                    raise OversizeError(f"{size} bytes with its headers, the NATS server takes at most {most}")
                await self.nc.publish(subject, data, reply=reply, headers=headers or None)
            except Exception as exc:  # too large, or the connection is down: this message is lost
                self.publish_failed += 1
                await self.on_publish_failed(subject, headers, exc)

    async def on_publish_failed(self, subject: str, headers: dict[str, str], exc: Exception) -> None:
        """Hook: a message could not be published (the request it belongs to times out, or is failed here)."""
        throttled.warning(f"{self.name}-publish", "%s: publishing on %s failed: %s", self.name, subject, exc)
