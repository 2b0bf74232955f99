"""The module lifecycle in real collector processes: main() stops on SIGTERM within the grace period and
on_shutdown follows; a main() that ignores the shutdown is abandoned and the collector still exits; a node
known before a restart is replayed to on_node_joined."""

from __future__ import annotations

import signal
import sqlite3
import time
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, CollectorProcess, ProcessGroup, wait_for

pytestmark = pytest.mark.e2e

TICKER = ("--modules-dir", str(FIXTURES / "lifecycle_modules"))
STUCK = ("--modules-dir", str(FIXTURES / "lifecycle_stuck"))


def markers(collector: CollectorProcess, module: str) -> list[str]:
    """The marker lines the fixture module ``module`` wrote so far."""
    path = collector.data_dir / "modules" / module / "markers.txt"
    return path.read_text().splitlines() if path.exists() else []


def stop_timed(collector: CollectorProcess, timeout: float) -> tuple[int, float]:
    """SIGTERM the collector; its exit status and how long it took to exit."""
    started = time.monotonic()
    status = collector.stop(signal.SIGTERM, timeout=timeout)
    return status, time.monotonic() - started


def known_nodes(data_dir: Path) -> list[str]:
    """The nodes the collector has written to its store."""
    path = data_dir / "collector.sqlite3"
    if not path.exists():
        return []
    with sqlite3.connect(path) as db:
        try:
            return [row[0] for row in db.execute("SELECT node FROM nodes")]
        except sqlite3.OperationalError:  # the table is made by the collector's first transaction
            return []


@pytest.mark.timeout(60)
def test_main_stops_on_sigterm_within_the_grace_and_on_shutdown_follows(procs: ProcessGroup) -> None:
    collector = procs.collector(*TICKER, "--module-grace", "5")
    wait_for(lambda: markers(collector, "ticker").count("tick") >= 3, 20, what="three ticks")
    status, took = stop_timed(collector, timeout=15)
    assert status == 0, collector.log()[-2000:]
    assert took < 5, f"took {took:.1f} s: main() should stop at its next wait, well within the grace"
    assert markers(collector, "ticker")[-2:] == ["main done", "on_shutdown None"]
    assert "Traceback" not in collector.log()


@pytest.mark.timeout(60)
def test_main_that_ignores_the_shutdown_is_abandoned_and_the_collector_exits(procs: ProcessGroup) -> None:
    collector = procs.collector(*STUCK, *TICKER, "--module-grace", "1")
    wait_for(lambda: markers(collector, "stuck") == ["main started"], 20, what="the stuck main running")
    status, took = stop_timed(collector, timeout=20)
    log = collector.log()
    assert status == 0, log[-2000:]
    assert took >= 1, "the grace period is waited for"
    assert "module stuck: main() ignored the shutdown for 1 s (module_grace); abandoned" in log
    assert "Traceback" not in log
    assert markers(collector, "stuck")[-1] == "on_shutdown TimeoutError"
    assert markers(collector, "ticker")[-2:] == ["main done", "on_shutdown None"]  # the polite one is unaffected


@pytest.mark.timeout(90)
def test_a_node_known_before_a_restart_is_replayed_to_on_node_joined(procs: ProcessGroup) -> None:
    data_dir = procs.tmp_path / "collector-data"
    first = procs.collector(*TICKER, data_dir=data_dir)
    agent = procs.agent(first.agents, "n1")
    wait_for(lambda: "joined n1 live" in markers(first, "ticker"), 20, what="n1 joined")
    wait_for(lambda: known_nodes(data_dir) == ["n1"], 20, what="n1 in the store")
    agent.terminate()
    agent.wait(10)
    assert first.stop() == 0
    (data_dir / "modules" / "ticker" / "markers.txt").unlink()
    second = procs.collector(*TICKER, data_dir=data_dir)  # no agent this time: only the replay can name n1
    wait_for(lambda: "main started" in markers(second, "ticker"), 20, what="main started")
    lines = markers(second, "ticker")
    assert lines.index("joined n1 lost") < lines.index("main started")
    assert second.stop() == 0
