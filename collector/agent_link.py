"""The agents' side of the collector: ingest REPORTs, answer HELLOs and heartbeats, send ACKs.

Performance choice: this socket is a *plain* pyzmq ROUTER owned by one
greenlet, drained with NOBLOCK and parked on ``gevent.socket.wait_read(FD)``
only when it would block. Measured on our 2-core machines this "hybrid" loop
moves ~790k msg/s against ~60-110k/s through ``zmq.green`` sockets, which
re-check socket state after every call. Only this greenlet touches the
socket, so the edge-triggered FD cannot be drained behind its back.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from typing import Any

import gevent
import gevent.event
import zmq

from collector.addons import NodeRecord, Report
from collector.config import CollectorConfig
from collector.counters import Counters, ThrottledLog
from collector.host import ModuleHost
from collector.registry import NodeRegistry
from collector.relay import Relay
from collector.store import NullStore, Store
from messages import CollectorInfo, Envelope, Kind, NodeInfo
from messages.codec import envelope, kind_name, pack, unpack
from messages.errors import ProtocolError

log = logging.getLogger(__name__)

DRAIN_LIMIT = 512          # frames per pass before yielding to other greenlets
NOBLOCK = zmq.NOBLOCK
REPORT = int(Kind.REPORT)
RCVMORE = int(zmq.RCVMORE)
IDLE_WAIT = 0.25           # seconds parked on the FD before housekeeping runs anyway
LIVENESS_PERIOD = 0.5      # seconds between lost-node checks


class AgentLink:
    """Owns the agents' ROUTER socket; one instance per collector."""

    def __init__(self, sock: zmq.Socket[bytes], host: ModuleHost, registry: NodeRegistry, counters: Counters,
                 config: CollectorConfig, info: Callable[[], CollectorInfo],
                 on_ingest: Callable[[], bool] = lambda: False, store: Store | None = None) -> None:
        self.sock = sock
        self.host = host
        self.registry = registry
        self.counters = counters
        self.config = config
        self.info = info
        self.on_ingest = on_ingest
        self.throttled = ThrottledLog(log)
        self.running = True
        self._delivered = False
        self.reports = 0  # reports applied in this pass, added to the counters once per pass
        self._sessions = registry.sessions
        self._deliver = host.deliver
        self.store = store or NullStore()
        self._journal: dict[str, tuple[int, list[bytes]]] = {}  # node -> (first seq, frame bodies) this pass
        self._touched: dict[str, NodeRecord] = {}  # nodes whose state changed since the last commit
        self._acks: dict[bytes, NodeRecord] = {}
        self._replies: dict[bytes, list[Envelope]] = {}
        self._told: set[bytes] = set()
        self._next_liveness = 0.0
        self._next_snapshot = time.monotonic() + config.snapshot_interval
        self._handlers: dict[int, Callable[[bytes, Envelope, float], None]] = {
            Kind.HELLO: self._on_hello,
            Kind.HEARTBEAT: self._on_heartbeat,
            Kind.BYE: self._on_bye,
            Kind.RESPONSE: self._on_answer,
            Kind.ERROR: self._on_answer,
            Kind.CHUNK: self._on_answer,
        }
        self.relay: Relay | None = None
        self._outgoing: list[tuple[bytes, Envelope]] = []
        self._wake = gevent.event.Event()

    # ------------------------------------------------------------ loop

    def run(self) -> None:
        """Serve agents until :meth:`stop`; runs in its own greenlet."""
        watcher = gevent.get_hub().loop.io(self.sock.getsockopt(zmq.FD), 1)
        while self.running:
            handled = self._drain()
            self.counters["ingest-passes"] += 1
            self.counters["reports"] += self.reports
            self.reports = 0
            if self._delivered:
                self._delivered = False
                if self.on_ingest():
                    # Push-on-change modules publish now, before the journal commit: an update is a
                    # view of what was applied, and need not wait for the disk (the ACK does).
                    gevent.sleep(0)
            self._flush()
            self._housekeeping()
            if handled >= DRAIN_LIMIT or int(self.sock.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
                gevent.sleep(0)  # busy: let requests and updates run between passes
                continue
            self._idle(watcher)

    def _idle(self, watcher: Any) -> None:
        """Park until the socket may be readable, another greenlet queued a message, or IDLE_WAIT."""
        self._wake.clear()
        if self._outgoing:
            return
        watcher.start(self._wake.set)
        try:
            self._wake.wait(IDLE_WAIT)
        finally:
            watcher.stop()

    def send(self, ident: bytes, env: Envelope) -> None:
        """Queue an envelope for an agent from any greenlet; it leaves with the next pass."""
        self._outgoing.append((ident, env))
        self._wake.set()

    def stop(self) -> None:
        """Ask the loop to end after its current pass."""
        self.running = False

    def _drain(self) -> int:
        # Hot path. Two plain recv() calls and one RCVMORE check cost half of
        # recv_multipart(), whose per-part getsockopt goes through Python enums.
        recv, more, on_frame = self.sock.recv, self.sock.get, self._on_frame
        now = time.time()
        for handled in range(DRAIN_LIMIT):
            try:
                ident = recv(NOBLOCK)
            except zmq.Again:
                self.counters["frames"] += handled
                return handled
            body = recv(NOBLOCK)  # a message is atomic: a ROUTER's identity part is never alone
            if more(RCVMORE):
                self._on_parts(ident, body, now)
                continue
            on_frame(ident, body, now)
        self.counters["frames"] += DRAIN_LIMIT
        return DRAIN_LIMIT

    def _on_parts(self, ident: bytes, body: bytes, now: float) -> None:
        """A message of more than one part: only ``[CHUNK header, bulk]`` is valid (docs/protocol.md)."""
        # copy=False: the bulk is forwarded to the client as the very same zmq message, never copied.
        bulk = self.sock.recv(NOBLOCK, copy=False)
        if self.sock.get(RCVMORE):
            self._skip_parts()
            return
        env = self._chunk_header(body)
        if env is None:
            self._bad("bad-frame", "agent sent a two-part message whose first part is not one CHUNK header")
            return
        self._on_answer(ident, env, now, bulk)

    def _chunk_header(self, body: bytes) -> Envelope | None:
        try:
            envelopes = unpack(body, self.config.max_frame_bytes)
        except ProtocolError:
            return None
        if len(envelopes) != 1 or envelopes[0].kind != Kind.CHUNK or envelopes[0].payload:
            return None
        return envelopes[0]

    def _skip_parts(self) -> None:
        parts = 3
        while self.sock.get(RCVMORE):
            self.sock.recv(NOBLOCK)
            parts += 1
        self._bad("bad-frame", "agent sent a message of %d parts; expected 1 (or a two-part CHUNK)", parts - 1)

    def _on_frame(self, ident: bytes, body: bytes, now: float) -> None:
        try:
            envelopes = unpack(body, self.config.max_frame_bytes)
        except ProtocolError as exc:
            self._bad(exc.code, "dropped a frame from an agent: %s", exc)
            return
        handlers, on_report = self._handlers, self._on_report
        applied: list[Envelope] = []
        for env in envelopes:
            if env.kind == REPORT:
                if on_report(ident, env, now):
                    applied.append(env)
                continue
            handler = handlers.get(env.kind)
            if handler is None:
                self._bad("unknown-kind", "dropped an envelope of kind %s from an agent", kind_name(env.kind))
                continue
            handler(ident, env, now)
        if applied:
            # The common frame is all new reports: journal its bytes as they came (no re-encoding).
            self._journal_frame(applied, body if len(applied) == len(envelopes) else pack(applied))

    def _journal_frame(self, applied: list[Envelope], batch: bytes) -> None:
        node = applied[0].node
        pending = self._journal.get(node)
        if pending is None:
            self._journal[node] = (applied[0].seq, [batch])
        else:
            pending[1].append(batch)

    def _bad(self, code: str, fmt: str, *args: Any) -> None:
        self.counters[code] += 1
        self.throttled.warning(code, fmt, *args)

    # ------------------------------------------------------------ handlers

    def _on_report(self, ident: bytes, env: Envelope, now: float) -> bool:
        """Apply one report; True when it was new (and so must be journaled)."""
        # Hot path: one call per report; locals and no per-report counters on purpose.
        session = self._sessions.get(ident)
        node = env.node
        if session is None or session.record.node != node:
            self._hello_required(ident)
            return False
        record = session.record
        if record.status != "live":
            self._heard(record, now)
        record.last_seen = now
        self._acks[ident] = record
        self._touched[node] = record
        seq = env.seq
        last = record.last_seq
        if seq <= last:
            self.counters["duplicates"] += 1
            return False
        if seq != last + 1:
            record.gaps += seq - last - 1
            self.counters["gap-reports"] += seq - last - 1
        record.last_seq = seq
        self.reports += 1
        self._delivered = True
        if not self._deliver(Report(node, env.type, seq, env.time, env.payload, env.encoding, env.schema)):
            self._bad("unrouted", "no module takes report type %r (from node %s)", env.type, node)
        return True

    def _on_hello(self, ident: bytes, env: Envelope, now: float) -> None:
        info = _node_info(env)
        if info is None:
            self._bad("bad-hello", "dropped a HELLO without a NodeInfo payload")
            self._reply(ident, envelope(Kind.ERROR, error_code="bad-hello", error="HELLO needs a NodeInfo payload"))
            return
        if self.registry.claimed_elsewhere(ident, info):
            self._bad("duplicate-node", "refused a second agent for live node %s (host %s)", info.node, info.hostname)
            self._reply(ident, envelope(Kind.ERROR, node=info.node, error_code="duplicate-node",
                                        error=f"node id {info.node} is live from another agent; "
                                        "give this agent another --node-id"))
            return
        record, joined = self.registry.hello(ident, info, env.seq, now)
        _take_backlog(record, env)
        self._touched[record.node] = record
        self._told.discard(ident)
        self._reply(ident, envelope(Kind.HELLO, type="CollectorInfo", payload=self.info()))
        self._reply(ident, envelope(Kind.ACK, node=record.node, seq=record.last_seq))
        log.info("node %s (%s) said hello; resuming after seq %d", record.node, info.hostname, record.last_seq)
        if joined:
            self.host.node_joined(record)

    def _on_heartbeat(self, ident: bytes, env: Envelope, now: float) -> None:
        session = self.registry.session(ident)
        if session is None:
            self._hello_required(ident)
            return
        self._heard(session.record, now)
        _take_backlog(session.record, env)
        self._reply(ident, envelope(Kind.HEARTBEAT, node=session.record.node))

    def _on_bye(self, ident: bytes, env: Envelope, now: float) -> None:
        session = self.registry.session(ident)
        if session is not None and self.registry.leave(session.record):
            log.info("node %s said bye", session.record.node)
            self._left(session.record)

    def _left(self, record: NodeRecord) -> None:
        self.host.node_left(record)
        if self.relay is not None:
            self.relay.node_lost(record.node)

    def _heard(self, record: NodeRecord, now: float) -> None:
        if self.registry.revive(record, now):
            log.info("node %s is back", record.node)
            self.host.node_joined(record)

    def _hello_required(self, ident: bytes) -> None:
        self.counters["hello-required"] += 1
        if ident not in self._told:
            self._told.add(ident)
            self._reply(ident, envelope(Kind.ERROR, error_code="hello-required",
                                        error="say HELLO first (the collector does not know this connection)"))

    # ------------------------------------------------------------ output

    def _reply(self, ident: bytes, env: Envelope) -> None:
        self._replies.setdefault(ident, []).append(env)

    def _on_answer(self, ident: bytes, env: Envelope, now: float, bulk: zmq.Frame | None = None) -> None:
        session = self.registry.session(ident)
        if session is not None:
            self._heard(session.record, now)
        if self.relay is None or not self.relay.from_agent(env, bulk):
            self._bad("stale-answer", "dropped an agent's answer to request %d, which nobody waits for",
                      env.request_id)

    def _commit(self) -> bool:
        """Journal this pass's reports and node states in one transaction; False when the disk refused."""
        if not self._journal and not self._touched:
            return True
        for node, (first_seq, parts) in self._journal.items():
            self.store.append(node, first_seq, self.registry.records[node].last_seq, b"".join(parts))
        self._journal.clear()
        try:
            self.store.commit(list(self._touched.values()))
        except sqlite3.Error as exc:  # e.g. disk full: keep the rows queued, acknowledge nothing, retry
            self._bad("journal-failed", "journal write failed (%s); holding ACKs until it succeeds", exc)
            return False
        self._touched.clear()
        return True

    def _flush(self) -> None:
        """Commit the pass, then send one frame per agent: its replies, then one cumulative ACK."""
        for ident, env in self._outgoing:
            self._reply(ident, env)
        self._outgoing.clear()
        if self._commit():
            for ident, record in self._acks.items():
                self._reply(ident, envelope(Kind.ACK, node=record.node, seq=record.last_seq))
            self._acks.clear()
        for ident, envelopes in self._replies.items():
            try:
                self.sock.send_multipart((ident, pack(envelopes)), zmq.NOBLOCK)
            except zmq.ZMQError as exc:  # a vanished peer: it will HELLO again and be re-acked
                self.counters["send-failed"] += 1
                self.throttled.warning("send-failed", "could not answer an agent: %s", exc)
        self._replies.clear()

    def _housekeeping(self) -> None:
        monotonic = time.monotonic()
        if monotonic < self._next_liveness:
            return
        self._next_liveness = monotonic + LIVENESS_PERIOD
        for record in self.registry.expire(time.time(), self.config.node_timeout):
            self.counters["nodes-lost"] += 1
            log.info("node %s lost: silent for more than %.1f s", record.node, self.config.node_timeout)
            self._left(record)
        if self.relay is not None:
            self.relay.expire()
        if monotonic >= self._next_snapshot and not self._journal and not self._touched:
            self._next_snapshot = monotonic + self.config.snapshot_interval
            self.checkpoint()

    def checkpoint(self) -> None:
        """Snapshot the modules as complete up to the last committed row, and prune old journal rows.

        Runs between passes only, so module state and the journal agree.
        """
        if not self.store.durable:
            return
        try:
            self.host.take_snapshots(self.store)
            pruned = self.store.prune(time.time() - self.config.retention)
        except sqlite3.Error as exc:
            self._bad("journal-failed", "snapshot or prune failed: %s", exc)
            return
        if pruned:
            log.info("pruned %d journal rows older than %.0f s", pruned, self.config.retention)


def _take_backlog(record: NodeRecord, env: Envelope) -> None:
    backlog = env.params.get("backlog")
    if backlog is not None and backlog.isdigit():
        record.backlog = int(backlog)


def _node_info(env: Envelope) -> NodeInfo | None:
    try:
        info = NodeInfo.FromString(env.payload)
    except Exception:  # protobuf raises DecodeError, upb may raise others on garbage
        return None
    if not info.node:
        info.node = env.node
    return info if info.node else None
