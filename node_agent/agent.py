"""The node agent: run probes, keep their reports in the outbox, talk to the collector.

One thread, one ``zmq.Poller`` loop whose timeout is the time until the next
due event (a probe, a batch flush, a heartbeat, the liveness deadline or a
HELLO retry), so an idle agent sleeps. The conversation is the one in
docs/protocol.md, "Agent conversation":

- HELLO{NodeInfo, seq = first seq to (re)send} is answered by
  HELLO{CollectorInfo} + ACK{seq}; every unacknowledged report then goes out
  again, oldest first, at most ``window`` in flight.
- Reports are batched: a frame leaves at most ``batch_delay`` after the first
  report in it was made, and at once when nothing else can add a report before
  then (no probe due, no watched file being fed): an agent whose only probe is
  SystemStats wakes once a sample, not once more for its flush.
- Reports go into the durable outbox (node_agent/outbox.py) and are
  committed to it, all those of one flush together, before they are sent.
- HEARTBEAT{backlog} every heartbeat interval, busy or idle (riding in a
  report frame when one leaves anyway), so the collector's figure of our
  backlog is never older than that; silence from the collector for three
  intervals means a new socket and HELLO again, with exponential back-off
  until it is answered.
- ERROR{duplicate-node} answering our HELLO: another live agent holds our
  node id; log it and exit 1 without touching the outbox or saying BYE.
- REQUESTs from the collector run in a bounded worker pool (node_agent/pool.py);
  workers hand their answers back through a queue and a wake-up socket, so
  only this loop touches the DEALER and a slow request delays no report.
  CREDITs go to the stream they name. A new socket or handshake cancels
  every running request (the collector that asked is gone).
- Watched folders (node_agent/watch.py) are scanned on their own timer and
  their files fed into the outbox a few pieces at a time, as ACKs make room.
- CURVE (``keys``): a collector that refuses the handshake (unknown key, or
  plain against CURVE) is logged as one error line at most once a minute; the
  HELLO retries go on with new sockets, so the agent gets in once its key is allowed.
- SIGINT/SIGTERM: flush for at most a second, send BYE, exit 0.
"""

from __future__ import annotations

import logging
import signal
import socket
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import zmq

from messages import Envelope, Kind
from messages.codec import envelope, kind_name, pack, pack_one, unpack
from messages.errors import ProtocolError
from messages.keys import ClientKeys
from messages.limits import OutOfRangeError, check_seq
from messages.logs import ThrottledLog
from node_agent.handlers import builtin_handlers, handler_table, load_handlers
from node_agent.link import Link
from node_agent.outbox import DEFAULT_MAX_AGE, DEFAULT_MAX_BYTES, Outbox
from node_agent.pool import RequestPool
from node_agent.runner import ScheduledProbe
from node_agent.serve import ServeDirs
from node_agent.session import HELLO_BACKOFF_MAX, AgentStats, Due, Session
from node_agent.sysprobe import node_info
from node_agent.watch import STATE_NAME, Watcher

__all__ = ["Agent", "AgentConfig", "AgentStats", "stop_signals"]

log = logging.getLogger(__name__)

INF = float("inf")
STOP_FLUSH_TIME = 1.0
# Part of the stop budget kept for the BYE itself to leave the socket.
BYE_LINGER = 0.2
SEND_RETRY = 0.05
LOG_EVERY = 10.0
REFUSAL_LOG_EVERY = 60.0  # seconds between two log lines about a refused CURVE handshake


@dataclass
class AgentConfig:
    """Everything the agent needs to run, already validated (see node_agent.cli)."""

    collector: str
    node_id: str
    interval: float = 1.0
    probes_dirs: list[Path] = field(default_factory=list)
    data_dir: Path | None = None
    log_level: str = "info"
    batch_delay: float = 0.005
    heartbeat_interval: float = 1.0
    window: int = 1000
    outbox_max_bytes: int = DEFAULT_MAX_BYTES
    outbox_max_age: float = DEFAULT_MAX_AGE
    watch_dirs: list[Path] = field(default_factory=list)
    watch_interval: float = 1.0
    serve_dirs: list[Path] = field(default_factory=list)
    handlers_dirs: list[Path] = field(default_factory=list)
    keys: ClientKeys | None = None  # CURVE: the collector's public key and ours (messages/keys.py)


@contextmanager
def stop_signals(callback: Callable[[int], None]) -> Iterator[socket.socket]:
    """Route SIGINT and SIGTERM to ``callback``; yield a socket that becomes readable on them.

    Python runs signal handlers only between bytecodes; the wake-up fd lets a
    poll blocked in libzmq return at once. Main thread only.
    """
    reader, writer = socket.socketpair()
    reader.setblocking(False)
    writer.setblocking(False)
    old_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)

    def handler(signum: int, frame: FrameType | None) -> None:
        callback(signum)

    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield reader
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)
        signal.set_wakeup_fd(old_fd)
        reader.close()
        writer.close()


