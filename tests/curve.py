"""A real CURVE server for client and agent tests: a ROUTER with ``curve_server`` and ZAP on 127.0.0.1.

It plays a minimal collector by hand, in its own thread: HELLO is answered with
HELLO{CollectorInfo} (and an ACK for an agent's HELLO), REQUEST with an empty
msgpack RESPONSE, REPORTs with an ACK. Every frame's ZAP ``User-Id`` (the peer's
Z85 public key) is recorded. Only the public keys in :attr:`allowed` get in; a
key added later is let in from the next handshake on.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import zmq
from zmq.auth.thread import ThreadAuthenticator

from messages import CollectorInfo, Envelope, Kind
from messages.codec import envelope, pack, unpack
from messages.keys import Certificate, generate

POLL_MS = 50


class _Allowed:
    """ZAP's CURVE callback: a key is allowed while it is in the set."""

    def __init__(self) -> None:
        self.keys: set[bytes] = set()

    def callback(self, domain: str, key: bytes) -> bool:
        return key in self.keys


class CurveServer:
    """A CURVE ROUTER, its authenticator and a serving thread; see the module's docstring."""

    def __init__(self, context: zmq.Context, folder: Path, curve: bool = True) -> None:
        self.cert: Certificate = generate(folder, "collector")
        self.public_file = folder / "collector.key"
        self._allowed = _Allowed()
        self.auth: ThreadAuthenticator | None = None
        if curve:
            self.auth = ThreadAuthenticator(context)
            self.auth.start()
            self.auth.configure_curve_callback("*", self._allowed)
        self.socket = context.socket(zmq.ROUTER)
        self.socket.linger = 0
        if curve:
            self.socket.curve_server = True
            self.socket.curve_publickey = self.cert.public
            assert self.cert.secret is not None
            self.socket.curve_secretkey = self.cert.secret
        self.port = self.socket.bind_to_random_port("tcp://127.0.0.1")
        self.endpoint = f"tcp://127.0.0.1:{self.port}"
        self.user_ids: list[str] = []
        self.seen: list[Envelope] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="curve-server", daemon=True)
        self._thread.start()

    def allow(self, cert: Certificate) -> None:
        """Let ``cert``'s public key in from the next handshake on."""
        self._allowed.keys.add(cert.public)

    def _serve(self) -> None:
        while not self._stop.is_set():
            if not self.socket.poll(POLL_MS):
                continue
            ident, frame = self.socket.recv_multipart(copy=False)
            self.user_ids.append(frame.get("User-Id") if self.auth is not None else "")
            for env in unpack(frame.bytes):
                self.seen.append(env)
                self._answer(ident.bytes, env)

    def _answer(self, ident: bytes, env: Envelope) -> None:
        answers: list[Envelope] = []
        if env.kind == Kind.HELLO:
            answers.append(envelope(Kind.HELLO, "CollectorInfo", CollectorInfo(alias="curve", heartbeat_interval=1.0)))
            if env.node:
                answers.append(envelope(Kind.ACK, node=env.node, seq=max(0, env.seq - 1)))
        elif env.kind == Kind.REQUEST:
            answers.append(envelope(Kind.RESPONSE, env.type, {"ok": True}, request_id=env.request_id))
        elif env.kind == Kind.REPORT:
            answers.append(envelope(Kind.ACK, node=env.node, seq=env.seq))
        if answers:
            self.socket.send_multipart([ident, pack(answers)])

    def close(self) -> None:
        """Stop the thread, close the socket and stop the authenticator."""
        self._stop.set()
        self._thread.join(5)
        self.socket.close(linger=0)
        if self.auth is not None:
            self.auth.stop()


@contextmanager
def curve_server(context: zmq.Context, folder: Path, curve: bool = True) -> Iterator[CurveServer]:
    """A :class:`CurveServer` (``curve=False``: a plain one) closed at the end."""
    folder.mkdir(parents=True, exist_ok=True)
    server = CurveServer(context, folder, curve)
    try:
        yield server
    finally:
        server.close()


__all__ = ["CurveServer", "curve_server"]
