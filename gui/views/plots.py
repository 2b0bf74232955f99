"""The plots: CPU, memory, network and disk rates of the selected nodes over time, on shared axes.

Every node selected in the nodes table gets one colour and one line per
metric in each plot (network and disk: solid in/read, dashed out/write). A
node's older points come from ``SystemStatsHistory`` the first time it is
plotted (``history_wanted`` asks the window for them; :meth:`PlotsView.history_params`
says with which since and resolution); newer ones from every
``SystemStatsSummary`` update, kept for all nodes so that selecting another
node shows its recent past at once. The four plots share their time axis.

The time windows longer than five minutes read the collector's history tiers
(1-minute buckets up to 24 hours, 1-hour buckets beyond): the line is each
bucket's average, and a band of the node's colour spans each bucket's min to
max (a pyqtgraph ``FillBetweenItem``). Choosing such a window asks again.
"""

from __future__ import annotations

import bisect
import time
from typing import Any

import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from gui.views.series import NodeSeries, TierSeries, from_sample, from_summary
from messages import SystemStatsHistory, SystemStatsSummary

__all__ = ["PALETTE", "PLOTS", "WINDOWS", "PlotsView"]

# (label, seconds shown, SystemStatsHistory resolution: raw samples or a tier of buckets)
WINDOWS: tuple[tuple[str, float, str], ...] = (
    ("last 5 minutes", 300.0, "raw"),
    ("last hour", 3600.0, "1m"),
    ("last 6 hours", 6 * 3600.0, "1m"),
    ("last 24 hours", 86400.0, "1m"),
    ("last 7 days", 7 * 86400.0, "1h"),
    ("last 30 days", 30 * 86400.0, "1h"),
)
DEFAULT_WINDOW = 0
BAND_ALPHA = 60  # of 255: the min..max band under a node's line
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
        self.bands: dict[str, dict[str, tuple[pg.PlotCurveItem, pg.PlotCurveItem, pg.FillBetweenItem]]] = {}
        self.tiers: dict[str, TierSeries] = {}  # node -> its answer for the current (tiered) window
        self._colours: dict[str, str] = {}
        self._asked: set[tuple[str, int]] = set()  # (node, window) asked for
        self.following = True  # the time window scrolls with the clock until the user pans or zooms
        self.hint = QtWidgets.QLabel(HINT, self)
        self.window_box = QtWidgets.QComboBox(self)
        for label, _, _ in WINDOWS:
            self.window_box.addItem(label)
        self.window_box.setCurrentIndex(DEFAULT_WINDOW)
        self.window_box.currentIndexChanged.connect(self._window_changed)
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
        """Merge a node's SystemStatsHistory into its line (raw samples), or keep its tier's buckets."""
        if history.resolution in ("1m", "1h"):
            self.tiers[history.node] = TierSeries.of(history)
        else:
            series = self._series(history.node)
            series.extend(from_sample(sample) for sample in history.samples)
            series.history_loaded = True
        self._redraw()

    def history_failed(self, node: str) -> None:
        """The history request failed (e.g. no sample yet): ask again when the node is next selected."""
        self._asked.discard((node, self.window_box.currentIndex()))

    def history_params(self, node: str) -> dict[str, str]:
        """The parameters of the SystemStatsHistory request for ``node`` in the current window."""
        _, seconds, resolution = WINDOWS[self.window_box.currentIndex()]
        return {"node": node, "since": repr(time.time() - seconds), "resolution": resolution}

    def band_points(self, node: str, metric: str = "cpu") -> int:
        """How many buckets the min..max band of ``node``'s ``metric`` spans now (0: no band)."""
        band = self.bands.get(node, {}).get(metric)
        if band is None:
            return 0
        xs, _ = band[0].getData()
        return 0 if xs is None else len(xs)

    def points(self, node: str, metric: str = "cpu") -> int:
        """How many points the line of ``node``'s ``metric`` shows now (0 when not plotted)."""
        curve = self.curves.get(node, {}).get(metric)
        if curve is None:
            return 0
        xs, _ = curve.getData()
        return 0 if xs is None else len(xs)

    def window_seconds(self) -> float:
        """Seconds of time shown."""
        return WINDOWS[self.window_box.currentIndex()][1]

    def resolution(self) -> str:
        """The SystemStatsHistory resolution of the current window: raw, 1m or 1h."""
        return WINDOWS[self.window_box.currentIndex()][2]

    # ------------------------------------------------------------ internals

    def _series(self, node: str) -> NodeSeries:
        series = self.series.get(node)
        if series is None:
            series = self.series[node] = NodeSeries()
        return series

    def _want_history(self, node: str) -> None:
        window = self.window_box.currentIndex()
        if (node, window) in self._asked:
            return
        if self.resolution() == "raw" and self._series(node).history_loaded:
            return
        self._asked.add((node, window))
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
        self.bands[node] = {
            metric: self._band(key, colour) for key, _, _, _, metrics in PLOTS for metric, _, _ in metrics
        }

    def _band(self, key: str, colour: str) -> tuple[pg.PlotCurveItem, pg.PlotCurveItem, pg.FillBetweenItem]:
        low, high = pg.PlotCurveItem([], [], pen=None), pg.PlotCurveItem([], [], pen=None)
        fill_colour = pg.mkColor(colour)
        fill_colour.setAlpha(BAND_ALPHA)
        fill = pg.FillBetweenItem(low, high, brush=pg.mkBrush(fill_colour))
        for item in (low, high, fill):  # on the view box: not data items, so neither in the legend nor its list
            self.plots[key].getViewBox().addItem(item, ignoreBounds=True)
        return low, high, fill

    def _drop_curves(self, node: str) -> None:
        lines = self.curves.pop(node, {})
        bands = self.bands.pop(node, {})
        for key, _, _, _, metrics in PLOTS:
            for metric, _, _ in metrics:
                if metric in lines:
                    self.plots[key].removeItem(lines[metric])
                for item in bands.get(metric, ()):
                    self.plots[key].getViewBox().removeItem(item)

    def _redraw(self) -> None:
        tiered = self.resolution() != "raw"
        for node in self.selected:
            series, tier = self._series(node), self.tiers.get(node) if tiered else None
            for metric, curve in self.curves.get(node, {}).items():
                low, high, _ = self.bands[node][metric]
                if tier is None or metric not in tier.columns:
                    curve.setData(series.times, series.column(metric))
                    low.setData([], [])
                    high.setData([], [])
                    continue
                mins, avgs, maxs = tier.columns[metric]
                live = bisect.bisect_left(series.times, tier.end())
                curve.setData(tier.times + series.times[live:], avgs + series.column(metric)[live:])
                low.setData(tier.times, mins)
                high.setData(tier.times, maxs)
        self._apply_window()

    def _window_changed(self, *_: Any) -> None:
        """Another window: a tiered one asks for every plotted node's buckets again."""
        self.tiers.clear()
        for node in self.selected:
            self._want_history(node)
        self._redraw()
        self._follow()

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
        now = time.time()
        self.plots[PLOTS[0][0]].setXRange(now - self.window_seconds(), now, padding=0)


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
