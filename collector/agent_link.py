"""The agents' side of the collector: ingest REPORTs, answer HELLOs and heartbeats, send ACKs.

Performance choice: this socket is a *plain* pyzmq ROUTER owned by one
greenlet, drained with NOBLOCK and parked on ``gevent.socket.wait_read(FD)``
only when it would block. Measured on our 2-core machines this "hybrid" loop
moves ~790k msg/s against ~60-110k/s through ``zmq.green`` sockets, which
re-check socket state after every call. Only this greenlet touches the
socket, so the edge-triggered FD cannot be drained behind its back.
"""

from __future__ import annotations

import collections
import itertools
import logging
import time
from collections.abc import Callable
from typing import Any

import gevent
import gevent.event
import zmq

from collector import fast_drain
from collector.addons import NodeRecord, Report
from collector.agent_keys import AgentKeys
from collector.core import Core
from collector.counters import ThrottledLog
from collector.host import NOTHING_CHECKED
from collector.journal import Journal
from collector.liveness import LivenessClock
from collector.observer import DUPLICATE, REFUSED
from collector.refusals import KEY_MISMATCH, WRONG_NODE, Refusals, safe_fingerprint
from collector.relay import Relay
from messages import Envelope, Kind, NodeInfo
from messages.codec import SINGLE_HEADS, SINGLE_LIMIT, envelope, kind_name, pack, unpack, unpack_singles
from messages.errors import Code, ProtocolError
from messages.limits import MAX_SEQ, MAX_TIME, OutOfRangeError, backlog_param, check_seq, check_time
from messages.stream import two_part_header

log = logging.getLogger(__name__)

# A top collector's node ids with a ':' are its sites' (SITE:NODE, docs/sites.md): a local agent may not take one.
QUALIFIED_AT_TOP = (
    "node id {node!r} holds ':', which a top collector keeps for its sites' nodes (SITE:NODE); "
    "give this agent a --node-id without ':'"
)

DRAIN_LIMIT = 512  # frames per pass before yielding to other greenlets
SATURATION_HOLD = 0.5  # seconds after a full pass during which ingest still counts as saturated
BUSY_WINDOW = 0.1  # seconds over which the loop's parked time is added up
BUSY_SHARE = 0.9  # a window in which the loop was busy (not parked) this share of the time: saturated too
NOBLOCK = zmq.NOBLOCK
REPORT = int(Kind.REPORT)
ACK = int(Kind.ACK)  # Kind.ACK is a Python-level enum lookup: one per agent per pass at scale
RCVMORE = int(zmq.RCVMORE)
IDLE_WAIT = 0.25  # seconds parked on the FD before housekeeping runs anyway


class Mailbox:
    """Envelopes other greenlets queue for agents (relayed requests, credit); the ingest loop sends them.

    Only the ingest greenlet touches the agents' socket, so everything else
    posts here; ``put`` wakes the loop if it is parked.
    """

    def __init__(self) -> None:
        self.items: list[tuple[bytes, Envelope]] = []
        self.wake = gevent.event.Event()

    def put(self, ident: bytes, env: Envelope) -> None:
        """Queue an envelope for the agent at ``ident``; it leaves with the next pass."""
        self.items.append((ident, env))
        self.wake.set()


