"""``python -m labscope.sizing`` (docs/sizing.md): its pieces work, run tiny; its bad input is one line.

The e2e test runs the whole chain once at a toy size (1 site x 5 simulated nodes, a few seconds,
its own nats-server on a free port) and checks that every figure is there and plausible: reports
went through every tier, the stream holds at least the payload per report, the processes were
measured. It asserts nothing about speed; the figures themselves are the command's output.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from labscope.sizing import main
from labscope.sizing_report import markdown
from labscope.sizing_rig import Tier, Watched, folder_bytes
from node_agent.simulate import synthetic_stats
from tests.nats_cluster import nats_server_binary

SIZING = [sys.executable, "-m", "labscope.sizing"]
TINY = ("--sites", "1", "--nodes", "5", "--warmup", "3", "--seconds", "4", "--catchup", "2")


def sizing(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run the command to completion."""
    return subprocess.run([*SIZING, *args], capture_output=True, text=True, timeout=timeout, check=False)


@pytest.mark.e2e
@pytest.mark.timeout(180)
def test_a_tiny_run_measures_every_tier(tmp_path: Path) -> None:
    pytest.importorskip("nats", reason="nats-py missing: pip install 'labscope[nats]'")
    out = tmp_path / "sizing.json"
    done = sizing(*TINY, "--nats-server", nats_server_binary(), "--json", str(out), timeout=150)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(out.read_text())
    assert results["machine"] and results["date"] and "--nodes 5" in results["command"]
    (run,) = results["runs"]
    assert (run["sites"], run["nodes_per_site"], run["nodes"]) == (1, 5, 5)
    for tier in ("site", "top"):
        assert 0 < run[tier]["reports_per_s"] <= 2 * run["offered_reports_per_s"], tier
        assert run[tier]["rss_peak_mb"] >= run[tier]["rss_baseline_mb"] > 10, tier
        assert run[tier]["cpu_percent"] > 0 and run[tier]["store_mb"] > 0, tier
    payload = len(synthetic_stats(0.0).SerializeToString())
    assert payload < run["stream"]["bytes_per_message"] < payload + 2000  # payload + subject + headers
    assert run["stream"]["bytes_per_node_day"] == pytest.approx(run["stream"]["bytes_per_node_per_s"] * 86400, rel=0.01)
    assert run["nats"]["rss_peak_mb"] > 0 and run["nats"]["store_bytes_per_node_day"] > 0
    assert run["catchup"]["backlog_reports"] > 0 and run["catchup"]["drained"] and run["catchup"]["drained_s"] > 0
    (totals,) = run["simulator_totals"]
    assert totals["agents"] == 5 and totals["acked"] > 0 and not totals["errors"]
    assert "| 1 x 5 |" in done.stdout and "stream B/report" in done.stdout


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--nodes", "5,x"), "--nodes 5,x"),
        (("--nodes", "0"), "--nodes 0"),
        (("--sites", "0"), "--sites"),
        (("--nats", "http://127.0.0.1:4222"), "nats://"),
        (("--nats-server", "/nonexistent/nats-server"), "/nonexistent/nats-server"),
        (("--catchup", "-1"), "--catchup"),
        (("--cpu-limit", "2"), "--cpu-limit"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: tuple[str, ...], says: str, capsys: pytest.CaptureFixture[str]) -> None:
    try:
        status = main(list(args))
    except SystemExit as leaving:  # argparse's own errors
        status = int(leaving.code or 0)
    assert status == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and says in lines[0] and "Traceback" not in err


def test_a_tier_counts_memory_per_node_and_store_growth(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.sqlite3").write_bytes(b"x" * 1000)
    tier = Tier("site", [Watched.of(_this_pid())], [folder])
    tier.mark()
    (folder / "sub" / "b").write_bytes(b"y" * 500)
    member = tier.members[0]
    member.baseline_rss, member.peak_rss = 100 * 2**20, 110 * 2**20
    figures = tier.figures(nodes_each=1024, reports=100, node_day=86400)
    assert folder_bytes(folder) == 1500
    assert figures["rss_per_node_kb"] == 10.0  # 10 MiB over 1024 nodes
    assert figures["store_bytes_per_report"] == 5.0  # 500 bytes grown for 100 reports
    assert figures["store_bytes_per_node_day"] == 5 * 86400
    assert figures["rss_peak_mb"] == 110.0 and figures["processes"] == 1


def test_the_markdown_has_a_row_per_run_in_both_tables() -> None:
    run = {
        "sites": 2,
        "nodes_per_site": 500,
        "offered_reports_per_s": 1000.0,
        "site": {
            "reports_per_s": 500.0,
            "publish_lag_reports": 7,
            "cpu_percent": 9.0,
            "rss_peak_mb": 60.0,
            "rss_per_node_kb": 30.0,
        }
        | {"store_bytes_per_node_day": 5e7},
        "top": {"reports_per_s": 1000.0, "lag_reports": 3, "cpu_percent": 20.0, "rss_peak_mb": 80.0}
        | {"rss_per_node_kb": 20.0, "store_bytes_per_node_day": 5e7},
        "nats": {},
        "stream": {"bytes_per_message": 430.0, "bytes_per_node_day": 3.7e7, "published_per_s": 990.0},
        "simulator": {"cpu_percent": 30.0},
    }
    text = markdown({"date": "today", "machine": "here", "command": "sizing", "runs": [run, run]})
    rows = [line for line in text.splitlines() if line.startswith("| 2 x 500 |")]
    assert len(rows) == 4
    assert "| 37.00 |" in rows[2] and "| 430 |" in rows[2]


def _this_pid() -> int:
    import os

    return os.getpid()
