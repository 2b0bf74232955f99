"""The figures of ``labscope bench``, their targets and how they are shown.

A figure measured in rounds keeps its worst round beside its median (the
lowest ratio, the highest latency or CPU); four of them also have a
``NAME_worst`` JSON field. A verdict is taken on the worst round, so a target is
met only when every round met it; a figure measured once is its own worst.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

__all__ = [
    "FIELDS",
    "TARGETS",
    "WORST_OF",
    "Results",
    "format_value",
    "markdown",
    "percentile",
    "verdict",
    "worst",
]

FIELDS = (
    "raw_msgs_per_s",
    "ingest_reports_per_s",
    "ingest_ratio",
    "ingest_ratio_worst",
    "dist_ingest_reports_per_s",
    "dist_ingest_ratio",
    "curve_ingest_ratio",
    "samples_per_s",
    "latency_p50_ms",
    "latency_p99_ms",
    "latency_p99_ms_worst",
    "agent_cpu_percent",
    "agent_cpu_percent_worst",
    "agent_rss_mb",
    "scale_agents",
    "false_lost",
    "collector_rss_mb_per_node",
    "stream_mb_per_s",
    "stream_ratio",
    "stream_ratio_worst",
    "history_7d_ms",
)

# field -> (comparison, target), as issue 14's table sets them ("in every round"); samples_per_s keeps
# the target of the first performance issue.
TARGETS: dict[str, tuple[str, float]] = {
    "ingest_ratio": (">=", 0.6),
    "dist_ingest_ratio": (">=", 0.8),
    "curve_ingest_ratio": (">=", 0.5),
    "samples_per_s": (">=", 1_000_000),
    "latency_p99_ms": ("<=", 5.0),
    "agent_cpu_percent": ("<=", 0.3),
    "agent_rss_mb": ("<=", 35.0),
    "scale_agents": (">=", 5000),
    "false_lost": ("==", 0),
    "collector_rss_mb_per_node": ("<=", 0.1),
    "stream_ratio": (">=", 0.5),
    "history_7d_ms": ("<=", 20.0),
}

# median field -> its worst-round JSON field
WORST_OF = {name.removesuffix("_worst"): name for name in FIELDS if name.endswith("_worst")}


@dataclass
class Results:
    """The figures, plus a note for any figure that needs one."""

    values: dict[str, float] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    worst: dict[str, float] = field(default_factory=dict)  # figure -> its worst round, when taken in rounds

    def judged(self, name: str) -> float:
        """The value a target is judged on: the worst round, or the one measurement there is."""
        return self.worst.get(name, self.values.get(name, 0.0))


def worst(name: str, rounds: list[float]) -> float:
    """The worst of per-round values of ``name``: the lowest for a ``>=`` target, else the highest."""
    op = TARGETS.get(name, (">=", 0.0))[0]
    return min(rounds) if op == ">=" else max(rounds)


def median(rounds: list[float]) -> float:
    """The median of per-round values."""
    return float(statistics.median(rounds))


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
    """``met`` / ``MISSED`` against the issue's target, or empty when there is none."""
    if name not in TARGETS:
        return ""
    op, target = TARGETS[name]
    ok = {">=": value >= target, "<=": value <= target, "==": value == target}[op]
    return f"{op} {format_value(target)}: {'met' if ok else 'MISSED'}"


def row(name: str, results: Results) -> str:
    """One figure's markdown row: median, worst round, target and verdict (on the worst round), note."""
    value = results.values.get(name, 0.0)
    shown_worst = format_value(results.judged(name)) if name in results.worst or name in TARGETS else ""
    note = results.notes.get(name, "")
    return f"| `{name}` | {format_value(value)} | {shown_worst} | {verdict(name, results.judged(name))} | {note} |"


def markdown(results: Results, machine: str) -> str:
    """The results as a markdown table (worst-round twins as a column), with the machine they ran on."""
    lines = [
        f"Machine: {machine}",
        "",
        "| figure | median | worst round | target (judged on the worst round) | note |",
        "|---|---:|---:|---|---|",
    ]
    lines.extend(row(name, results) for name in FIELDS if not name.endswith("_worst"))
    return "\n".join(lines) + "\n"
