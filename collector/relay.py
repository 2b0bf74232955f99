"""Requests to nodes: forward a client's REQUEST to an agent and relay the answer back.

The collector gives each forwarded request an id of its own (agents never see
clients' ids), relays RESPONSE / ERROR / CHUNK back under the client's id, and
relays CREDIT the other way. It holds no chunk longer than it takes to pass it
on, so flow control stays end to end between the client and the agent.

At a top collector (docs/sites.md) a node of a site has no agent here: its
requests, CREDITs and cancels go to the site over NATS through ``to_site``
(collector/top_commands.py), and its answers come back through
:meth:`Relay.from_agent` as an agent's do.

Every request to a node is written to the audit trail (collector/audit.py)
before it is forwarded, and its outcome once known; a request whose audit row
cannot be written is answered ``busy`` and not forwarded.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import zmq

from collector.addons import NodeRecord
from collector.audit import AuditFailed, AuditTrail
from collector.registry import NodeRegistry
from messages import Code, Envelope, Kind
from messages.codec import envelope

log = logging.getLogger(__name__)

Send = Callable[[bytes, Envelope], None]
Target = Callable[[Envelope], None]


class SiteSend(Protocol):
    """Send an envelope for node ``record`` to its site; ``who`` and ``fingerprint`` name the requester."""

    def __call__(self, record: NodeRecord, env: Envelope, who: str = "", fingerprint: str = "") -> None: ...


class ClientSend(Protocol):
    """Send an envelope to a client; ``bulk`` (a CHUNK's bytes) goes as a second part, uncopied."""

    def __call__(self, ident: bytes, env: Envelope, bulk: zmq.Frame | bytes | None = None) -> None: ...


@dataclass
class Pending:
    """One forwarded request: who asked (connection), its audit entry, which node answers, and until when we wait."""

    client: bytes
    client_id: int
    node: str
    type: str
    deadline: float
    audit_id: int = 0
    streamed: bool = False  # the REQUEST carried a credit: a stream, as client_max_streams counts them
    bytes: int = 0  # streamed so far


class Relay:
    """Forwarded requests by the collector's own request id."""

    def __init__(
        self, registry: NodeRegistry, timeout: float, to_agent: Send, to_client: ClientSend, audit: AuditTrail
    ) -> None:
        self.registry = registry
        self.audit = audit
        self.timeout = timeout
        self.to_agent = to_agent
        self.to_client = to_client
        self.pending: dict[int, Pending] = {}
        self.by_client: dict[tuple[bytes, int], int] = {}
        self.ids = itertools.count(1)
        self.to_site: SiteSend | None = None  # set at a top collector

    def forward(self, client: bytes, env: Envelope, who: str = "", fingerprint: str = "") -> None:
        """Audit a client's REQUEST, then send it on to the node named by ``params["node"]``, or answer why not.

        ``who`` and ``fingerprint`` name the client in the audit trail: its key's name
        and fingerprint with CURVE, its address and "" without. A type the
        agent's NodeInfo.request_types does not list is ``unknown-type`` at once,
        without bothering the agent (an agent that lists no types is asked anything).
        """
        node = env.params.get("node", "")
        record = self.registry.records.get(node)
        ident = self.registry.ident_of(node)
        refusal = self._refusal(node, env.type, ident)
        try:
            audit_id = self.audit.record(who, fingerprint, env.type, env.params, node, refusal[0] if refusal else None)
        except AuditFailed as exc:
            refusal = Code.BUSY, f"the collector cannot write its audit trail ({exc}); no request reaches a node"
        if refusal is not None or record is None:
            self._refuse(client, env, *(refusal or (Code.NODE_LOST, f"node {node} is lost")))
            return
        rid = next(self.ids)
        deadline = time.monotonic() + self.timeout
        streamed = "credit" in env.params
        self.pending[rid] = Pending(client, env.request_id, node, env.type, deadline, audit_id, streamed)
        self.by_client[(client, env.request_id)] = rid
        request = envelope(Kind.REQUEST, type=env.type, request_id=rid, params=dict(env.params))
        if record.site and self.to_site is not None:
            self.to_site(record, request, who, fingerprint)
        elif ident is not None:
            self.to_agent(ident, request)

    def _target(self, node: str) -> Target | None:
        """Where envelopes for ``node`` go: its site (a top collector's site node), its agent, or None (gone)."""
        record = self.registry.records.get(node)
        to_site = self.to_site
        if record is not None and record.site and to_site is not None:
            return lambda env: to_site(record, env)
        ident = self.registry.ident_of(node)
        return None if ident is None else lambda env: self.to_agent(ident, env)

    def _refusal(self, node: str, type: str, ident: bytes | None) -> tuple[str, str] | None:
        """Why a ``type`` request cannot be forwarded to ``node`` (code, reason), or None when it can."""
        record = self.registry.records.get(node)
        if record is None:
            return Code.NOT_FOUND, f"no node named {node!r} is known to this collector"
        routed = ident is not None or (bool(record.site) and self.to_site is not None)
        if record.status != "live" or not routed:
            return Code.NODE_LOST, f"node {node} is lost (silent past the node timeout)"
        if not _lists(record.info.request_types, type):
            answered = ", ".join(record.info.request_types)
            return Code.UNKNOWN_TYPE, f"node {node} answers no {type!r} request (it answers {answered})"
        return None

    def open_streams(self, client: bytes) -> int:
        """How many forwarded stream requests of ``client`` are still running."""
        return sum(p.streamed and p.client == client for p in self.pending.values())

    def _refuse(self, client: bytes, env: Envelope, code: str, reason: str) -> None:
        self.to_client(
            client, envelope(Kind.ERROR, type=env.type, request_id=env.request_id, error_code=code, error=reason)
        )

    def from_agent(self, env: Envelope, bulk: zmq.Frame | bytes | None = None) -> bool:
        """Relay an agent's (or a site's) RESPONSE / ERROR / CHUNK; False when it answers nothing pending.

        ``bulk`` is a two-part CHUNK's bytes: forwarded as they came, only the header is rewritten.
        """
        pending = self.pending.get(env.request_id)
        if pending is None:
            return False
        if env.kind == Kind.CHUNK:
            pending.bytes += len(bulk) if bulk is not None else len(env.payload)
        if env.kind == Kind.CHUNK and not env.last:
            pending.deadline = time.monotonic() + self.timeout
        else:
            self._forget(env.request_id)
            self._finish(pending, (env.error_code or "error") if env.kind == Kind.ERROR else "ok")
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
        target = self._target(self.pending[rid].node)
        if target is not None:
            target(envelope(Kind.CREDIT, request_id=rid, seq=env.seq, params=dict(env.params)))
        if env.params.get("cancel") == "1":
            self._finish(self._forget(rid), "cancelled")
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
        self._finish(pending, code)
        target = self._target(pending.node)
        if target is not None and code == Code.TIMEOUT:  # stop the agent's worker now, not at its own timeout
            target(envelope(Kind.CREDIT, request_id=rid, params={"cancel": "1"}))
        self.to_client(
            pending.client,
            envelope(Kind.ERROR, type=pending.type, request_id=pending.client_id, error_code=code, error=reason),
        )

    def _finish(self, pending: Pending, outcome: str) -> None:
        """Record the outcome in the audit trail: the bytes too when the answer was streamed."""
        self.audit.finish(pending.audit_id, outcome, pending.bytes if pending.streamed or pending.bytes else None)

    def _forget(self, rid: int) -> Pending:
        pending = self.pending.pop(rid)
        self.by_client.pop((pending.client, pending.client_id), None)
        return pending


def _lists(request_types: Sequence[str], type: str) -> bool:
    """Whether an agent's NodeInfo.request_types admits ``type``; an agent that lists none is asked anyway."""
    return not request_types or type in request_types
