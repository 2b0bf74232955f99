"""The nodes view: one row per node, sortable and filterable, fed by NodeList and SystemStatsSummary.

Cells are the terminal table's (gui/table.py ``node_rows``), so ``labscope top``
and the GUI always agree; sorting uses the raw numbers behind them.
"""

from __future__ import annotations

import math
import time
from typing import Any

from PySide6 import QtCore, QtGui, QtWidgets

from gui.table import COLUMNS, NodeRow, node_rows
from messages import NodeList, NodeStatus, NodeSummary, SystemStatsSummary

__all__ = ["SORT_ROLE", "NodesModel", "NodesView"]

SORT_ROLE = QtCore.Qt.ItemDataRole.UserRole + 1
HOSTNAME_COLUMN = 1
STATUS_COLUMN = 2
LAST_SEEN_COLUMN = len(COLUMNS) - 1
STATUS_COLOURS = {"live": "#2e7d32", "lost": "#c62828"}
UNKNOWN_COLOUR = "#f9a825"
LOST_TEXT = "#8a8a8a"  # a lost node's figures are its last ones: greyed, as the classic GUI did

_RIGHT = QtCore.Qt.AlignmentFlag.AlignRight | QtCore.Qt.AlignmentFlag.AlignVCenter
_LEFT = QtCore.Qt.AlignmentFlag.AlignLeft | QtCore.Qt.AlignmentFlag.AlignVCenter
_Index = QtCore.QModelIndex | QtCore.QPersistentModelIndex


class NodesModel(QtCore.QAbstractTableModel):
    """Rows of the latest NodeList merged with the latest SystemStatsSummary, in order of first appearance."""

    def __init__(self, parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self.node_list: NodeList | None = None
        self.summary: SystemStatsSummary | None = None
        self._order: list[str] = []
        self._rows: dict[str, NodeRow] = {}
        self._statuses: dict[str, NodeStatus] = {}
        self._figures: dict[str, NodeSummary] = {}

    # ------------------------------------------------------------ feeding

    def set_node_list(self, node_list: NodeList) -> None:
        """Take a new NodeList (update or response)."""
        self.node_list = node_list
        self._statuses = {status.node: status for status in node_list.nodes}
        self._rebuild()

    def set_summary(self, summary: SystemStatsSummary) -> None:
        """Take a new SystemStatsSummary."""
        self.summary = summary
        self._figures = {item.node: item for item in summary.nodes}
        self._rebuild()

    def tick(self) -> None:
        """Re-render the "last seen" column (it is relative to now)."""
        self._rows = {row.node: row for row in node_rows(self.node_list, self.summary)}
        if self._order:
            self.dataChanged.emit(self.index(0, LAST_SEEN_COLUMN), self.index(len(self._order) - 1, LAST_SEEN_COLUMN))

    def _rebuild(self) -> None:
        rows = {row.node: row for row in node_rows(self.node_list, self.summary)}
        self._remove_missing(rows)
        self._rows = rows
        known = set(self._order)
        new = [node for node in sorted(rows) if node not in known]
        if new:
            first = len(self._order)
            self.beginInsertRows(QtCore.QModelIndex(), first, first + len(new) - 1)
            self._order.extend(new)
            self.endInsertRows()
        if self._order:
            self.dataChanged.emit(self.index(0, 0), self.index(len(self._order) - 1, len(COLUMNS) - 1))

    def _remove_missing(self, rows: dict[str, NodeRow]) -> None:
        for position in reversed(range(len(self._order))):
            if self._order[position] not in rows:
                self.beginRemoveRows(QtCore.QModelIndex(), position, position)
                del self._order[position]
                self.endRemoveRows()

    # ------------------------------------------------------------ queries

    def nodes(self) -> list[str]:
        """Node ids in row order."""
        return list(self._order)

    def row_of(self, node: str) -> NodeRow | None:
        """The displayed cells of ``node``, or None."""
        return self._rows.get(node)

    # ------------------------------------------------------------ Qt model API

    def rowCount(self, parent: _Index = QtCore.QModelIndex()) -> int:
        """Number of nodes."""
        return 0 if parent.isValid() else len(self._order)

    def columnCount(self, parent: _Index = QtCore.QModelIndex()) -> int:
        """Number of columns (the terminal table's)."""
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(
        self, section: int, orientation: QtCore.Qt.Orientation, role: int = QtCore.Qt.ItemDataRole.DisplayRole
    ) -> Any:
        """Column titles."""
        if orientation == QtCore.Qt.Orientation.Horizontal and role == QtCore.Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section][0]
        return None

    def data(self, index: _Index, role: int = QtCore.Qt.ItemDataRole.DisplayRole) -> Any:
        """Text, sort key, alignment, colours and tooltip of one cell."""
        if not index.isValid() or index.row() >= len(self._order):
            return None
        node = self._order[index.row()]
        row = self._rows.get(node)
        if row is None:
            return None
        handler = _ROLES.get(role)
        return handler(self, node, row, index.column()) if handler else None

    def _display(self, node: str, row: NodeRow, column: int) -> str:
        return row.cells()[column]

    def _sort_key(self, node: str, row: NodeRow, column: int) -> Any:
        return sort_key(column, row, self._statuses.get(node), self._figures.get(node))

    def _alignment(self, node: str, row: NodeRow, column: int) -> Any:
        return _RIGHT if COLUMNS[column][1] == "right" else _LEFT

    def _background(self, node: str, row: NodeRow, column: int) -> Any:
        if column != STATUS_COLUMN:
            return None
        return QtGui.QBrush(QtGui.QColor(STATUS_COLOURS.get(row.status, UNKNOWN_COLOUR)))

    def _foreground(self, node: str, row: NodeRow, column: int) -> Any:
        if column == STATUS_COLUMN:
            return QtGui.QBrush(QtGui.QColor("white"))
        return QtGui.QBrush(QtGui.QColor(LOST_TEXT)) if row.status == "lost" else None

    def _font(self, node: str, row: NodeRow, column: int) -> Any:
        if column != STATUS_COLUMN:
            return None
        font = QtGui.QFont()
        font.setBold(True)
        return font

    def _tooltip(self, node: str, row: NodeRow, column: int) -> Any:
        status = self._statuses.get(node)
        return None if status is None else node_tooltip(status)


