"""The generic panel: any module's updates, without GUI code for it.

Lists every update type the collector offers (``CollectorInfo.update_types``)
and shows the latest payload of the chosen one as a tree: protobuf decoded
through ``messages.jsonify.to_jsonable``, msgpack as it is. Choosing a type
emits ``type_chosen`` so the window subscribes to it; the collector then sends
its latest update at once.
"""

from __future__ import annotations

import time
from typing import Any

from PySide6 import QtCore, QtWidgets

from gui.client import Update
from gui.views.tree import fill_tree, make_tree
from messages import Encoding
from messages.jsonify import to_jsonable

__all__ = ["GenericPanel", "describe"]

ENCODING_NAMES = {value: name.lower() for name, value in Encoding.items()}
NO_TYPES = "This collector offers no update types."


def describe(update: Update) -> str:
    """One line about an update: its type, time and encoding."""
    stamp = time.strftime("%H:%M:%S", time.localtime(update.time)) if update.time > 0 else "-"
    encoding = ENCODING_NAMES.get(update.encoding, str(update.encoding))
    form = f"protobuf {update.schema}" if update.schema else encoding
    return f"Latest {update.type} update at {stamp} ({form}, {len(update.data)} bytes)"


class GenericPanel(QtWidgets.QWidget):
    """A chooser of update types above a tree of the chosen type's latest payload."""

    type_chosen = QtCore.Signal(str)

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.latest: dict[str, Update] = {}
        self.chooser = QtWidgets.QComboBox(self)
        self.chooser.setMinimumContentsLength(24)
        self.chooser.currentTextChanged.connect(self._chosen)
        self.freeze = QtWidgets.QCheckBox("Freeze", self)
        self.freeze.setToolTip("Keep the payload shown still while you read it")
        self.status = QtWidgets.QLabel("Waiting for the collector's update types ...", self)
        self.tree = make_tree(self)
        controls = QtWidgets.QHBoxLayout()
        controls.addWidget(QtWidgets.QLabel("Update type:", self))
        controls.addWidget(self.chooser)
        controls.addWidget(self.freeze)
        controls.addStretch(1)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(controls)
        layout.addWidget(self.status)
        layout.addWidget(self.tree, 1)

    @property
    def current(self) -> str:
        """The chosen update type ('' when none)."""
        return self.chooser.currentText()

    def set_types(self, types: list[str]) -> None:
        """Offer ``types``, keeping the current choice when it is still offered."""
        current = self.current
        self.chooser.blockSignals(True)
        self.chooser.clear()
        self.chooser.addItems(types)
        if current in types:
            self.chooser.setCurrentText(current)
        self.chooser.blockSignals(False)
        if not types:
            self.status.setText(NO_TYPES)
        if self.current != current or not self.latest.get(self.current):
            self._chosen(self.current)

    def take_update(self, update: Update) -> None:
        """Remember the latest update of its type; show it when it is the chosen one."""
        self.latest[update.type] = update
        if update.type == self.current and not self.freeze.isChecked():
            self._show(update)

    def shown_value(self) -> Any:
        """The JSON-ready value of the update shown now (None when none)."""
        update = self.latest.get(self.current)
        return None if update is None else to_jsonable(update.payload)

    def _chosen(self, type_name: str) -> None:
        if not type_name:
            return
        self.type_chosen.emit(type_name)
        update = self.latest.get(type_name)
        if update is None:
            self.tree.clear()
            self.status.setText(f"Waiting for a {type_name} update ...")
        else:
            self._show(update)

    def _show(self, update: Update) -> None:
        self.status.setText(describe(update))
        fill_tree(self.tree, to_jsonable(update.payload))
