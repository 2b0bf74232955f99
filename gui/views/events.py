"""The Events tab: node joined / lost, module errors, gaps, newest first (the ``Events`` update)."""

from __future__ import annotations

import time
from typing import Any

from PySide6 import QtGui, QtWidgets

__all__ = ["COLUMNS", "EventsView", "event_cells"]

COLUMNS = ("time", "node", "kind", "severity", "message")
SEVERITY_COLOURS = {"warning": "#e65100", "error": "#c62828"}
UNAVAILABLE = (
    "This collector sends no Events update (its events module is not running), so there is nothing to show here."
)


def event_cells(event: dict[str, Any]) -> tuple[str, ...]:
    """The cells of one event of the ``Events`` update, in COLUMNS order."""
    stamp = float(event.get("time") or 0.0)
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp)) if stamp > 0 else "-"
    attrs = event.get("attrs") or {}
    message = str(event.get("message") or "")
    if attrs:
        message += "  (" + ", ".join(f"{k}={v}" for k, v in sorted(attrs.items())) + ")"
    return (
        when,
        str(event.get("node") or "-"),
        str(event.get("kind") or ""),
        str(event.get("severity") or ""),
        message,
    )


class EventsView(QtWidgets.QWidget):
    """A read-only table of the latest events, newest first."""

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.status = QtWidgets.QLabel("Waiting for events ...", self)
        self.table = QtWidgets.QTableWidget(0, len(COLUMNS), self)
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.events: list[dict[str, Any]] = []
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.status)
        layout.addWidget(self.table, 1)

    def set_available(self, available: bool) -> None:
        """Say plainly when the collector offers no Events update."""
        if not available:
            self.status.setText(UNAVAILABLE)
        elif not self.events:
            self.status.setText("Waiting for events ...")

    def set_events(self, events: Any) -> None:
        """Show the payload of an ``Events`` update (a list of event maps, newest first)."""
        self.events = [e for e in events if isinstance(e, dict)] if isinstance(events, list) else []
        self.table.setRowCount(len(self.events))
        for row, event in enumerate(self.events):
            colour = SEVERITY_COLOURS.get(str(event.get("severity")))
            for column, text in enumerate(event_cells(event)):
                item = QtWidgets.QTableWidgetItem(text)
                if colour is not None:
                    item.setForeground(QtGui.QBrush(QtGui.QColor(colour)))
                self.table.setItem(row, column, item)
        self.table.resizeColumnsToContents()
        self.status.setText(f"{len(self.events)} latest events, newest first.")
