"""The agent's DEALER socket to the collector: open, reopen, send, drain, poll.

Plain pyzmq on one thread (no gevent): the agent must stay well under a
percent of a core, and one poller whose timeout is the time until the next
due event costs nothing while idle.

With CURVE keys every new socket is a CURVE client of the collector, and its
handshake is watched (messages/handshake.py): :attr:`Link.refusal` says why
the collector refused it. libzmq does not retry a refused handshake; the
agent's HELLO retry opens a new socket, so a key added to the collector's
allow folder later lets the agent in without a restart.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator

import zmq

from messages.codec import DEFAULT_MAX_FRAME_BYTES
from messages.handshake import HandshakeWatch
from messages.keys import ClientKeys

__all__ = ["Link"]

log = logging.getLogger(__name__)


class Link:
    """One DEALER connected to the collector, replaced whole on a reconnect.

    Wake-up sockets (see :meth:`watch`) are polled beside the DEALER, so that
    a signal, or a worker thread with an answer to send, interrupts a long
    poll at once.
    """

    def __init__(self, context: zmq.Context[zmq.Socket[bytes]], endpoint: str, keys: ClientKeys | None = None) -> None:
        self.context = context
        self.endpoint = endpoint
        self.keys = keys
        self.socket: zmq.Socket[bytes] | None = None
        self._handshake: HandshakeWatch | None = None
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
        if self.keys is not None:
            self.keys.apply(sock)
        self._handshake = HandshakeWatch(sock, curve=self.keys is not None)
        if self._handshake.monitor is not None:
            self._poller.register(self._handshake.monitor, zmq.POLLIN)
        # Frames past DEFAULT_MAX_FRAME_BYTES are dropped unparsed (Agent._receive); past four times that,
        # libzmq refuses to buffer them at all and drops the connection (the agent then reconnects).
        sock.setsockopt(zmq.MAXMSGSIZE, 4 * DEFAULT_MAX_FRAME_BYTES)
        sock.connect(self.endpoint)
        self._poller.register(sock, zmq.POLLIN)
        self.socket = sock
        log.debug("connecting to %s", self.endpoint)

    def close(self, linger_ms: int = 0) -> None:
        """Close the socket; ``linger_ms`` lets queued frames go out for that long."""
        if self._handshake is not None:
            if self._handshake.monitor is not None:
                self._poller.unregister(self._handshake.monitor)
            self._handshake.close()
            self._handshake = None
        if self.socket is None:
            return
        self._poller.unregister(self.socket)
        self.socket.close(linger=linger_ms)
        self.socket = None

    @property
    def refusal(self) -> str | None:
        """Why the collector refused the current socket's handshake (messages/keys.py's lines), or None."""
        return None if self._handshake is None else self._handshake.refusal

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
        watch = self._handshake
        if watch is not None and watch.monitor is not None and watch.monitor in events:
            watch.check()
        return self.socket is not None and bool(events.get(self.socket, 0) & zmq.POLLIN)

    @staticmethod
    def _drain_wake(wake: socket.socket) -> None:
        try:
            while wake.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass
