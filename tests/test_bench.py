"""``labscope bench`` runs a tiny configuration end to end and writes every field (no speed is asserted)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from labscope.bench import FIELDS, Bench, Sizes, format_value, percentile, verdict
from labscope.bench_nats import reachable
from labscope.bench_scale import split_agents
from labscope.benchreport import Results, markdown, worst
from tests.conftest import labscope_cmd


@pytest.mark.e2e
@pytest.mark.timeout(240)
def test_quick_bench_writes_every_field(tmp_path: Path) -> None:
    if not reachable(4222) and not (shutil.which("nats-server") or Path("/usr/sbin/nats-server").exists()):
        reason = "the distributions section needs NATS: none on 127.0.0.1:4222 and no nats-server binary"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI=true: a skip is a failure)")
        pytest.skip(reason)
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
    # one round: every worst round is that round
    for name in ("ingest_ratio", "latency_p99_ms", "agent_cpu_percent", "stream_ratio"):
        assert figures[f"{name}_worst"] == figures[name]
    assert figures["samples_per_s"] > 0
    assert 0 < figures["latency_p50_ms"] <= figures["latency_p99_ms"]
    assert figures["agent_rss_mb"] > 5 and figures["agent_cpu_percent"] >= 0
    assert figures["scale_agents"] == 4 and figures["false_lost"] == 0
    assert figures["stream_mb_per_s"] > 0 and figures["stream_ratio"] > 0
    assert figures["dist_ingest_reports_per_s"] > 0 and figures["dist_ingest_ratio"] > 0
    assert figures["history_7d_ms"] > 0  # 7 days of 1-minute buckets answered (the section checks their count)
    markdown = table.read_text()
    # CURVE ingest against raw CURVE pyzmq (issue 14's baseline for it), both rates in the note.
    curve_row = next(line for line in markdown.splitlines() if "`curve_ingest_ratio`" in line)
    assert figures["curve_ingest_ratio"] > 0 and "CURVE ingest" in curve_row and "raw CURVE pyzmq" in curve_row
    dist_row = next(line for line in markdown.splitlines() if "`dist_ingest_reports_per_s`" in line)
    assert "nats" in dist_row and "deleted afterwards" in dist_row
    assert all(f"`{name}`" in markdown for name in FIELDS if not name.endswith("_worst"))
    assert "worst round" in markdown and "rounds: " in markdown
    assert "Machine:" in done.stdout


def test_percentile_and_verdicts() -> None:
    values = sorted(float(v) for v in range(1, 101))
    assert percentile(values, 50) == 50.0 and percentile(values, 99) == 99.0
    assert verdict("latency_p99_ms", 4.0).endswith("met") and verdict("latency_p99_ms", 6.0).endswith("MISSED")
    assert verdict("false_lost", 0).endswith("met") and verdict("raw_msgs_per_s", 1.0) == ""
    assert format_value(1234567.8) == "1,234,568" and format_value(3) == "3"


def test_worst_round_is_the_one_judged() -> None:
    assert worst("ingest_ratio", [0.7, 0.55, 0.8]) == 0.55  # a ratio: the lowest
    assert worst("latency_p99_ms", [3.0, 7.5, 4.0]) == 7.5  # a latency: the highest
    results = Results(values={"latency_p99_ms": 4.0, "latency_p99_ms_worst": 7.5}, worst={"latency_p99_ms": 7.5})
    results.values["samples_per_s"] = 2e6  # measured once: its own worst
    rows = {line.split("|")[1].strip(): line for line in markdown(results, "test").splitlines() if "`" in line}
    assert "| 4.00 | 7.50 | <= 5.00: MISSED |" in rows["`latency_p99_ms`"]
    assert "met" in rows["`samples_per_s`"] and "`latency_p99_ms_worst`" not in rows


def test_a_round_alternates_the_sides_and_keeps_each_sides_best(tmp_path: Path) -> None:
    calls: list[str] = []

    def side(name: str, rates: list[float]) -> Callable[[], float]:
        def run() -> float:
            calls.append(name)
            return rates.pop(0)

        return run

    bench = Bench(Sizes(tries=3), tmp_path, lambda line: None)
    best = bench.alternate(side("raw", [5.0, 9.0, 7.0]), side("ingest", [4.0, 2.0, 6.0]))
    assert calls == ["raw", "ingest"] * 3
    assert best == [9.0, 6.0]
    assert "best of 3 alternated runs" in bench.tries_note()
    assert Bench(Sizes(tries=1), tmp_path, lambda line: None).tries_note() == "one run a side a round"


def test_simulated_agents_are_split_over_processes() -> None:
    assert split_agents(5000) == [2500, 2500]
    assert split_agents(5001) == [1667, 1667, 1667]
    assert split_agents(4) == [4]


@pytest.mark.e2e
def test_bad_override_is_a_usage_error() -> None:
    done = subprocess.run(
        labscope_cmd("bench", "--rounds", "0"), capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 2 and "--rounds" in done.stderr and "Traceback" not in done.stderr


def test_a_full_round_is_the_best_of_three_runs_a_side_and_a_quick_one_of_two() -> None:
    assert Sizes().tries == 3
    assert Sizes.quick().tries == 2
    assert Sizes.quick().rounds == 2
