"""The ``null`` store: events and snapshots are dropped; the other parts are kept in memory.

Losing events only empties the ``Events`` answer; losing snapshots only makes
a restart rebuild modules from the local journal (slower, same result). The
other parts are not safe to drop — the audit trail must hold a row before a
request is forwarded, a put blob or probe must read back — so the null store
keeps them in memory (lost on restart). :class:`NullEvents` and
:class:`NullSnapshots` are also the null variants a drop-in backend may use.
"""

from __future__ import annotations

from pathlib import Path

from collector.stores.base import DEFAULT_RECENT, EventDict, Snapshot
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
    """``store = "null"``: null events and snapshots, the rest in memory; takes no store_args."""

    name = "null"

    def __init__(self, data_dir: Path | None = None) -> None:
        super().__init__(data_dir)
        self.events = NullEvents()
        self.snapshots = NullSnapshots()

    def describe(self) -> str:
        """One line for the log."""
        return "null (events and snapshots dropped; metadata, blobs, probes, audit and nodes in memory only)"
