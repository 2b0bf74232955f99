"""The plots: CPU, memory, network and disk rates of the selected nodes over time, on shared axes.

Every node selected in the nodes table gets one colour and one line per
metric in each plot (network and disk: solid in/read, dashed out/write). A
node's older points come from ``SystemStatsHistory`` the first time it is
plotted (``history_wanted`` asks the window for them); newer ones from every
``SystemStatsSummary`` update, kept for all nodes so that selecting another
node shows its recent past at once. The four plots share their time axis.
"""

from __future__ import annotations

import time
from typing import Any

import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from gui.views.series import NodeSeries, from_sample, from_summary
from messages import SystemStatsHistory, SystemStatsSummary

__all__ = ["PALETTE", "PLOTS", "WINDOWS", "PlotsView"]

# (label, seconds shown; None = everything kept)
WINDOWS: tuple[tuple[str, float | None], ...] = (
    ("last minute", 60.0),
    ("last 5 minutes", 300.0),
    ("last 15 minutes", 900.0),
    ("last hour", 3600.0),
    ("everything", None),
)
DEFAULT_WINDOW = 1
# (key, title, unit, fixed y range or None, ((metric, legend suffix, dashed), ...))
PLOTS: tuple[tuple[str, str, str, tuple[float, float] | None, tuple[tuple[str, str, bool], ...]], ...] = (
    ("cpu", "CPU", "%", (0.0, 100.0), (("cpu", "", False),)),
    ("memory", "Memory", "%", (0.0, 100.0), (("memory", "", False),)),
    ("network", "Network", "B/s", None, (("net_in", " in", False), ("net_out", " out", True))),
    ("disk", "Disk", "B/s", None, (("disk_read", " read", False), ("disk_write", " write", True))),
)
# Distinct on a white background (matplotlib's tab10).
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
HINT = "Select one or several nodes in the table above to plot them (Ctrl- or Shift-click)."


