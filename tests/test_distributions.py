"""Distributions in a real collector fed by a real agent: isolation, outage policy, jsonl, reports, visibility."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from messages import Kind, NodeList, SystemStats
from messages.codec import decode_payload
from tests.conftest import FIXTURES, ProcessGroup, labscope_cmd, wait_for
from tests.test_collector_cli import error_line
from tests.wire import Client

DISTS = FIXTURES / "dists"

pytestmark = [pytest.mark.timeout(90), pytest.mark.e2e]


def lines(path: Path) -> list[dict[str, Any]]:
    """Every JSON line of every file given (missing: none)."""
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def start(procs: ProcessGroup, tmp_path: Path, config: str, *flags: str, interval: float = 0.1) -> Any:
    path = tmp_path / "collector.toml"
    path.write_text(config)
    collector = procs.collector("--config", str(path), "--distributions-dir", str(DISTS), *flags)
    procs.agent(collector.agents, "n1", interval=interval)
    return collector


def last_seq(client: Client) -> int:
    nodes = NodeList.FromString(client.ask("NodeList").payload).nodes
    return nodes[0].last_seq if nodes else 0


def test_a_raising_distribution_harms_nothing_else(procs: ProcessGroup, zmq_context: Any, tmp_path: Path) -> None:
    record = tmp_path / "record.jsonl"
    collector = start(
        procs,
        tmp_path,
        f"""
[distributions.hopeless]
type = "raising"
[distributions.buggy]
type = "raising"
raise_in = ["configure", "isConnected", "sendData", "updateBatchComplete", "close"]
[distributions.poisoned]
type = "raising"
raise_in = ["sendUpdate"]
[distributions.fine]
type = "record"
record = "{record}"
""",
    )
    client = Client(zmq_context, collector.clients)
    try:
        wait_for(lambda: last_seq(client) >= 10, 30, what="ten reports applied")
        wait_for(lambda: any(p["code"] == "n1/cpu_percent" for p in lines(record)), 20, what="points recorded")
        dists = wait_for(
            lambda: (d := client.answer("Distributions"))["buggy"]["errors_by_method"].get("updateBatchComplete") and d,
            20,
            what="buggy's errors",
        )
        assert {"configure", "connect"} <= set(dists["hopeless"]["errors_by_method"])
        assert {"configure", "isConnected", "sendData", "updateBatchComplete"} <= set(
            dists["buggy"]["errors_by_method"]
        )
        poisoned = wait_for(
            lambda: (d := client.answer("Distributions")["poisoned"])["dropped"]["error"] and d,
            20,
            what="a payload dropped after raising three times",
        )
        assert poisoned["errors_by_method"]["sendUpdate"] >= 3 and poisoned["sent"] == 0
        assert dists["hopeless"]["connected"] is False and dists["hopeless"]["sent"] == 0
        assert dists["fine"]["errors"] == 0 and dists["fine"]["sent"] > 0
        stats = client.answer("CollectorStats")
        assert stats["counters"]["dist-errors"] >= 9 and stats["counters"]["dist-errors:buggy"] >= 4
        assert stats["distributions"].keys() == dists.keys()
        assert SystemStats.FromString(client.ask("SystemStats", node="n1").payload).time > 0  # modules answer
        before = last_seq(client)
        wait_for(lambda: last_seq(client) >= before + 10, 20, what="ingest going on")
        events = client.answer("Events")
        assert any(e["kind"] == "distribution-down" and e["attrs"]["distribution"] == "hopeless" for e in events)
    finally:
        client.close()
    assert collector.stop() == 0
    assert "Traceback" not in collector.log()


def test_a_slow_distribution_drops_and_ingest_goes_on(procs: ProcessGroup, zmq_context: Any, tmp_path: Path) -> None:
    collector = start(
        procs, tmp_path, '[distributions.slow]\ntype = "slow"\ndelay = 0.3\nqueue_max = 3\n', interval=0.05
    )
    client = Client(zmq_context, collector.clients)
    try:
        slow = wait_for(
            lambda: (d := client.answer("Distributions")["slow"])["dropped"]["queue-full"] >= 5 and d,
            30,
            what="drops by the slow distribution",
        )
        assert slow["queued"] <= 7 + 7  # the newest sample (more than queue_max), and the payloads of one sample
        assert slow["dropped"]["collapsed"] == 0
        # drops are counted in points now (7 a sample): they reach 5 before the first 0.3 s delivery ends
        wait_for(lambda: client.answer("Distributions")["slow"]["sent"] >= 1, 10, what="a delivery while dropping")
        before = last_seq(client)
        wait_for(lambda: last_seq(client) >= before + 20, 20, what="twenty more reports acknowledged")
        assert client.answer("CollectorStats")["counters"]["dist-dropped:slow"] >= 5
    finally:
        client.close()


def test_an_outage_collapses_then_reconnects_with_events(procs: ProcessGroup, zmq_context: Any, tmp_path: Path) -> None:
    record, flag = tmp_path / "record.jsonl", tmp_path / "down"
    flag.touch()
    collector = start(
        procs,
        tmp_path,
        f"""
