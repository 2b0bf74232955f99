"""messages/logs.py: the one throttled logger, and no process writing its own again."""

from __future__ import annotations

import ast
import logging
import sys

import pytest

from messages.logs import ThrottledLog
from tests.conftest import REPO

PACKAGES = ("collector", "node_agent", "gui", "labscope", "modules")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_throttled_log_says_once_per_period_and_counts_the_rest(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="throttle-test")
    clock = Clock()
    throttled = ThrottledLog(logging.getLogger("throttle-test"), period=1.0, clock=clock)
    assert throttled.warning("k", "bad %s", "x") and not throttled.warning("k", "bad %s", "y")
    assert throttled.warning("other", "other key")  # keys are throttled apart
    clock.now += 1.0
    assert throttled.warning("k", "bad %s", "z")
    assert [r.getMessage() for r in caplog.records] == ["bad x", "other key", "bad z (1 similar suppressed)"]


def test_throttled_log_with_its_own_clock_level_and_wording(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="throttle-test")
    throttled = ThrottledLog(logging.getLogger("throttle-test"), period=30.0, suffix=" (%d more not logged)")
    for now in (0.0, 1.0, 2.0, 31.0):
        throttled.log(logging.ERROR, "probe", "probe %s failed", "p", now=now)
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.ERROR, "probe p failed"),
        (logging.ERROR, "probe p failed (2 more not logged)"),
    ]


def test_throttled_log_without_a_suffix_keeps_the_message_as_it_is(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="throttle-test")
    throttled = ThrottledLog(logging.getLogger("throttle-test"), period=10.0, suffix="")
    for now in (0.0, 5.0, 10.0):
        throttled.log(logging.INFO, "k", "said", now=now)
    assert [r.getMessage() for r in caplog.records] == ["said", "said"]


def test_no_file_outside_messages_writes_its_own_throttled_logger() -> None:
    trees = {
        path.relative_to(REPO).as_posix(): ast.parse(path.read_text())
        for package in PACKAGES
        for path in sorted((REPO / package).rglob("*.py"))
    }
    classes = {
        path
        for path, tree in trees.items()
        if any(isinstance(n, ast.ClassDef) and n.name == "ThrottledLog" for n in ast.walk(tree))
    }
    clocks = {path for path, tree in trees.items() if "_last_logged" in ast.unparse(tree)}
    assert (classes, clocks) == (set(), set())


def test_the_log_module_stands_on_the_standard_library_alone() -> None:
    tree = ast.parse((REPO / "messages" / "logs.py").read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert {m.split(".")[0] for m in imported} - set(sys.stdlib_module_names) == set()
