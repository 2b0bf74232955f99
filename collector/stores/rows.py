"""Conversions between store rows and the collector's objects, shared by the SQL backends."""

from __future__ import annotations

import json
from typing import Any

from collector.addons import NodeRecord
from collector.stores.base import EventDict
from messages import NodeInfo

__all__ = ["EVENT_COLUMNS", "NODE_COLUMNS", "event_of_row", "event_row", "node_of_row", "node_row"]

EVENT_COLUMNS = "time, node, kind, severity, message, attrs"
NODE_COLUMNS = "node, last_seq, first_seen, last_seen, gaps, reconnects, info"


def event_row(event: EventDict) -> tuple[float, str, str, str, str, str]:
    """An event dict as the columns of :data:`EVENT_COLUMNS` (attrs as JSON text)."""
    return (
        float(event.get("time") or 0.0),
        str(event.get("node") or ""),
        str(event.get("kind") or ""),
        str(event.get("severity") or "info"),
        str(event.get("message") or ""),
        json.dumps({str(k): str(v) for k, v in (event.get("attrs") or {}).items()}, sort_keys=True),
    )


def event_of_row(row: tuple[Any, ...]) -> EventDict:
    """The event dict of a row of :data:`EVENT_COLUMNS`."""
    time, node, kind, severity, message, attrs = row
    try:
        decoded = json.loads(attrs)
    except ValueError:
        decoded = {"?": attrs}
    return {"time": time, "node": node, "kind": kind, "severity": severity, "message": message, "attrs": decoded}


def node_row(record: NodeRecord) -> tuple[str, int, float, float, int, int, bytes]:
    """A node record as the columns of :data:`NODE_COLUMNS` (info as serialized NodeInfo)."""
    return (
        record.node,
        record.last_seq,
        record.first_seen,
        record.last_seen,
        record.gaps,
        record.reconnects,
        record.info.SerializeToString(),
    )


def node_of_row(row: tuple[Any, ...]) -> NodeRecord:
    """The node record of a row of :data:`NODE_COLUMNS`, status ``lost``."""
    node, seq, first, last, gaps, reconnects, info = row
    return NodeRecord(
        node=node,
        info=NodeInfo.FromString(bytes(info)),
        first_seen=first,
        last_seen=last,
        status="lost",
        last_seq=seq,
        reconnects=reconnects,
        gaps=gaps,
    )
