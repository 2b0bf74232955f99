"""The parts of ``python -m labscope.bench_peers`` that are cheap to test (the peers bench itself is not run here)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from labscope.bench_peers import Peer, Usage, count_csv_rows, markdown, measure, sample_tree

# A parent that starts a child holding 64 MiB of touched memory, then both sleep.
PARENT = (
    "import subprocess, sys, time; "
    "subprocess.Popen([sys.executable, '-c', 'import time; x = b\"x\" * (64 << 20); time.sleep(60)']); "
    "time.sleep(60)"
)
BUSY = "while True: pass"


def test_csv_rows_are_counted_without_the_header(tmp_path: Path) -> None:
    path = tmp_path / "glances.csv"
    path.write_text("timestamp,cpu.total\n1,2.0\n2,3.0\n3,4.0\n\n")
    assert count_csv_rows(path) == 3
    assert count_csv_rows(tmp_path / "missing.csv") == 0
    (tmp_path / "empty.csv").write_text("")
    assert count_csv_rows(tmp_path / "empty.csv") == 0


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_a_process_tree_is_sampled_with_its_children() -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT])
    root = psutil.Process(parent.pid)
    try:
        deadline = time.monotonic() + 30
        while sample_tree(root)[1] < 64 << 20 and time.monotonic() < deadline:
            time.sleep(0.1)
        cpu, rss = sample_tree(root)
        assert rss >= 64 << 20  # the child's memory counts
        assert root.memory_info().rss < 64 << 20 and cpu >= 0
    finally:
        for child in root.children(recursive=True):
            child.kill()
        parent.kill()
        parent.wait(10)


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_measure_tells_a_busy_process_from_an_idle_one() -> None:
    busy = subprocess.Popen([sys.executable, "-c", BUSY])
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        usages = measure([Peer("busy", "busy", busy.pid, lambda: "spun"), Peer("idle", "idle", idle.pid)], 2.0)
    finally:
        for proc in (busy, idle):
            proc.kill()
            proc.wait(10)
    spun, slept = usages
    assert spun.work == "spun" and slept.work == ""
    assert spun.cpu_percent > slept.cpu_percent and slept.cpu_percent < 5
    assert spun.rss_peak_mb >= spun.rss_mean_mb > 1


def test_the_table_has_one_row_per_watcher() -> None:
    usages = [Usage("labscope agent", "labscope agent --interval 1", 0.25, 31.0, 30.5, "60 reports at the collector")]
    usages.append(Usage("Glances", "glances --quiet", 4.1, 70.2, 69.9, "58 CSV rows"))
    table = markdown(usages, 60, "2 cores", "2026-11-30 02:00 UTC")
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert rows == [
        "| labscope agent | 0.25 | 31.0 | 30.5 | 60 reports at the collector | `labscope agent --interval 1` |",
        "| Glances | 4.10 | 70.2 | 69.9 | 58 CSV rows | `glances --quiet` |",
    ]
    assert table.startswith("2026-11-30 02:00 UTC, 60 s window") and "2 cores" in table


@pytest.mark.e2e
def test_a_bad_window_is_a_usage_error() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "labscope.bench_peers", "--seconds", "0"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2 and "--seconds" in done.stderr and "Traceback" not in done.stderr
