"""Delivery that loses nothing, with real processes and kill -9 (the reliability issue's tests a, c, e, f)."""

from __future__ import annotations

import random
import signal
import socket
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from gui.client import Client
from messages.errors import LabscopeError
from tests.conftest import FIXTURES, CollectorProcess, ProcessGroup, labscope_cmd, wait_for

pytestmark = pytest.mark.e2e

MODULES = (
    "--modules-dir",
    str(FIXTURES / "modules"),
    "--modules-dir",
    str(FIXTURES / "hooks"),
    "--disable-module",
    "files",
)  # the classic FileProcessor fixture takes its place
FAST_PROBES = ("--probes-dir", str(FIXTURES / "durability_probes"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Rig:
    """A collector on fixed ports (so it can be killed and restarted on them) and its data dir."""

    def __init__(self, procs: ProcessGroup, *extra: str) -> None:
        self.procs = procs
        self.agents = f"tcp://127.0.0.1:{free_port()}"
        self.clients = f"tcp://127.0.0.1:{free_port()}"
        self.data_dir = procs.tmp_path / "collector-data"
        self.extra = extra
        self.collector = self.start()

    def start(self) -> CollectorProcess:
        """Start the collector on the rig's ports and data dir."""
        self.collector = self.procs.collector(
            "--listen-agents",
            self.agents,
            "--listen-clients",
            self.clients,
            *MODULES,
            *self.extra,
            data_dir=self.data_dir,
        )
        return self.collector

    def ask(self, type: str, timeout: float = 5.0) -> object:
        """One request; None while the collector does not answer."""
        try:
            with Client(self.clients) as client:
                return client.request(type, timeout=timeout).payload
        except LabscopeError:
            return None


def agent_last_seq(data_dir: Path) -> int:
    """The last sequence number an agent assigned, read from its durable outbox."""
    with sqlite3.connect(data_dir / "outbox.sqlite3") as db:
        (next_seq,) = db.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()
    return int(next_seq) - 1


def assert_exactly_once_in_order(rig: Rig, nodes: list[str]) -> None:
    """Every report each stopped agent assigned reached the counter module once, in order."""
    for node in nodes:
        last = agent_last_seq(rig.procs.tmp_path / f"agent-{node}")

        def complete(node: str = node, last: int = last) -> list[int] | None:
            stats = rig.ask("CounterStats")
            seqs = stats.get(node, {}).get("seqs", []) if isinstance(stats, dict) else []
            return seqs if seqs and seqs[-1] >= last else None

        seqs = wait_for(complete, timeout=30, interval=0.3, what=f"all of {node}'s reports")
        assert seqs == list(range(1, last + 1)), f"{node}: not exactly once and in order"


def stop_agents(agents: list[subprocess.Popen]) -> None:
    for agent in agents:
        agent.send_signal(signal.SIGTERM)
    for agent in agents:
        assert agent.wait(15) == 0


@pytest.mark.timeout(150)
def test_a_collector_killed_four_times_loses_and_repeats_nothing(procs: ProcessGroup) -> None:
    rig = Rig(procs)
    nodes = ["node-a", "node-b"]
    agents = [procs.agent(rig.agents, node, *FAST_PROBES, interval=0.5) for node in nodes]
    rng = random.Random(4)
    for _ in range(4):
        wait_for(lambda: rig.ask("CounterStats"), timeout=20, what="the collector answering")
        time.sleep(rng.uniform(0.5, 2.5))  # a random moment, while both agents report 20+ a second
        rig.collector.stop(signal.SIGKILL)
        rig.start()
    wait_for(lambda: rig.ask("CounterStats"), timeout=20, what="the last collector answering")
    time.sleep(1.0)  # let new reports flow after the last restart
    stop_agents(agents)
    assert_exactly_once_in_order(rig, nodes)
    stats = rig.ask("CollectorStats")
    assert isinstance(stats, dict) and stats["counters"].get("module-error:counter", 0) == 0


@pytest.mark.timeout(120)
def test_c_collector_down_15_s_backlog_drains(procs: ProcessGroup) -> None:
    rig = Rig(procs)
    agent = procs.agent(rig.agents, "node-c", *FAST_PROBES, interval=0.5)
    wait_for(lambda: (s := rig.ask("CounterStats")) and s.get("node-c"), timeout=20, what="first reports")
    rig.collector.stop(signal.SIGTERM)
    time.sleep(15)  # the outage under test: the agent keeps producing into its outbox
    rig.start()

    def backlog_seen() -> bool:
        nodes = rig.ask("NodeList")
        return bool(nodes and any(n.node == "node-c" and n.status == "live" for n in nodes.nodes))

    wait_for(backlog_seen, timeout=20, what="node-c back")
    stop_agents([agent])
    assert_exactly_once_in_order(rig, ["node-c"])
    seqs = rig.ask("CounterStats")["node-c"]["seqs"]  # type: ignore[index]
    assert len(seqs) > 15 * 20, "the outage's reports must be there"


@pytest.mark.timeout(60)
def test_e_silent_node_is_lost_once_and_joins_again(procs: ProcessGroup) -> None:
    rig = Rig(procs, "--node-timeout", "1.5")
    agent = procs.agent(rig.agents, "node-e", interval=0.3)

    def status() -> str:
        nodes = rig.ask("NodeList")
        return next((n.status for n in nodes.nodes if n.node == "node-e"), "") if nodes else ""

    wait_for(lambda: status() == "live", timeout=20, what="node-e live")
    agent.send_signal(signal.SIGSTOP)  # silent, not dead
    try:
        wait_for(lambda: status() == "lost", timeout=10, what="node-e lost")
        time.sleep(2.0)  # stay silent well past the timeout: the loss must still count once
        assert rig.ask("HookCounts")["node-e"] == {"joined": 1, "left": 1}  # type: ignore[index]
    finally:
        agent.send_signal(signal.SIGCONT)
    wait_for(lambda: status() == "live", timeout=20, what="node-e back")
    assert rig.ask("HookCounts")["node-e"] == {"joined": 2, "left": 1}  # type: ignore[index]


@pytest.mark.timeout(60)
def test_f_duplicate_node_id_is_refused_and_the_first_unaffected(procs: ProcessGroup) -> None:
    rig = Rig(procs)
    first = procs.agent(rig.agents, "node-f", *FAST_PROBES, interval=0.5)

    def count() -> int:
        stats = rig.ask("CounterStats")
        return len(stats.get("node-f", {}).get("seqs", [])) if isinstance(stats, dict) else 0

    wait_for(lambda: count() > 5, timeout=20, what="the first agent reporting")
    second_dir = procs.tmp_path / "second-agent"
    done = subprocess.run(
        labscope_cmd("agent", "--collector", rig.agents, "--node-id", "node-f", "--data-dir", str(second_dir)),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 1
    assert "node-f" in done.stderr and "Traceback" not in done.stderr
    before = count()
    wait_for(lambda: count() > before + 10, timeout=10, what="the first agent still reporting")
    assert first.poll() is None
    stats = rig.ask("CollectorStats")
    assert isinstance(stats, dict) and stats["counters"]["duplicate-node"] >= 1


@pytest.mark.timeout(60)
def test_snapshot_plus_replay_rebuilds_systemstats_exactly(procs: ProcessGroup, zmq_context) -> None:
    from messages import Kind, NodeInfo, SystemStats
    from tests.wire import Peer

    rig = Rig(procs, "--snapshot-interval", "0.5")
    agent = Peer(zmq_context, rig.agents)
    agent.send(Kind.HELLO, "NodeInfo", NodeInfo(node="n-s", hostname="h", instance="i"), node="n-s", seq=1)
    agent.expect(lambda e: e.kind == Kind.ACK, what="ACK after HELLO")

    def send(seqs: range) -> None:
        for seq in seqs:
            agent.send(Kind.REPORT, "SystemStats", SystemStats(time=1000.0 + seq, cpu_percent=seq), node="n-s", seq=seq)
        agent.expect(lambda e: e.kind == Kind.ACK and e.seq == seqs[-1], what=f"ACK {seqs[-1]}")

    send(range(1, 11))
    snapshot = rig.data_dir / "collector.sqlite3"
    wait_for(lambda: _snapshot_taken(snapshot), timeout=10, what="a systemstats snapshot")
    send(range(11, 16))  # journaled after the snapshot: must be replayed on top of it, once
    rig.collector.stop(signal.SIGKILL)
    agent.close()
    rig.start()
    history = wait_for(lambda: _history(rig), timeout=20, what="history after the restart")
    assert [s.time for s in history.samples] == [1000.0 + seq for seq in range(1, 16)]


def _snapshot_taken(path: Path) -> bool:
    with sqlite3.connect(path) as db:
        return bool(db.execute("SELECT COUNT(*) FROM snapshots WHERE module = 'systemstats'").fetchone()[0])


def _history(rig: Rig) -> object:
    try:
        with Client(rig.clients) as client:
            return client.request("SystemStatsHistory", {"node": "n-s"}, timeout=5).payload
    except LabscopeError:
        return None
