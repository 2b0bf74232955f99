"""``labscope simulate``: many agents in one process, to size a collector.

Each simulated agent is a greenlet with its own DEALER socket. It speaks the
real protocol (HELLO with NodeInfo, REPORTs with real per-node sequence numbers,
cumulative ACKs, heartbeats, re-HELLO on ``hello-required``) and sends
synthetic ``SystemStats`` reports at ``--rate`` reports per second, ``--batch``
reports per frame. Point it at your own collector::

    labscope simulate --collector tcp://collector:5555 --agents 1000 --rate 1

It prints one JSON line of totals when it stops (SIGINT/SIGTERM or --duration).
With ``--curve-server-key`` / ``--curve-secret`` every simulated agent's DEALER
is a CURVE client with that one key (whose certificate must list the simulated
node ids in its ``nodes`` metadata: ``labscope keys generate DIR NAME --nodes ...``).
A collector that refuses the handshake of every agent ends it with one line, exit 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import resource
import signal
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import gevent
import zmq.green as zmq

from messages import Code, CollectorInfo, Envelope, Kind, NodeInfo, SystemStats, __version__
from messages.codec import envelope, pack, unpack
from messages.errors import AuthRefused
from messages.handshake import HandshakeWatch
from messages.keys import ClientKeys, add_curve_args, client_keys
from messages.options import Parser, add_collector_arg, positive_float, run_command, setup_logging
from node_agent.session import HELLO_BACKOFF_MAX

log = logging.getLogger(__name__)

PROG = "labscope simulate"
HELLO_RETRY = 2.0  # seconds before an unanswered HELLO is sent again; doubles with each retry
HELLO_RETRY_MAX = HELLO_BACKOFF_MAX  # as a real agent: thousands of fixed-period retries would be a storm of their own
WINDOW = 1000  # unacknowledged reports an agent keeps in flight at most
FINAL_ACK_WAIT = 2.0  # seconds an agent waits at the end for the ACK of what it sent


class Stop:
    """A shared stop time (monotonic) that a signal can bring forward."""

    def __init__(self, at: float) -> None:
        self.at = at

    def now(self) -> None:
        """Stop every agent at its next wake-up."""
        self.at = 0.0


@dataclass
class Totals:
    """What all simulated agents did together."""

    sent: int = 0
    acked: int = 0
    hellos: int = 0
    heartbeats: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    def as_dict(self, started: float, agents: int) -> dict[str, object]:
        """Totals plus the achieved rate, for the closing JSON line."""
        seconds = max(time.monotonic() - started, 1e-9)
        return {
            "agents": agents,
            "seconds": round(seconds, 3),
            "sent": self.sent,
            "acked": self.acked,
            "acked_per_s": round(self.acked / seconds, 1),
            "hellos": self.hellos,
            "heartbeats": self.heartbeats,
            "errors": self.errors,
        }


class SimulatedAgent:
    """One fake node: a DEALER, a sequence counter and what is not yet acknowledged."""

    def __init__(
        self,
        context: zmq.Context[zmq.Socket[bytes]],
        endpoint: str,
        node: str,
        totals: Totals,
        keys: ClientKeys | None = None,
        watch: bool = False,
    ) -> None:
        self.node = node
        self.totals = totals
        self.sock = context.socket(zmq.DEALER)
        self.sock.linger = 0
        if keys is not None:
            keys.apply(self.sock)
        # Made before connect, so that no handshake event is missed.
        self.watch = HandshakeWatch(self.sock, curve=keys is not None) if watch else None
        self.sock.connect(endpoint)
        self.instance = uuid.uuid4().hex
        self.next_seq = 1
        self.acked = 0
        self.ready = False
        self.heartbeat_interval = 1.0
        self.last_sent = 0.0

    def hello(self) -> None:
        """Say HELLO; the first seq to (re)send is the first unacknowledged one."""
        info = NodeInfo(
            node=self.node,
            hostname=self.node,
            os="Linux",
            cpu_count=4,
            memory_total=8 << 30,
            agent_version=f"{__version__}-sim",
            instance=self.instance,
        )
        self._send([envelope(Kind.HELLO, "NodeInfo", info, node=self.node, seq=self.acked + 1)])
        self.totals.hellos += 1

    def report_batch(self, count: int) -> None:
        """Send ``count`` new SystemStats reports in one frame (fewer when the window is full)."""
        count = min(count, WINDOW - (self.next_seq - 1 - self.acked))
        if count <= 0:
            return
        now = time.time()
        batch = [
            envelope(Kind.REPORT, "SystemStats", synthetic_stats(now), node=self.node, seq=self.next_seq + i, time=now)
            for i in range(count)
        ]
        if self._send(batch):
            self.next_seq += count
            self.totals.sent += count

    def heartbeat_if_idle(self) -> None:
        """Send a HEARTBEAT when nothing went out for a heartbeat interval."""
        if time.monotonic() - self.last_sent >= self.heartbeat_interval:
            self._send([envelope(Kind.HEARTBEAT, node=self.node)])
            self.totals.heartbeats += 1

    def _send(self, envelopes: list[Envelope]) -> bool:
        """Send one frame without blocking; False when the socket has no peer to take it.

        That happens after a refused handshake: libzmq drops the connection, and a DEALER
        without one cannot queue. The HELLO retry sends again.
        """
        try:
            self.sock.send(pack(envelopes), zmq.NOBLOCK)
        except zmq.Again:
            return False
        self.last_sent = time.monotonic()
        return True

    def receive(self, timeout: float) -> None:
        """Handle everything the collector sends within ``timeout`` seconds."""
        # A green recv under a gevent.Timeout waits on the hub's epoll; zmq.green's poll() uses
        # select(), which fails once descriptors pass 1024 (a thousand agents get there).
        frame = None
        with gevent.Timeout(max(timeout, 0.0), False):
            frame = self.sock.recv()
        while frame is not None:
            for env in unpack(frame):
                self._on(env)
            try:
                frame = self.sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                frame = None

    def _on(self, env: Envelope) -> None:
        if env.kind == Kind.ACK:
            self.totals.acked += max(0, env.seq - self.acked)
            self.acked = max(self.acked, env.seq)
            self.ready = True
        elif env.kind == Kind.HELLO:
            self.heartbeat_interval = CollectorInfo.FromString(env.payload).heartbeat_interval or 1.0
        elif env.kind == Kind.ERROR:
            self.totals.errors[env.error_code] = self.totals.errors.get(env.error_code, 0) + 1
            if env.error_code == Code.HELLO_REQUIRED:
                self.ready = False
                self.next_seq = self.acked + 1  # resend what was not acknowledged
                self.hello()

    def run(self, rate: float, batch: int, stop: Stop) -> None:
        """Report at ``rate`` reports/s in frames of ``batch`` until ``stop`` (monotonic time)."""
        period = batch / rate
        gevent.sleep(random.uniform(0, min(period, 1.0)))  # spread the agents over the period
        self.hello()
        hello_sent = next_send = time.monotonic()
        retry = HELLO_RETRY
        while (now := time.monotonic()) < stop.at:
            if now >= next_send:
                if self.ready:
                    self.report_batch(batch)
                elif now - hello_sent > retry:
                    self.hello()
                    hello_sent, retry = now, min(retry * 2, HELLO_RETRY_MAX)
                next_send = max(next_send + period, now)
            if self.ready:
                self.heartbeat_if_idle()
            wake = min(next_send, stop.at, self.last_sent + self.heartbeat_interval)
            self.receive(wake - time.monotonic())
        self.await_acks(FINAL_ACK_WAIT)
        self._send([envelope(Kind.BYE, node=self.node)])

    def await_acks(self, timeout: float) -> None:
        """Wait, at most ``timeout`` s, for the ACK of every report sent, as an agent that stops flushes first."""
        # Without it, a batch sent just before the end was applied by the collector but not counted as acked.
        deadline = time.monotonic() + timeout
        while self.ready and self.acked < self.next_seq - 1 and (left := deadline - time.monotonic()) > 0:
            self.receive(left)

    def close(self) -> None:
        """Close the socket at once."""
        self.sock.close(linger=0)


def synthetic_stats(now: float) -> SystemStats:
    """A plausible SystemStats sample of about 200 bytes."""
    stats = SystemStats(time=now, cpu_percent=random.uniform(0, 100), load1=random.uniform(0, 4), interval=1.0)
    stats.cpu_percent_per_cpu.extend(random.uniform(0, 100) for _ in range(4))
    stats.memory.total, stats.memory.used = 8 << 30, random.randint(1 << 30, 6 << 30)
    stats.memory.percent = 100.0 * stats.memory.used / stats.memory.total
    stats.net_io_total.name, stats.net_io_total.recv_rate = "total", random.uniform(0, 1e6)
    stats.net_io_total.send_rate = random.uniform(0, 1e6)
    stats.disk_io_total.name, stats.disk_io_total.write_rate = "total", random.uniform(0, 1e7)
    return stats


def node_names(prefix: str, count: int) -> Iterator[str]:
    """``prefix-0001`` ... with enough digits for ``count``."""
    width = max(4, len(str(count)))
    return (f"{prefix}-{i:0{width}d}" for i in range(1, count + 1))


def raise_file_limit(sockets: int) -> None:
    """Each ZeroMQ socket needs a few descriptors; lift the soft limit towards the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = sockets * 3 + 256
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


