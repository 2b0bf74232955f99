"""Speaking the wire protocol by hand in tests: DEALER peers that play an agent or a client."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import zmq

from messages import Envelope, Kind
from messages.codec import decode_payload, envelope, pack_one, unpack


class Peer:
    """One DEALER conversation; every receive polls with a deadline."""

    def __init__(self, context: zmq.Context, endpoint: str) -> None:
        self.socket = context.socket(zmq.DEALER)
        self.socket.linger = 0
        self.socket.connect(endpoint)
        self.seen: list[Envelope] = []

    def send(self, kind: int, type: str = "", payload: Any = None, **fields: Any) -> None:
        self.socket.send(pack_one(envelope(kind, type, payload, **fields)))

    def expect(self, match: Callable[[Envelope], bool], timeout: float = 10.0, what: str = "envelope") -> Envelope:
        """The first envelope (already seen or arriving within ``timeout``) for which ``match`` is true."""
        deadline = time.monotonic() + timeout
        while True:
            for index, env in enumerate(self.seen):
                if match(env):
                    return self.seen.pop(index)
            left = deadline - time.monotonic()
            if left <= 0:
                kinds = [(e.kind, e.type) for e in self.seen]
                raise AssertionError(f"no {what} within {timeout} s; got {kinds}")
            if self.socket.poll(int(left * 1000) + 1, zmq.POLLIN):
                self.seen.extend(unpack(self.socket.recv()))

    def close(self) -> None:
        self.socket.close(linger=0)


class Client(Peer):
    """A client: numbered requests, decoded answers."""

    next_id = 0

    def ask(self, type: str, **params: str) -> Envelope:
        Client.next_id += 1
        request_id = Client.next_id
        self.send(Kind.REQUEST, type, request_id=request_id, params=params)
        return self.expect(lambda e: e.request_id == request_id and e.kind in (Kind.RESPONSE, Kind.ERROR),
                           what=f"answer to {type}")

    def answer(self, type: str, **params: str) -> Any:
        env = self.ask(type, **params)
        assert env.kind == Kind.RESPONSE, (env.error_code, env.error)
        return decode_payload(env.payload, env.encoding, env.schema)
