"""Watch a connecting socket's ZMTP handshake: tell a refused CURVE key from a collector that is slow.

A DEALER whose handshake fails hears nothing, ever: the reason is only on the
socket's monitor (libzmq 4.3.5, measured)::

    unknown client key (ZAP says 400)      HANDSHAKE_FAILED_AUTH
    plain client, CURVE collector          HANDSHAKE_FAILED_PROTOCOL (ZMTP mechanism mismatch), or,
                                           from another process, as often HANDSHAKE_FAILED_NO_DETAIL
                                           (EPIPE: the collector hung up before the client read its
                                           greeting), again on every reconnect
    CURVE client, plain collector          HANDSHAKE_FAILED_PROTOCOL (ZMTP mechanism mismatch)
    CURVE client, wrong collector key      HANDSHAKE_FAILED_NO_DETAIL, again on every reconnect
    accepted                               HANDSHAKE_SUCCEEDED

After an AUTH or PROTOCOL failure libzmq does not reconnect that socket: a
caller that wants to try again (the agent, once an operator has added its key)
opens a new one. :class:`HandshakeWatch` reads those events without blocking;
its monitor socket may be polled beside the watched one, so a refusal
interrupts a wait at once. This module imports nothing else of the project
but :mod:`messages.keys`.
"""

from __future__ import annotations

import struct
from typing import Any

import zmq

from messages.keys import NOT_CURVE, REFUSED_KEY, REQUIRES_CURVE, WRONG_SERVER_KEY

__all__ = ["NO_DETAIL_LIMIT", "HandshakeWatch", "monitor_event"]

# CURVE handshakes that fail without a reason, in a row, before we call the collector's key wrong.
NO_DETAIL_LIMIT = 3
_EVENTS = (
    zmq.EVENT_HANDSHAKE_SUCCEEDED
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
)


def monitor_event(first_frame: bytes) -> int:
    """The event id of a socket monitor message (its first frame: uint16 event, int32 value, native order).

    Read here rather than with ``zmq.utils.monitor``, which imports asyncio: about 4 MB of the agent's memory.
    """
    return int(struct.unpack_from("=H", first_frame)[0])


class HandshakeWatch:
    """The handshake events of one socket; :attr:`refusal` is why the collector refused it, or None.

    ``curve`` says whether the socket is a CURVE client (that decides what a
    mechanism mismatch means). Create it before ``connect``; :meth:`close` it
    before closing the socket.
    """

    def __init__(self, sock: zmq.Socket[Any], curve: bool) -> None:
        self.curve = curve
        self.refusal: str | None = None
        self.succeeded = False
        self._sock = sock
        self._no_detail = 0
        self.monitor: zmq.Socket[Any] | None = sock.get_monitor_socket(_EVENTS)

    def check(self) -> str | None:
        """Read every pending event without blocking; returns :attr:`refusal`."""
        monitor = self.monitor
        while monitor is not None:
            try:
                frames = monitor.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            self._take(monitor_event(frames[0]))
        return self.refusal

    def _take(self, event: int) -> None:
        if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            self.refusal, self.succeeded, self._no_detail = None, True, 0
        elif event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            self.refusal = REFUSED_KEY
        elif event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
            self.refusal = NOT_CURVE if self.curve else REQUIRES_CURVE
        elif event == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:
            # A CURVE client with the wrong collector key sees only these (the collector cannot read
            # its HELLO and hangs up); so may a plain client of a CURVE collector, when the collector
            # hangs up before the client has read the mechanism it asks for (a race of two processes).
            self._no_detail += 1
            if self._no_detail >= NO_DETAIL_LIMIT:
                self.refusal = WRONG_SERVER_KEY if self.curve else REQUIRES_CURVE

    def close(self) -> None:
        """Stop monitoring and close the monitor socket; safe to call twice."""
        monitor, self.monitor = self.monitor, None
        if monitor is None:
            return
        if not self._sock.closed:
            try:
                self._sock.disable_monitor()
            except zmq.ZMQError:
                pass  # the context is going away: nothing to stop
        monitor.close(linger=0)
