"""The main window of ``labscope gui``: the nodes table above, tabs of plots, events, files and updates below.

The window owns one :class:`gui.worker.Worker` and only talks to it by
signals, so nothing here ever waits on the network. The status bar shows the
connection state (connected / reconnecting / refused, or why the collector
refused our CURVE handshake), the title the collector's alias.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from PySide6 import QtCore, QtGui, QtWidgets

from gui.client import Response, Update
from gui.views.events import EventsView
from gui.views.files import FilesView
from gui.views.generic import GenericPanel
from gui.views.nodes import NodesView
from gui.views.plots import PlotsView
from gui.worker import AUTH_REFUSED, CONNECTED, CONNECTING, RECONNECTING, REFUSED, Worker
from messages import CollectorInfo, NodeList, SystemStatsHistory, SystemStatsSummary
from messages.keys import ClientKeys

__all__ = ["BASE_TYPES", "MainWindow", "state_text"]

# Update types the window always subscribes to; the generic panel adds its chosen one.
# FileList costs nothing while no file arrives: the files module pushes it only after a change.
BASE_TYPES = ("NodeList", "SystemStatsSummary", "Events", "FileList")
STATE_COLOURS = {
    CONNECTED: "#2e7d32",
    CONNECTING: "#555555",
    RECONNECTING: "#e65100",
    REFUSED: "#c62828",
    AUTH_REFUSED: "#c62828",
}
TAB_PLOTS, TAB_EVENTS, TAB_FILES, TAB_UPDATES = range(4)
REFUSED_MESSAGE_MS = 15_000  # how long the status bar shows a refused subscription


def state_text(state: str, endpoint: str, alias: str, last_heard: float, now: float, reason: str = "") -> str:
    """The status bar's line for a connection state; ``reason`` says why the handshake was refused."""
    if state == AUTH_REFUSED:
        return f"\u25cf refused by {endpoint}: {reason or 'CURVE handshake failed'}; still trying ..."
    if state == CONNECTED:
        return f"\u25cf connected to {alias or 'the collector'} at {endpoint}"
    if state == RECONNECTING:
        silent = f" (last heard {now - last_heard:.0f} s ago)" if last_heard > 0 else ""
        return f"\u25cf reconnecting to {endpoint}{silent} ..."
    if state == REFUSED:
        return f"\u25cf refused: nothing answers at {endpoint}; still trying ..."
    return f"\u25cf connecting to {endpoint} ..."


