"""``labscope demo`` end to end, its process handling, and the node table it shows."""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from gui.client import Update
from gui.table import ago, human_rate, node_rows, node_table, plain_lines
from labscope.children import Children, DemoFailure, read_endpoints, wait_collector
from labscope.demo import DemoState, summary_lines
from messages import Encoding, NodeList, NodeStatus, NodeSummary, SystemStatsSummary
from tests.conftest import REPO, labscope_cmd, wait_for

STARTED = re.compile(r"started (\S+) \(pid (\d+)\)")
FOLDER = re.compile(r"files in (\S+)")


def labscope_alive(pid: int) -> bool:
    """Whether ``pid`` is still a running labscope process (a reused pid does not count)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return b"labscope" in cmdline and state != "Z"


def started_pids(out: str) -> dict[str, int]:
    """The child name -> pid lines the demo printed."""
    return {name: int(pid) for name, pid in STARTED.findall(out)}


def assert_cleaned_up(out: str, agents: int = 3) -> None:
    """Every child the demo started is gone, and so is its temporary folder."""
    pids = started_pids(out)
    assert set(pids) == {"collector", *(f"agent-{k}" for k in range(1, agents + 1))}, out
    assert [name for name, pid in pids.items() if labscope_alive(pid)] == []
    folder = FOLDER.search(out)
    assert folder is not None and not Path(folder.group(1)).exists()


def assert_three_live(out: str) -> None:
    """The summary names three nodes seen and live at the end."""
    nodes = "demo-node-1, demo-node-2, demo-node-3"
    assert f"nodes seen: 3 ({nodes})" in out, out
    assert f"live at the end: 3 ({nodes})" in out, out
    for k in (1, 2, 3):
        assert re.search(rf"demo-node-{k}\s+live\s+reports up to seq [1-9]\d*", out), out


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_demo_runs_for_its_duration_and_cleans_up():
    start = time.monotonic()
    result = subprocess.run(
        labscope_cmd("demo", "--duration", "8", "--interval", "0.5"), capture_output=True, timeout=50, cwd=REPO
    )
    out = result.stdout.decode()
    assert result.returncode == 0, result.stderr.decode() + out
    assert time.monotonic() - start >= 8
    assert_three_live(out)
    assert re.search(r"demo-node-1 .* live cpu +\d", out), "plain table lines when stdout is not a terminal"
    assert_cleaned_up(out)


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_demo_ctrl_c_stops_everything_and_prints_the_summary():
    popen = subprocess.Popen(
        labscope_cmd("demo", "--interval", "0.5"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO
    )
    try:
        seen = read_until(popen, ["demo-node-1", "demo-node-2", "demo-node-3"], timeout=30)
        popen.send_signal(signal.SIGINT)
        out, err = popen.communicate(timeout=30)
    finally:
        stop_demo(popen)
    assert popen.returncode == 0, err.decode()
    text = seen + out.decode()
    assert "nodes seen: 3" in text
    assert_cleaned_up(text)


def stop_demo(popen: subprocess.Popen[bytes]) -> None:
    """Stop a demo that is still running, and its children: they run in sessions of their own."""
    if popen.poll() is not None:
        return
    children = psutil.Process(popen.pid).children(recursive=True)
    popen.terminate()  # the demo stops its children on SIGTERM
    try:
        popen.wait(15)
    except subprocess.TimeoutExpired:
        popen.kill()
        popen.wait(5)
    for child in children:
        if child.is_running():
            child.kill()
    psutil.wait_procs(children, timeout=5)


def read_until(popen: subprocess.Popen[bytes], needles: list[str], timeout: float) -> str:
    """Read the process's stdout until every one of ``needles`` showed up; returns what was read."""
    assert popen.stdout is not None
    text, deadline = "", time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(popen.stdout, selectors.EVENT_READ)
        while not all(needle in text for needle in needles):
            assert time.monotonic() < deadline and popen.poll() is None, f"not all of {needles} in: {text}"
            if selector.select(max(0.0, deadline - time.monotonic())):
                text += os.read(popen.stdout.fileno(), 65536).decode()
    return text


@pytest.mark.e2e
def test_demo_bad_args_exit_2_with_one_line():
    result = subprocess.run(labscope_cmd("demo", "--agents", "0"), capture_output=True, timeout=20, cwd=REPO)
    assert result.returncode == 2
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("labscope demo: error: ") and "between 1 and 50" in lines[0]


# ------------------------------------------------------------ process handling


@pytest.mark.e2e
def test_child_death_is_reported_with_its_last_log_lines(tmp_path):
    with Children(tmp_path) as children:
        code = "for i in range(30): print('line', i)\nraise SystemExit(3)"
        child = children.start("agent-9", [sys.executable, "-c", code])
        child.popen.wait(10)
        with pytest.raises(DemoFailure) as caught:
            children.check()
    assert str(caught.value) == "agent-9 exited early with status 3; last lines of agent-9.log:"
    assert caught.value.tail == [f"line {i}" for i in range(10, 30)]


@pytest.mark.e2e
def test_stop_kills_a_child_that_ignores_sigterm(tmp_path):
    code = (
        "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('ready', flush=True)\ntime.sleep(60)"
    )
    children = Children(tmp_path)
    stubborn = children.start("stubborn", [sys.executable, "-c", code])
    polite = children.start("polite", [sys.executable, "-c", "import time\ntime.sleep(60)"])
    wait_for(lambda: "ready" in stubborn.log_path.read_text(), 10, what="the child's handler")
    start = time.monotonic()
    children.stop(timeout=0.5)
    assert time.monotonic() - start < 5
    assert stubborn.popen.returncode == -signal.SIGKILL
    assert polite.popen.returncode == -signal.SIGTERM