_ROLES = {
    QtCore.Qt.ItemDataRole.DisplayRole: NodesModel._display,
    SORT_ROLE: NodesModel._sort_key,
    QtCore.Qt.ItemDataRole.TextAlignmentRole: NodesModel._alignment,
    QtCore.Qt.ItemDataRole.BackgroundRole: NodesModel._background,
    QtCore.Qt.ItemDataRole.ForegroundRole: NodesModel._foreground,
    QtCore.Qt.ItemDataRole.FontRole: NodesModel._font,
    QtCore.Qt.ItemDataRole.ToolTipRole: NodesModel._tooltip,
}


def sort_key(column: int, row: NodeRow, status: NodeStatus | None, figures: NodeSummary | None) -> Any:
    """The raw value a column sorts by: numbers for figures, age for "last seen" (unknown last)."""
    if column <= STATUS_COLUMN:
        return row.cells()[column].lower()
    if column == LAST_SEEN_COLUMN:
        seen = status.last_seen if status and status.last_seen > 0 else (figures.time if figures else 0.0)
        return time.time() - seen if seen > 0 else math.inf
    if figures is None:
        return -1.0
    return (figures.cpu_percent, figures.memory_percent, figures.load1, figures.net_recv_rate, figures.net_send_rate)[
        column - STATUS_COLUMN - 1
    ]


