"""The ``null`` store: events, snapshots and history are dropped; the other parts are kept in memory.

Losing events only empties the ``Events`` answer; losing snapshots only makes
a restart rebuild modules from the local journal (slower, same result); losing
history leaves only each node's latest sample to see. The
other parts are not safe to drop — the audit trail must hold a row before a
request is forwarded, a put blob or probe must read back — so the null store
keeps them in memory (lost on restart). :class:`NullEvents` and
:class:`NullSnapshots` are also the null variants a drop-in backend may use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from collector.stores.base import DEFAULT_RECENT, EventDict, Snapshot
from collector.stores.history import retention_of
from collector.stores.history_memory import NullHistory
from collector.stores.memory import MemoryStore

__all__ = ["NullEvents", "NullSnapshots", "NullStore"]


class NullEvents:
    """Events are dropped; ``recent`` is always empty."""

    durable = False

    def append(self, event: EventDict) -> None:
        """Drop ``event``."""

    def recent(self, since: float | None = None, limit: int = DEFAULT_RECENT, node: str = "") -> list[EventDict]:
        """Nothing is kept."""
        return []


class NullSnapshots:
    """Snapshots are dropped: a restart rebuilds every module from the journal."""

    def save(self, module: str, journal_id: int, state: bytes, journal: str = "") -> None:
        """Drop the snapshot."""

    def load(self, module: str) -> Snapshot | None:
        """Nothing is kept."""
        return None


class NullStore(MemoryStore):
    """``store = "null"``: null events, snapshots and history, the rest in memory; store_args: none used."""

    name = "null"

    def __init__(
        self, data_dir: Path | None = None, history_raw: Any = None, history_1m: Any = None, history_1h: Any = None
    ) -> None:
        super().__init__(data_dir)
        self.history.close()  # the memory store's writer thread, not needed
        self.events = NullEvents()
        self.snapshots = NullSnapshots()
        self.history = NullHistory(retention_of(history_raw, history_1m, history_1h))

    def describe(self) -> str:
        """One line for the log."""
        return "null (events, snapshots and history dropped; metadata, blobs, probes, audit and nodes in memory only)"
