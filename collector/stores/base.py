"""The parts of a collector store, as small Protocols, and the :class:`Store` that holds one of each.

A store has named parts: ``events``, ``metadata``, ``blobs``, ``probes``,
``audit``, ``nodes``, ``snapshots`` and ``history``. Each part is an object with a few
methods; a backend (collector/stores/sqlite.py, postgresql.py, memory.py,
null.py, or a drop-in ``package.module:Class``) builds one of each. Every
method may be called from the collector's loop and from other OS threads at
once (distribution and observer threads): a backend locks what it must.

The report journal the ACKs depend on is not a part: it stays in the local
SQLite file (collector/store.py, collector/journal.py). See docs/stores.md.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from collector.addons import NodeRecord
from collector.audit_table import AuditTable
from messages.errors import LabscopeError

if TYPE_CHECKING:
    from collector.stores.history import Series

__all__ = [
    "Blob",
    "BlobVersion",
    "Blobs",
    "EventDict",
    "Events",
    "History",
    "Metadata",
    "Nodes",
    "Probes",
    "Snapshot",
    "Snapshots",
    "Store",
    "StoreError",
    "digest_of",
]

EventDict = dict[str, Any]  # {time, node, kind, severity, message, attrs} as modules/events.py makes them
DEFAULT_RECENT = 1000


class StoreError(LabscopeError):
    """A store operation failed (server gone, disk full ...); the message says which store and why."""


def digest_of(data: bytes) -> str:
    """The SHA-256 digest (hex) kept with every blob version."""
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class BlobVersion:
    """One stored version of a named blob: its number (1, 2, ... per name), digest, size and store time."""

    name: str
    version: int
    digest: str
    size: int
    stored: float


@dataclass(frozen=True)
class Blob:
    """A blob version with its bytes."""

    meta: BlobVersion
    data: bytes


@dataclass
class Snapshot:
    """A module's saved state and the journal row it is complete up to; ``journal`` names that journal."""

    journal_id: int
    taken: float
    state: bytes
    journal: str = ""


class Events(Protocol):
    """What happened on the testbed (the ``events`` module's list), newest first when read."""

    durable: bool

    def append(self, event: EventDict) -> None:
        """Keep one event (may be queued: a backend may write it a little later, see docs/stores.md)."""
        ...

    def recent(self, since: float | None = None, limit: int = DEFAULT_RECENT, node: str = "") -> list[EventDict]:
        """The newest ``limit`` events with time > ``since`` (of ``node`` when given), newest first."""
        ...


class Metadata(Protocol):
    """Small named texts (key -> text)."""

    def get(self, key: str) -> str | None:
        """The text under ``key``, or None."""
        ...

    def put(self, key: str, value: str) -> None:
        """Set ``key`` to ``value``."""
        ...

    def delete(self, key: str) -> None:
        """Forget ``key`` (no error when absent)."""
        ...

    def keys(self, prefix: str = "") -> list[str]:
        """Every key starting with ``prefix``, sorted."""
        ...


class Blobs(Protocol):
    """Versioned byte strings: each put makes the next version of its name (1, 2, ...), with its SHA-256."""

    def put(self, name: str, data: bytes) -> BlobVersion:
        """Store ``data`` as the next version of ``name``."""
        ...

    def get(self, name: str, version: int | None = None) -> Blob | None:
        """The latest version of ``name`` (or version ``version``), or None."""
        ...

    def versions(self, name: str) -> list[BlobVersion]:
        """Every version of ``name``, oldest first."""
        ...

    def names(self) -> list[str]:
        """Every blob name, sorted."""
        ...


class Probes(Protocol):
    """Probe definitions the collector pushes to agents: name -> definition bytes."""

    def put(self, name: str, definition: bytes) -> None:
        """Set (or replace) the definition of probe ``name``."""
        ...

    def get(self, name: str) -> bytes | None:
        """The definition of ``name``, or None."""
        ...

    def delete(self, name: str) -> None:
        """Forget probe ``name`` (no error when absent)."""
        ...

    def list(self) -> dict[str, bytes]:
        """Every probe definition, by name."""
        ...


class Nodes(Protocol):
    """The node registry (what the collector knows of every node it has seen)."""

    def save(self, records: list[NodeRecord]) -> None:
        """Insert or replace these nodes' records."""
        ...

    def load(self) -> list[NodeRecord]:
        """Every node recorded; each starts ``lost`` until its agent says HELLO again."""
        ...


class Snapshots(Protocol):
    """Module snapshots (msgpack bytes), each complete up to a journal row of a named journal."""

    def save(self, module: str, journal_id: int, state: bytes, journal: str = "") -> None:
        """Replace ``module``'s snapshot."""
        ...

    def load(self, module: str) -> Snapshot | None:
        """``module``'s snapshot, or None."""
        ...


class History(Protocol):
    """Series of numbers per (node, series name) in tiers ``raw``, ``1m``, ``1h`` (collector/stores/history.py).

    Writes only queue (a writer thread downsamples and writes them); reads
    wait up to 2 s for what is queued, so call them off the collector's loop
    (``self.collector.run_in_thread``). ``retention`` maps each tier to seconds.
    """

    durable: bool
    retention: dict[str, float]
    late: int  # values left out of the buckets (their series' bucket had closed); CollectorStats history-late
    dropped: int  # samples lost (queue full, or a batch that failed to write); CollectorStats history-dropped

    def record(
        self,
        node: str,
        names: Sequence[str],
        time: float,
        values: Sequence[float],
        kind: str = "values",
        data: bytes = b"",
    ) -> None:
        """Queue one sample: ``names[i]`` has ``values[i]`` at ``time``; ``data``, its whole payload of ``kind``.

        Never blocks (on the loop it is one ``deque.append``). The same
        ``(node, kind, names, time)`` again is ignored.
        """
        ...

    def checkpoint(self) -> None:
        """Queue writing the open (unfinished) buckets as partial rows."""
        ...

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until what is queued is written (True) or ``timeout`` passed."""
        ...

    def close(self) -> None:
        """Write open buckets and what is queued; release resources."""
        ...

    def query(
        self, node: str, tier: str, since: float | None = None, until: float | None = None, names: Iterable[str] = ()
    ) -> list[Series]:
        """``node``'s series (all, or ``names``) in ``tier`` with since < time <= until, by name, oldest first."""
        ...

    def samples(
        self, node: str, kind: str, since: float | None = None, until: float | None = None, limit: int = 1_000_000
    ) -> list[tuple[float, bytes]]:
        """The newest ``limit`` raw payloads of ``kind`` with since < time <= until, oldest first."""
        ...


class Store:
    """One of each part, and ``close()``. Backends set the eight attributes in their constructor.

    A backend class is built as ``Backend(data_dir, **store_args)``; an
    unknown store_arg is a TypeError the collector turns into a config error.
    """

    name = "store"
    events: Events
    metadata: Metadata
    blobs: Blobs
    probes: Probes
    audit: AuditTable
    nodes: Nodes
    snapshots: Snapshots
    history: History

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until queued writes are written (True) or ``timeout`` passed (False)."""
        return True

    def close(self) -> None:
        """Write what is queued and release connections and files."""

    def describe(self) -> str:
        """One line for the log: which backend, where."""
        return self.name
