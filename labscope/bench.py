"""``labscope bench``: measure labscope against raw pyzmq on this machine, in one run.

Every figure is measured with real processes on loopback: a collector started
for the section, load generators (labscope.benchkit, labscope simulate) and a
real agent. Ratios are taken against the raw pyzmq figure of the same run, so
they hold on a noisy, shared machine where absolute numbers drift. Every figure
a target judges is taken in rounds (``--rounds``), alternated with its baseline
where it has one, and reported as the median and the worst round; the verdict
is taken on the worst round (labscope.benchreport). A round of a ratio runs each
side ``--tries`` times, alternated, and keeps each side's best run (as timeit
keeps its best: another process on the machine only ever slows a run down).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import zmq

from gui.client import Client
from labscope import benchkit
from labscope.bench_nats import JetStreamTarget, JetStreamUnavailableError, jetstream_target
from labscope.bench_scale import run_scale
from labscope.benchreport import (
    FIELDS,
    TARGETS,
    WORST_OF,
    Results,
    format_value,
    markdown,
    median,
    percentile,
    verdict,
    worst,
)
from labscope.children import Children, labscope_args, local_collector_args, wait_collector
from messages.errors import LabscopeError
from messages.keys import Certificate, generate
from messages.options import Parser, run_command

PROG = "labscope bench"
BENCH_MODULES = Path(__file__).resolve().parent / "benchmods"
# The first of the two distributions attached for dist_ingest_*: every point into a JSON-lines file. The
# second is the built-in ``nats`` in reports mode (bench_nats.JetStreamTarget.config), to a fresh stream.
JSONL_CONFIG = '[distributions.bench_jsonl]\ntype = "jsonl"\n'

HISTORY_NODE = "bench-history"
HISTORY_DAYS = 7
HISTORY_REQUESTS = 9

__all__ = [
    "FIELDS",
    "TARGETS",
    "Bench",
    "Sizes",
    "cpu_seconds",
    "format_value",
    "machine_line",
    "main",
    "percentile",
    "verdict",
]


@dataclass
class Sizes:
    """How much each section does; --quick and the override flags shrink it."""

    # Runs of ~4 s each: with the ~2 s of 400,000 / 300,000 a single raw run ranged 118,000-219,000
    # messages/s on this 2-core VM (a spell of noise is a large part of so short a window).
    raw_messages: int = 800_000
    ingest_reports: int = 600_000
    sample_frames: int = 2_000
    reports_per_frame: int = 50
    values_per_report: int = 100
    latency_rate: float = 10_000.0
    latency_seconds: float = 10.0  # per round
    agent_seconds: float = 60.0  # in all, cut into ``rounds`` windows
    scale_agents: int = 5000
    scale_seconds: float = 120.0
    rounds: int = 3
    # Runs of each side of a ratio in one round, alternated; the round keeps each side's best. Three: at two,
    # single ingest runs minutes apart ranged 152,000-278,000 reports/s here, and a round was decided by
    # whether either side's two runs happened to miss every spell of the machine's noise.
    tries: int = 3
    stream_mb: int = 200

    @classmethod
    def quick(cls) -> Sizes:
        """The --quick sizes: the whole bench within about five minutes."""
        return cls(
            raw_messages=200_000,
            ingest_reports=100_000,
            sample_frames=1_000,
            latency_seconds=5.0,
            agent_seconds=30.0,
            scale_agents=5000,
            scale_seconds=30.0,
            rounds=2,
            tries=2,
            stream_mb=100,
        )


class Bench:
    """Runs the sections one after the other, each with its own collector."""

    def __init__(self, sizes: Sizes, folder: Path, say: Callable[[str], None]) -> None:
        self.sizes = sizes
        self.folder = folder
        self.say = say
        self.results = Results()
        self.runs = 0
        self._frame_bytes = 0

    @contextmanager
    def collector(self, *extra: str) -> Iterator[dict[str, Any]]:
        """A fresh collector for one section; yields its endpoints file (agents, clients, pid)."""
        self.runs += 1
        data_dir = self.folder / f"collector-{self.runs}"
        with Children(self.folder) as children:
            child = children.start(
                f"collector-{self.runs}",
                local_collector_args(data_dir, "--log-level", "warning", *extra),
            )
            yield wait_collector(child, data_dir)

    def kit(self, *args: object, timeout: float = 300) -> dict[str, Any]:
        """Run one benchkit load generator to completion; its JSON result."""
        cmd = [sys.executable, "-m", "labscope.benchkit", *map(str, args)]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise LabscopeError(f"load generator {args[0]} failed: {done.stderr.strip().splitlines()[-1:]}")
        return dict(json.loads(done.stdout))

    def put(self, name: str, value: float, note: str = "", rounds: list[float] | None = None) -> None:
        """Record one figure (and say it); with ``rounds``, also its worst round (and ``NAME_worst``)."""
        if rounds:
            note = f"{note}; rounds: {', '.join(format_value(r) for r in rounds)}"
        self.results.values[name] = value
        if note:
            self.results.notes[name] = note
        said = f"{name} = {format_value(value)}"
        if rounds:
            bad = self.results.worst[name] = worst(name, rounds)
            if name in WORST_OF:
                self.results.values[WORST_OF[name]] = bad
            said += f", worst of {len(rounds)} rounds {format_value(bad)}"
        self.say(said + (f"  ({note})" if note else ""))

    def alternate(self, *sides: Callable[[], float]) -> list[float]:
        """One round of a comparison: the sides run in turn (A, B, A, B, ...) ``tries`` times each;
        each side's best rate. Interference from the machine only ever slows a run, and the
        alternation exposes both sides to the same spells of it."""
        best = [0.0] * len(sides)
        for _ in range(self.sizes.tries):
            for index, side in enumerate(sides):
                best[index] = max(best[index], side())
        return best

    def tries_note(self) -> str:
        """How a round of a comparison was taken, for the notes."""
        tries = self.sizes.tries
        return f"each round the best of {tries} alternated runs a side" if tries > 1 else "one run a side a round"

    # ------------------------------------------------------------ sections

    def throughput(self) -> None:
        """Raw pyzmq against labscope ingest, alternated over rounds so drift hits both alike."""
        raws, ingests, unjournaled = [], [], []
        for _ in range(self.sizes.rounds):
            raw, journaled = self.alternate(self._raw_once, self._ingest_once)
            raws.append(raw)
            ingests.append(journaled)
            unjournaled.append(self._ingest_once("--no-journal"))
        ratios = [i / r for i, r in zip(ingests, raws, strict=True)]
        off = median(unjournaled)
        self.put("raw_msgs_per_s", median(raws), f"median of {len(raws)}, 256-byte messages")
        self.put(
            "ingest_reports_per_s",
            median(ingests),
            f"median of {len(ingests)}, {self._frame_bytes}-byte frames, journal on "
            f"(off: {format_value(off)}/s, ratio {median(unjournaled) / median(raws):.2f})",
        )
        self.put(
            "ingest_ratio",
            median(ratios),
            f"median of {len(ratios)} per-round ratios, journal on; {self.tries_note()}",
            ratios,
        )

    def _raw_once(self, server: Certificate | None = None, sender_keys: tuple[str, ...] = ()) -> float:
        """Raw pyzmq messages/s, DEALER to ROUTER; a CURVE server with ``server``'s keys, the sender
        a CURVE client with ``sender_keys`` (the server's public key file, its own secret key file)."""
        ctx = zmq.Context()
        sock = ctx.socket(zmq.ROUTER)
        sock.linger = 0
        if server is not None:
            sock.curve_server = True
            sock.curve_publickey = server.public
            sock.curve_secretkey = server.secret or b""
        port = sock.bind_to_random_port("tcp://127.0.0.1")
        endpoint, count = f"tcp://127.0.0.1:{port}", str(self.sizes.raw_messages)
        sender = subprocess.Popen(
            [sys.executable, "-m", "labscope.benchkit", "raw", endpoint, count, *sender_keys],
            stdout=subprocess.DEVNULL,
        )
        try:
            return benchkit.raw_receive(sock, self.sizes.raw_messages, timeout=30)
        finally:
            sender.wait(60)
            sock.close()
            ctx.term()

    def _ingest_once(self, *collector_flags: str, sender_keys: tuple[str, str] | tuple[()] = ()) -> float:
        with self.collector(*collector_flags) as endpoints:
            result = self.kit("ingest", endpoints["agents"], self.sizes.ingest_reports, *sender_keys)
        self._frame_bytes = int(result["frame_bytes"])
        return float(result["count"] / result["seconds"])

    def distributions(self) -> None:
        """Ingest with two distributions attached (jsonl + nats) against ingest without, alternated."""
        try:
            with jetstream_target(self.folder) as target:
                self._distributions_to(target)
        except JetStreamUnavailableError as exc:
            self.put("dist_ingest_reports_per_s", 0, f"not measured: {exc}")
            self.put("dist_ingest_ratio", 0, "not measured (see dist_ingest_reports_per_s)")

    def _distributions_to(self, target: JetStreamTarget) -> None:
        config = self.folder / "distributions.toml"
        config.write_text(JSONL_CONFIG + target.config("bench_nats"))
        plain: list[float] = []
        attached: list[float] = []
        delivered: list[dict[str, Any]] = []

        def with_distributions() -> float:
            rate, figures = self._ingest_with_distributions(config)
            delivered.append(figures)
            return rate

        for _ in range(self.sizes.rounds):
            without, with_both = self.alternate(self._ingest_once, with_distributions)
            plain.append(without)
            attached.append(with_both)
        ratios = [a / p for a, p in zip(attached, plain, strict=True)]
        self.put(
            "dist_ingest_reports_per_s",
            median(attached),
            f"median of {len(attached)}, journal on, jsonl (points) + nats (reports, from the journal) to "
            f"{target.where}, stream {target.stream} (deleted afterwards; {target.messages():,} messages in it at "
            f"the end); without: {format_value(median(plain))}/s; last round: {describe_delivery(delivered[-1])}",
        )
        self.put(
            "dist_ingest_ratio",
            median(ratios),
            f"median of {len(ratios)} per-round ratios to ingest without distributions; {self.tries_note()}",
            ratios,
        )

    def _ingest_with_distributions(self, config: Path) -> tuple[float, dict[str, Any]]:
        with self.collector("--config", str(config)) as endpoints:
            result = self.kit("ingest", endpoints["agents"], self.sizes.ingest_reports)
            with Client(endpoints["clients"]) as client:
                figures = dict(client.request("Distributions", timeout=10).payload)
        return float(result["count"] / result["seconds"]), figures

    def curve(self) -> None:
        """Ingest with CURVE on (``--curve-secret``, ``--allow-agents``) against raw CURVE pyzmq, alternated."""
        keys = self.folder / "curve-keys"
        allowed = keys / "agents"
        collector = generate(keys, "collector")
        ingest = generate(keys, benchkit.INGEST_NODE)  # the key's name is the node id it may report as
        allowed.mkdir()
        public = f"{benchkit.INGEST_NODE}.key"
        (allowed / public).write_bytes((keys / public).read_bytes())  # only public keys in an allow folder
        flags = ("--curve-secret", str(collector.path), "--allow-agents", str(allowed))
        sender = (str(keys / "collector.key"), str(ingest.path))
        raw: list[float] = []
        curve: list[float] = []
        for _ in range(self.sizes.rounds):
            raw_rate, curve_rate = self.alternate(
                lambda: self._raw_once(collector, sender), lambda: self._ingest_once(*flags, sender_keys=sender)
            )
            raw.append(raw_rate)
            curve.append(curve_rate)
        ratios = [c / r for c, r in zip(curve, raw, strict=True)]
        plain = self.results.values.get("ingest_reports_per_s")
        cost = f"; plain ingest {format_value(plain)}/s in the throughput section" if plain else ""
        self.put(
            "curve_ingest_ratio",
            median(ratios),
            f"median of {len(ratios)} per-round ratios, journal on, {self.tries_note()}; "
            f"CURVE ingest {format_value(median(curve))}/s, "
            f"raw CURVE pyzmq {format_value(median(raw))}/s{cost}",
            ratios,
        )

    def samples(self) -> None:
        """Batched Samples reports (50 reports x 100 values per frame) into the samples module."""
        sizes = self.sizes
        with self.collector() as endpoints:
            result = self.kit(
                "samples", endpoints["agents"], sizes.sample_frames, sizes.reports_per_frame, sizes.values_per_report
            )
        self.put(
            "samples_per_s",
            result["count"] / result["seconds"],
            f"{sizes.reports_per_frame} reports x {sizes.values_per_report} values per frame",
        )

    def latency(self) -> None:
        """Report sent -> push-on-change update received by a subscribed client, at a paced rate, in rounds."""
        sizes = self.sizes
        p50s, p99s, reports = [], [], 0
        for _ in range(sizes.rounds):
            delays = sorted(self._latency_round())
            p50s.append(1000 * percentile(delays, 50))
            p99s.append(1000 * percentile(delays, 99))
            reports += len(delays)
        rounds = f"{len(p99s)} rounds of {sizes.latency_seconds:g} s at {sizes.latency_rate:g} reports/s"
        self.put("latency_p50_ms", median(p50s), f"median of the rounds' p50; {rounds}, {reports:,} reports in all")
        self.put("latency_p99_ms", median(p99s), "median of the rounds' p99", p99s)

    def _latency_round(self) -> list[float]:
        sizes = self.sizes
        with self.collector("--modules-dir", str(BENCH_MODULES)) as endpoints:
            with Client(endpoints["clients"]) as client:
                client.subscribe(["BenchLatency"])
                generator = subprocess.Popen(
                    [
                        sys.executable,
                        *("-m", "labscope.benchkit", "paced", endpoints["agents"]),
                        *(str(sizes.latency_rate), str(sizes.latency_seconds)),
                    ],
                    stdout=subprocess.DEVNULL,
                )
                delays = collect_latencies(client, generator, sizes.latency_seconds + 15)
        if not delays:
            raise LabscopeError("no BenchLatency update arrived")
        return delays

    def agent(self) -> None:
        """One real agent at the default 1 s interval: CPU as % of one core per window, resident memory."""
        sizes = self.sizes
        window = sizes.agent_seconds / sizes.rounds
        with self.collector() as endpoints, Children(self.folder) as children:
            agent = children.start(
                "agent",
                labscope_args(
                    "agent",
                    *("--collector", endpoints["agents"], "--node-id", "bench-agent", "--interval", "1"),
                    *("--data-dir", str(self.folder / "agent"), "--log-level", "warning"),
                ),
            )
            process = psutil.Process(agent.popen.pid)
            time.sleep(3)  # start-up (imports, first sample) is not the steady cost being measured
            windows = [measure_process(process, window) for _ in range(sizes.rounds)]
        cpus = [cpu for cpu, _ in windows]
        self.put(
            "agent_cpu_percent",
            median(cpus),
            f"median of {len(cpus)} rounds of {window:g} s",
            cpus,
        )
        self.put("agent_rss_mb", max(rss for _, rss in windows), f"peak over all {len(cpus)} rounds")

    def scale(self) -> None:
        """N simulated agents at 1 report/s: nodes wrongly lost, collector memory per node."""
        sizes = self.sizes
        with self.collector() as endpoints:
            figures = run_scale(endpoints, sizes.scale_agents, sizes.scale_seconds)
        self.put("scale_agents", sizes.scale_agents, figures.note(sizes.scale_seconds))
        self.put("false_lost", figures.counters.get("nodes-lost", 0))
        self.put("collector_rss_mb_per_node", figures.rss_per_node_mb(), "peak during the run minus before, per agent")

    def stream(self) -> None:
        """A file streamed from a real agent through the collector, alternated with a raw pyzmq stream of it."""
        serve = self.folder / "serve"
        serve.mkdir(exist_ok=True)
        path = serve / "stream.bin"
        with open(path, "wb") as handle:
            for _ in range(self.sizes.stream_mb):
                handle.write(os.urandom(2**20))
        raws: list[float] = []
        rates: list[float] = []
        with self.collector() as endpoints, Children(self.folder) as children:
            children.start(
                "stream-agent",
                labscope_args(
                    "agent",
                    *("--collector", endpoints["agents"], "--node-id", "bench-stream", "--serve-dir", str(serve)),
                    *("--data-dir", str(self.folder / "stream-agent"), "--log-level", "warning"),
                ),
            )
            with Client(endpoints["clients"]) as client:
                wait_node(client, "bench-stream", timeout=20)
                for _ in range(self.sizes.rounds):
                    raw, through = self.alternate(lambda: self._raw_stream(path), lambda: stream_through(client, path))
                    raws.append(raw)
                    rates.append(through)
        ratios = [r / raw for r, raw in zip(rates, raws, strict=True)]
        self.put(
            "stream_mb_per_s",
            median(rates),
            f"median of {len(rates)}, {self.sizes.stream_mb} MiB agent -> collector -> client, "
            f"checked end to end by the client (NodeFile)",
        )
        self.put(
            "stream_ratio",
            median(ratios),
            f"median of {len(ratios)} per-round ratios, {self.tries_note()}; raw pyzmq stream of the same file: "
            f"{median(raws):.0f} MB/s",
            ratios,
        )

    def _raw_stream(self, path: Path) -> float:
        ctx = zmq.Context()
        sock = ctx.socket(zmq.ROUTER)
        sock.linger = 0
        port = sock.bind_to_random_port("tcp://127.0.0.1")
        sender = subprocess.Popen(
            [sys.executable, "-m", "labscope.benchkit", "rawstream", f"tcp://127.0.0.1:{port}", str(path), str(2**20)],
            stdout=subprocess.DEVNULL,
        )
        try:
            received, seconds = benchkit.raw_stream_receive(sock, timeout=30)
        finally:
            sender.wait(60)
            sock.close()
            ctx.term()
        return received / seconds / 2**20

    def history(self) -> None:
        """SystemStatsHistory of 7 days of one node at the 1-minute tier, SQLite store, through a real collector."""
        data_dir = self.folder / f"collector-{self.runs + 1}"  # the one self.collector() opens next
        end = fill_history(data_dir, HISTORY_NODE, HISTORY_DAYS)
        params = {"node": HISTORY_NODE, "since": repr(end - HISTORY_DAYS * 86400), "resolution": "1m"}
        times = []
        with self.collector() as endpoints, Client(endpoints["clients"]) as client:
            for _ in range(HISTORY_REQUESTS):
                started = time.perf_counter()
                answer = client.request("SystemStatsHistory", params, timeout=60).payload
                times.append(1000 * (time.perf_counter() - started))
                points = {len(series.time) for series in answer.series}
                if len(answer.series) != 7 or points != {HISTORY_DAYS * 1440}:
                    raise LabscopeError(f"SystemStatsHistory answered {len(answer.series)} series of {points} points")
        note = f"median of {len(times)} requests, worst {max(times):.1f} ms; 7 series x {HISTORY_DAYS * 1440} buckets"
        self.put("history_7d_ms", median(times), note)

    def run(self) -> Results:
        """Every section, in an order where later ones do not disturb earlier ones."""
        sections = (
            self.throughput,
            self.distributions,
            self.curve,
            self.samples,
            self.latency,
            self.agent,
            self.scale,
            self.stream,
            self.history,
        )
        for section in sections:
            self.say(f"-- {section.__doc__.splitlines()[0] if section.__doc__ else section.__name__}")
            section()
        return self.results


def fill_history(data_dir: Path, node: str, days: int) -> float:
    """Record ``days`` of one sample a minute of ``node``'s seven figures into a new SQLite store; the last time."""
    from collector.stores import open_store  # the bench's only look inside the collector: to fill its store
    from modules.systemstats import POINT_NAMES  # the seven figures systemstats records

    end = (time.time() // 60) * 60 - 60
    store = open_store("sqlite", {}, data_dir)
    try:
        for minute in range(days * 1440):
            t = end - (days * 1440 - 1 - minute) * 60
            store.history.record(node, POINT_NAMES, t, [float((minute * k) % 97) for k in range(1, 8)])
    finally:
        store.close()
    return end


def describe_delivery(figures: dict[str, Any]) -> str:
    """What each distribution did in the last round: entries offered, payloads sent, entries dropped."""
    parts = [
        f"{name}: {stats['offered']:,} offered, {stats['sent']:,} sent, {sum(stats['dropped'].values()):,} dropped"
        for name, stats in sorted(figures.items())
    ]
    return "; ".join(parts) or "no distribution answered"


def wait_node(client: Client, node: str, timeout: float) -> None:
    """Wait until ``node`` is live at the collector."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        nodes = client.request("NodeList", timeout=5).payload.nodes
        if any(n.node == node and n.status == "live" for n in nodes):
            return
        time.sleep(0.2)
    raise LabscopeError(f"node {node} did not come up within {timeout:g} s")


def collect_latencies(client: Client, generator: subprocess.Popen[bytes], timeout: float) -> list[float]:
    """Delays (s) between each report's send time and the arrival of the update that carried it."""
    delays: list[float] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        update = client.next_update(timeout=0.5)
        if update is not None:
            now = time.time()
            delays.extend(now - sent for sent in update.payload)
        elif generator.poll() is not None:
            break
    generator.wait(10)
    return delays


def cpu_seconds(process: psutil.Process) -> float:
    """CPU time of every thread of ``process`` (s), to the nanosecond where Linux's schedstat has it.

    psutil's cpu_times count 10 ms ticks: over a 20 s round that is 0.05 % of a core per tick,
    a sixth of the agent's target, so a round of the agent would be judged on rounding.
    """
    try:
        tasks = [int(t.read_text().split()[0]) for t in Path(f"/proc/{process.pid}/task").glob("*/schedstat")]
    except (OSError, ValueError, IndexError):  # a thread ended while being read, or no such file here
        tasks = []
    if tasks:
        return sum(tasks) / 1e9
    times = process.cpu_times()
    return float(times.user + times.system)


def measure_process(process: psutil.Process, seconds: float) -> tuple[float, float]:
    """CPU (% of one core) over ``seconds`` and peak resident memory (MB) of a running process."""
    before, started, peak = cpu_seconds(process), time.monotonic(), 0
    while time.monotonic() - started < seconds:
        peak = max(peak, process.memory_info().rss)
        time.sleep(min(1.0, seconds))
    busy, elapsed = cpu_seconds(process) - before, time.monotonic() - started
    return 100.0 * busy / elapsed, peak / 2**20


def stream_through(client: Client, path: Path) -> float:
    """MB/s of one NodeFile stream of ``path`` from ``bench-stream`` through the collector."""
    start, received = time.perf_counter(), 0
    for chunk in client.stream_views("NodeFile", {"node": "bench-stream", "path": str(path)}, timeout=60):
        received += len(chunk)
    if received != path.stat().st_size:
        raise LabscopeError(f"the stream of {path.name} brought {received:,} of {path.stat().st_size:,} bytes")
    return received / (time.perf_counter() - start) / 2**20


def machine_line() -> str:
    """Cores, memory and library versions of this machine."""
    import platform

    import gevent
    import google.protobuf

    return (
        f"{psutil.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}, "
        f"pyzmq {zmq.__version__} / libzmq {zmq.zmq_version()}, gevent {gevent.__version__}, "
        f"protobuf {google.protobuf.__version__}"
    )


def build_parser() -> Parser:
    """The ``labscope bench`` argument parser."""
    parser = Parser(
        prog=PROG,
        description="Measure labscope on this machine against raw pyzmq: ingest, "
        "batched samples, report-to-update latency, agent cost, many agents on one collector. "
        "Prints a markdown table; --json writes the figures.",
    )
    parser.add_argument("--quick", action="store_true", help="smaller sizes: done within about 5 minutes")
    parser.add_argument("--json", metavar="FILE", help="write the figures as JSON to FILE")
    parser.add_argument("--markdown", metavar="FILE", help="write the table as markdown to FILE")
    sizes = parser.add_argument_group("size overrides (for a tiny smoke run)")
    for name in ("raw_messages", "ingest_reports", "sample_frames", "scale_agents", "stream_mb"):
        sizes.add_argument(f"--{name.replace('_', '-')}", type=int, metavar="N")
    sizes.add_argument("--rounds", type=int, metavar="N", help="rounds of each judged figure (3; 2 with --quick)")
    sizes.add_argument(
        "--tries",
        type=int,
        metavar="N",
        help="runs of each side of a ratio in one round, alternated; the round keeps each side's best "
        "(3; 2 with --quick)",
    )
    for name in ("latency_seconds", "agent_seconds", "scale_seconds"):
        sizes.add_argument(f"--{name.replace('_', '-')}", type=float, metavar="S")
    return parser


def run(argv: list[str]) -> int:
    """Run the bench and report."""
    args = build_parser().parse_args(argv)
    sizes = Sizes.quick() if args.quick else Sizes()
    for name in (f.name for f in dataclasses.fields(sizes)):
        value = getattr(args, name, None)
        if value is not None:
            if value <= 0:
                raise_usage(f"--{name.replace('_', '-')} must be greater than 0")
            setattr(sizes, name, value)
    load_before, started = os.getloadavg()[0], time.monotonic()
    with tempfile.TemporaryDirectory(prefix="labscope-bench-") as folder:
        results = Bench(sizes, Path(folder), lambda line: print(line, file=sys.stderr, flush=True)).run()
    # A shared machine's other work shows in every figure: say how busy it was.
    busy = f"; load average {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"
    took = f"; took {time.monotonic() - started:.0f} s"
    table = markdown(results, machine_line() + busy + took)
    sys.stdout.write(table)
    if args.markdown:
        Path(args.markdown).write_text(table)
    if args.json:
        Path(args.json).write_text(json.dumps({name: results.values.get(name, 0.0) for name in FIELDS}, indent=2))
    return 0


def raise_usage(message: str) -> None:
    """Stop with a usage error (exit 2)."""
    from messages.errors import ConfigError

    raise ConfigError(message)


def main(argv: list[str]) -> int:
    """Entry point of ``labscope bench``."""
    return run_command(PROG, lambda: run(argv))
