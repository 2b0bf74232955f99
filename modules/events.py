"""The ``events`` module: what happened on the testbed, newest first.

Takes ``Event`` reports (a ``labscope.Event`` payload): the collector itself
delivers one when a node joins, is lost, or a module raises; agents send their
own (e.g. gaps). A msgpack map with the same keys is accepted too. The newest
``keep`` events are kept in memory, and every event is also appended to the
collector's store (``self.collector.store.events``, docs/stores.md); at start-up
the module loads the newest ``keep`` from there, so a collector that keeps its
store elsewhere (PostgreSQL) answers with what happened before even on an empty
data dir. With a durable store that already held events, the journal replay
after a restart does not add them again.

- REQUEST ``Events [since=EPOCH] [node=ID]`` -> a msgpack list of
  ``{time, node, kind, severity, message, attrs}``, newest first; ``since``
  keeps only events strictly after it, ``node`` only that node's events.
  A ``since`` that is not a finite number is ``bad-request``.
- UPDATE ``Events`` -> the latest ``UPDATE_LIMIT`` (200) events in the same
  form, newest first, whenever an event arrived since the last push.

Sample config block::

    [modules.events]
    # keep = 1000               # events kept in memory
    # update_interval = 1.0     # seconds between Events updates
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any

from collector.addons import (
    Aggregator,
    BadPayloadError,
    Option,
    Param,
    Payload,
    Report,
    Request,
    RequestSpec,
    UpdateSpec,
)
from messages import Event

__all__ = ["DEFAULT_KEEP", "UPDATE_LIMIT", "EventsModule", "event_dict"]

DEFAULT_KEEP = 1000
UPDATE_LIMIT = 200

EventDict = dict[str, Any]

_EVENTS = "list of maps {time, node, kind, severity, message, attrs}, newest first"


def event_dict(event: Event, node: str = "", time: float = 0.0) -> EventDict:
    """The wire form of one event; ``node`` and ``time`` fill the event's own when it has none."""
    return {
        "time": event.time or time,
        "node": event.node or node,
        "kind": event.kind,
        "severity": event.severity or "info",
        "message": event.message,
        "attrs": dict(event.attrs),
    }


def _from_map(value: dict[str, Any], node: str, time: float) -> EventDict:
    # A msgpack event is rebuilt through the protobuf class, so a wrong field type fails here, once.
    try:
        event = _event_of(value)
    except (TypeError, ValueError, AttributeError) as exc:
        raise BadPayloadError(f"Event map does not fit labscope.Event: {type(exc).__name__}: {exc}") from None
    return event_dict(event, node, time)


def _event_of(value: dict[str, Any]) -> Event:
    attrs = value.get("attrs") or {}
    return Event(
        time=float(value.get("time") or 0.0),
        node=str(value.get("node") or ""),
        kind=str(value.get("kind") or ""),
        severity=str(value.get("severity") or ""),
        message=str(value.get("message") or ""),
        attrs={str(k): str(v) for k, v in attrs.items()},
    )


def newest_first(events: Iterable[EventDict]) -> list[EventDict]:
    """Events sorted by time, newest first; equal times keep the latest arrival first."""
    return sorted(reversed(list(events)), key=lambda item: item["time"], reverse=True)


class EventsModule(Aggregator):
    """The newest ``keep`` events of the testbed."""

    name = "events"
    reporttype = ("Event",)
    requesttypes = ("Events",)
    updatetype = "Events"
    options = {"keep": Option(DEFAULT_KEEP, minimum=1, help="events kept in memory")}
    request_specs = {
        "Events": RequestSpec(
            "the events kept (joined, lost, gap, module-error, agents' own ...), newest first",
            Payload.msgpack(_EVENTS),
            params=(
                Param(
                    "since",
                    "only events whose time is strictly after this epoch time (seconds); "
                    "not a finite number: bad-request",
                ),
                Param("node", "only this node's events"),
            ),
        ),
    }
    update_spec = UpdateSpec(
        f"the latest {UPDATE_LIMIT} events, when an event arrived since the last push", Payload.msgpack(_EVENTS)
    )

    def __init__(self) -> None:
        self._events: deque[EventDict] = deque(maxlen=DEFAULT_KEEP)
        self._changed = False
        self._stored = False  # the store is durable and held events at start-up: the replay adds none

    def _store_events(self) -> Any:
        store = getattr(self.collector, "store", None)
        return getattr(store, "events", None)

    def keep(self) -> int:
        """Events kept (``[modules.events] keep``, checked by the collector to be >= 1)."""
        return int(self.config["keep"])

    def on_startup(self) -> None:
        """Size the buffer and fill it with the newest events of the store."""
        events = self._store_events()
        kept = list(reversed(events.recent(limit=self.keep()))) if events is not None else []
        self._stored = bool(kept) and bool(events.durable)
        self._events = deque([*self._events, *kept], maxlen=self.keep())
        self._changed = bool(kept)

    def processReport(self, msg: Report) -> None:
        """Keep one event; a payload that is neither an Event nor a fitting map is a bad report."""
        value = msg.decode()
        if isinstance(value, Event):
            item = event_dict(value, msg.node, msg.time)
        elif isinstance(value, dict):
            item = _from_map(value, msg.node, msg.time)
        else:
            raise BadPayloadError(
                f"Event report from {msg.node or 'the collector'} is not a labscope.Event (schema {msg.schema!r})"
            )
        if self._stored and getattr(self.collector, "replaying", False):
            return  # already in the store, and loaded from it at start-up
        self._events.append(item)
        self._changed = True
        events = self._store_events()
        if events is not None:
            events.append(item)

    def processREQUEST(self, msg: Request) -> list[EventDict]:
        """``Events [since=EPOCH] [node=ID]``: matching events, newest first."""
        since = msg.epoch_param("since")
        selected = (
            item
            for item in self._events
            if (since is None or item["time"] > since) and (not msg.node or item["node"] == msg.node)
        )
        return newest_first(selected)

    def getUpdateMessage(self) -> list[EventDict] | None:
        """The latest UPDATE_LIMIT events, newest first, when one arrived since the last push."""
        if not self._changed:
            return None
        self._changed = False
        return newest_first(self._events)[:UPDATE_LIMIT]
