"""Per-node time series for the plots, without Qt: samples in, arrays out.

Points come from two sources that overlap: the ``SystemStatsHistory`` answer
fetched when a node is first plotted, and the live ``SystemStatsSummary``
updates. Points are kept sorted by time and a time seen before is not added
twice, so the two merge into one clean line whatever order they arrive in.
For the longer time windows the answer comes from a tier of 1-minute or
1-hour buckets (:class:`TierSeries`): min, avg and max per metric.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field

from messages import NodeSummary, SystemStats, SystemStatsHistory

__all__ = ["FIGURES", "MAX_POINTS", "METRICS", "NodeSeries", "TierSeries", "from_sample", "from_summary"]

# Order of the values in a point.
METRICS = ("cpu", "memory", "net_in", "net_out", "disk_read", "disk_write")
MAX_POINTS = 7200  # two hours at one sample a second, per node

Values = tuple[float, float, float, float, float, float]


def from_summary(item: NodeSummary) -> tuple[float, Values]:
    """``(time, values)`` of one node's line in a SystemStatsSummary."""
    return item.time, (
        item.cpu_percent,
        item.memory_percent,
        item.net_recv_rate,
        item.net_send_rate,
        item.disk_read_rate,
        item.disk_write_rate,
    )


def from_sample(stats: SystemStats) -> tuple[float, Values]:
    """``(time, values)`` of one full SystemStats sample (from SystemStatsHistory)."""
    return stats.time, (
        stats.cpu_percent,
        stats.memory.percent,
        stats.net_io_total.recv_rate,
        stats.net_io_total.send_rate,
        stats.disk_io_total.read_rate,
        stats.disk_io_total.write_rate,
    )


class NodeSeries:
    """One node's points, sorted by time, at most ``max_points`` (the oldest go first)."""

    def __init__(self, max_points: int = MAX_POINTS) -> None:
        self.max_points = max_points
        self.times: list[float] = []
        self.values: list[Values] = []
        self.history_loaded = False

    def add(self, time: float, values: Values) -> bool:
        """Add one point; False when its time is already there (or is not a time at all)."""
        if time <= 0:
            return False
        if not self.times or time > self.times[-1]:
            self.times.append(time)
            self.values.append(values)
        else:
            index = bisect.bisect_left(self.times, time)
            if index < len(self.times) and self.times[index] == time:
                return False
            self.times.insert(index, time)
            self.values.insert(index, values)
        self._trim()
        return True

    def extend(self, points: Iterable[tuple[float, Values]]) -> int:
        """Add many points; returns how many were new."""
        return sum(self.add(time, values) for time, values in points)

    def column(self, metric: str) -> list[float]:
        """Every value of one metric (one of METRICS), in time order."""
        index = METRICS.index(metric)
        return [values[index] for values in self.values]

    def __len__(self) -> int:
        return len(self.times)

    def _trim(self) -> None:
        excess = len(self.times) - self.max_points
        if excess > 0:
            del self.times[:excess]
            del self.values[:excess]


# SystemStatsHistory's series names for each metric of METRICS.
FIGURES = {
    "cpu": "cpu_percent",
    "memory": "mem_percent",
    "net_in": "net_recv_rate",
    "net_out": "net_send_rate",
    "disk_read": "disk_read_rate",
    "disk_write": "disk_write_rate",
}


@dataclass
class TierSeries:
    """One node's answer from a 1m or 1h tier: bucket starts and, per metric, min/avg/max columns."""

    resolution: str
    step: float
    times: list[float] = field(default_factory=list)
    columns: dict[str, tuple[list[float], list[float], list[float]]] = field(default_factory=dict)

    @classmethod
    def of(cls, history: SystemStatsHistory) -> TierSeries:
        """The tier answer ``history`` (its ``series``) as lists per metric; a metric it lacks is left out."""
        by_name = {series.name: series for series in history.series}
        tier = cls(history.resolution, history.step)
        for metric, name in FIGURES.items():
            series = by_name.get(name)
            if series is None:
                continue
            tier.times = tier.times or list(series.time)
            if len(series.time) == len(tier.times):
                tier.columns[metric] = (list(series.min), list(series.avg), list(series.max))
        return tier

    def end(self) -> float:
        """Where the last bucket ends (0 when empty): live points after it extend the line."""
        return self.times[-1] + self.step if self.times else 0.0
