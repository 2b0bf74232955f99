"""The one fake collector of the tests: a real ROUTER on 127.0.0.1 that plays the collector's side by hand.

It records every envelope it receives and answers through a handler the test supplies. A test
services it by hand (``recv``, ``expect``, ``serve``), or lets a thread serve it (``start``); never
both at once, since a ZeroMQ socket belongs to one thread at a time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

import zmq

from messages import CollectorInfo, Envelope, Kind
from messages.codec import envelope, pack, unpack

# A handler returns what to send back for one received envelope: each item is one frame
# (a list of envelopes is one batch). It may return nothing.
Answer = Envelope | list[Envelope]
Handler = Callable[[Envelope], Iterable[Answer]]
# Sees every received frame (identity, its envelopes) before ``expect`` looks at it.
OnFrame = Callable[[bytes, list[Envelope]], None]


class FakeCollector:
    """A ROUTER bound to a random (or the given) loopback port; every receive polls with a deadline."""

    def __init__(
        self,
        context: zmq.Context,
        handler: Handler | None = None,
        port: int | None = None,
        info: CollectorInfo | None = None,
    ) -> None:
        self.socket = context.socket(zmq.ROUTER)
        self.socket.linger = 0
        self.port = self.socket.bind_to_random_port("tcp://127.0.0.1") if port is None else self._bind(port)
        self.endpoint = f"tcp://127.0.0.1:{self.port}"
        self.handler = handler
        self.info = info or CollectorInfo(alias="fake", heartbeat_interval=1.0)  # what ``welcome`` tells
        self.seen: list[Envelope] = []
        self.raw: list[bytes] = []  # frames sent, in order, before the next answer
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _bind(self, port: int) -> int:
        # A previous socket on this port is closed asynchronously by libzmq's I/O thread.
        deadline = time.monotonic() + 5
        while True:
            try:
                self.socket.bind(f"tcp://127.0.0.1:{port}")
                return port
            except zmq.ZMQError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    # ------------------------------------------------------------ receiving

    def recv(self, timeout: float) -> tuple[bytes, list[Envelope]] | None:
        """One frame (identity, envelopes), recorded and answered by the handler; None after ``timeout`` s."""
        if not self.socket.poll(max(0, int(timeout * 1000))):
            return None
        ident, frame, *bulk = self.socket.recv_multipart()
        envs = list(unpack(frame))
        if bulk:  # a two-part CHUNK: its bytes ride in the second part
            envs[0].payload = bulk[0]
        for env in envs:
            self.seen.append(env)
            if self.handler is not None:
                self._answer(ident, env, self.handler)
        return ident, envs

    def _answer(self, ident: bytes, env: Envelope, handler: Handler) -> None:
        while self.raw:
            self.socket.send_multipart([ident, self.raw.pop(0)])
        for out in handler(env):
            self.socket.send_multipart([ident, pack(out if isinstance(out, list) else [out])])

    def serve(self) -> int:
        """Handle every frame already waiting, without blocking; returns how many."""
        handled = 0
        while self.recv(0) is not None:
            handled += 1
        return handled

    def serving(self, condition: Callable[[], object]) -> Callable[[], bool]:
        """A predicate for a polling wait (``qtbot.waitUntil``) that serves, then checks ``condition``."""

        def check() -> bool:
            self.serve()
            return bool(condition())

        return check

    def expect(self, kind: int, timeout: float = 5.0, on_frame: OnFrame | None = None) -> tuple[bytes, Envelope]:
        """Read until an envelope of ``kind`` arrives; ``on_frame(ident, envs)`` sees every frame first."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            got = self.recv(left)
            if got is None:
                break
            ident, envs = got
            if on_frame is not None:
                on_frame(ident, envs)
            for env in envs:
                if env.kind == kind:
                    return ident, env
        raise AssertionError(f"no {Kind.Name(kind)} within {timeout} s; saw {[Kind.Name(e.kind) for e in self.seen]}")

    def kinds(self, kind: int) -> list[Envelope]:
        """Every received envelope of ``kind``."""
        return [env for env in list(self.seen) if env.kind == kind]

    def reports(self, type: str = "SystemStats") -> list[Envelope]:
        """Every received REPORT of ``type``."""
        return [env for env in list(self.seen) if env.kind == Kind.REPORT and env.type == type]

    # ------------------------------------------------------------ answering by hand

    def send(self, ident: bytes, *envs: Envelope) -> None:
        """Send ``envs`` to the peer ``ident`` as one batch."""
        self.socket.send_multipart([ident, pack(envs)])

    def welcome(self, ident: bytes, hello: Envelope, ack: int | None = None) -> None:
        """Answer an agent's HELLO the way the collector does: ``info`` + ACK in one batch."""
        seq = hello.seq - 1 if ack is None else ack
        self.send(ident, envelope(Kind.HELLO, "CollectorInfo", self.info), envelope(Kind.ACK, node=hello.node, seq=seq))

    def acker(self, ident_filter: bytes | None = None) -> OnFrame:
        """An ``on_frame`` that acknowledges an agent's reports and answers its heartbeats."""

        def on_frame(ident: bytes, envs: list[Envelope]) -> None:
            if ident_filter is not None and ident != ident_filter:
                return
            seqs = [e.seq for e in envs if e.kind == Kind.REPORT]
            if seqs:
                self.send(ident, envelope(Kind.ACK, node=envs[0].node, seq=max(seqs)))
            if any(e.kind == Kind.HEARTBEAT for e in envs):
                self.send(ident, envelope(Kind.HEARTBEAT))

        return on_frame

    # ------------------------------------------------------------ a serving thread

    def start(self) -> FakeCollector:
        """Serve from a thread until :meth:`close`; the test must not touch the socket meanwhile."""
        self._thread = threading.Thread(target=self._serve_forever, daemon=True)
        self._thread.start()
        return self

    def _serve_forever(self) -> None:
        while not self._stop.is_set():
            self.recv(0.02)

    def close(self) -> None:
        """Stop the thread, if any, then close the socket from this thread; harmless twice."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.socket.close(linger=0)
