"""Peers, side by side: what labscope's agent costs a node against what users run instead.

Over the same minute on this machine, three watchers each take one sample a second:

- ``labscope agent --interval 1`` (with a collector of its own on loopback, shown for reference),
- Glances (PyPI) in its export-to-file mode: ``glances --quiet --export csv --export-csv-file F -t 1``,
- Prometheus node_exporter (Debian's ``prometheus-node-exporter``) on a free loopback port, scraped
  once a second by this program, as a Prometheus server would.

For each, psutil measures the process and its children: CPU as % of one core over the window,
and resident memory (peak and mean of one sample a second). Each row also says how much work was
done (reports acknowledged, CSV rows written, scrapes answered), so a watcher that silently did
nothing cannot look cheap. ``make bench-peers`` installs the peers and runs it; it is not part of
``make test``::

    python -m labscope.bench_peers --seconds 60 --json bench-peers.json --markdown bench-peers.md
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from labscope.bench import cpu_seconds, machine_line
from labscope.bench_nats import free_port, reachable
from labscope.children import Children, labscope_args, local_collector_args, wait_collector
from messages.errors import ConfigError, LabscopeError
from messages.options import Parser, run_command

__all__ = ["Peer", "Usage", "count_csv_rows", "main", "markdown", "sample_tree"]

PROG = "python -m labscope.bench_peers"
WARMUP = 5.0  # seconds after start-up before the window opens: imports and first samples are not the steady cost
GLANCES_MISSING = "glances is not installed: pip install 'labscope[peers]' (or make bench-peers)"
EXPORTER_MISSING = "prometheus-node-exporter is not installed: apt-get install -y prometheus-node-exporter"
EXPORTER_NAMES = ("prometheus-node-exporter", "node_exporter")


@dataclass
class Usage:
    """One watcher's cost over the window."""

    name: str
    command: str
    cpu_percent: float = 0.0
    rss_peak_mb: float = 0.0
    rss_mean_mb: float = 0.0
    work: str = ""


@dataclass
class Peer:
    """A running watcher: its root process and what it did, read at the end."""

    name: str
    command: str  # as the table shows it
    pid: int
    work: Callable[[], str] = field(default=lambda: "")


def sample_tree(root: psutil.Process) -> tuple[float, int]:
    """(CPU seconds, resident bytes) of ``root`` and its live children, now (CPU as bench.cpu_seconds reads it)."""
    cpu, rss = 0.0, 0
    for process in [root, *root.children(recursive=True)]:
        try:
            cpu, rss = cpu + cpu_seconds(process), rss + process.memory_info().rss
        except psutil.Error:  # a child that ended between listing and reading
            continue
    return cpu, rss


def measure(peers: list[Peer], seconds: float) -> list[Usage]:
    """Sample every peer once a second for ``seconds``; CPU over the window, RSS peak and mean."""
    roots = [psutil.Process(peer.pid) for peer in peers]
    first = [sample_tree(root) for root in roots]
    rss: list[list[int]] = [[r] for _, r in first]
    started = time.monotonic()
    while (left := started + seconds - time.monotonic()) > 0:
        time.sleep(min(1.0, left))
        for samples, root in zip(rss, roots, strict=True):
            samples.append(sample_tree(root)[1])
    elapsed = time.monotonic() - started
    usages = []
    for peer, root, (cpu0, _), samples in zip(peers, roots, first, rss, strict=True):
        cpu1, _ = sample_tree(root)
        usages.append(
            Usage(
                peer.name,
                peer.command,
                100.0 * (cpu1 - cpu0) / elapsed,
                max(samples) / 2**20,
                sum(samples) / len(samples) / 2**20,
                peer.work(),
            )
        )
    return usages


def count_csv_rows(path: Path) -> int:
    """Data rows in a CSV file with one header line (0 when it is missing or empty)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return max(0, sum(1 for line in handle if line.strip()) - 1)
    except OSError:
        return 0


class Scraper:
    """GETs a /metrics URL once a second in a thread, as a Prometheus server scraping at 1 s would."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.ok = 0
        self.failed = 0
        self.bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="scraper", daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(1.0):
            try:
                with urllib.request.urlopen(self.url, timeout=5) as answer:
                    self.bytes += len(answer.read())
                self.ok += 1
            except OSError:
                self.failed += 1

    def __enter__(self) -> Scraper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def work(self) -> str:
        """Scrapes answered (and their mean size) and failed."""
        size = self.bytes / self.ok / 1024 if self.ok else 0.0
        return f"{self.ok} scrapes answered ({size:.0f} KiB each), {self.failed} failed"


def glances_command(csv_file: Path) -> list[str]:
    """Glances exporting every sample to ``csv_file`` once a second, without its terminal screen."""
    binary = shutil.which("glances") or str(Path(sys.executable).with_name("glances"))
    if not Path(binary).exists():
        raise ConfigError(GLANCES_MISSING)
    return [binary, "--quiet", "--export", "csv", "--export-csv-file", str(csv_file), "-t", "1"]


