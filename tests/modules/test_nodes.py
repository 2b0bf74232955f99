"""The ``nodes`` module, without sockets: NodeList from the collector's records, change detection, errors."""

from __future__ import annotations

import pytest

from collector.addons import Request, RequestError, as_names
from collector.testing import StubCollector, attach
from messages import NodeList
from messages.codec import decode_payload, encode_payload
from modules.nodes import Nodes


@pytest.fixture
def collector() -> StubCollector:
    stub = StubCollector()
    stub.add_node("n2", hostname="beta", first_seen=100.0, last_seen=110.0, last_seq=7, backlog=3, gaps=1, reconnects=2)
    stub.add_node("n10", hostname="gamma", first_seen=101.0, last_seen=111.0, status="lost", last_seq=70)
    stub.add_node("n1", hostname="alpha", first_seen=99.0, last_seen=112.0, last_seq=4)
    return stub


@pytest.fixture
def nodes(collector: StubCollector) -> Nodes:
    return attach(Nodes(), collector)


def test_declares_its_types() -> None:
    assert Nodes.name == "nodes"
    assert as_names(Nodes.requesttypes) == ("NodeList",)
    assert Nodes.updatetype == "NodeList"
    assert as_names(Nodes.reporttype) == ()


def test_node_list_sorted_with_every_field(nodes: Nodes) -> None:
    answer = nodes.processREQUEST(Request("NodeList"))
    assert isinstance(answer, NodeList)
    assert [s.node for s in answer.nodes] == ["n1", "n10", "n2"]
    n2 = answer.nodes[2]
    assert (n2.hostname, n2.agent_version, n2.os, n2.cpu_count, n2.memory_total) == (
        "beta",
        "0.1.0",
        "Linux",
        4,
        8_254_304_256,
    )
    assert (n2.first_seen, n2.last_seen, n2.status, n2.last_seq) == (100.0, 110.0, "live", 7)
    assert (n2.backlog, n2.gaps, n2.reconnects) == (3, 1, 2)
    assert answer.nodes[1].status == "lost"


def test_answer_survives_the_wire(nodes: Nodes) -> None:
    data, encoding, schema = encode_payload(nodes.processREQUEST(Request("NodeList")))
    assert schema == "labscope.NodeList"
    decoded = decode_payload(data, encoding, schema)
    assert [s.hostname for s in decoded.nodes] == ["alpha", "gamma", "beta"]


def test_node_param_narrows_to_one(nodes: Nodes) -> None:
    answer = nodes.processREQUEST(Request("NodeList", {"node": "n10"}))
    assert [(s.node, s.hostname, s.last_seq) for s in answer.nodes] == [("n10", "gamma", 70)]


def test_unknown_node_is_not_found(nodes: Nodes) -> None:
    with pytest.raises(RequestError) as info:
        nodes.processREQUEST(Request("NodeList", {"node": "nope"}))
    assert info.value.code == "not-found"
    assert "nope" in info.value.reason


def test_empty_collector_gives_empty_list() -> None:
    module = attach(Nodes(), StubCollector())
    assert list(module.processREQUEST(Request("NodeList")).nodes) == []


def test_first_update_then_none_when_unchanged(nodes: Nodes) -> None:
    first = nodes.getUpdateMessage()
    assert first is not None
    assert [s.node for s in first.nodes] == ["n1", "n10", "n2"]
    assert nodes.getUpdateMessage() is None
    assert nodes.getUpdateMessage() is None


@pytest.mark.parametrize(
    ("field", "value"),
    [("last_seen", 200.0), ("last_seq", 8), ("status", "lost"), ("backlog", 0), ("gaps", 5), ("reconnects", 3)],
)
def test_record_changes_are_pushed(nodes: Nodes, collector: StubCollector, field: str, value: object) -> None:
    assert nodes.getUpdateMessage() is not None
    setattr(collector.records["n2"], field, value)
    update = nodes.getUpdateMessage()
    assert update is not None
    assert getattr(update.nodes[2], field) == value
    assert nodes.getUpdateMessage() is None


def test_new_node_is_pushed(nodes: Nodes, collector: StubCollector) -> None:
    nodes.getUpdateMessage()
    collector.add_node("n0", hostname="zero")
    update = nodes.getUpdateMessage()
    assert update is not None
    assert [s.node for s in update.nodes] == ["n0", "n1", "n10", "n2"]


def test_hooks_force_a_push_even_if_records_look_the_same(nodes: Nodes, collector: StubCollector) -> None:
    nodes.getUpdateMessage()
    nodes.on_node_joined(collector.records["n1"])
    assert nodes.getUpdateMessage() is not None
    assert nodes.getUpdateMessage() is None
    nodes.on_node_left(collector.records["n2"])
    assert nodes.getUpdateMessage() is not None
    assert nodes.getUpdateMessage() is None


def test_joins_and_losses_publish_node_up(nodes: Nodes, collector: StubCollector) -> None:
    nodes.on_node_joined(collector.records["n1"])
    nodes.on_node_left(collector.records["n1"])
    nodes.on_node_joined(collector.records["n2"])
    assert [(p.code, p.value, p.node) for p in collector.published] == [
        ("n1/up", 1, "n1"),
        ("n1/up", 0, "n1"),
        ("n2/up", 1, "n2"),
    ]
