"""Requests forwarded to a node and relayed back, with credit flow control (a hand-played agent)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest
import zmq

from messages import Kind, NodeInfo
from tests.conftest import CollectorProcess, ProcessGroup
from tests.wire import Client, Peer

pytestmark = pytest.mark.e2e


@pytest.fixture
def collector(procs: ProcessGroup) -> CollectorProcess:
    return procs.collector("--node-timeout", "2")


@pytest.fixture
def peers(collector: CollectorProcess, zmq_context: zmq.Context) -> Iterator[tuple[Peer, Client]]:
    agent, client = Peer(zmq_context, collector.agents), Client(zmq_context, collector.clients)
    info = NodeInfo(node="n1", hostname="h", instance="i1", request_types=["Echo", "NodeFile"])
    agent.send(Kind.HELLO, "NodeInfo", info, node="n1", seq=1)
    agent.expect(lambda e: e.kind == Kind.ACK, what="ACK after HELLO")
    yield agent, client
    agent.close()
    client.close()


def test_request_is_forwarded_and_the_answer_relayed(peers: tuple[Peer, Client]) -> None:
    agent, client = peers
    client.send(Kind.REQUEST, "Echo", request_id=77, params={"node": "n1", "word": "hi"})
    forwarded = agent.expect(lambda e: e.kind == Kind.REQUEST, what="forwarded REQUEST")
    assert forwarded.type == "Echo" and forwarded.params["word"] == "hi"
    agent.send(Kind.RESPONSE, "Echo", {"echo": "hi"}, request_id=forwarded.request_id)
    answer = client.expect(lambda e: e.kind == Kind.RESPONSE, what="relayed RESPONSE")
    assert answer.request_id == 77
    from messages.codec import decode_payload

    assert decode_payload(answer.payload, answer.encoding) == {"echo": "hi"}


def test_stream_relays_chunks_and_credit(peers: tuple[Peer, Client]) -> None:
    agent, client = peers
    client.send(Kind.REQUEST, "NodeFile", request_id=5, params={"node": "n1", "path": "x", "credit": "2"})
    request = agent.expect(lambda e: e.kind == Kind.REQUEST, what="forwarded REQUEST")
    assert request.params["credit"] == "2"
    rid = request.request_id
    pieces = [b"a" * 10, b"b" * 10, b"c" * 5]
    for seq, piece in enumerate(pieces[:2]):
        agent.send(Kind.CHUNK, "NodeFile", piece, request_id=rid, seq=seq)
    got = [client.expect(lambda e, s=s: e.kind == Kind.CHUNK and e.seq == s, what=f"chunk {s}") for s in (0, 1)]
    assert [g.payload for g in got] == pieces[:2] and {g.request_id for g in got} == {5}
    client.send(Kind.CREDIT, request_id=5, seq=1)
    credit = agent.expect(lambda e: e.kind == Kind.CREDIT, what="relayed CREDIT")
    assert (credit.request_id, credit.seq) == (rid, 1)
    digest = hashlib.sha256(b"".join(pieces)).hexdigest()
    agent.send(
        Kind.CHUNK, "NodeFile", pieces[2], request_id=rid, seq=2, last=True, params={"size": "25", "sha256": digest}
    )
    last = client.expect(lambda e: e.kind == Kind.CHUNK and e.last, what="last chunk")
    assert last.params["sha256"] == digest
    client.send(Kind.CREDIT, request_id=5, seq=1)  # after the end: nobody waits, counted, harmless
    assert client.answer("CollectorStats")["counters"]["client-stale-credit"] == 1


def test_unknown_and_lost_nodes_fail_at_once(peers: tuple[Peer, Client]) -> None:
    agent, client = peers
    unknown = client.ask("Echo", node="nobody")
    assert (unknown.kind, unknown.error_code) == (Kind.ERROR, "not-found")
    agent.send(Kind.BYE, node="n1")
    lost = client.ask("Echo", node="n1")
    assert (lost.kind, lost.error_code) == (Kind.ERROR, "node-lost")


def test_node_lost_while_answering_fails_the_request(peers: tuple[Peer, Client]) -> None:
    agent, client = peers
    client.send(Kind.REQUEST, "Echo", request_id=9, params={"node": "n1"})
    agent.expect(lambda e: e.kind == Kind.REQUEST, what="forwarded REQUEST")
    # the agent goes silent: after the 2 s node timeout the request must fail, not hang
    error = client.expect(lambda e: e.kind == Kind.ERROR and e.request_id == 9, timeout=10, what="node-lost")
    assert error.error_code == "node-lost"


def test_a_type_the_agent_does_not_list_is_unknown_type_at_once(
    peers: tuple[Peer, Client], zmq_context: zmq.Context, collector: CollectorProcess
) -> None:
    agent, client = peers  # n1 lists Echo and NodeFile
    refused = client.ask("ProcessList", node="n1")
    assert (refused.kind, refused.error_code, refused.type) == (Kind.ERROR, "unknown-type", "ProcessList")
    assert "n1" in refused.error and "Echo, NodeFile" in refused.error
    assert agent.socket.poll(300) == 0, "the agent must not be asked"
    blind = Peer(zmq_context, collector.agents)  # lists nothing: asked anything
    try:
        blind.send(Kind.HELLO, "NodeInfo", NodeInfo(node="n2", hostname="h", instance="i2"), node="n2", seq=1)
        blind.expect(lambda e: e.kind == Kind.ACK, what="ACK after HELLO")
        client.send(Kind.REQUEST, "ProcessList", request_id=31, params={"node": "n2"})
        assert blind.expect(lambda e: e.kind == Kind.REQUEST, what="forwarded REQUEST").type == "ProcessList"
    finally:
        blind.close()