def exporter_command(port: int) -> list[str]:
    """Debian's node_exporter on ``127.0.0.1:port`` with its default collectors."""
    for name in EXPORTER_NAMES:
        binary = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
        if binary:
            return [binary, f"--web.listen-address=127.0.0.1:{port}"]
    raise ConfigError(EXPORTER_MISSING)


def shown(binary: str, *args: str) -> str:
    """A command line as the table shows it: the program's name, temporary paths shortened."""
    return " ".join([Path(binary).name, *(Path(a).name if a.startswith("/tmp") else a for a in args)])


def agent_work(endpoints: dict[str, Any], node: str) -> Callable[[], str]:
    """A reader of how many reports the collector holds from ``node``."""

    def work() -> str:
        from gui.client import Client

        with Client(endpoints["clients"]) as client:
            nodes = client.request("NodeList", timeout=10).payload.nodes
        seq = next((n.last_seq for n in nodes if n.node == node), 0)
        return f"{seq} reports at the collector"

    return work


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``check`` every 0.1 s; LabscopeError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise LabscopeError(f"{what} within {timeout:g} s")
        time.sleep(0.1)


@contextmanager
def peers_running(folder: Path) -> Iterator[list[Peer]]:
    """Start the three watchers (and the agent's collector); stop them all on the way out."""
    csv_file, port = folder / "glances.csv", free_port()
    glances, exporter = glances_command(csv_file), exporter_command(port)  # missing ones fail before any start
    data_dir = folder / "collector"
    with Children(folder) as children:
        collector = children.start("collector", local_collector_args(data_dir, "--log-level", "warning"))
        endpoints = wait_collector(collector, data_dir)
        agent_args = ["agent", "--collector", endpoints["agents"], "--node-id", "peers-agent", "--interval", "1"]
        agent = children.start("agent", labscope_args(*agent_args, "--data-dir", str(folder / "agent")))
        started = [children.start("glances", glances), children.start("node-exporter", exporter)]
        wait_until(lambda: reachable(port), 15, f"node_exporter did not listen on 127.0.0.1:{port}")
        with Scraper(f"http://127.0.0.1:{port}/metrics") as scraper:
            time.sleep(WARMUP)
            children.check()
            yield [
                Peer(
                    "labscope agent",
                    shown("labscope", *agent_args),
                    agent.popen.pid,
                    agent_work(endpoints, "peers-agent"),
                ),
                Peer("Glances", shown(*glances), started[0].popen.pid, lambda: f"{count_csv_rows(csv_file)} CSV rows"),
                Peer(
                    "node_exporter", shown(*exporter) + " + GET /metrics every 1 s", started[1].popen.pid, scraper.work
                ),
                Peer("labscope collector (for reference)", "labscope collector (loopback)", collector.popen.pid),
            ]
            children.check()


def markdown(usages: list[Usage], seconds: float, machine: str, when: str) -> str:
    """The side-by-side table."""
    lines = [
        f"{when}, {seconds:g} s window, one sample a second each. Machine: {machine}",
        "",
        "| watcher | CPU % of one core | RSS peak (MB) | RSS mean (MB) | work done, start-up included | command |",
        "|---|---:|---:|---:|---|---|",
    ]
    lines += [
        f"| {u.name} | {u.cpu_percent:.2f} | {u.rss_peak_mb:.1f} | {u.rss_mean_mb:.1f} | {u.work} | `{u.command}` |"
        for u in usages
    ]
    return "\n".join(lines) + "\n"


def build_parser() -> Parser:
    """The argument parser."""
    parser = Parser(prog=PROG, description="labscope's agent beside Glances and node_exporter, over the same window.")
    parser.add_argument("--seconds", type=float, default=60.0, metavar="S", help="the measuring window (60)")
    parser.add_argument("--json", metavar="FILE", help="write the figures as JSON to FILE")
    parser.add_argument("--markdown", metavar="FILE", help="write the table as markdown to FILE")
    return parser


def run(argv: list[str]) -> int:
    """Measure and report."""
    args = build_parser().parse_args(argv)
    if not args.seconds > 0:
        raise ConfigError(f"--seconds must be greater than 0, not {args.seconds:g}")
    with tempfile.TemporaryDirectory(prefix="labscope-peers-") as folder, peers_running(Path(folder)) as peers:
        usages = measure(peers, args.seconds)
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    table = markdown(usages, args.seconds, machine_line(), when)
    sys.stdout.write(table)
    if args.markdown:
        Path(args.markdown).write_text(table)
    if args.json:
        figures = {"date": when, "seconds": args.seconds, "peers": [asdict(u) for u in usages]}
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    return run_command(PROG, lambda: run(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
