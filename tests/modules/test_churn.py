"""The ``churn`` module, without sockets: joins and losses, the start-up replay, silent and flapping nodes,
and its main() loop run and stopped by the module test kit."""

from __future__ import annotations

import logging
import time

import gevent
import pytest

from collector.addons import Request, RequestError
from collector.testing import StubCollector, attach
from messages import ConfigError
from modules.churn import Churn


@pytest.fixture
def stub() -> StubCollector:
    return StubCollector()


def test_replayed_nodes_are_known_but_not_counted_as_joins(stub: StubCollector) -> None:
    churn = attach(Churn(), stub)
    churn.on_node_joined(stub.add_node("old", status="lost", last_seen=time.time() - 100))  # the start-up replay
    live = stub.add_node("new", last_seen=time.time())
    churn.on_node_joined(live)
    answer = churn.processREQUEST(Request("NodeChurn"))
    assert list(answer["nodes"]) == ["new", "old"]
    assert (answer["nodes"]["old"]["joins"], answer["nodes"]["old"]["status"]) == (0, "lost")
    assert (answer["nodes"]["new"]["joins"], answer["nodes"]["new"]["changes"]) == (1, 1)


def test_flapping_node_and_one_node_asked_for(stub: StubCollector) -> None:
    churn = attach(Churn(), stub, flap_changes=3)
    record = stub.add_node("n1", last_seen=time.time())
    churn.on_node_joined(record)
    churn.on_node_left(record)
    churn.on_node_joined(record)
    answer = churn.processREQUEST(Request("NodeChurn", {"node": "n1"}))
    assert answer["flapping"] == ["n1"]
    assert (answer["nodes"]["n1"]["joins"], answer["nodes"]["n1"]["losses"]) == (2, 1)
    with pytest.raises(RequestError) as info:
        churn.processREQUEST(Request("NodeChurn", {"node": "ghost"}))
    assert info.value.code == "not-found"


def test_silent_node_is_marked_once_and_cleared_when_heard(
    stub: StubCollector, caplog: pytest.LogCaptureFixture
) -> None:
    churn = attach(Churn(), stub, silent_after=2.0)
    now = 1000.0
    record = stub.add_node("n1", last_seen=now - 5)
    stub.add_node("n2", last_seen=now)
    assert churn.check(now) == ["n1"]
    assert churn.check(now + 0.5) == ["n1"]
    assert caplog.text.count("node n1 silent") == 1
    record.last_seen = now + 1
    assert churn.check(now + 1) == []


def test_main_checks_until_the_shutdown_and_on_shutdown_logs(
    stub: StubCollector, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    churn = attach(Churn(), stub, check_interval=0.05, silent_after=0.0)
    stub.add_node("n1", last_seen=time.time() - 1)
    stub.start_mains()
    deadline = time.monotonic() + 5
    while not churn.checked and time.monotonic() < deadline:
        gevent.sleep(0.01)
    assert churn.processREQUEST(Request("NodeChurn"))["silent"] == ["n1"]
    started = time.monotonic()
    stub.shutdown()
    assert time.monotonic() - started < stub.grace
    assert stub.errors == []
    assert "1 nodes: 0 joins, 0 losses" in caplog.text


def test_config_is_checked() -> None:
    with pytest.raises(ConfigError):
        attach(Churn(), StubCollector(), check_interval=0)
