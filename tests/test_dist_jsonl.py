"""The built-in ``jsonl`` distribution without sockets: lines, rotation, failures."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from collector.config import DistSection
from collector.dist import DataPoint, DistCore, ReportItem
from collector.dist_runner import Runner
from collector.distributions.dist_jsonl import JsonlDistribution
from messages import Encoding
from tests.conftest import wait_for

pytestmark = pytest.mark.timeout(30)


def jsonl(tmp_path: Path, **config: Any) -> JsonlDistribution:
    dist = JsonlDistribution(DistCore("out", "jsonl", "points", "alias", tmp_path / "data"))
    dist.configure({"path": "", "max_bytes": 64 * 2**20, "backups": 5, **config})
    return dist


def write(dist: JsonlDistribution, payloads: list[Any]) -> None:
    assert dist.connect() and dist.isConnected()
    for payload in payloads:
        assert dist.sendUpdate(payload)
    dist.updateBatchComplete()


def read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_points_are_one_object_a_line_in_the_distributions_folder(tmp_path: Path) -> None:
    dist = jsonl(tmp_path)
    write(dist, [DataPoint("n1/cpu_percent", 12.5, 100.0, "n1"), DataPoint("n1/odd", b"\x00", 101.0, "n1")])
    path = tmp_path / "data" / "distributions" / "out" / "out.jsonl"
    assert dist.path == path
    assert read(path) == [
        {"time": 100.0, "node": "n1", "code": "n1/cpu_percent", "value": 12.5},
        {"time": 101.0, "node": "n1", "code": "n1/odd", "value": "b'\\x00'"},
    ]  # str() of the odd
    dist.close()
    assert not dist.isConnected()


def test_a_report_is_written_whole_with_its_payload_in_base64(tmp_path: Path) -> None:
    dist = jsonl(tmp_path, path=str(tmp_path / "r.jsonl"))
    write(dist, [ReportItem("n1", 7, "Samples", 5.0, Encoding.MSGPACK, "", b"\x81\xa1a\x01")])
    (line,) = read(tmp_path / "r.jsonl")
    assert line == {
        "time": 5.0,
        "node": "n1",
        "seq": 7,
        "type": "Samples",
        "encoding": "MSGPACK",
        "schema": "",
        "payload": base64.b64encode(b"\x81\xa1a\x01").decode(),
    }


def test_rotation_keeps_backups_and_every_file_under_max_bytes(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    dist = jsonl(tmp_path, path=str(path), max_bytes=200, backups=2)
    points = [DataPoint(f"n1/m{i}", i, 1.0, "n1") for i in range(40)]
    write(dist, points)
    dist.close()
    files = [path.with_name("p.jsonl.2"), path.with_name("p.jsonl.1"), path]
    assert all(f.exists() and 0 < f.stat().st_size <= 200 for f in files)
    assert not path.with_name("p.jsonl.3").exists()
    kept = [p["value"] for f in files for p in read(f)]
    assert kept == list(range(40 - len(kept), 40))  # the newest, in order, nothing repeated


def test_no_backups_starts_the_file_over(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    dist = jsonl(tmp_path, path=str(path), max_bytes=120, backups=0)
    write(dist, [DataPoint("n1/m", i, 1.0, "n1") for i in range(10)])
    dist.close()
    assert [p.name for p in tmp_path.iterdir()] == ["p.jsonl"] and read(path)[-1]["value"] == 9


def test_appends_to_an_existing_file_and_counts_its_size(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"old": 1}\n' * 10)
    dist = jsonl(tmp_path, path=str(path), max_bytes=150)
    write(dist, [DataPoint("n1/m", 1, 1.0, "n1")])
    dist.close()
    assert path.with_name("p.jsonl.1").read_text() == '{"old": 1}\n' * 10 and len(read(path)) == 1


def test_a_full_disk_is_counted_and_retried_by_the_runner(tmp_path: Path) -> None:
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")
    sec = DistSection(name="full", type="jsonl", cpu_limit=1.0)
    dist = jsonl(tmp_path, path="/dev/full")
    runner = Runner(sec, dist, lambda *a: None)
    runner.start()
    try:
        runner.put(("n1/m", 1, 1.0, None))
        wait_for(lambda: runner.stats.errors_by_method.get("updateBatchComplete"), 10, what="the failed flush")
        assert "No space left on device" in runner.stats.last_error
    finally:
        runner.stop()
        assert runner.join(10)