class Agent:
    """A node agent: probes in, REPORTs out over one DEALER to the collector."""

    def __init__(
        self,
        config: AgentConfig,
        probes: list[ScheduledProbe],
        context: zmq.Context[zmq.Socket[bytes]] | None = None,
        outbox: Outbox | None = None,
    ) -> None:
        self.config = config
        self.node = config.node_id
        self.probes = probes
        # Without a data folder (tests building an Agent in process) the outbox is an in-memory database.
        if outbox is None:
            outbox = Outbox.open(
                config.data_dir, config.node_id, config.outbox_max_bytes, config.outbox_max_age, config.window
            )
        self.outbox = outbox
        self.instance = self.outbox.instance
        self.stats = AgentStats()
        self.session = Session(
            config.collector, config.heartbeat_interval, self.stats, time.monotonic(), self._log_sometimes
        )
        self._own_context = context is None
        self._ctx = zmq.Context() if context is None else context
        self._link = Link(self._ctx, config.collector, config.keys)
        self.pool = RequestPool(
            self.node,
            handler_table(
                [*builtin_handlers(ServeDirs(config.serve_dirs), probes), *load_handlers(config.handlers_dirs)]
            ),
            two_part=True,
        )
        self._link.watch(self.pool.wake, "requests")
        self._answers: deque[bytes] = deque()
        self._answer_retry = self._request_deadline = INF
        self.watcher = (
            None
            if not config.watch_dirs
            else Watcher(
                config.watch_dirs,
                config.watch_interval,
                None if config.data_dir is None else config.data_dir / STATE_NAME,
            )
        )
        self._stopping = False
        self._stop_signal: int | None = None
        self._flush_at = INF
        self._throttled = ThrottledLog(log, LOG_EVERY, suffix="")
        self._refusals = ThrottledLog(log, REFUSAL_LOG_EVERY, suffix="")
        self._handlers: dict[int, Callable[[Envelope, float], None]] = {
            Kind.HELLO: self._on_hello,
            Kind.ACK: self._on_ack,
            Kind.HEARTBEAT: lambda env, now: None,
            Kind.ERROR: self._on_error,
            Kind.REQUEST: self._on_request,
            Kind.CREDIT: lambda env, now: self.pool.credit(env),
        }

    @property
    def ready(self) -> bool:
        """True while the collector has answered our HELLO on the current socket."""
        return self.session.ready

    @property
    def heartbeat_interval(self) -> float:
        """Seconds between heartbeats: ours, or the collector's once it told us one within bounds."""
        return self.session.heartbeat_interval

    def stop(self, signum: int | None = None) -> None:
        """Ask the loop to stop; safe from a signal handler (it only sets flags)."""
        if self._stop_signal is None:
            self._stop_signal = signum
        self._stopping = True

    def run(self, handle_signals: bool = True) -> int:
        """Run until stopped; returns the exit status (0, or 1 when the collector refused our node id)."""
        if handle_signals:
            with stop_signals(self.stop) as wake:
                self._link.watch(wake)
                try:
                    return self._run()
                finally:
                    self._link.watch(None)
        return self._run()

    def _run(self) -> int:
        log.info(
            "agent %s (instance %s, %d unacknowledged reports from seq %d) reporting to %s",
            self.node,
            self.instance,
            len(self.outbox),
            self.outbox.first_seq,
            self.config.collector,
        )
        self._say_hello(time.monotonic(), reopen=True)
        try:
            self._loop()
        finally:
            self._shutdown()
        return 1 if self.stats.refused else 0

    def _loop(self) -> None:
        while not self._stopping:
            self._run_due(time.monotonic())
            if self._stopping:
                break
            if self._link.poll(self._next_deadline() - time.monotonic()):
                self._receive(time.monotonic())
            elif self._link.refusal is not None:
                self._refused(self._link.refusal)

    def _refused(self, reason: str) -> None:
        """The collector refused our handshake: say so now and then; the HELLO retries go on."""
        keys = self.config.keys
        whose = f"key {keys.name} ({keys.fingerprint})" if keys is not None else "no CURVE key"
        self._refusals.log(
            logging.ERROR,
            "auth",
            "collector at %s refused this agent (%s): %s; still trying, a new connection every %.0f s at most",
            self.config.collector,
            whose,
            reason,
            HELLO_BACKOFF_MAX,
        )

    # ------------------------------------------------------------------ timers

    def _run_due(self, now: float) -> None:
        self._run_probes(now)
        self._run_watch(now)
        if now < self._flush_at != INF and not self._more_reports_before(self._flush_at):
            self._flush_at = now  # waiting would batch nothing more
        self._send_answers(now)
        self._request_deadline = self.pool.expire(now)
        if now >= self.outbox.commit_at:
            self._commit(now)  # acknowledged deletes, or a retry after a failed write
        if now >= self._flush_at:
            self._flush(now)
        # A flush about to happen carries the heartbeat (see _flush).
        due = self.session.due(now, flush_pending=self._flush_at != INF)
        if due is Due.RETRY_HELLO:
            self.session.retrying()
            self._say_hello(now, reopen=True)
        elif due is Due.LOST:
            self.session.lost(now)
            self._say_hello(now, reopen=True)
        elif due is Due.HEARTBEAT:
            self._send_heartbeat(now)

    def _next_deadline(self) -> float:
        deadline = min(
            min((p.next_due for p in self.probes), default=INF),
            self._flush_at,
            self.outbox.commit_at,
            self._answer_retry,
            self._request_deadline,
        )
        if self.watcher is not None:
            deadline = min(deadline, self.watcher.next_due)
        return min(deadline, self.session.deadline(flush_pending=self._flush_at != INF))

    def _run_probes(self, now: float) -> None:
        for probe in self.probes:
            if probe.next_due > now:
                continue
            env = probe.run(self.node, time.time(), now)
            if env is not None and self.outbox.add(env) is not None:
                self._flush_at = min(self._flush_at, now + self.config.batch_delay)

    def _more_reports_before(self, deadline: float) -> bool:
        """True when a probe falls due before ``deadline``, or the watcher may add file pieces by then."""
        if any(probe.next_due < deadline for probe in self.probes):
            return True
        watcher = self.watcher
        return watcher is not None and (watcher.busy or watcher.next_due < deadline)

    def _run_watch(self, now: float) -> None:
        watcher = self.watcher
        if watcher is None:
            return
        if now >= watcher.next_due:
            watcher.scan(now, self.outbox.committed)
        # More pieces only as ACKs make room (feed keeps a few unacknowledged), so no busy loop here.
        if watcher.busy and watcher.feed(self.outbox, self.node):
            self._flush_at = min(self._flush_at, now + self.config.batch_delay)

    def _send_answers(self, now: float) -> None:
        """Send what the request workers queued, oldest first; retry soon when the socket is full."""
        self._answers.extend(self.pool.frames())
        self._answer_retry = INF
        while self._answers:
            if not self.session.ready:
                self._answers.clear()  # for requests of a connection that is gone (cancelled in _say_hello)
                return
            if not self._link.send(self._answers[0]):
                self._answer_retry = now + SEND_RETRY
                return
            self._answers.popleft()

    def _commit(self, now: float) -> None:
        if self.outbox.commit() and self.session.ready and self.outbox.unsent:
            self._flush_at = min(self._flush_at, now)

    # --------------------------------------------------------------- sending

    def _send(self, env: Envelope, now: float) -> bool:
        return self._link.send(pack_one(env))

    def _flush(self, now: float) -> None:
        """Commit new reports, then send what is unsent as far as the window allows (more goes out on ACKs)."""
        self._flush_at = INF
        self.outbox.commit()  # nothing leaves before it is on disk
        if not self.session.ready:
            return
        # A frame leaving anyway takes the heartbeat from half an interval on, so an agent reporting
        # about once an interval sends no heartbeat frame of its own (and wakes up once less).
        beat = now - self.session.last_heartbeat >= self.session.heartbeat_interval / 2
        while frame := self.outbox.next_frame(self.config.window):
            extra = [self._heartbeat()] if beat else []
            if not self._link.send(pack([*frame, *extra])):
                self._flush_at = now + SEND_RETRY
                return
            self.outbox.mark_sent(frame)
            if beat:
                self.session.heartbeat_sent(now)
                beat = False
        if self.session.heartbeat_due(now):
            self._send_heartbeat(now)

    def _heartbeat(self) -> Envelope:
        return envelope(Kind.HEARTBEAT, node=self.node, params={"backlog": str(len(self.outbox))})

    def _send_heartbeat(self, now: float) -> None:
        if self._send(self._heartbeat(), now):
            self.session.heartbeat_sent(now)

    # ------------------------------------------------------------- handshake

    def _say_hello(self, now: float, reopen: bool) -> None:
        if reopen:
            self._link.open()
        self._flush_at = INF
        self.pool.cancel_all()
        self._answers.clear()
        info = node_info(self.node, self.instance, self.pool.types)
        self._send(
            envelope(
                Kind.HELLO,
                "NodeInfo",
                info,
                node=self.node,
                seq=self.outbox.first_seq,
                params={"backlog": str(len(self.outbox))},
            ),
            now,
        )
        self.session.hello_sent(now)

    # ------------------------------------------------------------- receiving

    def _receive(self, now: float) -> None:
        for frame in self._link.receive():
            self.session.heard(now)
            try:
                envelopes = unpack(frame)
            except ProtocolError as exc:  # an oversized frame is refused on its length, before any parsing
                self.stats.bad_frames += 1
                if exc.code == "oversized":
                    self.stats.oversized += 1
                self._log_sometimes(exc.code, logging.WARNING, "dropping a bad frame from the collector: %s", exc)
                continue
            for env in envelopes:
                handler = self._handlers.get(env.kind)
                if handler is None:
                    log.debug("ignoring a %s from the collector", kind_name(env.kind))
                    continue
                handler(env, now)

    def _on_hello(self, env: Envelope, now: float) -> None:
        info = self.session.welcome(env)
        if info is None:
            return
        # The ACK that comes in the same batch moves `sent` up to what the collector holds.
        self.outbox.rewind()
        self._flush_at = now
        log.info(
            "%s collector %s at %s (heartbeat %.3g s)",
            "connected to" if self.stats.handshakes == 1 else "reconnected to",
            info.alias or "",
            self.config.collector,
            self.session.heartbeat_interval,
        )

    def _on_ack(self, env: Envelope, now: float) -> None:
        try:
            self.outbox.ack(check_seq(env.seq, low=0, what="ACK seq"))
        except OutOfRangeError as exc:
            self.stats.out_of_range += 1
            self._log_sometimes("ack", logging.WARNING, "ignoring an ACK from the collector: %s", exc)
            return
        if self.session.ready and self.outbox.unsent:
            self._flush_at = min(self._flush_at, now)

    def _on_error(self, env: Envelope, now: float) -> None:
        due = self.session.on_error(env, self.node)
        if due is Due.REFUSED:
            self.stop()
        elif due is Due.REHELLO:
            self._say_hello(now, reopen=False)

    def _on_request(self, env: Envelope, now: float) -> None:
        refusal = self.pool.submit(env)
        if refusal is not None:
            self.stats.requests_refused += 1
            self._send(refusal, now)

    def _log_sometimes(self, key: str, level: int, msg: str, *args: object) -> None:
        self._throttled.log(level, key, msg, *args)

    # --------------------------------------------------------------- stopping

    def _shutdown(self) -> None:
        if self.stats.refused:
            self._abandon()
            return
        if self._stop_signal is not None:
            log.info("stopping on %s", signal.Signals(self._stop_signal).name)
        self._close_pool()
        deadline = time.monotonic() + STOP_FLUSH_TIME
        if self.session.ready:
            self._drain(deadline - BYE_LINGER)
        if self._link.socket is not None:
            self._send(envelope(Kind.BYE, node=self.node), time.monotonic())
        # Without a collector the BYE would only sit in the queue for the whole linger.
        linger = max(BYE_LINGER, deadline - time.monotonic()) if self.session.ready else BYE_LINGER
        self._link.close(linger_ms=int(linger * 1000))
        if self._own_context:
            self._ctx.term()
        self.outbox.close()
        if self.watcher is not None:
            self.watcher.close(self.outbox.committed)
        o = self.outbox.stats
        log.info(
            "stopped: %d reports made, %d sent, %d resent, %d acknowledged, %d dropped by the outbox bounds, "
            "%d unacknowledged kept for the next start, %d reconnects",
            o.added,
            o.sent,
            o.resent,
            o.acked,
            o.dropped,
            len(self.outbox),
            self.stats.reconnects,
        )

    def _abandon(self) -> None:
        """Stop after a refusal: no BYE (the node is another process's), the outbox left as it is on disk."""
        self._close_pool()
        self._link.close(linger_ms=0)
        if self._own_context:
            self._ctx.term()
        self.outbox.close(commit=False)

    def _close_pool(self) -> None:
        self._link.watch(None, "requests")  # its wake-up socket closes with it: never poll a closed fd
        self.pool.close()
        if self.pool.counters["requests"]:
            log.info("node requests: %s", ", ".join(f"{k} {v}" for k, v in self.pool.counters.items()))

    def _drain(self, deadline: float) -> None:
        """Send what is unsent and wait for ACKs until everything is acknowledged or ``deadline``."""
        while self.session.ready:
            now = time.monotonic()
            self._flush(now)
            if (self.outbox.in_flight == 0 and self.outbox.unsent == 0 and not self.outbox.pending) or now >= deadline:
                return
            if self._link.poll(min(deadline, self._flush_at) - now):
                self._receive(time.monotonic())