def simulate(
    endpoint: str,
    agents: int,
    rate: float,
    batch: int,
    duration: float | None,
    prefix: str = "sim",
    stop: Stop | None = None,
    keys: ClientKeys | None = None,
) -> dict[str, object]:
    """Run ``agents`` simulated agents until ``duration`` elapses, or ``stop`` says so; returns the totals.

    ``keys`` make every agent a CURVE client. Raises AuthRefused when the collector
    refused the handshake and no report was acknowledged.
    """
    raise_file_limit(agents)
    context = zmq.Context()
    context.set(zmq.MAX_SOCKETS, agents + 64)
    totals, started = Totals(), time.monotonic()
    stop = stop or Stop(float("inf"))
    if duration:
        stop.at = min(stop.at, started + duration)
    # The first agent's handshake stands for all: they share the key and the collector.
    sims = [
        SimulatedAgent(context, endpoint, name, totals, keys, watch=i == 0)
        for i, name in enumerate(node_names(prefix, agents))
    ]
    watch = sims[0].watch
    assert watch is not None
    greenlets = [gevent.spawn(sim.run, rate, batch, stop) for sim in sims]
    try:
        gevent.joinall(greenlets, raise_error=True)
        refusal = watch.check()
    finally:
        gevent.killall(greenlets, timeout=2)
        watch.close()
        for sim in sims:
            sim.close()
        context.term()
    if refusal is not None and totals.acked == 0:
        raise AuthRefused(endpoint, refusal)
    return totals.as_dict(started, agents)


