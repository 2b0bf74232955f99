"""The Files tab: the files module's ``FileList``, saving files, fetching files from a node.

The list comes from the ``FileList`` update the window subscribes to (the files
module pushes the full list whenever a file arrived), plus one ``FileList``
request when the tab becomes available or Refresh is pressed; it shows every
node's files, or only the nodes selected in the nodes view.

*Save...* asks where to save the selected file and hands a :class:`Transfer`
of request ``File node=ID filename=NAME`` to the worker; *Fetch from node...*
asks for a node and a path in its serve folders and does the same with
``NodeFile node=ID path=PATH``. The worker streams the answer into a temporary
file next to the target and renames it only when complete and verified; this
view shows the progress by bytes and the outcome in one line. The dialogs are
attributes (:attr:`FilesView.ask_save_path`, :attr:`FilesView.ask_node_path`)
so tests and scripts can answer them without a real dialog.

When the collector answers no ``FileList`` request (no files module) the tab
says so plainly instead.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from PySide6 import QtCore, QtWidgets

from gui.table import human_rate
from gui.worker import Transfer

__all__ = [
    "COLUMNS",
    "FILE_LIST",
    "UNAVAILABLE",
    "FileEntry",
    "FilesView",
    "NodePathDialog",
    "human_size",
    "parse_file_list",
]

FILE_LIST = "FileList"
UNAVAILABLE = (
    "File browsing is not available on this collector yet: it runs no files module "
    "(it does not answer FileList requests)."
)
COLUMNS = ("node", "name", "size", "modified")
SORT_ROLE = QtCore.Qt.ItemDataRole.UserRole + 1
PROGRESS_STEPS = 1000  # the bar counts in thousandths: QProgressBar's int is too small for bytes
ERROR_COLOUR = "#c62828"
OK_COLOUR = "#2e7d32"

# (parent, suggested file name) -> chosen path, "" when the user cancelled
SavePathAsker = Callable[[QtWidgets.QWidget, str], str]
# (parent, known nodes, default node) -> (node, path), None when the user cancelled
NodePathAsker = Callable[[QtWidgets.QWidget, list[str], str], "tuple[str, str] | None"]


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One file of a FileList."""

    node: str
    name: str
    size: int
    modtime: float


def parse_file_list(payload: Any) -> list[FileEntry] | None:
    """FileList entries (``{node, name, size, modtime}`` maps); None when ``payload`` is not a list.

    Entries without a node or name are skipped, so one odd entry does not hide the others.
    """
    if not isinstance(payload, list):
        return None
    entries = []
    for item in payload:
        if isinstance(item, dict) and item.get("node") and item.get("name"):
            entries.append(
                FileEntry(
                    str(item["node"]),
                    str(item["name"]),
                    _number(item.get("size"), int),
                    _number(item.get("modtime"), float),
                )
            )
    return entries


def _number(value: Any, kind: type[int] | type[float]) -> Any:
    try:
        number = kind(value)
    except (TypeError, ValueError, OverflowError):
        return kind(0)
    return number if math.isfinite(number) and number >= 0 else kind(0)


def human_size(size: float) -> str:
    """A size in binary units, as the nodes table writes rates: ``512 B``, ``3.0 MiB``."""
    return human_rate(size)


def _when(modtime: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(modtime)) if modtime > 0 else "-"


class _FileItem(QtWidgets.QTreeWidgetItem):
    """A row that sorts by the raw value behind its cell (size in bytes, modtime in seconds)."""

    def __init__(self, entry: FileEntry) -> None:
        super().__init__([entry.node, entry.name, human_size(entry.size), _when(entry.modtime)])
        self.entry = entry
        for column, key in enumerate((entry.node, entry.name, entry.size, entry.modtime)):
            self.setData(column, SORT_ROLE, key)
        self.setTextAlignment(2, QtCore.Qt.AlignmentFlag.AlignRight | QtCore.Qt.AlignmentFlag.AlignVCenter)
        self.setToolTip(2, f"{entry.size:,} bytes")

    def __lt__(self, other: QtWidgets.QTreeWidgetItem) -> bool:
        column = self.treeWidget().sortColumn() if self.treeWidget() else 0
        mine, theirs = self.data(column, SORT_ROLE), other.data(column, SORT_ROLE)
        if mine is None or theirs is None or type(mine) is not type(theirs):
            return super().__lt__(other)
        return bool(mine < theirs)


