"""The events module keeps every event in ``self.collector.store`` and starts from what it holds."""

from __future__ import annotations

from pathlib import Path

from collector.addons import Report, Request
from collector.stores import open_store
from collector.testing import StubCollector, attach
from messages import Encoding, Event
from modules.events import EventsModule


def event_report(message: str, time: float) -> Report:
    event = Event(time=time, node="n1", kind="note", message=message)
    return Report("n1", "Event", 2, time, event.SerializeToString(), Encoding.PROTOBUF, Event.DESCRIPTOR.full_name)


def started(stub: StubCollector) -> EventsModule:
    return attach(EventsModule(), stub)  # attach() calls on_startup


def messages(module: EventsModule) -> list[str]:
    return [e["message"] for e in module.processREQUEST(Request("Events", {}))]


def test_events_go_to_the_store_and_come_back_after_a_restart(tmp_path: Path) -> None:
    stub = StubCollector(tmp_path)
    stub.store = open_store("sqlite", {}, tmp_path)
    first = started(stub)
    first.processReport(event_report("one", 10.0))
    first.processReport(event_report("two", 11.0))
    assert [e["message"] for e in stub.store.events.recent()] == ["two", "one"]
    stub.store.close()

    stub.store = open_store("sqlite", {}, tmp_path)
    again = started(stub)
    assert messages(again) == ["two", "one"]
    stub.replaying = True  # the journal replays the same reports: not kept twice
    again.processReport(event_report("one", 10.0))
    stub.replaying = False
    again.processReport(event_report("three", 12.0))
    assert [e["message"] for e in stub.store.events.recent()] == ["three", "two", "one"]
    assert messages(again) == ["three", "two", "one"]
    stub.store.close()


def test_a_memory_store_still_gets_the_replay(tmp_path: Path) -> None:
    stub = StubCollector(tmp_path)
    module = started(stub)
    stub.replaying = True
    module.processReport(event_report("replayed", 10.0))
    assert [e["message"] for e in stub.store.events.recent()] == ["replayed"]