def node_tooltip(status: NodeStatus) -> str:
    """What a row's tooltip tells beyond its cells."""
    memory = f"{status.memory_total / 2**30:.1f} GiB" if status.memory_total else "?"
    return (
        f"{status.node} on {status.hostname or '?'} ({status.os or '?'}, {status.cpu_count} CPUs, "
        f"{memory})\nagent {status.agent_version or '?'}, last seq {status.last_seq}, "
        f"gaps {status.gaps}, reconnects {status.reconnects}"
    )


class StatusDelegate(QtWidgets.QStyledItemDelegate):
    """Paints the status cell in its colour even when the row is selected (the selection would hide it)."""

    def paint(
        self,
        painter: QtGui.QPainter,
        option: QtWidgets.QStyleOptionViewItem,
        index: QtCore.QModelIndex | QtCore.QPersistentModelIndex,
    ) -> None:
        """Fill the cell with the status colour and draw the status in bold white."""
        brush = index.data(QtCore.Qt.ItemDataRole.BackgroundRole)
        if not isinstance(brush, QtGui.QBrush):
            super().paint(painter, option, index)
            return
        rect = option.rect
        painter.save()
        painter.fillRect(rect.adjusted(1, 1, -1, -1), brush)
        font = QtGui.QFont(option.font)
        font.setBold(True)
        painter.setFont(font)
        painter.setPen(QtGui.QColor("white"))
        painter.drawText(rect, QtCore.Qt.AlignmentFlag.AlignCenter, str(index.data()))
        painter.restore()


class NodesView(QtWidgets.QWidget):
    """A filter box above a sortable table of nodes; ``selection_changed`` names the selected nodes."""

    selection_changed = QtCore.Signal(list)

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = NodesModel(self)
        self.proxy = QtCore.QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setSortRole(SORT_ROLE)
        self.proxy.setFilterKeyColumn(-1)
        self.proxy.setFilterCaseSensitivity(QtCore.Qt.CaseSensitivity.CaseInsensitive)
        self.filter = QtWidgets.QLineEdit(self)
        self.filter.setPlaceholderText("Filter nodes: id, host name, status ...")
        self.filter.setClearButtonEnabled(True)
        self.filter.textChanged.connect(self.proxy.setFilterFixedString)
        self.table = self._make_table()
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.filter)
        layout.addWidget(self.table)
        self._timer = QtCore.QTimer(self)
        self._timer.timeout.connect(self.model.tick)
        self._timer.start(1000)

    def _make_table(self) -> QtWidgets.QTableView:
        table = QtWidgets.QTableView(self)
        table.setModel(self.proxy)
        table.setSortingEnabled(True)
        table.sortByColumn(0, QtCore.Qt.SortOrder.AscendingOrder)
        table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        table.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.ExtendedSelection)
        table.setAlternatingRowColors(True)
        table.verticalHeader().setVisible(False)
        table.setItemDelegateForColumn(STATUS_COLUMN, StatusDelegate(table))
        header = table.horizontalHeader()
        header.setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(HOSTNAME_COLUMN, QtWidgets.QHeaderView.ResizeMode.Stretch)
        table.selectionModel().selectionChanged.connect(self._emit_selection)
        return table

    def selected_nodes(self) -> list[str]:
        """Selected node ids, in the table's order."""
        rows = sorted(index.row() for index in self.table.selectionModel().selectedRows())
        return [self.proxy.index(row, 0).data() for row in rows]

    def select_nodes(self, nodes: list[str]) -> None:
        """Select exactly ``nodes`` (those that are shown)."""
        selection = QtCore.QItemSelection()
        for row in range(self.proxy.rowCount()):
            if self.proxy.index(row, 0).data() in nodes:
                selection.select(self.proxy.index(row, 0), self.proxy.index(row, len(COLUMNS) - 1))
        flags = QtCore.QItemSelectionModel.SelectionFlag.ClearAndSelect | QtCore.QItemSelectionModel.SelectionFlag.Rows
        self.table.selectionModel().select(selection, flags)

    def _emit_selection(self, *_: Any) -> None:
        self.selection_changed.emit(self.selected_nodes())