@pytest.mark.e2e
def test_wait_collector_reports_an_early_exit(tmp_path):
    with Children(tmp_path) as children:
        collector = children.start("collector", [sys.executable, "-c", "print('cannot bind'); raise SystemExit(2)"])
        with pytest.raises(DemoFailure) as caught:
            wait_collector(collector, tmp_path / "data", timeout=10)
    assert "collector exited early with status 2" in str(caught.value)
    assert caught.value.tail == ["cannot bind"]


@pytest.mark.e2e
def test_wait_collector_gives_up_after_its_bound(tmp_path):
    with Children(tmp_path) as children:
        collector = children.start("collector", [sys.executable, "-c", "import time\ntime.sleep(60)"])
        start = time.monotonic()
        with pytest.raises(DemoFailure, match="wrote no collector.json within 0.5 s"):
            wait_collector(collector, tmp_path / "data", timeout=0.5)
        assert time.monotonic() - start < 3
    assert collector.popen.returncode is not None


def test_read_endpoints_waits_for_a_complete_file(tmp_path):
    path = tmp_path / "collector.json"
    assert read_endpoints(path) is None
    path.write_text('{"agents": "tcp://127.0.0.1:1", "cli')
    assert read_endpoints(path) is None
    path.write_text('{"agents": "tcp://127.0.0.1:1", "clients": "tcp://127.0.0.1:2", "pid": 5}')
    assert read_endpoints(path) == {"agents": "tcp://127.0.0.1:1", "clients": "tcp://127.0.0.1:2", "pid": 5}


# ------------------------------------------------------------ state and summary


def update_of(payload: NodeList | SystemStatsSummary) -> Update:
    """An Update carrying ``payload`` as the client would decode it."""
    data = payload.SerializeToString()
    return Update(type(payload).__name__, time.time(), payload, data, Encoding.PROTOBUF, payload.DESCRIPTOR.full_name)


def test_state_and_summary_follow_the_updates():
    state = DemoState("tcp://127.0.0.1:1")
    state.apply(update_of(NodeList(nodes=[NodeStatus(node="a", status="live", last_seq=3)])))
    state.apply(update_of(SystemStatsSummary(nodes=[NodeSummary(node="b")])))
    state.apply(update_of(NodeList(nodes=[NodeStatus(node="a", status="lost", last_seq=9, gaps=1)])))
    state.watched = 4.0
    lines = summary_lines(state)
    assert lines[0] == "summary after watching for 4.0 s"
    assert lines[1] == "nodes seen: 2 (a, b)"
    assert lines[2] == "live at the end: 0 (none)"
    assert re.fullmatch(r"\s+a\s+lost\s+reports up to seq 9, gaps 1, reconnects 0", lines[3])
    assert re.fullmatch(r"\s+b\s+gone\s+\(no longer listed\)", lines[4])
    assert state.ever_live == {"a"}


# ------------------------------------------------------------ gui.table


def test_human_rate_and_ago():
    assert [human_rate(r) for r in (0, 999, 1000, 1536, 5 * 1024**2, -3)] == [
        "0 B",
        "999 B",
        "1.0 KiB",
        "1.5 KiB",
        "5.0 MiB",
        "0 B",
    ]
    assert ago(0, 100.0) == "-"
    assert ago(99.5, 100.0) == "0.5s ago"
    assert ago(1000.0 - 120, 1000.0) == "2m ago"
    assert ago(1000.0 + 5, 1000.0) == "0.0s ago"  # a clock a little ahead is not "in the future"


def test_node_rows_merge_both_payloads():
    now = 1000.0
    node_list = NodeList(
        nodes=[
            NodeStatus(node="n2", hostname="host2", status="lost", last_seen=990.0),
            NodeStatus(node="n1", hostname="host1", status="live", last_seen=999.0),
        ]
    )
    summary = SystemStatsSummary(
        nodes=[
            NodeSummary(
                node="n1", cpu_percent=12.345, memory_percent=50, load1=0.5, net_recv_rate=2048, net_send_rate=10
            ),
            NodeSummary(node="n3", hostname="host3", time=998.0),
        ]
    )
    rows = node_rows(node_list, summary, now=now)
    assert [row.node for row in rows] == ["n1", "n2", "n3"]
    n1, n2, n3 = rows
    assert (n1.hostname, n1.status, n1.cpu, n1.memory, n1.load) == ("host1", "live", "12.3", "50.0", "0.50")
    assert (n1.net_in, n1.net_out, n1.last_seen) == ("2.0 KiB", "10 B", "1.0s ago")
    assert (n2.status, n2.cpu, n2.net_in, n2.last_seen) == ("lost", "-", "-", "10.0s ago")
    assert (n3.hostname, n3.status, n3.last_seen) == ("host3", "?", "2.0s ago")
    assert len(plain_lines(rows)) == 3 and "2.0 KiB/s" in plain_lines(rows)[0]


def test_node_table_renders_every_node():
    from rich.console import Console

    node_list = NodeList(nodes=[NodeStatus(node="alpha", status="live"), NodeStatus(node="beta", status="lost")])
    console = Console(width=120, record=True, force_terminal=False)
    console.print(node_table(node_list, None, title="nodes"))
    text = console.export_text()
    assert "alpha" in text and "beta" in text and "live" in text and "lost" in text
    assert "net in/s" in text and "last seen" in text
    empty = Console(width=120, record=True)
    empty.print(node_table(None, None))
    assert "waiting for nodes" in empty.export_text()
