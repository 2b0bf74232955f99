"""The audit trail and the limits of a real collector: real processes, real sockets on 127.0.0.1.

What is checked: ``labscope fetch`` and a ProcessList appear in ``Audit`` with
who / what / when / node / outcome; the entry is on disk before the request
leaves (a SIGKILL right after forwarding loses nothing); a flooding client
gets ``busy`` while another is served; max_nodes and the stream limit refuse
with ``busy`` and count.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from messages import Kind, NodeInfo
from tests.conftest import REPO, CollectorProcess, ProcessGroup, labscope_cmd, wait_for
from tests.wire import Client, Peer

pytestmark = pytest.mark.e2e


def config_file(tmp_path: Path, **values: float) -> str:
    """A TOML config with ``values`` in its [collector] section."""
    path = tmp_path / f"collector-{len(list(tmp_path.glob('collector-*.toml')))}.toml"
    path.write_text("[collector]\n" + "".join(f"{key} = {value}\n" for key, value in values.items()))
    return str(path)


def query(collector: CollectorProcess, *words: str) -> object:
    """``labscope query`` as a user runs it: the answer it prints, as JSON."""
    done = subprocess.run(
        labscope_cmd("query", "--collector", collector.clients, *words),
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def hand_agent(zmq_context: zmq.Context, collector: CollectorProcess, node: str) -> Peer:
    """An agent played by hand: says HELLO for ``node`` and never answers a request."""
    agent = Peer(zmq_context, collector.agents)
    agent.send(Kind.HELLO, "NodeInfo", NodeInfo(node=node, hostname="h", instance="i1"), node=node, seq=1)
    agent.expect(lambda e: e.kind == Kind.ACK, what=f"ACK after {node}'s HELLO")
    return agent


@pytest.fixture
def client(zmq_context: zmq.Context) -> Iterator[list[Client]]:
    """Clients the test opens (through the returned list), closed at teardown."""
    opened: list[Client] = []
    yield opened
    for c in opened:
        c.close()


def test_fetch_and_process_list_appear_in_audit_with_their_outcomes(
    procs: ProcessGroup, zmq_context: zmq.Context, tmp_path: Path
) -> None:
    serve = tmp_path / "serve"
    serve.mkdir()
    (serve / "result.csv").write_bytes(b"x,y\n" * 50000)  # 200 kB: two-part chunks
    collector = procs.collector()
    procs.agent(collector.agents, "n1", "--serve-dir", str(serve))
    watcher = Client(zmq_context, collector.clients)
    wait_for(lambda: (s := watcher.node("n1")) is not None and s.status == "live", 20, what="n1 live")
    watcher.close()
    started = time.time()

    out = tmp_path / "fetched.csv"
    fetched = subprocess.run(
        labscope_cmd("fetch", "--collector", collector.clients, "n1:result.csv", "-o", str(out)),
        capture_output=True,
        timeout=30,
        cwd=REPO,
    )
    assert fetched.returncode == 0, fetched.stderr
    denied = subprocess.run(
        labscope_cmd("fetch", "--collector", collector.clients, "n1:/etc/hostname", "-o", str(tmp_path / "no")),
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
    )
    assert denied.returncode != 0 and "denied" in denied.stderr
    assert isinstance(query(collector, "ProcessList", "node=n1"), list)

    entries = query(collector, "Audit", "node=n1")  # answered by the collector, not forwarded to n1
    assert isinstance(entries, list)
    assert [(e["type"], e["params"].get("path")) for e in entries] == [
        ("NodeFile", "result.csv"),
        ("NodeFile", "/etc/hostname"),
        ("ProcessList", None),
    ]
    assert [e["outcome"] for e in entries] == ["ok", "denied", "ok"]
    assert entries[0]["bytes"] == out.stat().st_size == 200_000
    for entry in entries:
        assert entry["who"] == "127.0.0.1" and entry["fingerprint"] == "" and entry["node"] == "n1"
        assert started - 1 <= entry["time"] <= entry["finished"] <= time.time() + 1
    assert query(collector, "Audit", "node=n2") == []
    assert len(query(collector, "Audit", "since=0", "limit=1")) == 1


def test_the_entry_is_durable_before_the_request_is_forwarded(
    procs: ProcessGroup, zmq_context: zmq.Context, client: list[Client]
) -> None:
    collector = procs.collector()
    agent = hand_agent(zmq_context, collector, "mute")
    asker = Client(zmq_context, collector.clients)
    client.append(asker)
    asker.send_request("ProcessList", node="mute")
    agent.expect(lambda e: e.kind == Kind.REQUEST, what="the forwarded REQUEST")  # it has left the collector
    collector.popen.send_signal(signal.SIGKILL)
    collector.popen.wait(10)
    agent.close()

    restarted = procs.collector(data_dir=collector.data_dir)
    (entry,) = query(restarted, "Audit")
    assert (entry["type"], entry["node"], entry["who"], entry["outcome"]) == ("ProcessList", "mute", "127.0.0.1", None)


def test_a_flooding_client_gets_busy_while_another_is_served(
    procs: ProcessGroup, zmq_context: zmq.Context, tmp_path: Path, client: list[Client]
) -> None:
    collector = procs.collector("--config", config_file(tmp_path, client_request_rate=20, client_request_burst=20))
    flood, calm = Client(zmq_context, collector.clients), Client(zmq_context, collector.clients)
    client.extend((flood, calm))
    ids = [flood.send_request("CollectorStats") for _ in range(2000)]  # flat out, nothing awaited
    answers = [flood.expect(lambda e, i=i: e.request_id == i, what=f"answer {i}") for i in ids]
    busy = [a for a in answers if a.kind == Kind.ERROR]
    assert busy and all(a.error_code == "busy" and "request rate" in a.error for a in busy)
    assert len(answers) - len(busy) >= 20  # the burst at least went through
    flood.send_request("CollectorStats")  # still flooding while the calm client asks
    for _ in range(5):  # within the calm client's own burst: every one answered
        stats = calm.answer("CollectorStats")
    assert stats["counters"]["client-throttled"] >= len(busy)


def test_max_nodes_refuses_a_new_node_and_counts_it(
    procs: ProcessGroup, zmq_context: zmq.Context, tmp_path: Path, client: list[Client]
) -> None:
    collector = procs.collector("--config", config_file(tmp_path, max_nodes=1))
    first = hand_agent(zmq_context, collector, "n1")
    second = Peer(zmq_context, collector.agents)
    second.send(Kind.HELLO, "NodeInfo", NodeInfo(node="n2", hostname="h2", instance="i2"), node="n2", seq=1)
    refusal = second.expect(lambda e: e.kind == Kind.ERROR, what="refusal of n2")
    assert refusal.error_code == "busy" and "max_nodes" in refusal.error and refusal.node == "n2"
    first.send(Kind.HELLO, "NodeInfo", NodeInfo(node="n1", hostname="h", instance="i1"), node="n1", seq=1)
    first.expect(lambda e: e.kind == Kind.ACK, what="n1, already known, welcome again")
    asker = Client(zmq_context, collector.clients)
    client.append(asker)
    stats = asker.answer("CollectorStats")
    assert stats["counters"]["nodes-refused"] == 1 and stats["nodes"]["total"] == 1
    first.close()
    second.close()


def test_a_client_over_its_stream_limit_gets_busy(
    procs: ProcessGroup, zmq_context: zmq.Context, tmp_path: Path, client: list[Client]
) -> None:
    collector = procs.collector("--config", config_file(tmp_path, client_max_streams=2))
    agent = hand_agent(zmq_context, collector, "slow")
    streamer, other = Client(zmq_context, collector.clients), Client(zmq_context, collector.clients)
    client.extend((streamer, other))
    for path in ("a", "b"):
        streamer.send_request("NodeFile", node="slow", path=path, credit="4")
        agent.expect(lambda e, p=path: e.kind == Kind.REQUEST and e.params["path"] == p, what=f"stream {path}")
    third = streamer.ask("NodeFile", node="slow", path="c", credit="4")
    assert third.kind == Kind.ERROR and third.error_code == "busy" and "streams" in third.error
    other.send_request("NodeFile", node="slow", path="d", credit="4")  # another client has its own streams
    agent.expect(lambda e: e.kind == Kind.REQUEST and e.params["path"] == "d", what="the other client's stream")
    assert streamer.answer("CollectorStats")["counters"]["client-streams-refused"] == 1
    entries = query(collector, "Audit")
    assert [e["params"]["path"] for e in entries] == ["a", "b", "d"]
    agent.close()


def test_frames_over_max_frame_bytes_are_refused_on_both_endpoints(
    procs: ProcessGroup, zmq_context: zmq.Context, tmp_path: Path, client: list[Client]
) -> None:
    collector = procs.collector("--config", config_file(tmp_path, max_frame_bytes=4096))
    big = Client(zmq_context, collector.clients)
    agent = Peer(zmq_context, collector.agents)
    client.append(big)
    big.socket.send(b"\x0a" * 5000)
    refusal = big.expect(lambda e: e.kind == Kind.ERROR, what="refusal of the big frame")
    assert refusal.error_code == "bad-frame" and "4096" in refusal.error
    agent.socket.send(b"\x0a" * 5000)  # an agent's oversized frame is dropped without an answer
    wait_for(lambda: big.answer("CollectorStats")["counters"].get("oversized") == 1, 10, what="agents' count")
    assert big.answer("CollectorStats")["counters"]["client-oversized"] == 1
    agent.close()


def test_timeout_node_lost_and_refusals_are_outcomes(
    procs: ProcessGroup, zmq_context: zmq.Context, tmp_path: Path, client: list[Client]
) -> None:
    collector = procs.collector("--config", config_file(tmp_path, node_request_timeout=0.5))
    agent = hand_agent(zmq_context, collector, "mute")
    asker = Client(zmq_context, collector.clients)
    client.append(asker)
    assert asker.ask("ProcessList", node="mute").error_code == "timeout"
    asker.send_request("RunProbe", node="mute", name="x")
    agent.expect(lambda e: e.kind == Kind.REQUEST and e.type == "RunProbe", what="the forwarded RunProbe")
    agent.send(Kind.BYE, node="mute")
    asker.expect(lambda e: e.kind == Kind.ERROR and e.error_code == "node-lost", what="node-lost")
    assert asker.ask("ProcessList", node="nobody").error_code == "not-found"
    entries = query(collector, "Audit")
    assert [(e["type"], e["node"], e["outcome"]) for e in entries] == [
        ("ProcessList", "mute", "timeout"),
        ("RunProbe", "mute", "node-lost"),
        ("ProcessList", "nobody", "not-found"),
    ]
    assert all(e["bytes"] is None for e in entries)
    agent.close()
