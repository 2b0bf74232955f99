"""One node's corrupt payload darkens nothing: a hand-played agent on a real socket, before and after a restart."""

from __future__ import annotations

import signal

import pytest
import zmq

from messages import Encoding, Event, File, Files, Kind, NodeInfo, Samples, SystemStats
from messages.codec import envelope, pack
from tests.conftest import ProcessGroup, wait_for
from tests.modules import sample
from tests.wire import Client, Peer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

GARBAGE = b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"  # a length prefix far past the end: never parses
PROTO = {"SystemStats": SystemStats, "Samples": Samples, "FileOutput": Files, "Event": Event}


def hello(agent: Peer, node: str, instance: str = "i1") -> None:
    agent.send(
        Kind.HELLO, "NodeInfo", NodeInfo(node=node, hostname=f"host-{node}", instance=instance), node=node, seq=1
    )
    agent.expect(lambda e: e.kind == Kind.ACK and e.node == node, what=f"ACK after HELLO of {node}")


def good(node: str, seq: int, type: str) -> object:
    payloads = {
        "SystemStats": sample(1000.0 + seq, cpu=float(seq)),
        "Samples": Samples(time=1000.0 + seq, names=["a"], values=[float(seq)]),
        "FileOutput": Files(files=[File(name=f"f{seq}.txt", data=b"x", size=1, last=True)]),
        "Event": Event(kind="note", message=f"good {seq}"),
    }
    return envelope(Kind.REPORT, type, payloads[type], node=node, seq=seq)


def corrupt(node: str, seq: int, type: str) -> object:
    env = envelope(Kind.REPORT, type, PROTO[type](), node=node, seq=seq)  # declares the right schema
    env.payload = GARBAGE
    return env


def send_mixed(agent: Peer, node: str) -> list[tuple[str, int]]:
    """Good and corrupt reports of each type, interleaved; returns the (type, seq) of the corrupt ones."""
    envelopes, bad, seq = [], [], 0
    for type in PROTO:
        for make in (good, corrupt, good):
            seq += 1
            envelopes.append(make(node, seq, type))
            if make is corrupt:
                bad.append((type, seq))
    agent.socket.send(pack(envelopes))
    agent.expect(lambda e: e.kind == Kind.ACK and e.seq == seq, what=f"ACK {seq}: bad reports are acknowledged")
    return bad


def check_views(client: Client, node: str, other: str) -> None:
    latest = client.answer("SystemStats", node=node)
    assert latest.cpu_percent == 3.0  # the good report after the corrupt one
    assert client.answer("SystemStats", node=other).cpu_percent == 3.0
    summary = client.answer("SystemStatsHistory", node=node)
    assert [s.cpu_percent for s in summary.samples] == [1.0, 3.0]
    assert list(client.answer("Samples", node=node).values) == [6.0]
    names = {f["name"] for f in client.answer("FileList", node=node)}
    assert names == {"f7.txt", "f9.txt"}


def test_corrupt_payloads_are_acked_counted_and_reach_no_module(
    procs: ProcessGroup, zmq_context: zmq.Context, tmp_path
) -> None:
    data_dir = tmp_path / "collector"
    collector = procs.collector("--update-interval", "0.1", data_dir=data_dir)
    agent, other = Peer(zmq_context, collector.agents), Peer(zmq_context, collector.agents)
    client = Client(zmq_context, collector.clients)
    client.send(Kind.SUBSCRIBE, params={"types": "SystemStatsSummary"})
    hello(agent, "bad-node")
    hello(other, "good-node")
    bad = send_mixed(agent, "bad-node")
    assert bad == [("SystemStats", 2), ("Samples", 5), ("FileOutput", 8), ("Event", 11)]
    send_mixed(other, "good-node")

    def summary_of_both(env) -> bool:
        if env.kind != Kind.UPDATE or env.type != "SystemStatsSummary":
            return False
        from messages import SystemStatsSummary

        nodes = SystemStatsSummary.FromString(env.payload).nodes
        return sorted((n.node, n.cpu_percent) for n in nodes) == [("bad-node", 3.0), ("good-node", 3.0)]

    client.expect(summary_of_both, what="SystemStatsSummary of both nodes after the corrupt reports")
    check_views(client, "bad-node", "good-node")

    stats = client.answer("CollectorStats")
    assert stats["bad_reports"] == {"bad-node": dict.fromkeys(PROTO, 1), "good-node": dict.fromkeys(PROTO, 1)}
    assert stats["counters"]["bad-report"] == 8
    assert stats["counters"].get("module-error", 0) == 0
    events = [e for e in client.answer("Events", node="bad-node") if e["kind"] == "bad-report"]
    assert sorted((e["attrs"]["type"], int(e["attrs"]["seq"])) for e in events) == sorted(bad)
    assert all("bad-node" in e["message"] for e in events)
    (status,) = client.answer("NodeList", node="bad-node").nodes
    assert status.bad_reports == 4

    # After a restart the journal replays the good reports and skips the corrupt ones the same way.
    for peer in (agent, other, client):
        peer.close()
    assert collector.stop(signal.SIGKILL) == -signal.SIGKILL
    collector = procs.collector("--update-interval", "0.1", data_dir=data_dir)
    client = Client(zmq_context, collector.clients)
    try:
        check_views(client, "bad-node", "good-node")
        counters = client.answer("CollectorStats")["counters"]
        assert counters.get("module-error", 0) == 0
        assert counters["bad-report-replayed"] >= 8  # once per module that takes the type, at least
    finally:
        client.close()


def test_msgpack_event_that_does_not_fit_is_a_bad_report(procs: ProcessGroup, zmq_context: zmq.Context) -> None:
    collector = procs.collector()
    agent, client = Peer(zmq_context, collector.agents), Client(zmq_context, collector.clients)
    try:
        hello(agent, "n1")
        raw = envelope(Kind.REPORT, "Event", {"kind": "x"}, node="n1", seq=2)
        assert raw.encoding == Encoding.MSGPACK
        raw.payload = b"\xc1"  # never valid msgpack
        agent.socket.send(
            pack(
                [
                    raw,
                    envelope(Kind.REPORT, "Event", {"kind": "x", "time": "not a time"}, node="n1", seq=3),
                    envelope(Kind.REPORT, "Event", {"kind": "fine", "message": "ok"}, node="n1", seq=4),
                ]
            )
        )
        agent.expect(lambda e: e.kind == Kind.ACK and e.seq == 4, what="ACK 4")
        stats = wait_for(lambda: (s := client.answer("CollectorStats"))["bad_reports"] and s, 10, what="counted")
        assert stats["bad_reports"] == {"n1": {"Event": 2}}
        kinds = [e["kind"] for e in client.answer("Events", node="n1")]
        assert kinds.count("bad-report") == 2 and "fine" in kinds
    finally:
        agent.close()
        client.close()
