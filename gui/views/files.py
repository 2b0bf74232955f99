"""The Files tab: the files module's ``FileList`` per node, once a collector offers it.

Until the files module has landed on a collector (its ``CollectorInfo.request_types``
lack ``FileList``) the tab says plainly that file browsing is not available.
With it, choosing a node and pressing Refresh asks ``FileList node=ID`` and
shows the answer as a tree. Saving and fetching files come with the files module.
"""

from __future__ import annotations

from typing import Any

from PySide6 import QtCore, QtWidgets

from gui.views.tree import fill_tree, make_tree
from messages.jsonify import to_jsonable

__all__ = ["FILE_LIST", "UNAVAILABLE", "FilesView"]

FILE_LIST = "FileList"
UNAVAILABLE = ("File browsing is not available on this collector yet: it runs no files module "
               "(it does not answer FileList requests).")


class FilesView(QtWidgets.QWidget):
    """A notice, or a node chooser with a tree of that node's FileList."""

    list_wanted = QtCore.Signal(str)

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.available = False
        self.notice = QtWidgets.QLabel(UNAVAILABLE, self)
        self.notice.setWordWrap(True)
        self.notice.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        self.node_box = QtWidgets.QComboBox(self)
        self.node_box.setMinimumContentsLength(16)
        self.refresh = QtWidgets.QPushButton("Refresh", self)
        self.refresh.clicked.connect(self._ask)
        self.node_box.currentTextChanged.connect(self._ask)
        self.status = QtWidgets.QLabel("", self)
        self.tree = make_tree(self)
        self.pages = QtWidgets.QStackedWidget(self)
        self.pages.addWidget(self.notice)
        self.pages.addWidget(self._browser())
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.pages)

    def _browser(self) -> QtWidgets.QWidget:
        page = QtWidgets.QWidget(self)
        controls = QtWidgets.QHBoxLayout()
        controls.addWidget(QtWidgets.QLabel("Node:", page))
        controls.addWidget(self.node_box)
        controls.addWidget(self.refresh)
        controls.addStretch(1)
        layout = QtWidgets.QVBoxLayout(page)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(controls)
        layout.addWidget(self.status)
        layout.addWidget(self.tree, 1)
        return page

    def set_request_types(self, request_types: list[str]) -> None:
        """Show the browser when the collector answers FileList, the notice otherwise."""
        self.available = FILE_LIST in request_types
        self.pages.setCurrentIndex(1 if self.available else 0)

    def set_nodes(self, nodes: list[str]) -> None:
        """Offer ``nodes`` in the chooser, keeping the current one."""
        if nodes == [self.node_box.itemText(i) for i in range(self.node_box.count())]:
            return
        current = self.node_box.currentText()
        self.node_box.blockSignals(True)
        self.node_box.clear()
        self.node_box.addItems(nodes)
        if current in nodes:
            self.node_box.setCurrentText(current)
        self.node_box.blockSignals(False)

    def show_list(self, node: str, payload: Any) -> None:
        """Show a FileList answer for ``node``."""
        if node != self.node_box.currentText():
            return
        self.status.setText(f"FileList of {node}:")
        fill_tree(self.tree, to_jsonable(payload))

    def show_error(self, node: str, reason: str) -> None:
        """Say why the FileList request for ``node`` failed."""
        self.status.setText(f"FileList of {node} failed: {reason}")
        self.tree.clear()

    def _ask(self, *_: Any) -> None:
        node = self.node_box.currentText()
        if self.available and node:
            self.status.setText(f"Asking for the FileList of {node} ...")
            self.list_wanted.emit(node)