class NodePathDialog(QtWidgets.QDialog):
    """Asks for a node (editable, from the known nodes) and a path in its serve folders."""

    def __init__(self, parent: QtWidgets.QWidget | None, nodes: list[str], default: str) -> None:
        super().__init__(parent)
        self.setWindowTitle("Fetch a file from a node")
        self.node = QtWidgets.QComboBox(self)
        self.node.setEditable(True)
        self.node.addItems(nodes)
        self.node.setCurrentText(default)
        self.path = QtWidgets.QLineEdit(self)
        self.path.setPlaceholderText("absolute inside a serve folder, or relative to the first one")
        buttons = QtWidgets.QDialogButtonBox(
            QtWidgets.QDialogButtonBox.StandardButton.Ok | QtWidgets.QDialogButtonBox.StandardButton.Cancel, self
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form = QtWidgets.QFormLayout(self)
        form.addRow("Node:", self.node)
        form.addRow("Path:", self.path)
        form.addRow(buttons)

    def values(self) -> tuple[str, str] | None:
        """(node, path) as typed, or None when either is empty."""
        node, path = self.node.currentText().strip(), self.path.text().strip()
        return (node, path) if node and path else None


def ask_save_path(parent: QtWidgets.QWidget, suggested: str) -> str:
    """A save dialog starting at ``suggested``; "" when cancelled."""
    path, _ = QtWidgets.QFileDialog.getSaveFileName(parent, "Save file as", suggested)
    return str(path)


def ask_node_path(parent: QtWidgets.QWidget, nodes: list[str], default: str) -> tuple[str, str] | None:
    """A :class:`NodePathDialog`; None when cancelled or incomplete."""
    dialog = NodePathDialog(parent, nodes, default)
    accepted = dialog.exec() == QtWidgets.QDialog.DialogCode.Accepted
    return dialog.values() if accepted else None


class FilesView(QtWidgets.QWidget):
    """A notice, or the FileList with Save... / Fetch from node... and a progress bar.

    Signals: ``list_wanted(node)`` asks for a FileList ("" = every node);
    ``transfer_wanted(Transfer)`` asks the worker to save a file;
    ``cancel_wanted(tag)`` cancels the running transfer.
    """

    list_wanted = QtCore.Signal(str)
    transfer_wanted = QtCore.Signal(object)
    cancel_wanted = QtCore.Signal(str)

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.available = False
        self.entries: list[FileEntry] = []
        self.selected: list[str] = []
        self.known_nodes: list[str] = []
        self.active: Transfer | None = None
        self.ask_save_path: SavePathAsker = ask_save_path
        self.ask_node_path: NodePathAsker = ask_node_path
        self._tags = itertools.count(1)
        self._listed = False  # whether any FileList arrived: "asking" and "no files" read differently
        self._last_dir = ""  # the next save dialog opens where the previous file went
        self._what = ""  # the running transfer, as the status line names it
        self._outcome = False  # the status line says how the last transfer ended: a list refresh leaves it
        self._make_widgets()
        self.pages = QtWidgets.QStackedWidget(self)
        self.pages.addWidget(self.notice)
        self.pages.addWidget(self._browser())
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.pages)
        self._sync_buttons()

    def _make_widgets(self) -> None:
        self.notice = QtWidgets.QLabel(UNAVAILABLE, self)
        self.notice.setWordWrap(True)
        self.notice.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        self.scope = QtWidgets.QLabel("", self)
        self.refresh = self._button("Refresh", self._ask_all)
        self.save = self._button("Save...", self.save_selected)
        self.fetch = self._button("Fetch from node...", self.fetch_from_node)
        self.cancel = self._button("Cancel", self.cancel_transfer)
        self.status = QtWidgets.QLabel("", self)
        self.status.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        self.progress = QtWidgets.QProgressBar(self)
        self.progress.setRange(0, PROGRESS_STEPS)
        self.progress.setValue(0)
        self.progress.setMaximumWidth(320)
        self.table = self._make_table()

    def _button(self, text: str, slot: Callable[[], object]) -> QtWidgets.QPushButton:
        button = QtWidgets.QPushButton(text, self)
        button.clicked.connect(lambda *_: slot())
        return button

    def _make_table(self) -> QtWidgets.QTreeWidget:
        table = QtWidgets.QTreeWidget(self)
        table.setColumnCount(len(COLUMNS))
        table.setHeaderLabels(list(COLUMNS))
        table.setRootIsDecorated(False)
        table.setUniformRowHeights(True)
        table.setSortingEnabled(True)
        table.sortByColumn(0, QtCore.Qt.SortOrder.AscendingOrder)
        table.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.SingleSelection)
        table.itemSelectionChanged.connect(self._sync_buttons)
        table.itemDoubleClicked.connect(lambda *_: self.save_selected())
        table.header().setSectionResizeMode(1, QtWidgets.QHeaderView.ResizeMode.Stretch)
        return table

    def _browser(self) -> QtWidgets.QWidget:
        page = QtWidgets.QWidget(self)
        controls = QtWidgets.QHBoxLayout()
        controls.addWidget(self.scope, 1)
        for button in (self.refresh, self.save, self.fetch):
            controls.addWidget(button)
        footer = QtWidgets.QHBoxLayout()
        footer.addWidget(self.status, 1)
        footer.addWidget(self.progress)
        footer.addWidget(self.cancel)
        layout = QtWidgets.QVBoxLayout(page)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(controls)
        layout.addWidget(self.table, 1)
        layout.addLayout(footer)
        return page

    # ------------------------------------------------------------ feeding (window)

    def set_request_types(self, request_types: list[str]) -> None:
        """Show the browser when the collector answers FileList (asking for it once), the notice otherwise."""
        was = self.available
        self.available = FILE_LIST in request_types
        self.pages.setCurrentIndex(1 if self.available else 0)
        if self.available and not was:
            self._ask_all()

    def set_nodes(self, nodes: list[str]) -> None:
        """The collector's nodes, offered by *Fetch from node...*."""
        self.known_nodes = list(nodes)

    def set_selected(self, nodes: list[str]) -> None:
        """Show only the files of ``nodes`` (every node's when empty)."""
        self.selected = list(nodes)
        self._fill()

    def set_file_list(self, payload: Any) -> None:
        """Take a ``FileList`` update (every node's files)."""
        self.show_list("", payload)

    def show_list(self, node: str, payload: Any) -> None:
        """Take a FileList answer: every node's files (``node`` "") or ``node``'s only."""
        entries = parse_file_list(payload)
        if entries is None:
            self._say(f"The FileList could not be read (a {type(payload).__name__}, not a list).", ERROR_COLOUR)
            return
        if node:
            entries = [e for e in self.entries if e.node != node] + [e for e in entries if e.node == node]
        self._listed = True
        if entries != self.entries:
            self.entries = entries
            self._fill()
        elif not self.active and not self._outcome:
            self._describe()

    def _ask_all(self) -> None:
        if self.available:
            self.list_wanted.emit("")

    def show_error(self, node: str, reason: str) -> None:
        """Say why a FileList request failed (the list shown stays)."""
        self._say(f"FileList of {node or 'every node'} failed: {reason}", ERROR_COLOUR)

    # ------------------------------------------------------------ what is shown

    def shown_entries(self) -> list[FileEntry]:
        """The entries the table shows, in the table's order."""
        root = self.table.invisibleRootItem()
        return [item.entry for item in map(root.child, range(root.childCount())) if isinstance(item, _FileItem)]

    def current_entry(self) -> FileEntry | None:
        """The selected file, if any."""
        items = self.table.selectedItems()
        return items[0].entry if items and isinstance(items[0], _FileItem) else None

    def select_file(self, node: str, name: str) -> bool:
        """Select the row of ``node``'s file ``name``; False when it is not shown."""
        root = self.table.invisibleRootItem()
        for item in map(root.child, range(root.childCount())):
            if isinstance(item, _FileItem) and (item.entry.node, item.entry.name) == (node, name):
                self.table.setCurrentItem(item)
                return True
        return False

    def percent(self) -> int:
        """The progress bar's position in per cent (0 while it is busy without a known size)."""
        span = self.progress.maximum() - self.progress.minimum()
        return 100 * (self.progress.value() - self.progress.minimum()) // span if span > 0 else 0

    def _fill(self) -> None:
        keep = self.current_entry()
        wanted = set(self.selected)
        self.table.setUpdatesEnabled(False)
        self.table.setSortingEnabled(False)  # otherwise every insert re-sorts
        self.table.clear()
        self.table.addTopLevelItems([_FileItem(e) for e in self.entries if not wanted or e.node in wanted])
        self.table.setSortingEnabled(True)
        self.table.setUpdatesEnabled(True)
        if keep is not None:
            self.select_file(keep.node, keep.name)
        self.scope.setText(f"Files of {', '.join(self.selected)}" if self.selected else "Files of every node")
        if not self.active and not self._outcome:
            self._describe()
        self._sync_buttons()

    def _describe(self) -> None:
        shown, total = self.table.topLevelItemCount(), len(self.entries)
        if not self._listed:
            self._say("Asking the collector for its FileList ...")
        elif total == 0:
            self._say("No files yet: agents send them from their --watch-dir folders.")
        else:
            hidden = f" ({total - shown} of other nodes hidden)" if shown < total else ""
            self._say(f"{shown} file{'' if shown == 1 else 's'}{hidden}. Select one and press Save... to keep a copy.")

    def _say(self, text: str, colour: str = "") -> None:
        self.status.setText(text)
        self.status.setStyleSheet(f"color: {colour}" if colour else "")

    def _sync_buttons(self) -> None:
        busy = self.active is not None
        self.save.setEnabled(not busy and self.current_entry() is not None)
        self.fetch.setEnabled(not busy)
        self.cancel.setVisible(busy)

    # ------------------------------------------------------------ saving and fetching

    def save_selected(self) -> None:
        """*Save...*: ask where to save the selected file, then fetch it there."""
        entry = self.current_entry()
        if entry is None:
            self._say("Select a file in the list first.")
            return
        self.save_file(entry)

    def save_file(self, entry: FileEntry) -> bool:
        """Ask where to save ``entry`` and start fetching it (request ``File``); False when not started."""
        path = self._target(PurePosixPath(entry.name).name)
        if not path:
            return False
        params = {"node": entry.node, "filename": entry.name}
        return self._start(
            Transfer(self._tag(), "File", params, path, entry.size, entry.name), f"{entry.node}:{entry.name}"
        )

    def fetch_from_node(self) -> bool:
        """*Fetch from node...*: ask for a node and a path, then where to save it (request ``NodeFile``)."""
        if self.active is not None:
            return False
        answer = self.ask_node_path(self, self.known_nodes, self._default_node())
        if not answer:
            return False
        node, path = answer
        target = self._target(PurePosixPath(path).name or "fetched")
        if not target:
            return False
        return self._start(Transfer(self._tag(), "NodeFile", {"node": node, "path": path}, target), f"{node}:{path}")

    def cancel_transfer(self) -> None:
        """Ask the worker to stop the running transfer (its temporary file is removed)."""
        if self.active is not None:
            self.cancel_wanted.emit(self.active.tag)
            self._say(f"Cancelling {self._what} ...")

    def _default_node(self) -> str:
        entry = self.current_entry()
        if entry is not None:
            return entry.node
        return self.selected[0] if self.selected else ""

    def _target(self, suggested: str) -> str:
        start = str(Path(self._last_dir) / suggested) if self._last_dir else suggested
        path = self.ask_save_path(self, start)
        if path:
            self._last_dir = str(Path(path).parent)
        return path

    def _tag(self) -> str:
        return f"transfer:{next(self._tags)}"

    def _start(self, spec: Transfer, what: str) -> bool:
        if self.active is not None:
            self._say(f"Wait until {self._what} is saved (or cancel it).")
            return False
        self.active, self._what, self._outcome = spec, what, False
        self._set_progress(0, spec.size)
        self._say(f"Fetching {what} into {spec.target} ...")
        self._sync_buttons()
        self.transfer_wanted.emit(spec)
        return True

    # ------------------------------------------------------------ the worker's answers

    def show_progress(self, tag: str, done: int, total: int) -> None:
        """``done`` bytes of ``total`` (0: unknown) of transfer ``tag`` are written."""
        if self.active is None or tag != self.active.tag:
            return
        self._set_progress(done, total)
        of = f" of {human_size(total)}" if total else ""
        self._say(f"Fetching {self._what}: {human_size(done)}{of} ...")

    def transfer_done(self, tag: str, path: str, size: int, digest: str) -> None:
        """Transfer ``tag`` is complete, verified and renamed to ``path``."""
        if self.active is None or tag != self.active.tag:
            return
        self.active = None
        self._set_progress(1, 1)
        self._say(f"Saved {self._what} to {path} ({human_size(size)}, SHA-256 {digest[:16]}...).", OK_COLOUR)
        self._outcome = True
        self._sync_buttons()

    def transfer_failed(self, tag: str, reason: str) -> None:
        """Transfer ``tag`` failed: say why; the worker left no file behind."""
        if self.active is None or tag != self.active.tag:
            return
        self.active = None
        self._set_progress(0, 1)
        self._say(f"Could not fetch {self._what}: {reason}. Nothing was saved.", ERROR_COLOUR)
        self._outcome = True
        self._sync_buttons()

    def _set_progress(self, done: int, total: int) -> None:
        if total <= 0:
            self.progress.setRange(0, 0)  # busy: the size is known only at the end
            return
        self.progress.setRange(0, PROGRESS_STEPS)
        self.progress.setValue(min(PROGRESS_STEPS, done * PROGRESS_STEPS // total))
