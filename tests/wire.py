"""Speaking the wire protocol by hand in tests: DEALER peers that play an agent or a client."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any

import zmq

from messages import Envelope, Kind, NodeList, NodeStatus
from messages.codec import decode_payload, envelope, pack_one, unpack
from messages.keys import ClientKeys


class Peer:
    """One DEALER conversation; every receive polls with a deadline.

    ``curve``: speak CURVE with these keys; ``routing_id``: the identity the collector's ROUTER sees.
    """

    def __init__(
        self,
        context: zmq.Context,
        endpoint: str,
        curve: ClientKeys | None = None,
        routing_id: bytes | None = None,
    ) -> None:
        self.socket = context.socket(zmq.DEALER)
        self.socket.linger = 0
        if curve is not None:
            curve.apply(self.socket)
        if routing_id is not None:
            self.socket.routing_id = routing_id
        self.socket.connect(endpoint)
        self.seen: list[Envelope] = []

    def send(self, kind: int, type: str = "", payload: Any = None, **fields: Any) -> None:
        self.socket.send(pack_one(envelope(kind, type, payload, **fields)))

    def expect(self, match: Callable[[Envelope], bool], timeout: float = 10.0, what: str = "envelope") -> Envelope:
        """The first envelope (already seen or arriving within ``timeout``) for which ``match`` is true."""
        env = self.poll_for(match, timeout)
        if env is None:
            kinds = [(e.kind, e.type) for e in self.seen]
            raise AssertionError(f"no {what} within {timeout} s; got {kinds}")
        return env

    def poll_for(self, match: Callable[[Envelope], bool], timeout: float) -> Envelope | None:
        """Like :meth:`expect`, but None when nothing matches within ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            for index, env in enumerate(self.seen):
                if match(env):
                    return self.seen.pop(index)
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            if self.socket.poll(int(left * 1000) + 1, zmq.POLLIN):
                self.seen.extend(unpack(self.socket.recv()))

    def close(self, linger_ms: int = 0) -> None:
        """Close the socket; ``linger_ms`` > 0 first lets what was sent leave (a played agent's last chunks)."""
        self.socket.close(linger=linger_ms)


class Client(Peer):
    """A client: numbered requests, decoded answers."""

    next_id = 0

    def send_request(self, type: str, **params: str) -> int:
        """Send a REQUEST; returns its request id."""
        Client.next_id += 1
        self.send(Kind.REQUEST, type, request_id=Client.next_id, params=params)
        return Client.next_id

    def ask(self, type: str, timeout: float = 10.0, **params: str) -> Envelope:
        """The RESPONSE or ERROR to a new request; fails the test after ``timeout`` s."""
        request_id = self.send_request(type, **params)
        return self.expect(partial(_answers, request_id), timeout, what=f"answer to {type}")

    def answer(self, type: str, **params: str) -> Any:
        env = self.ask(type, **params)
        assert env.kind == Kind.RESPONSE, (env.error_code, env.error)
        return decode_payload(env.payload, env.encoding, env.schema)

    def node(self, node: str, timeout: float = 3.0) -> NodeStatus | None:
        """The collector's NodeStatus of ``node``; None when unknown, refused or not answered within ``timeout``."""
        env = self.poll_for(partial(_answers, self.send_request("NodeList", node=node)), timeout)
        if env is None or env.kind != Kind.RESPONSE:
            return None
        nodes = decode_payload(env.payload, env.encoding, env.schema)
        assert isinstance(nodes, NodeList)
        return nodes.nodes[0] if nodes.nodes else None


def _answers(request_id: int, env: Envelope) -> bool:
    return env.request_id == request_id and env.kind in (Kind.RESPONSE, Kind.ERROR)
