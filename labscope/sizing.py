"""``python -m labscope.sizing``: measure sites -> NATS JetStream -> top on this machine, per node.

For each size asked (``--nodes 500,1000``: nodes per site), it starts a nats-server with
JetStream on a free port (its own store folder; or uses ``--nats URL`` with a fresh stream),
``--sites`` site collectors publishing their reports into the stream (the ``nats`` distribution in
reports mode), a top collector ingesting it (``--ingest-nats``), and one ``labscope simulate`` per
site with that many simulated agents at ``--rate`` reports/s each. After ``--warmup`` seconds it
measures, over ``--seconds``, each tier's ingest rate, CPU (% of one core), resident memory (peak,
and per node = (peak - baseline) / nodes), its store's growth, and the stream's bytes per message.
Then (``--catchup S``) it stops the top for S seconds and measures how fast it drains the backlog:
the top's ceiling. It writes the figures as JSON and markdown (docs/sizing.md reads them).

Nothing here is a test: the figures are this machine's, in this run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from labscope.bench import machine_line
from labscope.children import Child, Children, labscope_args, local_collector_args, wait_collector
from labscope.sizing_report import markdown, report_sizes
from labscope.sizing_rig import (
    NatsServer,
    Tier,
    Watched,
    consumer_pending,
    counters,
    delete_stream,
    nats_server_binary,
    stream_state,
)
from messages.errors import ConfigError
from messages.options import Parser, positive_float, run_command

PROG = "python -m labscope.sizing"
DURABLE = "sizing-top"
SAMPLE_EVERY = 0.5  # seconds between memory samples
DAY = 86400


@dataclass
class Plan:
    """What to run: sites x nodes per site (one run per entry of ``nodes``), for how long."""

    sites: int
    nodes: list[int]
    rate: float
    warmup: float
    seconds: float
    catchup: float
    nats_url: str | None
    nats_binary: str | None
    cpu_limit: float | None = None  # the sites' nats distribution's cpu_limit (None: its default)


class Run:
    """One size: its NATS, sites, top and simulators, and the figures measured on them."""

    def __init__(self, plan: Plan, nodes: int, folder: Path) -> None:
        self.plan, self.nodes, self.folder = plan, nodes, folder
        tag = uuid.uuid4().hex[:8]
        self.stream, self.prefix = f"SIZING{tag.upper()}", f"sz{tag}"
        self.sites = Tier("site")
        self.top = Tier("top")
        self.nats = Tier("nats")
        self.sims = Tier("simulator")
        self.site_clients: list[str] = []
        self.site_agents: list[str] = []
        self.top_child: Child | None = None
        self.top_clients = ""
        self.url = plan.nats_url or ""  # set to the started server's when there is no --nats

    @property
    def total_nodes(self) -> int:
        """Nodes across every site."""
        return self.plan.sites * self.nodes

    def measure(self) -> dict[str, Any]:
        """Start everything, measure, stop everything; the figures of this size."""
        server = None
        url = self.plan.nats_url
        if url is None:
            server = NatsServer(nats_server_binary(self.plan.nats_binary), self.folder)
            url = server.url
            self.nats.members.append(Watched.of(server.popen.pid))
            self.nats.folders.append(server.store)
        self.url = url
        try:
            with Children(self.folder) as children:
                return self._measure(children)
        finally:
            if server is not None:
                server.stop()
            else:
                delete_stream(url, self.stream)

    def _measure(self, children: Children) -> dict[str, Any]:
        for index in range(self.plan.sites):
            self._start_site(children, f"s{index + 1}")
        self._start_top(children, "top")
        sims = [self._start_simulator(children, index, agents) for index, agents in enumerate(self.site_agents)]
        self._wait(children, self.plan.warmup)
        before = self._snapshot()
        for tier in self._tiers():
            tier.mark()
        self._wait(children, self.plan.seconds)
        after = self._snapshot()
        figures = self._figures(before, after)
        if self.plan.catchup > 0:
            figures["catchup"] = self._catchup(children)
        for child in sims:
            child.popen.terminate()
        figures["simulator_totals"] = [self._simulator_totals(child) for child in sims]
        return figures

    def _tiers(self) -> tuple[Tier, ...]:
        return self.sites, self.top, self.nats, self.sims

    def _start_site(self, children: Children, name: str) -> None:
        config = self.folder / f"{name}.toml"
        config.write_text(
            f'[collector]\nsite = "{name}"\n\n[distributions.js]\ntype = "nats"\nmode = "reports"\n'
            f'url = "{self.url}"\nstream = "{self.stream}"\nprefix = "{self.prefix}"\n'
            + (f"cpu_limit = {self.plan.cpu_limit}\n" if self.plan.cpu_limit is not None else "")
        )
        data_dir = self.folder / f"{name}-data"
        child = children.start(name, local_collector_args(data_dir, "--config", str(config), "--log-level", "warning"))
        endpoints = wait_collector(child, data_dir)
        self.sites.members.append(Watched.of(int(endpoints["pid"])))
        self.sites.folders.append(data_dir)
        self.site_clients.append(str(endpoints["clients"]))
        self.site_agents.append(str(endpoints["agents"]))

    def _start_top(self, children: Children, name: str) -> Watched:
        config = self.folder / "top.toml"
        config.write_text(f'[collector]\ningest_prefix = "{self.prefix}"\ningest_durable = "{DURABLE}"\n')
        data_dir = self.folder / "top-data"
        (data_dir / "collector.json").unlink(missing_ok=True)
        args = ("--config", str(config), "--ingest-nats", self.url, "--ingest-stream", self.stream)
        self.top_child = children.start(name, local_collector_args(data_dir, *args, "--log-level", "warning"))
        endpoints = wait_collector(self.top_child, data_dir)
        self.top_clients = str(endpoints["clients"])
        watched = Watched.of(int(endpoints["pid"]))
        if not self.top.members:
            self.top.members.append(watched)
            self.top.folders.append(data_dir)
        return watched

    def _start_simulator(self, children: Children, index: int, agents: str) -> Child:
        args = labscope_args(
            "simulate",
            "--collector",
            agents,
            "--agents",
            str(self.nodes),
            "--rate",
            f"{self.plan.rate:g}",
            "--prefix",
            "sim",
        )
        child = children.start(f"simulate-{index + 1}", args)
        self.sims.members.append(Watched.of(child.popen.pid))
        return child

    def _wait(self, children: Children, seconds: float, extra: list[Watched] | None = None) -> None:
        """Sample memory for ``seconds``; a child that died ends the run with its log's tail."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            children.check()
            for tier in self._tiers():
                tier.sample()
            for watched in extra or []:
                watched.sample()
            time.sleep(min(SAMPLE_EVERY, max(0.0, deadline - time.monotonic())))

    def _snapshot(self) -> dict[str, Any]:
        """Counters and stream state, read downstream first (top, stream, sites) so that lags are never negative."""
        top = counters(self.top_clients).get("ingest-reports", 0)
        messages, stored = stream_state(self.url, self.stream)
        return {
            "time": time.monotonic(),
            "load": os.getloadavg()[0],
            "top_reports": top,
            "messages": messages,
            "bytes": stored,
            "site_reports": sum(counters(ep).get("reports", 0) for ep in self.site_clients),
        }

    def _figures(self, before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
        """The window's figures; per node-day at the planned rate, whatever rate each tier reached."""
        seconds = after["time"] - before["time"]
        grew = {key: after[key] - before[key] for key in ("messages", "bytes", "site_reports", "top_reports")}
        per_message = grew["bytes"] / max(grew["messages"], 1)
        node_day = self.plan.rate * DAY  # reports one node makes in a day
        return {
            "sites": self.plan.sites,
            "nodes_per_site": self.nodes,
            "nodes": self.total_nodes,
            "rate_per_node": self.plan.rate,
            "cpu_limit": self.plan.cpu_limit,
            "offered_reports_per_s": self.total_nodes * self.plan.rate,
            "seconds": round(seconds, 1),
            "load_average": [round(before["load"], 1), round(os.getloadavg()[0], 1)],  # a shared machine's noise
            "site": {
                "reports_per_s": round(grew["site_reports"] / seconds / self.plan.sites, 1),
                "publish_lag_reports": after["site_reports"] - after["messages"],  # journaled, not yet in the stream
                **self.sites.figures(self.nodes, grew["site_reports"], node_day),
            },
            "stream": {
                "published_per_s": round(grew["messages"] / seconds, 1),
                "bytes_per_message": round(per_message, 1),
                "bytes_per_node_per_s": round(per_message * self.plan.rate, 1),
                "bytes_per_node_day": round(per_message * node_day),
                "messages": after["messages"],
            },
            "nats": self.nats.figures(self.total_nodes, grew["messages"], node_day) if self.nats.members else {},
            "top": {
                "reports_per_s": round(grew["top_reports"] / seconds, 1),
                "lag_reports": after["messages"] - after["top_reports"],
                **self.top.figures(self.total_nodes, grew["top_reports"], node_day),
            },
            "simulator": simulator_figures(self.sims.figures(self.nodes, 0, 0)),
        }

    def _catchup(self, children: Children) -> dict[str, Any]:
        """Stop the top for ``catchup`` s while the sites publish, restart it, time how fast it drains."""
        assert self.top_child is not None
        self.top_child.popen.terminate()
        self.top_child.popen.wait(30)
        children.children.remove(self.top_child)
        self._wait(children, self.plan.catchup)
        backlog = consumer_pending(self.url, self.stream, DURABLE) or 0
        started = time.monotonic()
        watched = self._start_top(children, "top-restarted")
        samples, drained = self._drain(children, watched, backlog)
        first = next(((t, c) for t, c in samples if c > 0), samples[-1])
        last = samples[-1]
        rate = (last[1] - first[1]) / max(last[0] - first[0], 1e-9)  # with a backlog throughout: its ceiling
        return {
            "stopped_s": self.plan.catchup,
            "backlog_reports": backlog,
            "drained": drained,
            "drained_s": round(last[0] - started, 1) if drained else None,
            "left_reports": consumer_pending(self.url, self.stream, DURABLE),
            "reports_per_s": round(rate, 1),
            "rss_peak_mb": round(watched.peak_rss / 2**20, 2),
        }

    def _drain(self, children: Children, watched: Watched, backlog: int) -> tuple[list[tuple[float, int]], bool]:
        """(time, ingested) samples from the top's restart until its consumer has caught up (True), or a deadline."""
        threshold = max(2 * self.total_nodes * self.plan.rate, 100)  # what arrives live within ~2 s
        deadline = time.monotonic() + max(60.0, 3 * self.plan.catchup)
        samples: list[tuple[float, int]] = []
        while time.monotonic() < deadline:
            self._wait(children, SAMPLE_EVERY, [watched])
            samples.append((time.monotonic(), counters(self.top_clients).get("ingest-reports", 0)))
            pending = consumer_pending(self.url, self.stream, DURABLE)
            if pending is not None and pending <= threshold and samples[-1][1] >= backlog:
                return samples, True
        return samples, False

    def _simulator_totals(self, child: Child) -> dict[str, Any]:
        try:
            child.popen.wait(30)
        except subprocess.TimeoutExpired:
            child.popen.kill()
        lines = [line for line in child.tail(5) if line.startswith("{")]
        return dict(json.loads(lines[-1])) if lines else {}


def simulator_figures(figures: dict[str, float]) -> dict[str, float]:
    """The simulators' CPU and peak memory (their baseline is taken before the interpreter even started)."""
    return {key: figures[key] for key in ("processes", "cpu_percent", "rss_peak_mb")}


def build_parser() -> Parser:
    """The command's argument parser."""
    parser = Parser(
        prog=PROG,
        description="Measure site collectors -> NATS JetStream -> a top collector on this machine, with "
        "labscope simulate: ingest, CPU, memory and disk per node at each tier (docs/sizing.md).",
    )
    parser.add_argument("--sites", type=_positive_int, default=2, metavar="S", help="site collectors (2)")
    parser.add_argument(
        "--nodes", default="500", metavar="N[,N...]", help="simulated nodes per site; one run per value (500)"
    )
    parser.add_argument("--rate", type=positive_float, default=1.0, metavar="R", help="reports/s per node (1)")
    parser.add_argument(
        "--warmup", type=positive_float, default=20.0, metavar="S", help="seconds before measuring (20)"
    )
    parser.add_argument("--seconds", type=positive_float, default=60.0, metavar="S", help="seconds measured (60)")
    parser.add_argument(
        "--catchup", type=float, default=20.0, metavar="S", help="seconds the top is stopped, then drains (20; 0: off)"
    )
    parser.add_argument("--nats", metavar="URL", help="use this NATS server (a fresh stream) instead of starting one")
    parser.add_argument("--nats-server", metavar="PATH", help="the nats-server binary to start (default: found)")
    parser.add_argument(
        "--cpu-limit",
        type=float,
        metavar="X",
        help="cpu_limit of the sites' nats distribution (0 < X <= 1; default: the distribution's default)",
    )
    parser.add_argument("--json", metavar="FILE", help="write the figures as JSON to FILE")
    parser.add_argument("--markdown", metavar="FILE", help="write the tables as markdown to FILE")
    return parser


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be a whole number of at least 1")
    return int(text)


def parse_plan(argv: list[str]) -> tuple[Plan, Any]:
    """The plan and the parsed arguments; a bad value is one line (exit 2)."""
    args = build_parser().parse_args(argv)
    try:
        nodes = [_positive_int(part.strip()) for part in args.nodes.split(",")]
    except argparse.ArgumentTypeError as error:
        raise ConfigError(f"--nodes {args.nodes}: {error} (e.g. --nodes 500,1000)") from None
    if args.catchup < 0:
        raise ConfigError(f"--catchup {args.catchup:g}: must be 0 (off) or more seconds")
    if args.nats and not args.nats.startswith("nats://"):
        raise ConfigError(f"--nats {args.nats}: give a URL like nats://127.0.0.1:4222")
    if args.cpu_limit is not None and not 0 < args.cpu_limit <= 1:
        raise ConfigError(f"--cpu-limit {args.cpu_limit:g}: must be above 0 and at most 1 (a share of one core)")
    plan = Plan(args.sites, nodes, args.rate, args.warmup, args.seconds, args.catchup, args.nats, args.nats_server)
    plan.cpu_limit = args.cpu_limit
    return plan, args


def say(line: str) -> None:
    """Progress on stderr (the tables go to stdout)."""
    print(line, file=sys.stderr, flush=True)


def run(argv: list[str]) -> int:
    """Run every size of the plan, print the tables, write the files asked for."""
    plan, args = parse_plan(argv)
    try:
        import nats  # noqa: F401  (the command reads the stream's state with it)
    except ImportError:
        raise ConfigError("python -m labscope.sizing needs nats-py: pip install 'labscope[nats]'") from None
    if plan.nats_url is None:
        nats_server_binary(plan.nats_binary)  # refuse at once, not after the first collectors
    results = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_line(),
        "command": " ".join([PROG, *argv]),
        "runs": [],
    }
    with tempfile.TemporaryDirectory(prefix="labscope-sizing-") as folder:
        for nodes in plan.nodes:
            say(f"-- {plan.sites} sites x {nodes} nodes at {plan.rate:g} report/s each")
            run_folder = Path(folder) / f"run-{nodes}"
            run_folder.mkdir()
            figures = Run(plan, nodes, run_folder).measure()
            say(report_sizes(figures))
            results["runs"].append(figures)  # type: ignore[attr-defined]
    table = markdown(results)
    sys.stdout.write(table)
    if args.markdown:
        Path(args.markdown).write_text(table)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``python -m labscope.sizing``."""
    return run_command(PROG, lambda: run(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
