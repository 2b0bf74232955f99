"""Show a JSON-like value (maps, lists, scalars) as a two-column tree: key and value."""

from __future__ import annotations

from typing import Any

from PySide6 import QtWidgets

__all__ = ["MAX_CHILDREN", "fill_tree", "make_tree", "scalar_text"]

MAX_CHILDREN = 500  # per level: a module's huge list must not freeze the GUI thread
EXPAND_DEPTH = 2


def make_tree(parent: QtWidgets.QWidget | None = None) -> QtWidgets.QTreeWidget:
    """An empty key/value tree."""
    tree = QtWidgets.QTreeWidget(parent)
    tree.setColumnCount(2)
    tree.setHeaderLabels(["key", "value"])
    tree.setAlternatingRowColors(True)
    tree.setUniformRowHeights(True)
    return tree


def fill_tree(tree: QtWidgets.QTreeWidget, value: Any) -> None:
    """Replace the tree's content with ``value`` (already JSON-ready, e.g. through to_jsonable)."""
    tree.clear()
    root = tree.invisibleRootItem()
    if isinstance(value, (dict, list)):
        _add_children(root, value)
    else:
        QtWidgets.QTreeWidgetItem(root, ["(value)", scalar_text(value)])
    tree.expandToDepth(EXPAND_DEPTH - 1)
    tree.resizeColumnToContents(0)


def scalar_text(value: Any) -> str:
    """How one leaf value reads."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return repr(value) if isinstance(value, float) else str(value)


def _add_children(parent: QtWidgets.QTreeWidgetItem, value: dict[Any, Any] | list[Any]) -> None:
    pairs = list(value.items()) if isinstance(value, dict) else [(f"[{i}]", v) for i, v in enumerate(value)]
    for key, child in pairs[:MAX_CHILDREN]:
        _add_item(parent, str(key), child)
    if len(pairs) > MAX_CHILDREN:
        QtWidgets.QTreeWidgetItem(parent, ["...", f"{len(pairs) - MAX_CHILDREN} more not shown"])


def _add_item(parent: QtWidgets.QTreeWidgetItem, key: str, value: Any) -> None:
    if isinstance(value, dict):
        item = QtWidgets.QTreeWidgetItem(parent, [key, f"{{{len(value)} keys}}"])
        _add_children(item, value)
    elif isinstance(value, list):
        item = QtWidgets.QTreeWidgetItem(parent, [key, f"[{len(value)} items]"])
        _add_children(item, value)
    else:
        QtWidgets.QTreeWidgetItem(parent, [key, scalar_text(value)])
