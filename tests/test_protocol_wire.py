"""docs/protocol.md's promises over real sockets: subscriptions, CollectorInfo, bad input, counters, streams."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest
import zmq

from messages import CollectorInfo, Encoding, Envelope, Kind, NodeInfo
from messages.codec import decode_payload, envelope, pack
from tests.conftest import CollectorProcess, ProcessGroup
from tests.wire import Client, Peer

pytestmark = pytest.mark.e2e

KNOWN_UPDATES = "(known: Events, FileList, Latest, NodeList, SystemStatsSummary; '*' for every type)"

PUSHER = """
from collector.addons import Aggregator


class Latest(Aggregator):
    reporttype = "ProbeData"
    updatetype = "Latest"
    update_interval = 0

    def processReport(self, msg):
        pass

    def getUpdateMessage(self):
        return None
"""

STREAMER = """
from collector.addons import Aggregator


class Streamer(Aggregator):
    requesttypes = ("Stream",)

    def processREQUEST(self, msg):
        return (bytes([65 + i]) * 10 for i in range(int(msg.params["pieces"])))
"""


@pytest.fixture
def collector(procs: ProcessGroup) -> CollectorProcess:
    """A collector with the built-in modules, a push-on-change module and a streaming module."""
    mods = procs.tmp_path / "wiremods"
    mods.mkdir()
    (mods / "latest.py").write_text(PUSHER)
    (mods / "streamer.py").write_text(STREAMER)
    return procs.collector("--modules-dir", str(mods), "--update-interval", "0.25")


@pytest.fixture
def peers(collector: CollectorProcess, zmq_context: zmq.Context) -> Iterator[tuple[Peer, Client]]:
    agent, client = Peer(zmq_context, collector.agents), Client(zmq_context, collector.clients)
    yield agent, client
    agent.close()
    client.close()


def hello(agent: Peer, node: str = "n1", seq: int = 1, info_node: str | None = None) -> Envelope:
    info = NodeInfo(node=node if info_node is None else info_node, hostname="h", instance="i1")
    agent.send(Kind.HELLO, "NodeInfo", info, node=node, seq=seq)
    return agent.expect(lambda e: e.kind == Kind.ACK and e.node == node, what="ACK after HELLO")


def counters(client: Client) -> dict[str, int]:
    return client.answer("CollectorStats")["counters"]


def subscribe(client: Client, types: str | None, request_id: int) -> Envelope:
    """Send SUBSCRIBE and return its answer: the SUBSCRIBE acknowledgement or an ERROR."""
    client.send(Kind.SUBSCRIBE, request_id=request_id, params={} if types is None else {"types": types})
    return client.expect(
        lambda e: e.request_id == request_id and e.kind in (Kind.SUBSCRIBE, Kind.ERROR),
        what=f"answer to SUBSCRIBE {types}",
    )


# ---------------------------------------------------------------- CollectorInfo and HELLO


def test_collector_info_carries_each_update_types_interval(peers: tuple[Peer, Client]) -> None:
    _, client = peers
    client.send(Kind.HELLO)
    answer = client.expect(lambda e: e.kind == Kind.HELLO, what="HELLO answer")
    info = decode_payload(answer.payload, answer.encoding, answer.schema)
    assert isinstance(info, CollectorInfo)
    assert dict(info.update_intervals) == {
        "Events": 0.25,
        "FileList": 0.25,
        "NodeList": 0.25,
        "SystemStatsSummary": 0.25,
        "Latest": 0.0,
    }
    assert set(info.update_intervals) == set(info.update_types)


def test_a_client_may_request_without_hello(peers: tuple[Peer, Client]) -> None:
    _, client = peers
    assert client.answer("NodeList").nodes == []


def test_hello_seq_0_gets_ack_0_and_the_envelope_names_the_node_when_nodeinfo_does_not(
    peers: tuple[Peer, Client],
) -> None:
    agent, client = peers
    ack = hello(agent, node="from-envelope", seq=0, info_node="")
    assert ack.seq == 0
    assert [n.node for n in client.answer("NodeList").nodes] == ["from-envelope"]
    agent.send(Kind.REPORT, "ProbeData", {"x": 1}, node="from-envelope", seq=1)
    assert agent.expect(lambda e: e.kind == Kind.ACK, what="ACK 1").seq == 1


def test_a_report_of_an_unknown_type_is_acknowledged_and_counted_unrouted(peers: tuple[Peer, Client]) -> None:
    agent, client = peers
    hello(agent)
    agent.send(Kind.REPORT, "NoModuleTakesThis", {"x": 1}, node="n1", seq=1)
    assert agent.expect(lambda e: e.kind == Kind.ACK and e.seq == 1, what="ACK 1").node == "n1"
    found = counters(client)
    assert found["unrouted"] == 1 and found["reports"] == 1


# ---------------------------------------------------------------- subscriptions


def test_subscribe_is_acknowledged_with_the_types_and_the_lease(peers: tuple[Peer, Client]) -> None:
    _, client = peers
    ack = subscribe(client, "NodeList, Latest,NodeList", 41)
    assert ack.kind == Kind.SUBSCRIBE
    assert ack.params["types"] == "NodeList,Latest" and ack.params["lease"] == "10"
    star = subscribe(client, "*", 42)
    assert (star.kind, star.params["types"]) == (Kind.SUBSCRIBE, "*")


def test_an_invalid_subscribe_gets_error_and_leaves_the_subscription_as_it_was(peers: tuple[Peer, Client]) -> None:
    agent, client = peers
    assert subscribe(client, "NodeList", 1).kind == Kind.SUBSCRIBE
    refused = subscribe(client, "NodeList,NoSuchType,Nope", 2)
    assert (refused.kind, refused.error_code) == (Kind.ERROR, "unknown-type")
    assert refused.params["unknown"] == "NoSuchType,Nope"
    assert refused.params["types"] == "NodeList,NoSuchType,Nope"
    assert refused.error == f"no module pushes update types 'NoSuchType', 'Nope' {KNOWN_UPDATES}"
    for request_id, types in ((3, None), (4, ""), (5, " , ")):
        empty = subscribe(client, types, request_id)
        assert (empty.kind, empty.error_code) == (Kind.ERROR, "bad-request")
    client.seen.clear()
    hello(agent)  # a new node changes the NodeList: the NodeList subscription still delivers it
    update = client.expect(
        lambda e: (
            e.kind == Kind.UPDATE
            and e.type == "NodeList"
            and len(decode_payload(e.payload, e.encoding, e.schema).nodes) == 1
        ),
        what="NodeList update after the refused SUBSCRIBEs",
    )
    assert update.encoding == Encoding.PROTOBUF
    assert counters(client)["client-subscribe-refused"] == 4


def test_renewing_the_same_set_extends_a_changed_set_resends_the_latest(peers: tuple[Peer, Client]) -> None:
    agent, client = peers
    hello(agent)
    subscribe(client, "NodeList", 1)
    client.expect(lambda e: e.kind == Kind.UPDATE and e.type == "NodeList", what="latest NodeList")
    assert subscribe(client, "NodeList", 2).kind == Kind.SUBSCRIBE
    assert client.socket.poll(400) == 0, "renewing the same set must not resend the latest update"
    assert subscribe(client, "NodeList,Events", 3).kind == Kind.SUBSCRIBE
    resent = {client.expect(lambda e: e.kind == Kind.UPDATE, what="latest updates").type for _ in range(2)}
    assert resent == {"NodeList", "Events"}


# ---------------------------------------------------------------- bad input and counters


def test_bad_client_frames_are_answered_bad_frame_and_counted_under_client_names(peers: tuple[Peer, Client]) -> None:
    _, client = peers
    client.socket.send(b"\xff\xfe not a batch")
    client.socket.send(b"")
    client.socket.send_multipart([pack([envelope(Kind.HEARTBEAT)]), b"second part"])
    client.socket.send(pack([Envelope(kind=99)]))
    errors = [client.expect(lambda e: e.kind == Kind.ERROR, what=f"ERROR bad-frame {i}") for i in range(3)]
    assert {e.error_code for e in errors} == {"bad-frame"} and {e.request_id for e in errors} == {0}
    found = counters(client)
    assert (found["client-bad-frame"], found["client-empty"], found["client-unknown-kind"]) == (2, 1, 1)
    assert found["client-frames"] == 5  # the four above and the CollectorStats request
    assert found["client-envelopes"] == 2  # kind 99 and the request; a bad frame has none
    assert "bad-client-frame" not in found and "requests" not in found and found["client-requests"] == 1


def test_envelopes_are_counted_per_frame(peers: tuple[Peer, Client]) -> None:
    agent, client = peers
    hello(agent)
    agent.socket.send(pack([envelope(Kind.REPORT, "ProbeData", {"n": s}, node="n1", seq=s) for s in range(1, 51)]))
    agent.expect(lambda e: e.kind == Kind.ACK and e.seq == 50, what="ACK 50")
    found = counters(client)
    assert (found["frames"], found["envelopes"], found["reports"]) == (2, 51, 50)


# ---------------------------------------------------------------- streams


def chunks_of(client: Client, request_id: int, count: int) -> list[Envelope]:
    return [
        client.expect(
            lambda e, s=s: e.kind == Kind.CHUNK and e.request_id == request_id and e.seq == s, what=f"CHUNK {s}"
        )
        for s in range(count)
    ]


@pytest.mark.parametrize("pieces", [0, 1, 3])
def test_a_streamed_module_answer_is_typed_raw_chunks_the_last_carrying_data(
    peers: tuple[Peer, Client], pieces: int
) -> None:
    _, client = peers
    client.send(Kind.REQUEST, "Stream", request_id=7, params={"pieces": str(pieces)})
    got = chunks_of(client, 7, max(1, pieces))
    data = b"".join(c.payload for c in got)
    assert data == b"".join(bytes([65 + i]) * 10 for i in range(pieces))
    assert all(c.type == "Stream" and c.encoding == Encoding.RAW for c in got)
    assert [c.last for c in got] == [False] * (len(got) - 1) + [True]
    assert all(c.payload for c in got) or pieces == 0
    assert got[-1].params["size"] == str(len(data))
    assert got[-1].params["sha256"] == hashlib.sha256(data).hexdigest()
    assert client.socket.poll(300) == 0, "nothing follows the last chunk"


def test_a_module_stream_waits_for_credit_even_for_its_last_chunk(peers: tuple[Peer, Client]) -> None:
    _, client = peers
    client.send(Kind.REQUEST, "Stream", request_id=8, params={"pieces": "2", "credit": "1"})
    (first,) = chunks_of(client, 8, 1)
    assert client.socket.poll(400) == 0, "credit 1: the second chunk waits for a CREDIT"
    client.send(Kind.CREDIT, request_id=8, seq=1)
    last = client.expect(lambda e: e.kind == Kind.CHUNK and e.seq == 1, what="the last chunk")
    assert (first.last, last.last, last.payload) == (False, True, b"B" * 10)
