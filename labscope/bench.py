"""``labscope bench``: measure labscope against raw pyzmq on this machine, in one run.

Every figure is measured with real processes on loopback: a collector started
for the section, load generators (labscope.benchkit, labscope simulate) and a
real agent. Ratios are taken against the raw pyzmq figure of the same run, so
they hold on a noisy, shared machine where absolute numbers drift.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import zmq

from gui.client import Client
from labscope import benchkit
from labscope.children import Children, labscope_args, local_collector_args, wait_collector
from messages.errors import LabscopeError
from messages.keys import generate
from messages.options import Parser, run_command

PROG = "labscope bench"
BENCH_MODULES = Path(__file__).resolve().parent / "benchmods"
BENCH_DISTS = Path(__file__).resolve().parent / "benchdists"
# The two distributions attached for dist_ingest_*: every point into a JSON-lines file, and every point
# into a distribution that sends it nowhere (the runner's own cost).
DIST_CONFIG = '[distributions.bench_jsonl]\ntype = "jsonl"\n[distributions.bench_null]\ntype = "null"\n'

HISTORY_NODE = "bench-history"
HISTORY_DAYS = 7
HISTORY_REQUESTS = 9

FIELDS = (
    "raw_msgs_per_s",
    "ingest_reports_per_s",
    "ingest_ratio",
    "dist_ingest_reports_per_s",
    "dist_ingest_ratio",
    "curve_ingest_ratio",
    "samples_per_s",
    "latency_p50_ms",
    "latency_p99_ms",
    "agent_cpu_percent",
    "agent_rss_mb",
    "scale_agents",
    "false_lost",
    "collector_rss_mb_per_node",
    "stream_mb_per_s",
    "stream_ratio",
    "history_7d_ms",
)

# field -> (comparison, target) as the performance issue sets them
TARGETS: dict[str, tuple[str, float]] = {
    "ingest_ratio": (">=", 0.5),
    "dist_ingest_ratio": (">=", 0.8),
    "samples_per_s": (">=", 1_000_000),
    "latency_p99_ms": ("<=", 5.0),
    "agent_cpu_percent": ("<=", 0.3),
    "agent_rss_mb": ("<=", 35.0),
    "false_lost": ("==", 0),
    "stream_ratio": (">=", 0.5),
    "history_7d_ms": ("<=", 20.0),
}


@dataclass
class Sizes:
    """How much each section does; --quick and the override flags shrink it."""

    raw_messages: int = 400_000
    ingest_reports: int = 300_000
    sample_frames: int = 2_000
    reports_per_frame: int = 50
    values_per_report: int = 100
    latency_rate: float = 10_000.0
    latency_seconds: float = 10.0
    agent_seconds: float = 60.0
    scale_agents: int = 1000
    scale_seconds: float = 120.0
    rounds: int = 3
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
            scale_agents=300,
            scale_seconds=30.0,
            rounds=2,
            stream_mb=100,
        )


@dataclass
class Results:
    """The figures, plus a note for any figure that needs one."""

    values: dict[str, float] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)


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

    def put(self, name: str, value: float, note: str = "") -> None:
        """Record one figure (and say it)."""
        self.results.values[name] = value
        if note:
            self.results.notes[name] = note
        self.say(f"{name} = {format_value(value)}" + (f"  ({note})" if note else ""))

    # ------------------------------------------------------------ sections

    def throughput(self) -> None:
        """Raw pyzmq against labscope ingest, alternated over rounds so drift hits both alike."""
        raws, ingests, unjournaled = [], [], []
        for _ in range(self.sizes.rounds):
            raws.append(self._raw_once())
            ingests.append(self._ingest_once())
            unjournaled.append(self._ingest_once("--no-journal"))
        ratios = [i / r for i, r in zip(ingests, raws, strict=True)]
        off = statistics.median(unjournaled)
        self.put("raw_msgs_per_s", statistics.median(raws), f"median of {len(raws)}, 256-byte messages")
        self.put(
            "ingest_reports_per_s",
            statistics.median(ingests),
            f"median of {len(ingests)}, {self._frame_bytes}-byte frames, journal on "
            f"(off: {format_value(off)}/s, ratio {statistics.median(unjournaled) / statistics.median(raws):.2f})",
        )
        self.put("ingest_ratio", statistics.median(ratios), "median of the per-round ratios, journal on")

    def _raw_once(self) -> float:
        ctx = zmq.Context()
        sock = ctx.socket(zmq.ROUTER)
        sock.linger = 0
        port = sock.bind_to_random_port("tcp://127.0.0.1")
        sender = subprocess.Popen(
            [sys.executable, "-m", "labscope.benchkit", "raw", f"tcp://127.0.0.1:{port}", str(self.sizes.raw_messages)],
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
        """Ingest with two distributions attached (jsonl + null) against ingest without, alternated."""
        config = self.folder / "distributions.toml"
        config.write_text(DIST_CONFIG)
        plain: list[float] = []
        attached: list[float] = []
        delivered: list[dict[str, Any]] = []
        for _ in range(self.sizes.rounds):
            plain.append(self._ingest_once())
            rate, figures = self._ingest_with_distributions(config)
            attached.append(rate)
            delivered.append(figures)
        ratios = [a / p for a, p in zip(attached, plain, strict=True)]
        self.put(
            "dist_ingest_reports_per_s",
            statistics.median(attached),
            f"median of {len(attached)}, journal on, jsonl + null attached (without: "
            f"{format_value(statistics.median(plain))}/s); {describe_delivery(delivered[-1])}",
        )
        self.put(
            "dist_ingest_ratio",
            statistics.median(ratios),
            "median of the per-round ratios to ingest without distributions in the same run",
        )

    def _ingest_with_distributions(self, config: Path) -> tuple[float, dict[str, Any]]:
        with self.collector("--config", str(config), "--distributions-dir", str(BENCH_DISTS)) as endpoints:
            result = self.kit("ingest", endpoints["agents"], self.sizes.ingest_reports)
            with Client(endpoints["clients"]) as client:
                figures = dict(client.request("Distributions", timeout=10).payload)
        return float(result["count"] / result["seconds"]), figures

    def curve(self) -> None:
        """Ingest with CURVE on (``--curve-secret``, ``--allow-agents``) against ingest without, alternated."""
        keys = self.folder / "curve-keys"
        allowed = keys / "agents"
        collector = generate(keys, "collector")
        ingest = generate(keys, benchkit.INGEST_NODE)  # the key's name is the node id it may report as
        allowed.mkdir()
        public = f"{benchkit.INGEST_NODE}.key"
        (allowed / public).write_bytes((keys / public).read_bytes())  # only public keys in an allow folder
        flags = ("--curve-secret", str(collector.path), "--allow-agents", str(allowed))
        sender = (str(keys / "collector.key"), str(ingest.path))
        plain: list[float] = []
        curve: list[float] = []
        for _ in range(self.sizes.rounds):
            plain.append(self._ingest_once())
            curve.append(self._ingest_once(*flags, sender_keys=sender))
        ratios = [c / p for c, p in zip(curve, plain, strict=True)]
        self.put(
            "curve_ingest_ratio",
            statistics.median(ratios),
            f"median of {len(ratios)} per-round ratios, journal on; CURVE {format_value(statistics.median(curve))}/s, "
            f"plain {format_value(statistics.median(plain))}/s",
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
        """Report sent -> push-on-change update received by a subscribed client, at a paced rate."""
        sizes = self.sizes
        with self.collector("--modules-dir", str(BENCH_MODULES)) as endpoints:
            with Client(endpoints["clients"]) as client:
                client.subscribe(["BenchLatency"])
                generator = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "labscope.benchkit",
                        "paced",
                        endpoints["agents"],
                        str(sizes.latency_rate),
                        str(sizes.latency_seconds),
                    ],
                    stdout=subprocess.DEVNULL,
                )
                delays = collect_latencies(client, generator, sizes.latency_seconds + 15)
        if not delays:
            raise LabscopeError("no BenchLatency update arrived")
        delays.sort()
        self.put("latency_p50_ms", 1000 * percentile(delays, 50), f"{len(delays)} reports at {sizes.latency_rate:g}/s")
        self.put("latency_p99_ms", 1000 * percentile(delays, 99))

    def agent(self) -> None:
        """One real agent at the default 1 s interval: CPU as % of one core, resident memory."""
        seconds = self.sizes.agent_seconds
        with self.collector() as endpoints, Children(self.folder) as children:
            agent = children.start(
                "agent",
                labscope_args(
                    "agent",
                    "--collector",
                    endpoints["agents"],
                    "--node-id",
                    "bench-agent",
                    "--interval",
                    "1",
                    "--data-dir",
                    str(self.folder / "agent"),
                    "--log-level",
                    "warning",
                ),
            )
            process = psutil.Process(agent.popen.pid)
            time.sleep(3)  # start-up (imports, first sample) is not the steady cost being measured
            cpu, rss = measure_process(process, seconds)
        self.put("agent_cpu_percent", cpu, f"over {seconds:g} s")
        self.put("agent_rss_mb", rss)

    def scale(self) -> None:
        """N simulated agents at 1 report/s: nodes wrongly lost, collector memory per node."""
        sizes = self.sizes
        with self.collector() as endpoints:
            collector = psutil.Process(int(endpoints["pid"]))
            base = collector.memory_info().rss
            sim = subprocess.Popen(
                labscope_args(
                    "simulate",
                    "--collector",
                    endpoints["agents"],
                    "--agents",
                    str(sizes.scale_agents),
                    "--rate",
                    "1",
                    "--duration",
                    str(sizes.scale_seconds),
                ),
                stdout=subprocess.PIPE,
                text=True,
            )
            peak = watch_rss(collector, sim)
            with Client(endpoints["clients"]) as client:
                stats = client.request("CollectorStats", timeout=10).payload
        self.put(
            "scale_agents",
            sizes.scale_agents,
            f"{sizes.scale_seconds:g} s at 1 report/s each, {stats['counters'].get('reports', 0)} reports",
        )
        self.put("false_lost", stats["counters"].get("nodes-lost", 0))
        self.put("collector_rss_mb_per_node", (peak - base) / sizes.scale_agents / 2**20)

    def stream(self) -> None:
        """A file streamed from a real agent through the collector, against a raw pyzmq stream of it."""
        serve = self.folder / "serve"
        serve.mkdir(exist_ok=True)
        path = serve / "stream.bin"
        with open(path, "wb") as handle:
            for _ in range(self.sizes.stream_mb):
                handle.write(os.urandom(2**20))
        raw = self._raw_stream(path)
        with self.collector() as endpoints, Children(self.folder) as children:
            children.start(
                "stream-agent",
                labscope_args(
                    "agent",
                    "--collector",
                    endpoints["agents"],
                    "--node-id",
                    "bench-stream",
                    "--serve-dir",
                    str(serve),
                    "--data-dir",
                    str(self.folder / "stream-agent"),
                    "--log-level",
                    "warning",
                ),
            )
            with Client(endpoints["clients"]) as client:
                wait_node(client, "bench-stream", timeout=20)
                start, received = time.perf_counter(), 0
                for chunk in client.stream_views("NodeFile", {"node": "bench-stream", "path": str(path)}, timeout=60):
                    received += len(chunk)
                seconds = time.perf_counter() - start
        rate = received / seconds / 2**20
        self.put("stream_mb_per_s", rate, f"{self.sizes.stream_mb} MiB agent -> collector -> client")
        self.put("stream_ratio", rate / raw, f"raw pyzmq stream of the same file: {raw:.0f} MB/s")

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
        self.put("history_7d_ms", statistics.median(times), note)

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

    names = (
        "cpu_percent",
        "mem_percent",
        "load1",
        "net_recv_rate",
        "net_send_rate",
        "disk_read_rate",
        "disk_write_rate",
    )
    end = (time.time() // 60) * 60 - 60
    store = open_store("sqlite", {}, data_dir)
    try:
        for minute in range(days * 1440):
            t = end - (days * 1440 - 1 - minute) * 60
            store.history.record(node, names, t, [float((minute * k) % 97) for k in range(1, 8)])
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


def measure_process(process: psutil.Process, seconds: float) -> tuple[float, float]:
    """CPU (% of one core) over ``seconds`` and peak resident memory (MB) of a running process."""
    before, started, peak = process.cpu_times(), time.monotonic(), 0
    while time.monotonic() - started < seconds:
        peak = max(peak, process.memory_info().rss)
        time.sleep(min(1.0, seconds))
    after, elapsed = process.cpu_times(), time.monotonic() - started
    busy = (after.user - before.user) + (after.system - before.system)
    return 100.0 * busy / elapsed, peak / 2**20


def watch_rss(process: psutil.Process, until: subprocess.Popen[str]) -> int:
    """Peak resident memory of ``process`` (bytes) while ``until`` runs."""
    peak = process.memory_info().rss
    while until.poll() is None:
        peak = max(peak, process.memory_info().rss)
        time.sleep(0.5)
    return peak


def percentile(sorted_values: list[float], pct: float) -> float:
    """The ``pct`` percentile of already sorted values (nearest rank)."""
    index = min(len(sorted_values) - 1, max(0, round(pct / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


def format_value(value: float) -> str:
    """A figure as a person reads it: thousands separated, two decimals below 100."""
    if isinstance(value, int) or (float(value).is_integer() and abs(value) >= 100):
        return f"{int(value):,}"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}" if value < 1 else f"{value:.2f}"


def verdict(name: str, value: float) -> str:
    """``met`` / ``missed`` against the issue's target, or empty when there is none."""
    if name not in TARGETS:
        return ""
    op, target = TARGETS[name]
    ok = {">=": value >= target, "<=": value <= target, "==": value == target}[op]
    return f"{op} {format_value(target)}: {'met' if ok else 'MISSED'}"


def markdown(results: Results, machine: str) -> str:
    """The results as a markdown table, with the machine they ran on."""
    lines = [f"Machine: {machine}", "", "| figure | value | target | note |", "|---|---:|---|---|"]
    for name in FIELDS:
        value = results.values.get(name, 0.0)
        lines.append(f"| `{name}` | {format_value(value)} | {verdict(name, value)} | {results.notes.get(name, '')} |")
    return "\n".join(lines) + "\n"


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
    for name in ("raw_messages", "ingest_reports", "sample_frames", "scale_agents", "rounds", "stream_mb"):
        sizes.add_argument(f"--{name.replace('_', '-')}", type=int, metavar="N")
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
    with tempfile.TemporaryDirectory(prefix="labscope-bench-") as folder:
        results = Bench(sizes, Path(folder), lambda line: print(line, file=sys.stderr, flush=True)).run()
    table = markdown(results, machine_line())
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
