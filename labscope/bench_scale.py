"""``labscope bench``'s scale section: many simulated agents against one collector.

The agents are split over several ``labscope simulate`` processes (at most
AGENTS_PER_SIMULATOR each), so that on a 2-core machine the load generator is
not the bottleneck: one process drives 5000 agents at 1 report/s with about
0.85 of a core, close to its ceiling; two of 2500 need about half a core each.
Whether the generator kept up is measured, not assumed: the collector's
``reports`` counter over the middle half of the run against the rate scheduled.
"""

from __future__ import annotations

import json
import math
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any

import psutil

from gui.client import Client
from labscope.children import labscope_args
from messages.errors import ClientTimeout, LabscopeError

__all__ = ["AGENTS_PER_SIMULATOR", "ScaleFigures", "run_scale", "split_agents"]

AGENTS_PER_SIMULATOR = 2500
POLL = 0.5  # seconds between memory samples
STATS_WAIT = 30.0  # seconds for CollectorStats: 5000 agents saying HELLO at once keep a collector busy for seconds
FINAL_STATS_WAIT = 180.0  # after the run: a collector that fell behind answers once it has caught up


def split_agents(agents: int, per_process: int = AGENTS_PER_SIMULATOR) -> list[int]:
    """``agents`` split as evenly as can be over the fewest processes of at most ``per_process`` each."""
    processes = max(1, math.ceil(agents / per_process))
    share, extra = divmod(agents, processes)
    return [share + (1 if i < extra else 0) for i in range(processes)]


@dataclass
class ScaleFigures:
    """What one scale run measured."""

    agents: int
    base_rss: int
    peak_rss: int = 0
    counters: dict[str, int] = field(default_factory=dict)
    marks: list[tuple[float, int]] = field(default_factory=list)  # (monotonic, reports) in the middle half
    simulator_cpu: list[float] = field(default_factory=list)  # % of one core, per simulate process
    totals: list[dict[str, Any]] = field(default_factory=list)  # each simulate's closing JSON line
    answer_delay: float = 0.0  # seconds the collector took to answer CollectorStats after the run

    def mark(self, client: Client) -> None:
        """Note the collector's ``reports`` counter now; a collector too busy to answer in time leaves no mark."""
        try:
            reports = client.request("CollectorStats", timeout=STATS_WAIT).payload["counters"].get("reports", 0)
        except ClientTimeout:
            return
        self.marks.append((time.monotonic(), int(reports)))

    def steady_rate(self) -> float:
        """Reports/s the collector took over the middle half of the run (0 when unmeasured)."""
        if len(self.marks) < 2 or self.marks[-1][0] <= self.marks[0][0]:
            return 0.0
        (t1, r1), (t2, r2) = self.marks[0], self.marks[-1]
        return (r2 - r1) / (t2 - t1)

    def rss_per_node_mb(self) -> float:
        """Collector memory grown during the run, per agent (MB)."""
        return (self.peak_rss - self.base_rss) / self.agents / 2**20

    def note(self, seconds: float) -> str:
        """Processes, generator pace and CPU, reports taken: the scale figure's note."""
        shares = " + ".join(str(t.get("agents", "?")) for t in self.totals) or str(self.agents)
        steady = self.steady_rate()
        middle = (
            f"middle half of the run: {steady:,.0f} reports/s taken of {self.agents:,}/s scheduled "
            f"({100 * steady / self.agents:.0f} %)"
            if len(self.marks) >= 2
            else "the collector did not answer CollectorStats in the middle of the run"
        )
        late = f"; CollectorStats answered {self.answer_delay:.1f} s after the run" if self.answer_delay > 1 else ""
        cpu = ", ".join(f"{c:.0f}" for c in self.simulator_cpu)
        return (
            f"{seconds:g} s at 1 report/s each, {self.counters.get('reports', 0):,} reports; "
            f"{len(self.totals)} simulate processes ({shares} agents) using {cpu} % of a core; {middle}{late}"
        )


def _simulate(endpoint: str, agents: int, seconds: float, index: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        labscope_args(
            "simulate",
            *("--collector", endpoint, "--agents", str(agents), "--rate", "1"),
            *("--duration", str(seconds), "--prefix", f"sim{index}"),
        ),
        stdout=subprocess.PIPE,
        text=True,
    )


def _cpu_seconds(process: psutil.Process) -> float | None:
    try:
        times = process.cpu_times()
    except psutil.Error:
        return None
    return float(times.user + times.system)


def run_scale(endpoints: dict[str, Any], agents: int, seconds: float) -> ScaleFigures:
    """Run ``agents`` simulated agents for ``seconds`` against the collector of ``endpoints``."""
    collector = psutil.Process(int(endpoints["pid"]))
    figures = ScaleFigures(agents, base_rss=collector.memory_info().rss)
    started = time.monotonic()
    sims = [_simulate(endpoints["agents"], n, seconds, i) for i, n in enumerate(split_agents(agents))]
    watched = [psutil.Process(sim.pid) for sim in sims]
    cpu: list[float] = [0.0] * len(sims)
    marks = [started + seconds * 0.25, started + seconds * 0.75]
    with Client(endpoints["clients"]) as client:
        while any(sim.poll() is None for sim in sims):
            figures.peak_rss = max(figures.peak_rss, collector.memory_info().rss)
            cpu = [c if (now := _cpu_seconds(p)) is None else now for c, p in zip(cpu, watched, strict=True)]
            if marks and time.monotonic() >= marks[0]:
                marks.pop(0)
                figures.mark(client)
            time.sleep(POLL)
        ended = time.monotonic()
        figures.counters = dict(client.request("CollectorStats", timeout=FINAL_STATS_WAIT).payload["counters"])
        figures.answer_delay = time.monotonic() - ended
    elapsed = ended - started
    figures.simulator_cpu = [100.0 * c / elapsed for c in cpu]
    failed = [i for i, sim in enumerate(sims) if sim.returncode != 0]
    if failed:
        raise LabscopeError(f"simulate process {failed[0]} exited with status {sims[failed[0]].returncode}")
    figures.totals = [json.loads(sim.stdout.read() or "{}") if sim.stdout else {} for sim in sims]
    return figures
