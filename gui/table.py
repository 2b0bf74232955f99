"""A table of the testbed's nodes built from NodeList and SystemStatsSummary payloads.

Shared by ``labscope demo`` and terminal views (``labscope top``): :func:`node_rows`
merges the two payloads into display-ready rows, :func:`node_table` renders
them as a rich Table and :func:`plain_lines` as text for a log or a pipe.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from rich import box
from rich.table import Table
from rich.text import Text

from messages import NodeList, NodeStatus, NodeSummary, SystemStatsSummary

__all__ = ["COLUMNS", "NodeRow", "ago", "human_rate", "node_rows", "node_table", "plain_lines"]

# (header, justification) in display order; NodeRow's fields follow the same order.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("node", "left"),
    ("hostname", "left"),
    ("status", "left"),
    ("CPU %", "right"),
    ("mem %", "right"),
    ("load", "right"),
    ("net in/s", "right"),
    ("net out/s", "right"),
    ("last seen", "right"),
)
STATUS_STYLES = {"live": "bold green", "lost": "bold red"}
_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")
_MISSING = "-"
# Long names are cut short so that the figures still fit an 80-column terminal.
_MAX_WIDTHS = {"node": 14, "hostname": 12}


@dataclass(frozen=True, slots=True)
class NodeRow:
    """One node's cells, already formatted as text."""

    node: str
    hostname: str
    status: str
    cpu: str
    memory: str
    load: str
    net_in: str
    net_out: str
    last_seen: str

    def cells(self) -> tuple[str, ...]:
        """The cells in COLUMNS order."""
        return (
            self.node,
            self.hostname,
            self.status,
            self.cpu,
            self.memory,
            self.load,
            self.net_in,
            self.net_out,
            self.last_seen,
        )


def human_rate(rate: float) -> str:
    """Bytes (per second) in binary units: ``0 B``, ``12.3 KiB``, ``4.0 MiB``; the column says /s."""
    value = max(0.0, float(rate))
    for unit in _UNITS[:-1]:
        # Step up at 1000, not 1024, so a figure never needs more than three digits.
        if value < 1000:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} {_UNITS[-1]}"


def ago(then: float, now: float) -> str:
    """How long ago ``then`` (epoch s) was, e.g. ``0.4s ago``; ``-`` when unknown (0)."""
    if then <= 0:
        return _MISSING
    seconds = max(0.0, now - then)
    if seconds < 60:
        return f"{seconds:.1f}s ago"
    return f"{seconds / 60:.0f}m ago" if seconds < 3600 else f"{seconds / 3600:.1f}h ago"


def node_rows(
    node_list: NodeList | None, summary: SystemStatsSummary | None, now: float | None = None
) -> list[NodeRow]:
    """Merge both payloads by node id into rows sorted by node id.

    A node known only from the summary shows status ``?``; a node without a
    summary yet shows ``-`` for its figures.
    """
    now = time.time() if now is None else now
    statuses = {status.node: status for status in (node_list.nodes if node_list else ())}
    figures = {item.node: item for item in (summary.nodes if summary else ())}
    return [_row(node, statuses.get(node), figures.get(node), now) for node in sorted(statuses.keys() | figures)]


def _row(node: str, status: NodeStatus | None, figures: NodeSummary | None, now: float) -> NodeRow:
    hostname = (status.hostname if status else "") or (figures.hostname if figures else "")
    last_seen = status.last_seen if status and status.last_seen > 0 else (figures.time if figures else 0.0)
    return NodeRow(
        node=node,
        hostname=hostname or _MISSING,
        status=(status.status if status else "") or "?",
        cpu=f"{figures.cpu_percent:.1f}" if figures else _MISSING,
        memory=f"{figures.memory_percent:.1f}" if figures else _MISSING,
        load=f"{figures.load1:.2f}" if figures else _MISSING,
        net_in=human_rate(figures.net_recv_rate) if figures else _MISSING,
        net_out=human_rate(figures.net_send_rate) if figures else _MISSING,
        last_seen=ago(last_seen, now),
    )


def node_table(
    node_list: NodeList | None, summary: SystemStatsSummary | None, now: float | None = None, title: str | None = None
) -> Table:
    """A rich Table of the nodes: status green when live, red when lost."""
    # No outer padding or vertical rules: nine columns must fit an 80-column terminal.
    table = Table(title=title, box=box.SIMPLE_HEAD, padding=(0, 0), pad_edge=False, expand=False)
    for header, justify in COLUMNS:
        table.add_column(
            header,
            justify=justify,  # type: ignore[arg-type]
            no_wrap=True,
            overflow="ellipsis",
            max_width=_MAX_WIDTHS.get(header),
        )
    rows = node_rows(node_list, summary, now)
    for row in rows:
        cells: list[str | Text] = list(row.cells())
        cells[2] = Text(row.status, style=STATUS_STYLES.get(row.status, "yellow"))
        table.add_row(*cells)
    if not rows:
        table.caption = "waiting for nodes..."
    return table


def plain_lines(rows: list[NodeRow]) -> list[str]:
    """One aligned text line per row, for output that is not a terminal."""
    return [
        f"{r.node:<16} {r.hostname:<16} {r.status:<4} cpu {r.cpu:>5}%  mem {r.memory:>5}%  load {r.load:>5}  "
        f"in {r.net_in:>9}/s  out {r.net_out:>9}/s  seen {r.last_seen}"
        for r in rows
    ]
