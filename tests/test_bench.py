"""``labscope bench`` runs a tiny configuration end to end and writes every field (no speed is asserted)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from labscope.bench import FIELDS, format_value, percentile, verdict
from tests.conftest import labscope_cmd


@pytest.mark.e2e
@pytest.mark.timeout(240)
def test_quick_bench_writes_every_field(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    table = tmp_path / "bench.md"
    tiny = [
        "--raw-messages",
        "5000",
        "--ingest-reports",
        "3000",
        "--sample-frames",
        "20",
        "--rounds",
        "1",
        "--latency-seconds",
        "1",
        "--agent-seconds",
        "1",
        "--scale-agents",
        "4",
        "--scale-seconds",
        "3",
        "--stream-mb",
        "8",
    ]
    done = subprocess.run(
        labscope_cmd("bench", "--quick", *tiny, "--json", str(out), "--markdown", str(table)),
        capture_output=True,
        text=True,
        timeout=220,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert list(figures) == list(FIELDS)
    assert figures["raw_msgs_per_s"] > 0 and figures["ingest_reports_per_s"] > 0
    assert figures["ingest_ratio"] == pytest.approx(figures["ingest_reports_per_s"] / figures["raw_msgs_per_s"])
    assert figures["samples_per_s"] > 0
    assert 0 < figures["latency_p50_ms"] <= figures["latency_p99_ms"]
    assert figures["agent_rss_mb"] > 5 and figures["agent_cpu_percent"] >= 0
    assert figures["scale_agents"] == 4 and figures["false_lost"] == 0
    assert figures["stream_mb_per_s"] > 0 and figures["stream_ratio"] > 0
    assert figures["history_7d_ms"] > 0  # 7 days of 1-minute buckets answered (the section checks their count)
    markdown = table.read_text()
    # CURVE's cost, or, with a collector that does not take the CURVE flags yet, a note saying so.
    curve_row = next(line for line in markdown.splitlines() if "`curve_ingest_ratio`" in line)
    assert figures["curve_ingest_ratio"] > 0 and "CURVE" in curve_row
    assert all(f"`{name}`" in markdown for name in FIELDS)
    assert "Machine:" in done.stdout


def test_percentile_and_verdicts() -> None:
    values = sorted(float(v) for v in range(1, 101))
    assert percentile(values, 50) == 50.0 and percentile(values, 99) == 99.0
    assert verdict("latency_p99_ms", 4.0).endswith("met") and verdict("latency_p99_ms", 6.0).endswith("MISSED")
    assert verdict("false_lost", 0).endswith("met") and verdict("raw_msgs_per_s", 1.0) == ""
    assert format_value(1234567.8) == "1,234,568" and format_value(3) == "3"


@pytest.mark.e2e
def test_bad_override_is_a_usage_error() -> None:
    done = subprocess.run(
        labscope_cmd("bench", "--rounds", "0"), capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 2 and "--rounds" in done.stderr and "Traceback" not in done.stderr
