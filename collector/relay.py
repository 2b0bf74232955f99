"""Requests to nodes: forward a client's REQUEST to an agent and relay the answer back.

The collector gives each forwarded request an id of its own (agents never see
clients' ids), relays RESPONSE / ERROR / CHUNK back under the client's id, and
relays CREDIT the other way. It holds no chunk longer than it takes to pass it
on, so flow control stays end to end between the client and the agent.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import zmq

from collector.peers import Peer
from collector.registry import NodeRegistry
from messages import Code, Envelope, Kind
from messages.codec import envelope

log = logging.getLogger(__name__)

Send = Callable[[bytes, Envelope], None]


class ClientSend(Protocol):
    """Send an envelope to a client; ``bulk`` (a CHUNK's bytes) goes as a second part, uncopied."""

    def __call__(self, ident: bytes, env: Envelope, bulk: zmq.Frame | bytes | None = None) -> None: ...


@dataclass
class Pending:
    """One forwarded request: who asked (connection and ``peer``), which node answers, and until when we wait."""

    client: bytes
    client_id: int
    node: str
    type: str
    deadline: float
    peer: Peer | None = None


class Relay:
    """Forwarded requests by the collector's own request id."""

    def __init__(self, registry: NodeRegistry, timeout: float, to_agent: Send, to_client: ClientSend) -> None:
        self.registry = registry
        self.timeout = timeout
        self.to_agent = to_agent
        self.to_client = to_client
        self.pending: dict[int, Pending] = {}
        self.by_client: dict[tuple[bytes, int], int] = {}
        self.ids = itertools.count(1)

    def forward(self, client: bytes, env: Envelope, peer: Peer | None = None) -> None:
        """Send a client's REQUEST on to the node named by ``params["node"]``, or answer why not.

        A type the agent's NodeInfo.request_types does not list is ``unknown-type`` at once,
        without bothering the agent (an agent that lists no types is asked anything).
        ``peer`` is who asked (key name and fingerprint, or the address without CURVE),
        kept with the pending request for the audit.
        """
        node = env.params.get("node", "")
        record = self.registry.records.get(node)
        ident = self.registry.ident_of(node)
        if record is None:
            self._refuse(client, env, Code.NOT_FOUND, f"no node named {node!r} is known to this collector")
        elif record.status != "live" or ident is None:
            self._refuse(client, env, Code.NODE_LOST, f"node {node} is lost (silent past the node timeout)")
        elif not _lists(record.info.request_types, env.type):
            self._refuse(
                client,
                env,
                Code.UNKNOWN_TYPE,
                f"node {node} answers no {env.type!r} request (it answers {', '.join(record.info.request_types)})",
            )
        else:
            rid = next(self.ids)
            self.pending[rid] = Pending(client, env.request_id, node, env.type, time.monotonic() + self.timeout, peer)
            self.by_client[(client, env.request_id)] = rid
            self.to_agent(ident, envelope(Kind.REQUEST, type=env.type, request_id=rid, params=dict(env.params)))

    def _refuse(self, client: bytes, env: Envelope, code: str, reason: str) -> None:
        self.to_client(
            client, envelope(Kind.ERROR, type=env.type, request_id=env.request_id, error_code=code, error=reason)
        )

    def from_agent(self, env: Envelope, bulk: zmq.Frame | None = None) -> bool:
        """Relay an agent's RESPONSE / ERROR / CHUNK; False when it answers nothing pending.

        ``bulk`` is a two-part CHUNK's bytes: forwarded as they came, only the header is rewritten.
        """
        pending = self.pending.get(env.request_id)
        if pending is None:
            return False
        if env.kind == Kind.CHUNK and not env.last:
            pending.deadline = time.monotonic() + self.timeout
        else:
            self._forget(env.request_id)
        relayed = Envelope()
        relayed.CopyFrom(env)
        relayed.request_id = pending.client_id
        self.to_client(pending.client, relayed, bulk)
        return True

    def credit(self, client: bytes, env: Envelope) -> bool:
        """Relay a client's CREDIT (or cancel) to the agent streaming to it; False when none is."""
        rid = self.by_client.get((client, env.request_id))
        if rid is None:
            return False
        ident = self.registry.ident_of(self.pending[rid].node)
        if ident is not None:
            self.to_agent(ident, envelope(Kind.CREDIT, request_id=rid, seq=env.seq, params=dict(env.params)))
        if env.params.get("cancel") == "1":
            self._forget(rid)
        return True

    def node_lost(self, node: str) -> None:
        """Fail every request waiting on ``node``: it is gone."""
        for rid in [rid for rid, p in self.pending.items() if p.node == node]:
            self._fail(rid, Code.NODE_LOST, f"node {node} was lost while answering")

    def expire(self) -> None:
        """Fail requests whose agent said nothing for the timeout."""
        now = time.monotonic()
        for rid in [rid for rid, p in self.pending.items() if p.deadline < now]:
            self._fail(rid, Code.TIMEOUT, f"node {self.pending[rid].node} did not answer within {self.timeout:g} s")

    def _fail(self, rid: int, code: str, reason: str) -> None:
        pending = self._forget(rid)
        ident = self.registry.ident_of(pending.node)
        if ident is not None and code == Code.TIMEOUT:  # stop the agent's worker now, not at its own timeout
            self.to_agent(ident, envelope(Kind.CREDIT, request_id=rid, params={"cancel": "1"}))
        self.to_client(
            pending.client,
            envelope(Kind.ERROR, type=pending.type, request_id=pending.client_id, error_code=code, error=reason),
        )

    def _forget(self, rid: int) -> Pending:
        pending = self.pending.pop(rid)
        self.by_client.pop((pending.client, pending.client_id), None)
        return pending


def _lists(request_types: Sequence[str], type: str) -> bool:
    """Whether an agent's NodeInfo.request_types admits ``type``; an agent that lists none is asked anyway."""
    return not request_types or type in request_types