def build_parser() -> Parser:
    """The ``labscope simulate`` argument parser."""
    parser = Parser(
        prog=PROG,
        description="Simulate many agents in one process (gevent) speaking the real "
        "protocol to a collector, to see how many nodes it takes. Prints one JSON line of totals.",
    )
    add_collector_arg(parser, "agents", "tcp://collector:5555")
    parser.add_argument("--agents", type=_positive_int, default=100, metavar="N", help="agents to simulate (100)")
    parser.add_argument(
        "--rate", type=positive_float, default=1.0, metavar="R", help="reports per second per agent (1)"
    )
    parser.add_argument("--batch", type=_positive_int, default=1, metavar="B", help="reports per frame (1)")
    parser.add_argument(
        "--duration",
        type=positive_float,
        default=None,
        metavar="S",
        help="stop after S seconds (default: until Ctrl-C)",
    )
    parser.add_argument("--prefix", default="sim", help="node ids are PREFIX-0001 ... (sim)")
    parser.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="warning")
    add_curve_args(parser)
    return parser


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be a whole number of at least 1")
    return int(text)


def main(argv: list[str]) -> int:
    """Run the simulator; prints the totals as one JSON line."""
    from gevent import monkey

    monkey.patch_all()

    def run() -> int:
        args = build_parser().parse_args(argv)
        setup_logging(args.log_level)
        stop = Stop(float("inf"))
        for signum in (signal.SIGINT, signal.SIGTERM):
            gevent.signal_handler(signum, stop.now)
        keys = client_keys(args.curve_server_key, args.curve_secret)
        totals = simulate(args.collector, args.agents, args.rate, args.batch, args.duration, args.prefix, stop, keys)
        sys.stdout.write(json.dumps(totals) + "\n")
        return 0

    return run_command(PROG, run)
