"""Fixtures for the Qt tests: offscreen rendering, real collectors and agents, windows that always stop.

QT_QPA_PLATFORM is set here, before pytest-qt creates the QApplication.
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from subprocess import Popen

import pytest

from tests.conftest import FIXTURES, CollectorProcess, ProcessGroup

# Quick enough for a test to see a node turn lost without waiting long.
NODE_TIMEOUT = "1.5"
UPDATE_INTERVAL = "0.2"
AGENT_INTERVAL = 0.2
GUI_MODULES = FIXTURES / "gui_modules"


def pytest_collection_modifyitems(config, items) -> None:
    """Skip the Qt tests, saying why, on a PySide6 that drops references (it would abort the whole run)."""
    from gui.qtcheck import drops_references

    if not drops_references():
        return
    import PySide6

    skip = pytest.mark.skip(
        reason=f"PySide6 {PySide6.__version__} drops Python references on this Python "
        "(PYSIDE-3474); install PySide6-Essentials>=6.7,!=6.12.0"
    )
    for item in items:
        if "tests/gui/" in item.nodeid:
            item.add_marker(skip)


@dataclass
class LiveBed:
    """A real collector and the real agents reporting to it."""

    collector: CollectorProcess
    agents: dict[str, Popen] = field(default_factory=dict)


def start_testbed(procs: ProcessGroup, nodes: tuple[str, ...], *extra: str) -> LiveBed:
    """A collector (node timeout 1.5 s, updates every 0.2 s) and one agent per node id."""
    collector = procs.collector("--update-interval", UPDATE_INTERVAL, "--node-timeout", NODE_TIMEOUT, *extra)
    bed = LiveBed(collector)
    for node in nodes:
        bed.agents[node] = procs.agent(collector.agents, node, interval=AGENT_INTERVAL)
    return bed


@pytest.fixture
def testbed(procs: ProcessGroup) -> LiveBed:
    """A collector aliased ``gui-test`` with two agents, ``gui-a`` and ``gui-b``."""
    return start_testbed(procs, ("gui-a", "gui-b"), "--alias", "gui-test")


@pytest.fixture
def make_window(qtbot) -> Iterator[Callable[[str], object]]:
    """Open started MainWindows on an endpoint; every one is shut down at teardown."""
    from gui.window import MainWindow

    windows: list[MainWindow] = []

    def make(endpoint: str) -> MainWindow:
        window = MainWindow(endpoint)
        qtbot.addWidget(window)
        window.show()
        window.start()
        windows.append(window)
        return window

    yield make
    for window in windows:
        window.shutdown()
        assert not window.worker.running, "the worker thread did not stop"
