"""The collector over real sockets: bad input survives, ACKs, duplicates, classic modules, real agents."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from messages import Encoding, Envelope, File, Files, Kind, NodeInfo
from messages.codec import decode_payload, envelope, pack
from tests.conftest import FIXTURES, CollectorProcess, ProcessGroup, wait_for
from tests.wire import Client, Peer

pytestmark = pytest.mark.e2e

MODULES = str(FIXTURES / "modules")


@pytest.fixture
def collector(procs: ProcessGroup) -> CollectorProcess:
    """A collector with the fixture modules (classic, counter, raising) and fast updates."""
    return procs.collector("--modules-dir", MODULES, "--disable-module", "files", "--update-interval", "0.1")


@pytest.fixture
def peers(collector: CollectorProcess, zmq_context: zmq.Context) -> Iterator[tuple[Peer, Client]]:
    agent, client = Peer(zmq_context, collector.agents), Client(zmq_context, collector.clients)
    yield agent, client
    agent.close()
    client.close()


def hello(agent: Peer, node: str = "n1", seq: int = 1) -> None:
    agent.send(Kind.HELLO, "NodeInfo", NodeInfo(node=node, hostname="h", instance="i1"), node=node, seq=seq)
    agent.expect(lambda e: e.kind == Kind.ACK and e.node == node, what="ACK after HELLO")


def report(node: str, seq: int, type: str = "ProbeData") -> Envelope:
    return envelope(Kind.REPORT, type, {"seq": seq}, node=node, seq=seq)


def counter_seqs(client: Client, node: str = "n1") -> list[int]:
    return client.answer("CounterStats").get(node, {}).get("seqs", [])


def test_garbage_frames_are_counted_and_the_collector_keeps_serving(peers: tuple[Peer, Client]) -> None:
    agent, client = peers
    raw = agent.socket
    raw.send(b"\xff\xfe not a protobuf at all")
    raw.send(b"")  # a batch with no envelopes
    raw.send(pack([Envelope(kind=99, node="n1")]))  # unknown kind
    raw.send(pack([Envelope(kind=Kind.KIND_UNSPECIFIED)]))  # kind 0 is never valid
    raw.send_multipart([b"two", b"parts"])
    raw.send(b"\x00" * (20 * 1024 * 1024))  # 20 MB: over the 16 MiB frame limit
    client.socket.send(b"garbage from a client")
    error = client.expect(lambda e: e.kind == Kind.ERROR, what="ERROR for a bad client frame")
    assert error.error_code == "bad-frame"

    def counted() -> dict[str, int] | None:
        counters = client.answer("CollectorStats")["counters"]
        keys = ("bad-frame", "empty", "unknown-kind", "oversized")
        return counters if all(counters.get(k) for k in keys) else None

    counters = wait_for(counted, timeout=15, what="bad frames counted")
    assert counters["unknown-kind"] == 2
    assert counters["oversized"] == 1
    assert counters["bad-frame"] == 2  # the garbage and the two-part message
    assert client.answer("NodeList").nodes == []
    hello(agent)
    agent.send(Kind.REPORT, "ProbeData", {"x": 1}, node="n1", seq=1)
    agent.expect(lambda e: e.kind == Kind.ACK and e.seq == 1, what="ACK 1")


def test_report_before_hello_gets_hello_required(peers: tuple[Peer, Client]) -> None:
    agent, client = peers
    agent.socket.send(pack([report("n1", 1)]))
    error = agent.expect(lambda e: e.kind == Kind.ERROR, what="hello-required")
    assert error.error_code == "hello-required"
    assert counter_seqs(client) == []


def test_acks_are_cumulative_and_duplicates_dropped(peers: tuple[Peer, Client]) -> None:
    agent, client = peers
    hello(agent)
    agent.socket.send(pack([report("n1", seq) for seq in range(1, 51)]))
    agent.expect(lambda e: e.kind == Kind.ACK and e.seq == 50, what="ACK 50")
    assert not [e for e in agent.seen if e.kind == Kind.ACK], "one batch must get one ACK"
    agent.socket.send(pack([report("n1", seq) for seq in range(45, 56)]))
    agent.expect(lambda e: e.kind == Kind.ACK and e.seq == 55, what="ACK 55")
    assert counter_seqs(client) == list(range(1, 56))
    assert client.answer("CollectorStats")["counters"]["duplicates"] == 6


def test_a_raising_module_does_not_stop_another_on_the_same_type(peers: tuple[Peer, Client]) -> None:
    agent, client = peers
    hello(agent)
    agent.socket.send(pack([report("n1", seq, "SystemStats") for seq in (1, 2, 3)]))
    agent.expect(lambda e: e.kind == Kind.ACK and e.seq == 3, what="ACK 3")
    assert counter_seqs(client) == [1, 2, 3]
    counters = client.answer("CollectorStats")["counters"]
    assert counters["module-error:raising"] == 3
    assert client.answer("RaisingCalls") == {"calls": 3}
    failed = client.ask("RaisingRequest")
    assert (failed.kind, failed.error_code) == (Kind.ERROR, "module-error")
    assert "raising" in failed.error


def test_unknown_request_type_is_an_error_with_a_reason(peers: tuple[Peer, Client]) -> None:
    _, client = peers
    failed = client.ask("NoSuchThing")
    assert (failed.kind, failed.error_code) == (Kind.ERROR, "unknown-type")
    assert "NoSuchThing" in failed.error and "NodeList" in failed.error


def test_classic_module_answers_bytes_untouched_and_pushes_updates(peers: tuple[Peer, Client]) -> None:
    agent, client = peers
    hello(agent)
    files = Files(files=[File(name="log.txt", modtime=123.5, data=b"hello\x00world")])
    agent.send(Kind.REPORT, "FileOutput", files.SerializeToString(), node="n1", seq=1)
    agent.expect(lambda e: e.kind == Kind.ACK and e.seq == 1, what="ACK 1")

    listing = client.ask("FileList")
    assert listing.kind == Kind.RESPONSE and listing.encoding == Encoding.RAW
    assert listing.payload == Files(files=[File(name="log.txt", modtime=123.5)]).SerializeToString()
    one = client.ask("File", filename="log.txt")
    assert one.payload == files.SerializeToString()
    missing = client.ask("File", filename="nope")
    assert (missing.kind, missing.error_code) == (Kind.ERROR, "not-found")

    client.send(Kind.SUBSCRIBE, params={"types": "FileList"})
    update = client.expect(lambda e: e.kind == Kind.UPDATE and e.type == "FileList", what="FileList update")
    assert Files.FromString(update.payload).files[0].name == "log.txt"
    client.seen.clear()
    files2 = Files(files=[File(name="b.csv", modtime=1.0, data=b"1,2")])
    agent.send(Kind.REPORT, "FileOutput", files2.SerializeToString(), node="n1", seq=2)
    pushed = client.expect(
        lambda e: e.kind == Kind.UPDATE and len(Files.FromString(e.payload).files) == 2,
        what="FileList update with two files",
    )
    assert [f.name for f in Files.FromString(pushed.payload).files] == ["b.csv", "log.txt"]


def test_subscription_lapses_without_renewal(procs: ProcessGroup, zmq_context: zmq.Context) -> None:
    collector = procs.collector(
        "--modules-dir",
        MODULES,
        "--disable-module",
        "files",
        "--update-interval",
        "0.1",
        "--config",
        str(_lease_config(procs.tmp_path)),
    )
    agent, client = Peer(zmq_context, collector.agents), Client(zmq_context, collector.clients)
    hello(agent)
    client.send(Kind.SUBSCRIBE, params={"types": "FileList"})
    for seq in range(1, 4):
        agent.send(
            Kind.REPORT, "FileOutput", Files(files=[File(name=f"f{seq}")]).SerializeToString(), node="n1", seq=seq
        )
        client.expect(
            lambda e, n=seq: e.kind == Kind.UPDATE and len(Files.FromString(e.payload).files) == n, what=f"update {seq}"
        )
    time.sleep(1.2)  # let the 1 s lease run out: the behaviour under test is the passage of time
    agent.send(Kind.REPORT, "FileOutput", Files(files=[File(name="late")]).SerializeToString(), node="n1", seq=4)
    agent.expect(lambda e: e.kind == Kind.ACK and e.seq == 4, what="ACK 4")
    assert client.socket.poll(500) == 0, "an expired subscription must not receive updates"


def _lease_config(folder: Path) -> Path:
    path = folder / "lease.toml"
    path.write_text("[collector]\nsubscription_lease = 1.0\n")
    return path


@pytest.mark.timeout(90)
def test_three_real_agents_appear_and_a_probe_reaches_a_module(procs: ProcessGroup, zmq_context: zmq.Context) -> None:
    collector = procs.collector("--modules-dir", MODULES, "--disable-module", "files", "--update-interval", "0.2")
    probes = str(FIXTURES / "probes_data")
    for index in (1, 2, 3):
        procs.agent(collector.agents, f"node-{index}", "--probes-dir", probes, interval=0.2)
    client = Client(zmq_context, collector.clients)

    def all_live() -> list[str] | None:
        nodes = client.answer("NodeList").nodes
        names = [n.node for n in nodes if n.status == "live"]
        return names if len(names) == 3 else None

    assert wait_for(all_live, timeout=30, what="three live nodes") == ["node-1", "node-2", "node-3"]

    def probe_data_counted() -> dict | None:
        stats = client.answer("CounterStats")
        return stats if all(len(stats.get(f"node-{i}", {}).get("seqs", [])) >= 5 for i in (1, 2, 3)) else None

    stats = wait_for(probe_data_counted, timeout=30, what="ProbeData from every node")
    for node in stats.values():
        assert node["seqs"] == sorted(set(node["seqs"])), "in order, exactly once"
    summary = client.answer("CollectorStats")
    assert summary["nodes"] == {"total": 3, "live": 3}


def test_push_on_change_module_updates_right_after_a_report(procs: ProcessGroup, zmq_context: zmq.Context) -> None:
    mods = procs.tmp_path / "pushmods"
    mods.mkdir()
    (mods / "latest.py").write_text(
        "from collector.addons import Aggregator\n\n"
        "class Latest(Aggregator):\n    reporttype = 'ProbeData'\n    updatetype = 'Latest'\n"
        "    update_interval = 0\n"
        "    def __init__(self):\n        self.seq = None\n        self.sent = None\n"
        "    def processReport(self, msg):\n        self.seq = msg.seq\n"
        "    def getUpdateMessage(self):\n"
        "        if self.seq == self.sent:\n            return None\n"
        "        self.sent = self.seq\n        return {'seq': self.seq}\n"
    )
    # a 60 s default interval: only the push-on-change path can deliver these updates in time
    collector = procs.collector("--modules-dir", str(mods), "--update-interval", "60")
    agent, client = Peer(zmq_context, collector.agents), Client(zmq_context, collector.clients)
    hello(agent)
    client.send(Kind.SUBSCRIBE, params={"types": "Latest"})
    for seq in (1, 2, 3):
        agent.send(Kind.REPORT, "ProbeData", {"n": seq}, node="n1", seq=seq)
        update = client.expect(
            lambda e, s=seq: (
                e.kind == Kind.UPDATE and e.type == "Latest" and decode_payload(e.payload, e.encoding) == {"seq": s}
            ),
            timeout=5,
            what=f"pushed update for seq {seq}",
        )
        assert update.type == "Latest"
