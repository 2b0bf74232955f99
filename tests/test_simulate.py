"""``labscope simulate``: real sockets, real acknowledgements, heartbeats and re-HELLO."""

from __future__ import annotations

import json
import socket
import subprocess

import pytest

from gui.client import Client
from tests.conftest import ProcessGroup, labscope_cmd, wait_for

pytestmark = pytest.mark.e2e


def simulate(collector: str, *args: str, timeout: float = 60) -> dict:
    done = subprocess.run(
        labscope_cmd("simulate", "--collector", collector, *args),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.timeout(60)
def test_simulated_agents_are_acknowledged_and_counted(procs: ProcessGroup) -> None:
    collector = procs.collector()
    totals = simulate(collector.agents, "--agents", "5", "--rate", "20", "--batch", "2", "--duration", "2")
    assert totals["hellos"] == 5
    assert totals["sent"] > 100
    assert totals["acked"] == totals["sent"]
    with Client(collector.clients) as client:
        stats = client.request("CollectorStats").payload
        nodes = client.request("NodeList").payload.nodes
    assert stats["counters"]["reports"] == totals["acked"]
    assert sorted(n.node for n in nodes) == [f"sim-{i:04d}" for i in range(1, 6)]
    # each agent paces itself from a random start: counts differ, but every report is accounted for
    assert sum(n.last_seq for n in nodes) == totals["sent"] and all(n.last_seq > 0 for n in nodes)


@pytest.mark.timeout(60)
def test_slow_agents_heartbeat_and_are_never_lost(procs: ProcessGroup) -> None:
    collector = procs.collector("--node-timeout", "1.5")
    totals = simulate(collector.agents, "--agents", "3", "--rate", "0.25", "--duration", "4")
    assert totals["heartbeats"] > 0
    with Client(collector.clients) as client:
        stats = client.request("CollectorStats").payload
    assert stats["counters"].get("nodes-lost", 0) == 0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.timeout(90)
def test_simulated_agents_say_hello_again_after_a_collector_restart(procs: ProcessGroup) -> None:
    agents, clients = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    ports = ("--listen-agents", agents, "--listen-clients", clients)
    first = procs.collector(*ports, data_dir=procs.tmp_path / "c1")
    sim = subprocess.Popen(
        labscope_cmd("simulate", "--collector", agents, "--agents", "3", "--rate", "10", "--duration", "8"),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        with Client(clients) as client:
            wait_for(
                lambda: client.request("CollectorStats").payload["counters"].get("reports", 0) > 10,
                timeout=20,
                what="reports before the restart",
            )
        first.stop()
        second = procs.collector(*ports, data_dir=procs.tmp_path / "c2")
        out, _ = sim.communicate(timeout=40)
    finally:
        sim.kill()
    totals = json.loads(out)
    assert totals["errors"].get("hello-required", 0) >= 1
    assert totals["hellos"] >= 6
    with Client(second.clients) as client:
        assert client.request("CollectorStats").payload["counters"]["reports"] > 0


def test_bad_arguments_exit_2() -> None:
    done = subprocess.run(
        labscope_cmd("simulate", "--collector", "tcp://127.0.0.1:1", "--agents", "0"),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert "--agents" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.timeout(60)
def test_an_unanswered_hello_is_retried_with_a_doubling_wait() -> None:
    """A silent collector sees HELLOs 2 s (checked on the 1 s report tick: 3 s), then 4 s (5 s) apart, not every 3 s."""
    import zmq

    from messages import Kind
    from messages.codec import unpack

    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.linger = 0
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    sim = subprocess.Popen(
        labscope_cmd("simulate", "--collector", f"tcp://127.0.0.1:{port}", "--agents", "1", "--duration", "10"),
        stdout=subprocess.DEVNULL,
    )
    hellos = 0
    try:
        while sim.poll() is None or sock.poll(0):
            if sock.poll(200):
                _, frame = sock.recv_multipart()
                hellos += sum(env.kind == Kind.HELLO for env in unpack(frame))
        assert sim.wait(30) == 0
    finally:
        sim.kill()
        sock.close()
        ctx.term()
    assert hellos == 3  # at about 0, 3 and 8 s; a fixed 2 s wait would have sent a fourth at 9 s
