"""The web page's JSON API and stream against a real collector process, over plain HTTP (docs/web.md)."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO, ProcessGroup, labscope_cmd, wait_for
from tests.web import WebCollector, free_port, read_events, web_collector

pytestmark = pytest.mark.e2e


@pytest.fixture
def web(procs: ProcessGroup, tmp_path: Path) -> WebCollector:
    """A collector (alias "bench-a") serving its page on a free port picked beforehand."""
    port = free_port()
    started = web_collector(procs, tmp_path, "--alias", "bench-a", port=port)
    assert started.url == f"http://127.0.0.1:{port}/"
    return started


def audit(web: WebCollector) -> list[dict]:
    """The collector's ``Audit`` answer, as ``labscope query`` prints it."""
    done = subprocess.run(
        labscope_cmd("query", "--collector", web.process.clients, "Audit"),
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout))


def test_the_api_answers_every_view(web: WebCollector) -> None:
    stats = web.get("api/stats")
    assert stats["alias"] == "bench-a" and "counters" in stats and stats["nodes"] == {"total": 0, "live": 0}
    modules = {m["name"]: m for m in web.get("api/modules")}
    assert modules["nodes"]["status"] == "running" and modules["nodes"]["request_types"] == ["NodeList"]
    assert modules["systemstats"]["report_types"] == ["SystemStats"] and modules["systemstats"]["errors"] == 0
    assert web.get("api/nodes") == []
    assert web.get("api/distributions") == {}
    assert isinstance(web.get("api/events"), list)
    listing = web.get("api/config")
    assert listing["editable"] is True
    assert [f["name"] for f in listing["files"]] == ["collector.toml", "lab.toml"]
    assert web.text("api/config/lab.toml") == web.files["lab.toml"].read_text()
    assert "<title>" in web.text("") and "app.js" in web.text("")


def test_unknown_names_are_404_and_nothing_else_is_opened(web: WebCollector) -> None:
    for path in ("api/config/nope.toml", "api/config/..%2Fweb.token", "static/..%2F..%2Fconfig.py", "api/nope"):
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(web.url + path, timeout=10)
        assert caught.value.code == 404, path
    assert web.put("api/config/nope.toml", b"a = 1", web.token)[0] == 404


def test_config_edits_need_the_token_and_valid_text(web: WebCollector) -> None:
    lab = web.files["lab.toml"]
    before = lab.read_bytes()
    status, body = web.put("api/config/lab.toml", b"a = 1")
    assert status == 401, body
    assert web.put("api/config/lab.toml", b"a = 1", "wrong-" + web.token)[0] == 401
    status, body = web.put("api/config/lab.toml", b"[lab\nname = 1", web.token)
    assert status == 400 and "not valid TOML" in body["description"]
    assert lab.read_bytes() == before
    new = b'[lab]\nname = "bench"\nnodes = 12\n'
    status, body = web.put("api/config/lab.toml", new, web.token)
    assert status == 200, body
    assert lab.read_bytes() == new
    assert web.text("api/config/lab.toml") == new.decode()
    assert not [p for p in lab.parent.iterdir() if p.name.endswith(".tmp")]
    entries = [e for e in audit(web) if e["type"] == "ConfigEdit"]
    assert [(e["params"], e["outcome"]) for e in entries] == [
        ({"name": "lab.toml"}, "bad-request"),
        ({"name": "lab.toml"}, "ok"),
    ]
    assert all(e["who"] == "web:127.0.0.1" for e in entries)
    events = wait_for(lambda: [e for e in web.get("api/events") if e["kind"] == "config-changed"], 10, what="event")
    assert events[0]["attrs"] == {"name": "lab.toml", "who": "web:127.0.0.1"}


def test_the_collectors_own_config_is_checked_against_its_schema(web: WebCollector) -> None:
    own = web.files["collector.toml"]
    before = own.read_bytes()
    status, body = web.put("api/config/collector.toml", b"[collector]\nnode_timeout = -1\n", web.token)
    assert status == 400 and "node_timeout" in body["description"], body
    status, body = web.put("api/config/collector.toml", b"[collector]\nno_such_key = 1\n", web.token)
    assert status == 400 and "no_such_key" in body["description"], body
    assert own.read_bytes() == before
    status, body = web.put("api/config/collector.toml", b"[collector]\nnode_timeout = 8.0\n", web.token)
    assert status == 200, body
    assert own.read_text() == "[collector]\nnode_timeout = 8.0\n"


def test_without_a_token_file_edits_are_refused(procs: ProcessGroup, tmp_path: Path) -> None:
    extra = tmp_path / "only.toml"
    extra.write_text("a = 1\n")
    process = procs.collector("--web", "0", "--extra-config-file", str(extra))
    url = json.loads((process.data_dir / "collector.json").read_text())["web"]
    assert url.startswith("http://127.0.0.1:")
    request = urllib.request.Request(url + "api/config/only.toml", data=b"a = 2", method="PUT")
    request.add_header("Authorization", "Bearer anything-at-all-here")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)
    assert caught.value.code == 403
    assert extra.read_text() == "a = 1\n"


def test_the_stream_delivers_a_node_when_a_real_agent_reports(procs: ProcessGroup, web: WebCollector) -> None:
    first = read_events(web.url + "api/stream", lambda nodes: True)
    assert first == [[]]
    procs.agent(web.process.agents, "web-n1")

    def reported(nodes: list[dict]) -> bool:
        return any(n["node"] == "web-n1" and n["status"] == "live" and n["cpu_percent"] is not None for n in nodes)

    seen = read_events(web.url + "api/stream", reported, timeout=20)
    node = next(n for n in seen[-1] if n["node"] == "web-n1")
    assert node["last_seen"] > 0 and node["backlog"] >= 0 and 0 <= node["memory_percent"] <= 100


def test_a_bad_web_flag_is_one_line_and_status_2(tmp_path: Path) -> None:
    for args in (["--web", "127.0.0.1:99999"], ["--extra-config-file", str(tmp_path / "missing.toml")]):
        done = subprocess.run(
            labscope_cmd("collector", "--data-dir", str(tmp_path / "d"), *args),
            capture_output=True,
            text=True,
            timeout=30,
            cwd=REPO,
        )
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_the_collector_stops_promptly_with_a_stream_open(web: WebCollector) -> None:
    stream = urllib.request.urlopen(web.url + "api/stream", timeout=10)
    try:
        assert stream.readline() == b"retry: 2000\n"
        started = time.monotonic()
        assert web.process.stop() == 0, web.process.log()
        assert time.monotonic() - started < 8
        assert "Traceback" not in web.process.log()
    finally:
        stream.close()
