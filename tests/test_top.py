"""``labscope top``: the nodes table in a terminal, against a real collector and real agents."""

from __future__ import annotations

import io
import os
import subprocess
import time

import pytest
from rich.console import Console

from gui import top
from messages import NodeList, NodeStatus, NodeSummary, SystemStatsSummary
from tests.conftest import REPO, ProcessGroup, labscope_cmd, wait_for


def run_top(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run(
        labscope_cmd("top", *args), capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO
    )


def state_with_nodes() -> top.TopState:
    now = time.time()
    state = top.TopState("tcp://127.0.0.1:5556", alias="lab-7", connected=True, ever_connected=True)
    state.node_list = NodeList(
        nodes=[
            NodeStatus(node="n1", hostname="alpha", status="live", last_seen=now),
            NodeStatus(node="n2", hostname="beta", status="lost", last_seen=now - 30),
        ]
    )
    state.summary = SystemStatsSummary(
        nodes=[
            NodeSummary(
                node="n1",
                hostname="alpha",
                time=now,
                cpu_percent=42.5,
                memory_percent=12.0,
                load1=0.25,
                net_recv_rate=2048,
            )
        ]
    )
    return state


def test_render_shows_nodes_alias_and_state() -> None:
    console = Console(file=io.StringIO(), width=100, force_terminal=True, color_system="truecolor", record=True)
    console.print(top.render(state_with_nodes()))
    text = console.export_text(clear=False)
    assert "lab-7 (tcp://127.0.0.1:5556) - connected" in text
    assert "n1" in text and "alpha" in text and "42.5" in text and "2.0 KiB" in text
    assert "lost" in text and "Ctrl-C to stop" in text
    styled = console.export_text(styles=True)
    assert "\x1b[1;32mlive" in styled and "\x1b[1;31mlost" in styled  # bold green / bold red


def test_title_follows_the_connection() -> None:
    state = top.TopState("tcp://h:1")
    assert top.title(state) == "tcp://h:1 - connecting"
    state.connected = state.ever_connected = True
    state.alias = "lab"
    assert top.title(state) == "lab (tcp://h:1) - connected"
    state.connected = False
    assert top.title(state) == "lab (tcp://h:1) - reconnecting"


def test_live_view_redraws_in_place() -> None:
    out = io.StringIO()
    console = Console(file=out, width=100, force_terminal=True, color_system=None)
    with top.open_view(console) as view:
        assert isinstance(view, top.LiveView)
        view.show(state_with_nodes())
        view.show(state_with_nodes())
    # rich moves the cursor up to overwrite the previous table instead of scrolling a new one
    assert "\x1b[1A" in out.getvalue() or "\x1b[2K" in out.getvalue()
    assert out.getvalue().count("lab-7") >= 2


@pytest.mark.e2e
@pytest.mark.timeout(45)
def test_top_shows_real_nodes(procs: ProcessGroup) -> None:
    collector = procs.collector("--update-interval", "0.2", "--alias", "top-test")
    for node in ("top-a", "top-b"):
        procs.agent(collector.agents, node, interval=0.2)
    wait_for(
        lambda: "top-a" in run_top_once(collector.clients) and "top-b" in run_top_once(collector.clients),
        timeout=20,
        interval=0.2,
        what="both nodes in NodeList",
    )
    result = run_top("--collector", collector.clients, "--duration", "2", "--refresh", "0.5")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    blocks = [line for line in result.stdout.splitlines() if line.startswith("[")]
    assert len(blocks) >= 3  # one block per refresh: not a terminal, so plain lines
    assert "top-test (" in result.stdout and " - connected" in result.stdout
    last = result.stdout.rsplit("] ", 1)[-1].splitlines()
    rows = {line.split()[0]: line.split() for line in last[1:]}
    assert set(rows) == {"top-a", "top-b"}
    assert all(row[2] == "live" and row[3] == "cpu" for row in rows.values())


@pytest.mark.timeout(45)
@pytest.mark.e2e
def test_top_shows_what_a_collector_without_systemstats_has_and_says_what_it_lacks(procs: ProcessGroup) -> None:
    collector = procs.collector("--update-interval", "0.2", "--disable-module", "systemstats")
    procs.agent(collector.agents, "top-n", interval=0.2)
    wait_for(lambda: "top-n" in run_top_once(collector.clients), timeout=20, interval=0.2, what="top-n listed")
    result = run_top("--collector", collector.clients, "--duration", "2", "--refresh", "0.5")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "no module pushes update type 'SystemStatsSummary'" in result.stdout
    assert "showing the rest" in result.stdout
    assert result.stdout.rsplit("] ", 1)[-1].splitlines()[-1].split()[0] == "top-n"


def run_top_once(endpoint: str) -> str:
    """What the collector's NodeList holds now, through labscope query (cheap and independent of top)."""
    result = subprocess.run(
        labscope_cmd("query", "--collector", endpoint, "NodeList", "--timeout", "2"),
        capture_output=True,
        text=True,
        timeout=15,
        cwd=REPO,
    )
    return result.stdout


@pytest.mark.e2e
@pytest.mark.timeout(30)
def test_top_without_a_collector_waits_and_says_so() -> None:
    result = run_top("--collector", "tcp://127.0.0.1:9", "--duration", "1.2", "--refresh", "0.5")
    assert result.returncode == 0, result.stderr
    assert "tcp://127.0.0.1:9 - connecting" in result.stdout
    assert "(waiting for nodes)" in result.stdout


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--collector", "nope"], "malformed endpoint 'nope'"),
        ([], "the following arguments are required: --collector"),
        (["--collector", "tcp://127.0.0.1:5556", "--refresh", "-1"], "must be greater than 0"),
    ],
)
def test_bad_flags_exit_2_with_one_line(args: list[str], expected: str) -> None:
    result = run_top(*args)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and expected in result.stderr
    assert result.stderr.startswith("labscope top: error:") and "Traceback" not in result.stderr
