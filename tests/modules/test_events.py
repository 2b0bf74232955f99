"""The ``events`` module, without sockets: Event reports in, requests and updates out."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from collector.addons import Report, Request, RequestError, as_names
from collector.settings import defaults
from collector.testing import StubCollector, attach
from messages import ConfigError, Encoding, Event
from messages.codec import decode_payload, encode_payload
from modules.events import DEFAULT_KEEP, UPDATE_LIMIT, EventsModule

SCHEMA = Event.DESCRIPTOR.full_name


def event_report(
    node: str,
    t: float,
    kind: str = "joined",
    severity: str = "info",
    message: str = "",
    report_node: str | None = None,
    **attrs: str,
) -> Report:
    """An Event report as the collector delivers it (its own events have seq 0)."""
    event = Event(time=t, node=node, kind=kind, severity=severity, message=message or f"{node} {kind}", attrs=attrs)
    return Report(
        node if report_node is None else report_node,
        "Event",
        0,
        t,
        event.SerializeToString(),
        Encoding.PROTOBUF,
        SCHEMA,
    )


@pytest.fixture
def events() -> EventsModule:
    return attach(EventsModule(), StubCollector())


def ask(module: EventsModule, **params: str) -> Any:
    return module.processREQUEST(Request("Events", params))


def test_declares_its_types() -> None:
    assert EventsModule.name == "events"
    assert as_names(EventsModule.reporttype) == ("Event",)
    assert as_names(EventsModule.requesttypes) == ("Events",)
    assert EventsModule.updatetype == "Events"
    assert defaults(EventsModule) == {"keep": DEFAULT_KEEP} == {"keep": 1000}
    assert EventsModule.options["keep"].minimum == 1


def test_request_returns_every_field_newest_first(events: EventsModule) -> None:
    events.processReport(event_report("n1", 100.0, "joined"))
    events.processReport(event_report("n2", 101.0, "joined"))
    events.processReport(event_report("n1", 102.5, "lost", "warning", "node n1 lost", reason="timeout"))
    answer = ask(events)
    assert [(e["node"], e["kind"]) for e in answer] == [("n1", "lost"), ("n2", "joined"), ("n1", "joined")]
    assert answer[0] == {
        "time": 102.5,
        "node": "n1",
        "kind": "lost",
        "severity": "warning",
        "message": "node n1 lost",
        "attrs": {"reason": "timeout"},
    }


def test_newest_first_by_event_time_not_arrival(events: EventsModule) -> None:
    # An agent resending after a reconnect delivers an older event late.
    events.processReport(event_report("n1", 200.0, "joined"))
    events.processReport(event_report("n2", 150.0, "gap"))
    assert [e["time"] for e in ask(events)] == [200.0, 150.0]


def test_since_is_strictly_after(events: EventsModule) -> None:
    for t in (10.0, 20.0, 30.0):
        events.processReport(event_report("n1", t))
    assert [e["time"] for e in ask(events, since="20")] == [30.0]
    assert [e["time"] for e in ask(events, since="5")] == [30.0, 20.0, 10.0]
    assert ask(events, since="30") == []
    assert [e["time"] for e in ask(events, since="")] == [30.0, 20.0, 10.0]


def test_node_filter(events: EventsModule) -> None:
    events.processReport(event_report("n1", 1.0))
    events.processReport(event_report("n2", 2.0))
    events.processReport(event_report("n1", 3.0, "lost"))
    assert [(e["node"], e["time"]) for e in ask(events, node="n1")] == [("n1", 3.0), ("n1", 1.0)]
    assert [e["node"] for e in ask(events, node="n2", since="1.5")] == ["n2"]
    assert ask(events, node="unknown") == []


@pytest.mark.parametrize("since", ["yesterday", "nan", "inf", "-inf"])
def test_bad_since_is_bad_request(events: EventsModule, since: str) -> None:
    with pytest.raises(RequestError) as info:
        ask(events, since=since)
    assert info.value.code == "bad-request"
    assert since in info.value.reason


def test_collector_event_without_node_keeps_empty_node(events: EventsModule) -> None:
    events.processReport(event_report("", 5.0, "module-error", "error", "module x raised", module="x"))
    (item,) = ask(events)
    assert (item["node"], item["kind"], item["severity"], item["attrs"]) == (
        "",
        "module-error",
        "error",
        {"module": "x"},
    )


def test_missing_time_node_and_severity_come_from_the_report(events: EventsModule) -> None:
    event = Event(kind="gap", message="3 reports missing")
    events.processReport(Report("n7", "Event", 12, 77.0, event.SerializeToString(), Encoding.PROTOBUF, SCHEMA))
    (item,) = ask(events)
    assert (item["time"], item["node"], item["severity"]) == (77.0, "n7", "info")


def test_msgpack_event_is_accepted(events: EventsModule) -> None:
    value = {"time": 9.0, "kind": "gap", "severity": "warning", "message": "gap", "attrs": {"missing": 3}}
    events.processReport(Report("n3", "Event", 4, 8.0, msgpack.packb(value), Encoding.MSGPACK))
    (item,) = ask(events)
    assert item == {
        "time": 9.0,
        "node": "n3",
        "kind": "gap",
        "severity": "warning",
        "message": "gap",
        "attrs": {"missing": "3"},
    }


def test_a_payload_that_is_no_event_raises(events: EventsModule) -> None:
    with pytest.raises(ValueError, match="not a labscope.Event"):
        events.processReport(Report("n1", "Event", 1, 1.0, b"\x01\x02", Encoding.RAW))
    assert ask(events) == []


def test_keep_bounds_the_buffer() -> None:
    module = attach(EventsModule(), StubCollector(), keep=3)
    for t in range(1, 6):
        module.processReport(event_report("n1", float(t)))
    assert [e["time"] for e in ask(module)] == [5.0, 4.0, 3.0]


@pytest.mark.parametrize("keep", [0, -1, 2.5, "10", True])
def test_bad_keep_refuses_to_start(keep: object) -> None:
    with pytest.raises(ConfigError, match="keep"):
        attach(EventsModule(), StubCollector(), keep=keep)


def test_update_only_when_changed_and_newest_first(events: EventsModule) -> None:
    assert events.getUpdateMessage() is None
    events.processReport(event_report("n1", 1.0))
    events.processReport(event_report("n2", 2.0))
    first = events.getUpdateMessage()
    assert [e["node"] for e in first] == ["n2", "n1"]
    assert events.getUpdateMessage() is None
    events.processReport(event_report("n3", 3.0))
    assert [e["node"] for e in events.getUpdateMessage()] == ["n3", "n2", "n1"]


def test_update_is_limited_to_the_latest(events: EventsModule) -> None:
    for t in range(UPDATE_LIMIT + 50):
        events.processReport(event_report("n1", float(t)))
    update = events.getUpdateMessage()
    assert len(update) == UPDATE_LIMIT == 200
    assert update[0]["time"] == UPDATE_LIMIT + 49
    assert update[-1]["time"] == 50.0
    assert len(ask(events)) == UPDATE_LIMIT + 50


def test_answers_survive_the_wire(events: EventsModule) -> None:
    events.processReport(event_report("n1", 1.5, "lost", "warning", reason="timeout"))
    data, encoding, schema = encode_payload(ask(events))
    assert encoding == Encoding.MSGPACK
    assert decode_payload(data, encoding, schema) == [
        {
            "time": 1.5,
            "node": "n1",
            "kind": "lost",
            "severity": "warning",
            "message": "n1 lost",
            "attrs": {"reason": "timeout"},
        }
    ]