class AgentLink:
    """Owns the agents' ROUTER socket; one instance per collector.

    ``journal`` commits each pass before its ACKs leave; ``relay`` takes the
    agents' answers to forwarded requests; ``mailbox`` holds what other
    greenlets send to agents; ``on_ingest`` wakes the push-on-change modules.
    With CURVE, ``keys`` binds each connection to its key and ``refusals``
    records what it refuses (collector/agent_keys.py).
    """

    def __init__(
        self,
        sock: zmq.Socket[bytes],
        core: Core,
        journal: Journal,
        relay: Relay,
        mailbox: Mailbox,
        on_ingest: Callable[[], bool] = lambda: False,
        keys: AgentKeys | None = None,
        refusals: Refusals | None = None,
    ) -> None:
        self.sock = sock
        self.keys = keys
        self.refusals = refusals
        self._key = ""  # with CURVE: the key (Z85) of the frame being handled
        self.host = core.host
        self.registry = core.registry
        self.counters = core.counters
        self.config = core.config
        self.info = core.info
        self.journal = journal
        self.relay = relay
        self.mailbox = mailbox
        self.on_ingest = on_ingest
        self.liveness = LivenessClock(self.registry, self.counters, self.config.node_timeout)
        self.throttled = ThrottledLog(log)
        self.running = True
        self.saturated_at = -SATURATION_HOLD  # monotonic time ingest was last seen saturated
        self._window = time.monotonic()  # when the current busy window began
        self._parked = 0.0  # seconds parked in _idle since then
        self.reports = 0  # reports applied in this pass, added to the counters once per pass
        self._sessions = self.registry.sessions
        self._deliver = self.host.deliver
        self._drains = fast_drain.choose(sock)  # the receive loops
        self.drain_kind = self._drains.kind  # "c" or "python"
        self._touched = journal.touched  # the same dict: the hot path marks nodes without a call
        self._acks: dict[bytes, NodeRecord] = {}
        self._replies: dict[bytes, list[Envelope]] = {}
        self._told: set[bytes] = set()
        # frames shorter than this may be one envelope (messages.codec.is_single) and parsed together
        self._single_limit = min(SINGLE_LIMIT, self.config.max_frame_bytes + 1)
        self._duplicates: collections.Counter[str] = collections.Counter()  # node -> duplicates in this pass
        self._backlogged: set[str] = set()  # nodes whose backlog is over backlog_alert (told the observers)
        self._handlers: dict[int, Callable[[bytes, Envelope, float], None]] = {
            Kind.HELLO: self._on_hello,
            Kind.HEARTBEAT: self._on_heartbeat,
            Kind.BYE: self._on_bye,
            Kind.RESPONSE: self._on_answer,
            Kind.ERROR: self._on_answer,
            Kind.CHUNK: self._on_answer,
        }

    # ------------------------------------------------------------ loop

    def run(self) -> None:
        """Serve agents until :meth:`stop`; runs in its own greenlet."""
        watcher = gevent.get_hub().loop.io(self.sock.getsockopt(zmq.FD), 1)
        drain = self._drain if self.keys is None else self._drain_curve
        while self.running:
            handled = drain()
            behind = handled >= DRAIN_LIMIT  # fewer: the drain emptied the socket, every frame waiting was read
            if not behind:
                self.liveness.caught_up(time.time())
            self.counters["ingest-passes"] += 1
            delivered, self.reports = self.reports, 0
            if delivered:
                self.counters["reports"] += delivered
                if self.on_ingest():
                    # Push-on-change modules publish now, before the journal commit: an update is a
                    # view of what was applied, and need not wait for the disk (the ACK does).
                    gevent.sleep(0)
            self._flush()
            self._housekeeping(behind)
            self._note_load(behind)
            if behind or int(self.sock.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
                gevent.sleep(0)  # frames waiting: let requests and updates run between passes
                continue
            self._idle(watcher)

    def saturated(self) -> bool:
        """True while ingest is saturated: within the last SATURATION_HOLD s a pass read all it may, or
        the loop spent a BUSY_WINDOW busy for BUSY_SHARE of it.

        The distributions' threads hold back to their ``cpu_limit`` meanwhile. Held for a moment, not
        only for the pass after a full one: passes alternate between full and not under a flood, and a
        thread that looked at the wrong moment ran flat out. Busy counts too: a loop that keeps up with
        a flood only just empties the socket each pass, and a distribution running flat out then takes
        the CPU it was keeping up with.
        """
        return time.monotonic() - self.saturated_at < SATURATION_HOLD

    def _note_load(self, full_pass: bool) -> None:
        """After a pass: mark ingest saturated on a full pass, or at the end of a window the loop hardly parked in."""
        now = time.monotonic()
        if full_pass:
            self.saturated_at = now
        span = now - self._window
        if span >= BUSY_WINDOW:
            if self._parked < span * (1.0 - BUSY_SHARE):
                self.saturated_at = now
            self._window, self._parked = now, 0.0

    def _idle(self, watcher: Any) -> None:
        """Park until the socket may be readable, another greenlet queued a message, or IDLE_WAIT."""
        wake = self.mailbox.wake
        wake.clear()
        if self.mailbox.items:
            return
        watcher.start(wake.set)
        parked = time.monotonic()
        try:
            wake.wait(IDLE_WAIT)
        finally:
            watcher.stop()
            self._parked += time.monotonic() - parked

    def stop(self) -> None:
        """Ask the loop to end after its current pass."""
        self.running = False

    def _drain(self) -> int:
        # Hot path. The receive loop is collector/fast_drain.py's (C when built): it stops at the
        # first frame that is not one envelope. Frames of one envelope (nearly all of them) wait in
        # ``idents``/``bodies`` and are parsed together: one upb parse of their joined bytes
        # instead of one per frame.
        drain, heads, limit = self._drains.plain, SINGLE_HEADS, self._single_limit
        idents: list[bytes] = []
        bodies: list[bytes] = []
        now = time.time()
        handled = 0
        while handled < DRAIN_LIMIT:
            read, odd = drain(DRAIN_LIMIT - handled, limit, heads, idents, bodies)
            handled += read
            if odd is None:  # the socket is empty, or the pass is full
                break
            self._on_other_frame(*odd, now, idents, bodies)
        self._on_waiting(idents, bodies, now)
        self.counters["frames"] += handled
        return handled

    def _on_other_frame(
        self,
        ident: bytes,
        body: bytes,
        more: bool,
        now: float,
        idents: list[bytes],
        bodies: list[bytes],
        senders: list[str] | None = None,
        key: str = "",
    ) -> None:
        """A frame that is not one envelope (or the first part of several): the one-envelope frames waiting
        in ``idents``/``bodies`` (and, with CURVE, their ``senders``) came before it, so they are handled,
        and emptied, first. With CURVE, ``key`` is the key this frame came with."""
        self._on_waiting(idents, bodies, now, senders)
        self._key = key
        if more:
            self._on_parts(ident, body, now)
        else:
            self._on_frame(ident, body, now)

    def _on_waiting(
        self, idents: list[bytes], bodies: list[bytes], now: float, senders: list[str] | None = None
    ) -> None:
        """Handle the one-envelope frames waiting (:meth:`_on_singles`) and empty the lists."""
        if idents:
            self._on_singles(idents, bodies, now, senders)
            idents.clear()
            bodies.clear()
            if senders is not None:
                senders.clear()

    def _on_singles(
        self, idents: list[bytes], bodies: list[bytes], now: float, senders: list[str] | None = None
    ) -> None:
        """Handle frames of one envelope each (``bodies``, from ``idents``), in order, parsed in one call.

        With CURVE, ``senders`` holds each frame's key: a HELLO is checked against the key it came with.
        """
        envelopes = unpack_singles(bodies)
        if envelopes is None:  # one of them is bad: each on its own, so that only that one is dropped
            for at, (ident, body) in enumerate(zip(idents, bodies, strict=True)):
                if senders is not None:
                    self._key = senders[at]
                self._on_frame(ident, body, now)
            return
        self.counters["envelopes"] += len(envelopes)
        checked = self.host.check_payloads(envelopes, bodies)
        sender, apply, add = self._sender, self._apply_report, self.journal.add_frame
        keys = senders if senders is not None else itertools.repeat("", len(bodies))
        last_ident, current = b"", None  # the sender of the last report, and its record
        for ident, body, env, key in zip(idents, bodies, envelopes, keys, strict=True):
            if env.kind == REPORT:
                node = env.node
                if ident != last_ident or current is None or node != current.node:
                    # a run of reports from one connection and node is checked and marked heard once
                    last_ident, current = ident, sender(ident, node, now)
                    if current is None:
                        continue
                record = apply(ident, current, env, checked)
                if record is not None:
                    add(node, record.last_seq, body)
            else:
                last_ident, current = b"", None  # a HELLO or a BYE may change who the connection is
                if senders is not None:
                    self._key = key
                self._on_other(ident, env, now)

    def _drain_curve(self) -> int:
        """:meth:`_drain` for CURVE: each frame comes with the key that sent it, checked as it is read."""
        assert self.keys is not None
        drain, check, heads, limit = self._drains.curve, self.keys.check, SINGLE_HEADS, self._single_limit
        idents: list[bytes] = []
        bodies: list[bytes] = []
        senders: list[str] = []  # each waiting frame's key: a HELLO among them is checked against its own
        now = time.time()
        handled = 0
        while handled < DRAIN_LIMIT:
            read, odd = drain(DRAIN_LIMIT - handled, limit, heads, idents, bodies, senders, check)
            handled += read
            if odd is None:
                break
            ident, body, more, key, refusal = odd
            if refusal:
                if more:
                    self._discard_rest()
                self._on_waiting(idents, bodies, now, senders)  # the frames before it first
                self._forbid(ident, key, refusal)
            else:
                self._on_other_frame(ident, body, more, now, idents, bodies, senders, key)
        self._on_waiting(idents, bodies, now, senders)
        self.counters["frames"] += handled
        return handled

    def _discard_rest(self) -> None:
        while self.sock.get(RCVMORE):
            self.sock.recv(NOBLOCK)

    def _forbid(self, ident: bytes, key: str, reason: str, node: str = "") -> None:
        """Refuse a frame or a HELLO for its key: count, log, raise the Event, answer ERROR forbidden."""
        assert self.refusals is not None and self.keys is not None
        entry = self.keys.entry(key)
        name = entry.name if entry is not None else ""
        words = {
            KEY_MISMATCH: "this connection said HELLO with another key",
            WRONG_NODE: f"key {name!r} may not claim node id {node!r}",
        }.get(reason, "this key is no longer in the collector's agents allow folder (or may not claim its node)")
        self.refusals.refuse(reason, safe_fingerprint(key), f"agent: {words}", node=node, key=name)
        self._reply(ident, envelope(Kind.ERROR, node=node, error_code=Code.FORBIDDEN, error=words))

    def _on_parts(self, ident: bytes, body: bytes, now: float) -> None:
        """A message of more than one part: only ``[CHUNK header, bulk]`` is valid (docs/protocol.md)."""
        # copy=False: the bulk is forwarded to the client as the very same zmq message, never copied.
        bulk = self.sock.recv(NOBLOCK, copy=False)
        if self.sock.get(RCVMORE):
            self._skip_parts()
            return
        env = two_part_header(body, self.config.max_frame_bytes)
        if env is None:
            self._bad("bad-frame", "agent sent a two-part message whose first part is not one CHUNK header")
            return
        self.counters["envelopes"] += 1
        self._on_answer(ident, env, now, bulk)

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
        self.counters["envelopes"] += len(envelopes)  # once per frame, not per envelope: this is the hot path
        on_report = self._on_report
        applied: list[Envelope] = []
        for env in envelopes:
            if env.kind == REPORT:
                if on_report(ident, env, now) is not None:
                    applied.append(env)
            else:
                self._on_other(ident, env, now)
        if applied:
            # The common frame is all new reports: journal its bytes as they came (no re-encoding).
            self.journal.add(applied, body, len(applied) == len(envelopes))

    def _on_other(self, ident: bytes, env: Envelope, now: float) -> None:
        """Any envelope but a REPORT: its kind's handler."""
        handler = self._handlers.get(env.kind)
        if handler is None:
            self._bad("unknown-kind", "dropped an envelope of kind %s from an agent", kind_name(env.kind))
            return
        handler(ident, env, now)

    def _bad(self, code: str, fmt: str, *args: Any) -> None:
        self.counters[code] += 1
        self.throttled.warning(code, fmt, *args)

    def _refuse(self, ident: bytes, env: Envelope, code: str, reason: str) -> None:
        """Count, log and answer an envelope refused whole: ERROR{code} naming its kind, type and seq."""
        self._bad(code, "refused a %s from an agent (node %r): %s", kind_name(env.kind), env.node, reason)
        self._reply(ident, envelope(Kind.ERROR, env.type, node=env.node, seq=env.seq, error_code=code, error=reason))

    # ------------------------------------------------------------ handlers

    def _on_report(
        self, ident: bytes, env: Envelope, now: float, checked: frozenset[str] = NOTHING_CHECKED
    ) -> NodeRecord | None:
        """Apply one report; its node's record when it was new (and so must be journaled), else None.

        ``checked``: schemas whose payloads are known to parse (ModuleHost.check_payloads).
        """
        record = self._sender(ident, env.node, now)
        return None if record is None else self._apply_report(ident, record, env, checked)

    def _sender(self, ident: bytes, node: str, now: float) -> NodeRecord | None:
        """The record of the node a report from ``ident`` names, marked heard now; None (and hello-required)
        when that connection has not said HELLO as that node."""
        session = self._sessions.get(ident)
        if session is None or session.record.node != node:
            self._hello_required(ident)
            return None
        record = session.record
        if record.status != "live":
            self._heard(record, now)
        record.last_seen = now
        self._acks[ident] = record
        self._touched[node] = record
        return record

    def _apply_report(
        self, ident: bytes, record: NodeRecord, env: Envelope, checked: frozenset[str]
    ) -> NodeRecord | None:
        """Apply one report of ``record``'s node (its sender checked); the record when it was new, else None."""
        # Hot path: one call per report; locals and no per-report counters on purpose.
        seq, at = env.seq, env.time
        # Inline for speed; _refuse_report's checks (messages/limits.py) say the same and give the reason.
        if not (0 < seq <= MAX_SEQ and 0.0 <= at <= MAX_TIME):
            self._refuse_report(ident, env)
            return None
        last = record.last_seq
        if seq <= last:
            self.counters["duplicates"] += 1
            self._duplicates[record.node] += 1
            return None
        if seq != last + 1:
            record.gaps = min(MAX_SEQ, record.gaps + seq - last - 1)  # an SQLite INTEGER, whatever the gaps
            self.counters["gap-reports"] += seq - last - 1
        record.last_seq = seq
        self.reports += 1
        node = record.node
        if not self._deliver(Report(node, env.type, seq, at, env.payload, env.encoding, env.schema), checked):
            self._bad("unrouted", "no module takes report type %r (from node %s)", env.type, node)
        return record

    def _refuse_report(self, ident: bytes, env: Envelope) -> None:
        try:
            check_seq(env.seq, what="REPORT seq")
            check_time(env.time, what="REPORT time")
        except OutOfRangeError as exc:
            self._refuse(ident, env, Code.OUT_OF_RANGE, str(exc))
            self.host.observe("reports_rejected", REFUSED, env.node, 1, str(exc))

    def _on_hello(self, ident: bytes, env: Envelope, now: float) -> None:
        try:
            info = _node_info(env)
        except ProtocolError as exc:
            self._refuse(ident, env, Code.BAD_HELLO, str(exc))
            return
        try:
            check_seq(env.seq, low=0, what="HELLO seq")
            backlog = backlog_param(env.params)
        except OutOfRangeError as exc:
            self._refuse(ident, env, Code.OUT_OF_RANGE, str(exc))
            return
        if self.config.ingest_nats and ":" in info.node:
            self._refuse(ident, env, Code.BAD_HELLO, QUALIFIED_AT_TOP.format(node=info.node))
            return
        if self.keys is not None and not self.keys.may_claim(self._key, info.node):
            self._forbid(ident, self._key, WRONG_NODE, node=info.node)
            return
        if self.registry.claimed_elsewhere(ident, info):
            self._bad("duplicate-node", "refused a second agent for live node %s (host %s)", info.node, info.hostname)
            self._reply(
                ident,
                envelope(
                    Kind.ERROR,
                    node=info.node,
                    error_code=Code.DUPLICATE_NODE,
                    error=f"node id {info.node} is live from another agent; give this agent another --node-id",
                ),
            )
            return
        if info.node not in self.registry.records and len(self.registry.records) >= self.config.max_nodes:
            self._refuse_node(ident, info)
            return
        replaced = self.registry.ident_of(info.node)
        record, joined = self.registry.hello(ident, info, env.seq, now)
        if self.keys is not None:
            if replaced is not None and replaced not in self._sessions:
                self.keys.forget(replaced)  # the node's old connection lost its session: and its binding
            self.keys.bind(ident, self._key, record.node)
        if backlog is not None:
            self._set_backlog(record, backlog)
        self._touched[record.node] = record
        self._told.discard(ident)
        self._reply(ident, envelope(Kind.HELLO, type="CollectorInfo", payload=self.info()))
        self._reply(ident, envelope(Kind.ACK, node=record.node, seq=record.last_seq))
        log.info("node %s (%s) said hello; resuming after seq %d", record.node, info.hostname, record.last_seq)
        if joined:
            self.host.node_joined(record)

    def _refuse_node(self, ident: bytes, info: NodeInfo) -> None:
        """Answer a new node's HELLO beyond ``max_nodes`` with ERROR busy; the agent retries with its back-off."""
        limit = self.config.max_nodes
        self._bad(
            "nodes-refused", "refused new node %s (host %s): max_nodes %d reached", info.node, info.hostname, limit
        )
        reason = f"the collector already knows max_nodes = {limit} nodes; node {info.node} is refused"
        self._reply(ident, envelope(Kind.ERROR, node=info.node, error_code=Code.BUSY, error=reason))

    def _on_heartbeat(self, ident: bytes, env: Envelope, now: float) -> None:
        session = self.registry.session(ident)
        if session is None:
            self._hello_required(ident)
            return
        try:
            backlog = backlog_param(env.params)
        except OutOfRangeError as exc:
            self._refuse(ident, env, Code.OUT_OF_RANGE, str(exc))
            return
        self._heard(session.record, now)
        if backlog is not None:
            self._set_backlog(session.record, backlog)
        self._reply(ident, envelope(Kind.HEARTBEAT, node=session.record.node))

    def _set_backlog(self, record: NodeRecord, backlog: int) -> None:
        """Record an agent's backlog; tell the observers when it rises over ``backlog_alert`` (once until it falls)."""
        record.backlog = backlog
        limit = self.config.backlog_alert
        if backlog <= limit:
            self._backlogged.discard(record.node)
        elif record.node not in self._backlogged:
            self._backlogged.add(record.node)
            self.host.observe("backlog_high", record.node, backlog, limit)

    def _on_bye(self, ident: bytes, env: Envelope, now: float) -> None:
        session = self.registry.session(ident)
        if self.keys is not None:
            self.keys.forget(ident)
        if session is not None and self.registry.leave(session.record):
            log.info("node %s said bye", session.record.node)
            self._left(session.record)

    def _left(self, record: NodeRecord) -> None:
        self.host.node_left(record)
        self.relay.node_lost(record.node)

    def _heard(self, record: NodeRecord, now: float) -> None:
        if self.registry.revive(record, now):
            log.info("node %s is back", record.node)
            self.host.node_joined(record)

    def _hello_required(self, ident: bytes) -> None:
        self.counters["hello-required"] += 1
        if ident not in self._told:
            self._told.add(ident)
            self._reply(
                ident,
                envelope(
                    Kind.ERROR,
                    error_code=Code.HELLO_REQUIRED,
                    error="say HELLO first (the collector does not know this connection)",
                ),
            )

    # ------------------------------------------------------------ output

    def _reply(self, ident: bytes, env: Envelope) -> None:
        self._replies.setdefault(ident, []).append(env)

    def _on_answer(self, ident: bytes, env: Envelope, now: float, bulk: zmq.Frame | None = None) -> None:
        session = self.registry.session(ident)
        if session is not None:
            self._heard(session.record, now)
        if not self.relay.from_agent(env, bulk):
            self._bad("stale-answer", "dropped an agent's answer to request %d, which nobody waits for", env.request_id)

    def _flush(self) -> None:
        """Commit the pass, then send one frame per agent: its replies, then one cumulative ACK."""
        if self._duplicates:
            for node, count in self._duplicates.items():
                self.host.observe(
                    "reports_rejected", DUPLICATE, node, count, "already acknowledged; acknowledged again"
                )
            self._duplicates.clear()
        for ident, env in self.mailbox.items:
            self._reply(ident, env)
        self.mailbox.items.clear()
        if self.journal.commit():
            for ident, record in self._acks.items():
                self._reply(ident, envelope(ACK, node=record.node, seq=record.last_seq))
            self._acks.clear()
        for ident, envelopes in self._replies.items():
            try:
                self.sock.send_multipart((ident, pack(envelopes)), zmq.NOBLOCK)
            except zmq.ZMQError as exc:  # a vanished peer: it will HELLO again and be re-acked
                self.counters["send-failed"] += 1
                self.throttled.warning("send-failed", "could not answer an agent: %s", exc)
        self._replies.clear()

    def _housekeeping(self, behind: bool) -> None:
        """Between passes: lost nodes (``behind``: the pass left frames waiting), timed-out node requests, the
        journal's checkpoint."""
        monotonic = time.monotonic()
        if not self.liveness.due(monotonic):
            return
        for record in self.liveness.expire(behind=behind):
            self._left(record)
        self.relay.expire()
        self.journal.maybe_checkpoint(monotonic)


def _node_info(env: Envelope) -> NodeInfo:
    """The HELLO's NodeInfo, its node id filled from the envelope; raises ProtocolError ``bad-hello``."""
    try:
        info = NodeInfo.FromString(env.payload)
    except Exception:  # protobuf raises DecodeError, upb may raise others on garbage
        raise ProtocolError(Code.BAD_HELLO, "HELLO needs a NodeInfo payload") from None
    if info.node and env.node and info.node != env.node:
        raise ProtocolError(Code.BAD_HELLO, f"HELLO names node {env.node!r} but its NodeInfo names {info.node!r}")
    if not info.node:
        info.node = env.node
    if not info.node:
        raise ProtocolError(Code.BAD_HELLO, "HELLO needs a node id (envelope node or NodeInfo.node)")
    return info
