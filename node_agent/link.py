"""The agent's DEALER socket to the collector: open, reopen, send, drain, poll.

Plain pyzmq on one thread (no gevent): the agent must stay well under a
percent of a core, and one poller whose timeout is the time until the next
due event costs nothing while idle.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator

import zmq

from messages.codec import DEFAULT_MAX_FRAME_BYTES

__all__ = ["Link"]

log = logging.getLogger(__name__)


class Link:
    """One DEALER connected to the collector, replaced whole on a reconnect.

    Wake-up sockets (see :meth:`watch`) are polled beside the DEALER, so that
    a signal, or a worker thread with an answer to send, interrupts a long
    poll at once.
    """

    def __init__(self, context: zmq.Context[zmq.Socket[bytes]], endpoint: str) -> None:
        self.context = context
        self.endpoint = endpoint
        self.socket: zmq.Socket[bytes] | None = None
        self._wakes: dict[str, socket.socket] = {}
        self._poller = zmq.Poller()

    def watch(self, wake: socket.socket | None, slot: str = "signal") -> None:
        """Poll ``wake`` (a non-blocking socket, e.g. the signal wake-up pair) in ``slot``; None empties it."""
        old = self._wakes.pop(slot, None)
        if old is not None:
            self._poller.unregister(old.fileno())
        if wake is not None:
            self._wakes[slot] = wake
            self._poller.register(wake.fileno(), zmq.POLLIN)

    def open(self) -> None:
        """Close the current socket (dropping what it still queues) and connect a new one."""
        self.close()
        sock = self.context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        # Frames past DEFAULT_MAX_FRAME_BYTES are dropped unparsed (Agent._receive); past four times that,
        # libzmq refuses to buffer them at all and drops the connection (the agent then reconnects).
        sock.setsockopt(zmq.MAXMSGSIZE, 4 * DEFAULT_MAX_FRAME_BYTES)
        sock.connect(self.endpoint)
        self._poller.register(sock, zmq.POLLIN)
        self.socket = sock
        log.debug("connecting to %s", self.endpoint)

    def close(self, linger_ms: int = 0) -> None:
        """Close the socket; ``linger_ms`` lets queued frames go out for that long."""
        if self.socket is None:
            return
        self._poller.unregister(self.socket)
        self.socket.close(linger=linger_ms)
        self.socket = None

    def send(self, frame: bytes) -> bool:
        """Queue one frame without blocking; False when the socket cannot take it now.

        A frame with a ``bulk`` attribute (node_agent.pool.TwoPart, a streamed
        CHUNK) leaves as the two-part message ``[frame, bulk]``.
        """
        if self.socket is None:
            return False
        bulk = getattr(frame, "bulk", None)
        try:
            if bulk is None:
                self.socket.send(frame, zmq.NOBLOCK)
            else:
                # copy=False: zmq keeps a reference to the bytes instead of copying 1 MiB.
                self.socket.send_multipart((bytes(frame), bulk), zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return False
        return True

    def receive(self) -> Iterator[bytes]:
        """Every frame readable right now (a DEALER frame is one part)."""
        while self.socket is not None:
            try:
                parts = self.socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(parts) != 1:
                log.debug("dropping a %d-part message from the collector", len(parts))
                continue
            yield parts[0]

    def poll(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a frame or a wake-up; True when a frame is readable."""
        events = dict(self._poller.poll(max(0, int(timeout * 1000 + 0.999))))
        for wake in self._wakes.values():
            if events.get(wake.fileno(), 0) & zmq.POLLIN:
                self._drain_wake(wake)
        return self.socket is not None and bool(events.get(self.socket, 0) & zmq.POLLIN)

    @staticmethod
    def _drain_wake(wake: socket.socket) -> None:
        try:
            while wake.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass
