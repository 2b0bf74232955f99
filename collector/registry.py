"""The node registry: which agent connection speaks for which node, and who is live.

The registry owns liveness (the collector needs it for heartbeats and
``on_node_left``); modules read it through the CollectorAPI.
"""

from __future__ import annotations

from dataclasses import dataclass

from collector.addons import NodeRecord
from messages import NodeInfo


@dataclass
class Session:
    """One agent connection (ZeroMQ routing id) and the node it said HELLO for."""

    ident: bytes
    record: NodeRecord


class NodeRegistry:
    """Nodes by id and agent connections by routing id."""

    def __init__(self) -> None:
        self.records: dict[str, NodeRecord] = {}
        self.sessions: dict[bytes, Session] = {}
        self.idents: dict[str, bytes] = {}  # node -> its agent's current connection

    def claimed_elsewhere(self, ident: bytes, info: NodeInfo) -> bool:
        """True when ``info.node`` is live through another connection of another agent instance.

        The same agent coming back (same ``instance``, e.g. restarted on its data
        dir) is never refused.
        """
        record = self.records.get(info.node)
        if record is None or record.status != "live" or record.info.instance == info.instance:
            return False
        session = self._session_of(info.node)
        return session is not None and session.ident != ident and session.record is record

    def hello(self, ident: bytes, info: NodeInfo, first_seq: int, now: float) -> tuple[NodeRecord, bool]:
        """Register a HELLO; returns the node's record and whether it (re)joined.

        A new node, or a node whose agent started with a fresh outbox (new
        ``instance``), adopts the agent's numbering: everything before
        ``first_seq`` counts as already applied.
        """
        record = self.records.get(info.node)
        joined = record is None or record.status != "live"
        if record is None:
            record = NodeRecord(node=info.node, first_seen=now)
            self.records[info.node] = record
            known_instance = None
        else:
            record.reconnects += 1
            known_instance = record.info.instance
        if known_instance != info.instance:
            record.last_seq = max(0, first_seq - 1)
        self._forget_node_sessions(info.node)
        self.sessions[ident] = Session(ident, record)
        self.idents[info.node] = ident
        record.info = info
        record.last_seen = now
        record.status = "live"
        return record, joined

    def _session_of(self, node: str) -> Session | None:
        """The node's session, or None. A node has at most one, on its ``idents`` connection (hello()
        keeps it so): no scan of every session, which made 5000 agents saying HELLO cost 25 million steps."""
        ident = self.idents.get(node)
        session = None if ident is None else self.sessions.get(ident)
        return session if session is not None and session.record.node == node else None

    def _forget_node_sessions(self, node: str) -> None:
        session = self._session_of(node)
        if session is not None:
            del self.sessions[session.ident]

    def restore(self, records: list[NodeRecord]) -> None:
        """Take back the nodes a previous run recorded (all ``lost`` until they say HELLO)."""
        for record in records:
            self.records[record.node] = record

    def ident_of(self, node: str) -> bytes | None:
        """The connection of ``node``'s agent, or None before its HELLO."""
        return self.idents.get(node)

    def session(self, ident: bytes) -> Session | None:
        """The session of an agent connection, or None before its HELLO."""
        return self.sessions.get(ident)

    def revive(self, record: NodeRecord, now: float) -> bool:
        """Mark a node heard from; returns True when it was lost and is live again."""
        record.last_seen = now
        if record.status == "live":
            return False
        record.status = "live"
        record.reconnects += 1
        return True

    def expire(self, now: float, timeout: float) -> list[NodeRecord]:
        """Mark live nodes silent for longer than ``timeout`` as lost; returns them.

        A site's node (at a top collector) is left alone: its site says when it is lost (collector/site_view.py).
        """
        lost = [r for r in self.records.values() if r.status == "live" and not r.site and now - r.last_seen > timeout]
        for record in lost:
            record.status = "lost"
        return lost

    def leave(self, record: NodeRecord) -> bool:
        """Mark a node lost at once (BYE); returns True when it was live."""
        was_live = record.status == "live"
        record.status = "lost"
        return was_live