[distributions.flaky]
type = "record"
record = "{record}"
down_flag = "{flag}"
on_full = "collapse"
queue_max = 28  # four SystemStats samples (the queue counts data points)
codes = ["n1/*"]
""",
    )
    client = Client(zmq_context, collector.clients)
    try:
        wait_for(
            lambda: client.answer("Distributions")["flaky"]["dropped"]["collapsed"] >= 5,
            30,
            what="samples collapsed while the destination is away",
        )
        assert lines(record) == []
        flag.unlink()
        wait_for(lambda: any(p["code"] == "n1/cpu_percent" for p in lines(record)), 30, what="delivery resumed")
        flaky = client.answer("Distributions")["flaky"]
        assert flaky["connected"] and flaky["reconnects"] == 1 and flaky["dropped"]["queue-full"] == 0
        kinds = [e["kind"] for e in client.answer("Events") if e["attrs"].get("distribution") == "flaky"]
        assert kinds[:2] == ["distribution-up", "distribution-down"]  # newest first
    finally:
        client.close()


def test_jsonl_points_with_filters_and_rotation_and_reports(
    procs: ProcessGroup, zmq_context: Any, tmp_path: Path
) -> None:
    points = tmp_path / "out" / "points.jsonl"
    collector = start(
        procs,
        tmp_path,
        f"""
[distributions.points]
type = "jsonl"
path = "{points}"
codes = ["*/cpu_percent", "*/up", "collector/nodes_live"]
max_bytes = 600
backups = 2
[distributions.reports]
type = "jsonl"
mode = "reports"
codes = ["*/SystemStats"]
path = "reports.jsonl"
""",
    )
    rotated = [points.with_name(f"points.jsonl.{i}") for i in (1, 2, 3)]
    client = Client(zmq_context, collector.clients)
    try:
        wait_for(lambda: rotated[1].exists(), 40, what="a second rotation")
        in_data_dir = collector.data_dir / "distributions" / "reports" / "reports.jsonl"
        wait_for(lambda: len(lines(in_data_dir)) >= 3, 20, what="three reports written")
    finally:
        client.close()
    assert collector.stop() == 0  # flushed and closed
    assert not rotated[2].exists()
    written = [p for path in (rotated[1], rotated[0], points) for p in lines(path)]
    assert all(path.stat().st_size <= 600 for path in (points, *rotated[:2]))
    assert {p["code"] for p in written} == {"n1/cpu_percent", "n1/up", "collector/nodes_live"}
    assert all(set(p) == {"time", "node", "code", "value"} for p in written)
    assert [p["value"] for p in written if p["code"] == "n1/up"] in ([1], [1, 0], [])  # rotated away, maybe
    kept = lines(in_data_dir)
    assert [r["seq"] for r in kept] == sorted(r["seq"] for r in kept) and {r["type"] for r in kept} == {"SystemStats"}
    first = kept[0]
    assert (first["node"], first["encoding"], first["schema"]) == ("n1", "PROTOBUF", "labscope.SystemStats")
    assert SystemStats.FromString(base64.b64decode(first["payload"])).time == pytest.approx(first["time"], abs=5)


def test_the_collector_pushes_and_answers_distributions(procs: ProcessGroup, zmq_context: Any, tmp_path: Path) -> None:
    collector = start(procs, tmp_path, '[distributions.c]\ntype = "custom"\n', "--update-interval", "0.2")
    client = Client(zmq_context, collector.clients)
    try:
        client.send(Kind.HELLO)
        hello = client.expect(lambda e: e.kind == Kind.HELLO, what="HELLO")
        info = decode_payload(hello.payload, hello.encoding, hello.schema)
        assert "Distributions" in info.request_types and "Distributions" in info.update_types
        client.send(Kind.SUBSCRIBE, params={"types": "Distributions"})
        update = client.expect(lambda e: e.kind == Kind.UPDATE and e.type == "Distributions", what="an update")
        assert decode_payload(update.payload, update.encoding)["c"]["type"] == "custom"
    finally:
        client.close()
    query = labscope_cmd("query", "--collector", collector.clients, "--timeout", "5", "Distributions")
    done = subprocess.run(query, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)["c"]
    assert (shown["type"], shown["connected"], set(shown["dropped"])) == (
        "custom",
        True,
        {"queue-full", "collapsed", "error", "shutdown"},
    )


def test_without_distributions_the_request_answers_empty_and_no_update_is_offered(
    procs: ProcessGroup, zmq_context: Any
) -> None:
    collector = procs.collector()
    client = Client(zmq_context, collector.clients)
    try:
        assert client.answer("Distributions") == {}
        stats = client.answer("CollectorStats")
        assert stats["distributions"] == {} and not any(k.startswith("dist-") for k in stats["counters"])
        client.send(Kind.SUBSCRIBE, params={"types": "Distributions"})
        refused = client.expect(lambda e: e.kind == Kind.ERROR, what="a refusal")
        assert refused.error_code == "unknown-type"
    finally:
        client.close()


@pytest.mark.parametrize(
    ("config", "flags", "expected"),
    [
        ('[distributions.x]\ncodes = ["*"]\n', (), "[distributions.x] type: missing"),
        ('[distributions.x]\ntype = "kafka"\n', (), "no distribution type 'kafka'"),
        ('[distributions.x]\ntype = "jsonl"\nqueue_max = "lots"\n', (), "[distributions.x] queue_max must be"),
        ('[distributions.x]\ntype = "jsonl"\nmax_byts = 5\n', (), "unknown key 'max_byts' for type jsonl"),
        ("", ("--distributions-dir", "/no/such/folder"), "--distributions-dir /no/such/folder: no such folder"),
    ],
)
def test_a_bad_distribution_config_stops_the_collector_with_one_line(
    tmp_path: Path, config: str, flags: tuple[str, ...], expected: str
) -> None:
    path = tmp_path / "collector.toml"
    path.write_text(config)
    done = subprocess.run(
        labscope_cmd(
            "collector",
            "--config",
            str(path),
            "--data-dir",
            str(tmp_path / "data"),
            "--listen-agents",
            "tcp://127.0.0.1:*",
            "--listen-clients",
            "tcp://127.0.0.1:*",
            *flags,
        ),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    line = error_line(done)
    assert expected in line and line.startswith("labscope collector: error: ")
