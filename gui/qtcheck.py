"""Refuse a Qt binding that corrupts the interpreter, before it gets the chance.

PySide6-Essentials 6.12.0 on CPython 3.11 drops a reference to ``True`` on
every signal emission and to ``None`` on every slot call from C++ (upstream
PYSIDE-3474). Python 3.12 made those objects immortal, so it goes unnoticed
there; on 3.11 the GUI aborts with "Fatal Python error: none_dealloc" after a
minute or two of updates, and other objects may be freed while in use. The
check below measures the leak instead of trusting version numbers, so a fixed
or a newly broken release is judged by what it does.
"""

from __future__ import annotations

import sys

from PySide6 import QtCore

from messages.errors import BrokenQtBinding

__all__ = ["BrokenQtBinding", "check_binding", "drops_references"]

_PROBES = 64
# References the probe itself lost on a broken binding, given back so that even the probing process exits cleanly.
_RESTORED: list[object] = []


class _Probe(QtCore.QObject):
    fired = QtCore.Signal()


def _noop() -> None:
    return None


def drops_references(emissions: int = _PROBES) -> bool:
    """Whether emitting a signal into a Python slot loses references to True or None."""
    probe = _Probe()
    probe.fired.connect(_noop)
    before = sys.getrefcount(True), sys.getrefcount(None)
    for _ in range(emissions):
        probe.fired.emit()
    after = sys.getrefcount(True), sys.getrefcount(None)
    probe.deleteLater()
    lost = [max(0, b - a) for a, b in zip(after, before, strict=True)]
    _RESTORED.extend([True] * lost[0] + [None] * lost[1])
    # A healthy binding leaves both counts where they were (give or take a cache entry).
    return any(count > emissions // 2 for count in lost)


def check_binding() -> None:
    """Raise BrokenQtBinding when the installed PySide6 is one that drops references."""
    if drops_references():
        import PySide6

        raise BrokenQtBinding(
            f"PySide6 {PySide6.__version__} on Python {sys.version_info.major}.{sys.version_info.minor} "
            "drops Python references and would crash the GUI (PYSIDE-3474); "
            "install another version: pip install 'PySide6-Essentials>=6.7,!=6.12.0'"
        )