class PlotsView(QtWidgets.QWidget):
    """Four linked time plots of the selected nodes, a legend in each, and a time window selector."""

    history_wanted = QtCore.Signal(str)

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.series: dict[str, NodeSeries] = {}
        self.selected: list[str] = []
        self.curves: dict[str, dict[str, pg.PlotDataItem]] = {}  # node -> metric -> line
        self._colours: dict[str, str] = {}
        self._asked: set[str] = set()
        self.following = True  # the time window scrolls with the clock until the user pans or zooms
        self.hint = QtWidgets.QLabel(HINT, self)
        self.window_box = QtWidgets.QComboBox(self)
        for label, _ in WINDOWS:
            self.window_box.addItem(label)
        self.window_box.setCurrentIndex(DEFAULT_WINDOW)
        self.window_box.currentIndexChanged.connect(self._follow)
        self.window_box.activated.connect(self._follow)  # choosing the same window again resumes following
        self.graphics = pg.GraphicsLayoutWidget(self)
        self.graphics.setBackground("w")
        self.plots = self._make_plots()
        self._lay_out()

    def _lay_out(self) -> None:
        controls = QtWidgets.QHBoxLayout()
        controls.addWidget(self.hint, 1)
        controls.addWidget(QtWidgets.QLabel("Time window:", self))
        controls.addWidget(self.window_box)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(controls)
        layout.addWidget(self.graphics, 1)

    def _make_plots(self) -> dict[str, pg.PlotItem]:
        plots: dict[str, pg.PlotItem] = {}
        for position, (key, title, unit, fixed, _) in enumerate(PLOTS):
            plot = self.graphics.addPlot(
                row=position // 2,
                col=position % 2,
                title=title,
                axisItems={"bottom": pg.DateAxisItem(orientation="bottom")},
            )
            _style(plot, unit, fixed)
            plot.addLegend(offset=(6, 6), labelTextSize="8pt", labelTextColor="#222222", brush=(255, 255, 255, 200))
            if plots:
                plot.setXLink(next(iter(plots.values())))
            plot.getViewBox().sigRangeChangedManually.connect(self._stop_following)
            plots[key] = plot
        return plots

    # ------------------------------------------------------------ feeding

    def set_nodes(self, nodes: list[str]) -> None:
        """Plot exactly ``nodes``; asks once per node for its history."""
        for node in [n for n in self.selected if n not in nodes]:
            self._drop_curves(node)
        self.selected = list(nodes)
        for node in self.selected:
            if node not in self.curves:
                self._add_curves(node)
            self._want_history(node)
        self._show_hint()
        self._redraw()

    def add_summary(self, summary: SystemStatsSummary) -> None:
        """Append every node's latest figures; redraw the selected nodes' lines."""
        for item in summary.nodes:
            self._series(item.node).add(*from_summary(item))
        self._redraw()

    def add_history(self, history: SystemStatsHistory) -> None:
        """Merge a node's SystemStatsHistory into its line."""
        series = self._series(history.node)
        series.extend(from_sample(sample) for sample in history.samples)
        series.history_loaded = True
        self._redraw()

    def history_failed(self, node: str) -> None:
        """The history request failed (e.g. no sample yet): ask again when the node is next selected."""
        self._asked.discard(node)

    def points(self, node: str, metric: str = "cpu") -> int:
        """How many points the line of ``node``'s ``metric`` shows now (0 when not plotted)."""
        curve = self.curves.get(node, {}).get(metric)
        if curve is None:
            return 0
        xs, _ = curve.getData()
        return 0 if xs is None else len(xs)

    def window_seconds(self) -> float | None:
        """Seconds of time shown, or None for everything."""
        return WINDOWS[self.window_box.currentIndex()][1]

    # ------------------------------------------------------------ internals

    def _series(self, node: str) -> NodeSeries:
        series = self.series.get(node)
        if series is None:
            series = self.series[node] = NodeSeries()
        return series

    def _want_history(self, node: str) -> None:
        if node not in self._asked and not self._series(node).history_loaded:
            self._asked.add(node)
            self.history_wanted.emit(node)

    def _colour(self, node: str) -> str:
        if node not in self._colours:
            self._colours[node] = PALETTE[len(self._colours) % len(PALETTE)]
        return self._colours[node]

    def _add_curves(self, node: str) -> None:
        colour = self._colour(node)
        lines: dict[str, pg.PlotDataItem] = {}
        for key, _, _, _, metrics in PLOTS:
            for metric, suffix, dashed in metrics:
                style = QtCore.Qt.PenStyle.DashLine if dashed else QtCore.Qt.PenStyle.SolidLine
                pen = pg.mkPen(colour, width=2, style=style)
                lines[metric] = self.plots[key].plot([], [], pen=pen, name=f"{node}{suffix}")
        self.curves[node] = lines

    def _drop_curves(self, node: str) -> None:
        lines = self.curves.pop(node, {})
        for key, _, _, _, metrics in PLOTS:
            for metric, _, _ in metrics:
                if metric in lines:
                    self.plots[key].removeItem(lines[metric])

    def _redraw(self) -> None:
        for node in self.selected:
            series = self._series(node)
            for metric, curve in self.curves.get(node, {}).items():
                curve.setData(series.times, series.column(metric))
        self._apply_window()

    def _follow(self, *_: Any) -> None:
        self.following = True
        self._show_hint()
        self._apply_window()

    def _stop_following(self, *_: Any) -> None:
        self.following = False
        self._show_hint()

    def _show_hint(self) -> None:
        if not self.selected:
            self.hint.setText(HINT)
        elif self.following:
            self.hint.setText(f"Plotting {', '.join(self.selected)}.")
        else:
            self.hint.setText(
                f"Plotting {', '.join(self.selected)}; paused scrolling: choose a time window "
                "to follow the clock again."
            )

    def _apply_window(self, *_: Any) -> None:
        if not self.following:
            return
        seconds = self.window_seconds()
        first = self.plots[PLOTS[0][0]]
        if seconds is None:
            first.enableAutoRange(x=True)
        else:
            now = time.time()
            first.setXRange(now - seconds, now, padding=0)


def _style(plot: pg.PlotItem, unit: str, fixed: tuple[float, float] | None) -> None:
    plot.showGrid(x=True, y=True, alpha=0.25)
    plot.setLabel("left", units=unit)
    for name in ("left", "bottom"):
        axis = plot.getAxis(name)
        axis.setPen(pg.mkPen("#555555"))
        axis.setTextPen(pg.mkPen("#222222"))
    plot.setTitle(plot.titleLabel.text, color="#222222", size="10pt")
    if fixed is None:
        plot.enableAutoRange(y=True)
        plot.setAutoVisible(y=True)
    else:
        plot.setYRange(*fixed, padding=0.02)
        plot.setMouseEnabled(y=False)
