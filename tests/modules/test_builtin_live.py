"""``nodes`` and ``systemstats`` inside a real collector process, over real sockets on loopback.

The test plays both an agent and a client with its own DEALER sockets, speaking
docs/protocol.md, so it depends on the collector only.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import psutil
import pytest
import zmq

from messages import Encoding, Envelope, Kind, Memory, NodeInfo, SystemStats
from messages.codec import decode_payload
from tests.conftest import ProcessGroup, labscope_cmd, wait_for
from tests.wire import Client, Peer

from . import sample

pytestmark = pytest.mark.e2e


@pytest.fixture
def live(procs: ProcessGroup, zmq_context: zmq.Context) -> Iterator[tuple[Peer, Client]]:
    collector = procs.collector("--update-interval", "0.2")
    agent, client = Peer(zmq_context, collector.agents), Client(zmq_context, collector.clients)
    try:
        yield agent, client
    finally:
        agent.close()
        client.close()


def hello(agent: Peer) -> NodeInfo:
    memory_total = psutil.virtual_memory().total
    info = NodeInfo(
        node="n1",
        hostname="live-host",
        os="Linux",
        cpu_count=psutil.cpu_count() or 1,
        memory_total=memory_total,
        agent_version="test",
        instance="i-1",
    )
    agent.send(Kind.HELLO, "NodeInfo", info, node="n1", seq=1)
    agent.expect(lambda e: e.kind == Kind.HELLO, what="HELLO answer")
    return info


def psutil_sample(t: float) -> SystemStats:
    """A sample whose memory block is exactly what psutil gives on this machine."""
    stats = sample(t)
    vm = psutil.virtual_memory()
    stats.memory.CopyFrom(
        Memory(total=vm.total, available=vm.available, used=vm.used, free=vm.free, percent=vm.percent)
    )
    return stats


def send_reports(agent: Peer, samples: list[SystemStats]) -> None:
    for seq, stats in enumerate(samples, start=1):
        agent.send(Kind.REPORT, "SystemStats", stats, node="n1", seq=seq, time=stats.time)
    agent.expect(lambda e: e.kind == Kind.ACK and e.seq == len(samples), what=f"ACK {len(samples)}")


@pytest.mark.timeout(60)
def test_requests_through_the_collector(live: tuple[Peer, Client]) -> None:
    agent, client = live
    info = hello(agent)
    now = time.time()
    samples = [psutil_sample(now + i) for i in range(3)]
    send_reports(agent, samples)

    nodes = client.answer("NodeList")
    assert [(s.node, s.hostname, s.status, s.last_seq) for s in nodes.nodes] == [("n1", "live-host", "live", 3)]
    assert nodes.nodes[0].memory_total == info.memory_total

    latest = client.answer("SystemStats", node="n1")
    assert latest.SerializeToString() == samples[-1].SerializeToString()
    assert latest.memory.total == psutil.virtual_memory().total

    history = client.answer("SystemStatsHistory", node="n1", since=repr(samples[0].time))
    assert [s.time for s in history.samples] == [samples[1].time, samples[2].time]

    missing = client.ask("SystemStats", node="zz")
    assert (missing.kind, missing.error_code) == (Kind.ERROR, "not-found")
    bad = client.ask("SystemStats")
    assert (bad.kind, bad.error_code) == (Kind.ERROR, "bad-request")
    unknown = client.ask("NodeList", node="zz")
    assert (unknown.kind, unknown.error_code) == (Kind.ERROR, "not-found")


@pytest.mark.timeout(60)
def test_updates_through_the_collector(live: tuple[Peer, Client]) -> None:
    agent, client = live
    hello(agent)
    send_reports(agent, [psutil_sample(time.time())])
    client.send(Kind.SUBSCRIBE, params={"types": "NodeList,SystemStatsSummary"})

    summary_env = client.expect(
        lambda e: e.kind == Kind.UPDATE and e.type == "SystemStatsSummary", what="SystemStatsSummary update"
    )
    assert (summary_env.encoding, summary_env.schema) == (Encoding.PROTOBUF, "labscope.SystemStatsSummary")
    summary = decode_payload(summary_env.payload, summary_env.encoding, summary_env.schema)
    assert [(s.node, s.hostname) for s in summary.nodes] == [("n1", "live-host")]

    agent.send(Kind.BYE, node="n1")

    def lost_list(env: Envelope) -> bool:
        if env.kind != Kind.UPDATE or env.type != "NodeList":
            return False
        decoded = decode_payload(env.payload, env.encoding, env.schema)
        return [s.status for s in decoded.nodes] == ["lost"]

    client.expect(lost_list, timeout=15, what="NodeList update showing n1 lost")
    # a lost node keeps its data
    assert client.answer("SystemStats", node="n1").memory.total == psutil.virtual_memory().total


def query(collector: str, *args: str) -> Any:
    """``labscope query`` as a user runs it; the JSON answer, or None while it fails."""
    done = subprocess.run(
        labscope_cmd("query", "--collector", collector, "--timeout", "2", *args),
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    return json.loads(done.stdout) if done.returncode == 0 else None


@pytest.mark.timeout(90)
def test_real_agent_stats_are_exactly_psutils(procs: ProcessGroup) -> None:
    collector = procs.collector("--update-interval", "0.2")
    procs.agent(collector.agents, "n1", interval=0.2)
    latest = wait_for(
        lambda: query(collector.clients, "SystemStats", "node=n1"),
        timeout=30,
        interval=0.3,
        what="a SystemStats answer for n1",
    )
    assert latest["memory"]["total"] == psutil.virtual_memory().total
    assert isinstance(latest["memory"]["total"], int)
    nodes = query(collector.clients, "NodeList")
    assert [(n["node"], n["hostname"], n["status"]) for n in nodes["nodes"]] == [("n1", socket.gethostname(), "live")]
    history = wait_for(
        lambda: (h := query(collector.clients, "SystemStatsHistory", "node=n1")) and len(h["samples"]) >= 2 and h,
        timeout=30,
        interval=0.3,
        what="two samples of history",
    )
    times = [s["time"] for s in history["samples"]]
    assert times == sorted(times)