class MainWindow(QtWidgets.QMainWindow):
    """One collector's testbed: nodes, plots, events, files and every module's updates."""

    def __init__(
        self, endpoint: str, parent: QtWidgets.QWidget | None = None, *, keys: ClientKeys | None = None
    ) -> None:
        super().__init__(parent)
        self.endpoint = endpoint
        self.info: CollectorInfo | None = None
        self.state = CONNECTING
        self.worker = Worker(endpoint, self, keys=keys)
        self.nodes = NodesView(self)
        self.plots = PlotsView(self)
        self.events = EventsView(self)
        self.files = FilesView(self)
        self.generic = GenericPanel(self)
        self.tabs = self._make_tabs()
        self.state_label = QtWidgets.QLabel(self)
        self._lay_out()
        self._wire()
        self._timer = QtCore.QTimer(self)
        self._timer.timeout.connect(self._show_state)
        self._timer.start(1000)
        self._show_state()
        self.setWindowTitle(f"labscope - connecting to {endpoint}")

    def _make_tabs(self) -> QtWidgets.QTabWidget:
        tabs = QtWidgets.QTabWidget(self)
        tabs.addTab(self.plots, "Plots")
        tabs.addTab(self.events, "Events")
        tabs.addTab(self.files, "Files")
        tabs.addTab(self.generic, "All updates")
        return tabs

    def _lay_out(self) -> None:
        splitter = QtWidgets.QSplitter(QtCore.Qt.Orientation.Vertical, self)
        splitter.addWidget(self.nodes)
        splitter.addWidget(self.tabs)
        splitter.setStretchFactor(0, 2)
        splitter.setStretchFactor(1, 3)
        self.setCentralWidget(splitter)
        self.statusBar().addWidget(self.state_label, 1)
        self.resize(1280, 860)

    def _wire(self) -> None:
        self.worker.info_changed.connect(self._on_info)
        self.worker.update_received.connect(self._on_update)
        self.worker.response_received.connect(self._on_response)
        self.worker.request_failed.connect(self._on_failed)
        self.worker.state_changed.connect(self._on_state)
        self.worker.subscription_refused.connect(self._on_refused)
        self.nodes.selection_changed.connect(self.plots.set_nodes)
        self.plots.history_wanted.connect(self._ask_history)
        self.generic.type_chosen.connect(self._subscribe)
        self._wire_files()
        self._updates: dict[str, Callable[[Any], None]] = {
            "NodeList": self._take_node_list,
            "SystemStatsSummary": self._take_summary,
            "Events": self.events.set_events,
            "FileList": self.files.set_file_list,
        }
        self.worker.subscribe(BASE_TYPES)

    def _wire_files(self) -> None:
        self.nodes.selection_changed.connect(self.files.set_selected)
        self.files.list_wanted.connect(self._ask_files)
        self.files.transfer_wanted.connect(self.worker.transfer)
        self.files.cancel_wanted.connect(self.worker.cancel)
        self.worker.transfer_progress.connect(self.files.show_progress)
        self.worker.transfer_finished.connect(self.files.transfer_done)
        self.worker.transfer_failed.connect(self.files.transfer_failed)

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start talking to the collector."""
        self.worker.start()

    def shutdown(self) -> None:
        """Stop the worker (its thread closes the socket)."""
        self.worker.stop()

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:
        """Closing the window stops the worker first."""
        self.shutdown()
        super().closeEvent(event)

    # ------------------------------------------------------------ readiness (screenshots, tests)

    def listed_nodes(self) -> list[str]:
        """Nodes of the latest NodeList."""
        node_list = self.nodes.model.node_list
        return [status.node for status in node_list.nodes] if node_list else []

    def nodes_shown(self) -> bool:
        """True when the table has a row for every node of the collector's latest NodeList (at least one)."""
        listed = self.listed_nodes()
        return bool(listed) and set(listed) <= set(self.nodes.model.nodes())

    def figures_shown(self) -> bool:
        """True when every listed node has CPU/memory figures in the table."""
        summary = self.nodes.model.summary
        with_figures = {item.node for item in summary.nodes} if summary else set()
        return self.nodes_shown() and set(self.listed_nodes()) <= with_figures

    # ------------------------------------------------------------ worker signals

    def _on_info(self, info: CollectorInfo) -> None:
        self.info = info
        alias = info.alias or self.endpoint
        self.setWindowTitle(f"labscope - {alias} ({self.endpoint})")
        self.generic.set_types(sorted(info.update_types))
        self.files.set_request_types(list(info.request_types))
        self.events.set_available("Events" in info.update_types)
        self._show_state()

    def _on_update(self, update: Update) -> None:
        handler = self._updates.get(update.type)
        if handler is not None:
            handler(update.payload)
        self.generic.take_update(update)

    def _take_node_list(self, payload: Any) -> None:
        if isinstance(payload, NodeList):
            self.nodes.model.set_node_list(payload)
            self.files.set_nodes(self.listed_nodes())

    def _take_summary(self, payload: Any) -> None:
        if isinstance(payload, SystemStatsSummary):
            self.nodes.model.set_summary(payload)
            self.plots.add_summary(payload)

    def _on_response(self, tag: str, response: Response) -> None:
        kind, _, node = tag.partition(":")
        if kind == "history" and isinstance(response.payload, SystemStatsHistory):
            self.plots.add_history(response.payload)
        elif kind == "files":
            self.files.show_list(node, response.payload)

    def _on_failed(self, tag: str, reason: str) -> None:
        kind, _, node = tag.partition(":")
        if kind == "history":
            self.plots.history_failed(node)
        elif kind == "files":
            self.files.show_error(node, reason)

    def _on_refused(self, reason: str) -> None:
        self.statusBar().showMessage(f"subscription refused: {reason}", REFUSED_MESSAGE_MS)

    def _on_state(self, state: str, last_heard: float) -> None:
        self.state = state
        self._show_state()

    # ------------------------------------------------------------ views' wishes

    def _ask_history(self, node: str) -> None:
        self.worker.request(f"history:{node}", "SystemStatsHistory", self.plots.history_params(node))

    def _ask_files(self, node: str) -> None:
        self.worker.request(f"files:{node}", "FileList", {"node": node} if node else {})

    def _subscribe(self, type_name: str) -> None:
        self.worker.subscribe((*BASE_TYPES, type_name))

    def _show_state(self) -> None:
        alias = self.info.alias if self.info else ""
        text = state_text(
            self.state, self.endpoint, alias, self.worker.last_heard, time.time(), self.worker.auth_reason
        )
        self.state_label.setText(text)
        self.state_label.setStyleSheet(f"color: {STATE_COLOURS.get(self.state, '#555555')}")
