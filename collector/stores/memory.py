"""The ``memory`` store: every part in this process's memory, behind one lock; lost on restart.

It is the quick default of each part for tests and for embedding, and what
the ``null`` store keeps for the parts that must not be dropped.
"""

from __future__ import annotations

import copy
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from collector.addons import NodeRecord
from collector.audit_table import MEMORY_ROWS, AuditRow, MemoryAuditTable
from collector.stores.base import (
    DEFAULT_RECENT,
    Blob,
    BlobVersion,
    EventDict,
    Snapshot,
    Store,
    digest_of,
)
from collector.stores.history import retention_of
from collector.stores.history_memory import MemoryHistoryTables
from collector.stores.tiers import TierHistory

__all__ = ["MEMORY_EVENTS", "LockedAudit", "MemoryStore", "newest_matching"]

MEMORY_EVENTS = 100_000  # events the memory part keeps (the oldest go first)


def newest_matching(events: list[EventDict], since: float | None, limit: int, node: str) -> list[EventDict]:
    """Of ``events`` (oldest first), the newest ``limit`` after ``since`` (of ``node``), newest first."""
    found = [e for e in events if (since is None or e["time"] > since) and (not node or e["node"] == node)]
    found.sort(key=lambda e: e["time"])  # stable: equal times keep their arrival order
    return [copy.deepcopy(e) for e in reversed(found[-limit:])] if limit > 0 else []


class MemoryEvents:
    """The newest :data:`MEMORY_EVENTS` events in a deque."""

    durable = False

    def __init__(self, keep: int = MEMORY_EVENTS) -> None:
        self._lock = threading.Lock()
        self._events: deque[EventDict] = deque(maxlen=keep)

    def append(self, event: EventDict) -> None:
        """Keep a copy of ``event``."""
        with self._lock:
            self._events.append(copy.deepcopy(event))

    def recent(self, since: float | None = None, limit: int = DEFAULT_RECENT, node: str = "") -> list[EventDict]:
        """The newest matching events, newest first."""
        with self._lock:
            events = list(self._events)
        return newest_matching(events, since, limit, node)


class MemoryMetadata:
    """Key -> text in a dict."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, str] = {}

    def get(self, key: str) -> str | None:
        """The text under ``key``, or None."""
        with self._lock:
            return self._values.get(key)

    def put(self, key: str, value: str) -> None:
        """Set ``key``."""
        with self._lock:
            self._values[key] = value

    def delete(self, key: str) -> None:
        """Forget ``key``."""
        with self._lock:
            self._values.pop(key, None)

    def keys(self, prefix: str = "") -> list[str]:
        """Keys starting with ``prefix``, sorted."""
        with self._lock:
            return sorted(k for k in self._values if k.startswith(prefix))


class MemoryBlobs:
    """Every version of every blob in lists."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._blobs: dict[str, list[Blob]] = {}

    def put(self, name: str, data: bytes) -> BlobVersion:
        """Append the next version of ``name``."""
        data = bytes(data)
        with self._lock:
            versions = self._blobs.setdefault(name, [])
            meta = BlobVersion(name, len(versions) + 1, digest_of(data), len(data), time.time())
            versions.append(Blob(meta, data))
            return meta

    def get(self, name: str, version: int | None = None) -> Blob | None:
        """The latest (or the given) version, or None."""
        with self._lock:
            versions = self._blobs.get(name, [])
            if version is None:
                return versions[-1] if versions else None
            return versions[version - 1] if 1 <= version <= len(versions) else None

    def versions(self, name: str) -> list[BlobVersion]:
        """Every version's metadata, oldest first."""
        with self._lock:
            return [blob.meta for blob in self._blobs.get(name, [])]

    def names(self) -> list[str]:
        """Every name, sorted."""
        with self._lock:
            return sorted(self._blobs)


class MemoryProbes:
    """Probe definitions in a dict."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._probes: dict[str, bytes] = {}

    def put(self, name: str, definition: bytes) -> None:
        """Set probe ``name``."""
        with self._lock:
            self._probes[name] = bytes(definition)

    def get(self, name: str) -> bytes | None:
        """Probe ``name``'s definition, or None."""
        with self._lock:
            return self._probes.get(name)

    def delete(self, name: str) -> None:
        """Forget probe ``name``."""
        with self._lock:
            self._probes.pop(name, None)

    def list(self) -> dict[str, bytes]:
        """Every definition, by name."""
        with self._lock:
            return dict(self._probes)


class MemoryNodes:
    """Copies of the node records."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: dict[str, NodeRecord] = {}

    def save(self, records: list[NodeRecord]) -> None:
        """Keep copies of ``records``."""
        copies = {r.node: copy.deepcopy(r) for r in records}
        with self._lock:
            self._records.update(copies)

    def load(self) -> list[NodeRecord]:
        """Copies of every record, status ``lost``."""
        with self._lock:
            records = [copy.deepcopy(r) for r in self._records.values()]
        for record in records:
            record.status = "lost"
        return records


class MemorySnapshots:
    """The latest snapshot of each module."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._snaps: dict[str, Snapshot] = {}

    def save(self, module: str, journal_id: int, state: bytes, journal: str = "") -> None:
        """Replace ``module``'s snapshot."""
        with self._lock:
            self._snaps[module] = Snapshot(journal_id, time.time(), bytes(state), journal)

    def load(self, module: str) -> Snapshot | None:
        """``module``'s snapshot, or None."""
        with self._lock:
            return self._snaps.get(module)


class LockedAudit(MemoryAuditTable):
    """:class:`MemoryAuditTable` behind a lock, safe from several threads."""

    def __init__(self, max_rows: int = MEMORY_ROWS) -> None:
        super().__init__(max_rows)
        self._lock = threading.Lock()

    def insert(self, row: AuditRow) -> int:
        """Keep a copy of ``row`` under a new id."""
        with self._lock:
            return super().insert(row)

    def finish(self, row_id: int, outcome: str, nbytes: int | None, finished: float) -> None:
        """Update the row if it is still kept."""
        with self._lock:
            super().finish(row_id, outcome, nbytes, finished)

    def select(self, since: float, node: str, limit: int) -> list[AuditRow]:
        """The newest ``limit`` matching rows, oldest first (copies)."""
        with self._lock:
            return [AuditRow(**r.as_dict()) for r in super().select(since, node, limit)]

    def prune(self, older_than: float, keep_rows: int) -> int:
        """Drop rows past retention."""
        with self._lock:
            return super().prune(older_than, keep_rows)


class MemoryStore(Store):
    """Every part in memory: fast, lost on restart. ``store = "memory"``; store_args: the history retentions."""

    name = "memory"

    def __init__(
        self, data_dir: Path | None = None, history_raw: Any = None, history_1m: Any = None, history_1h: Any = None
    ) -> None:
        self.events = MemoryEvents()
        self.metadata = MemoryMetadata()
        self.blobs = MemoryBlobs()
        self.probes = MemoryProbes()
        self.audit = LockedAudit()
        self.nodes = MemoryNodes()
        self.snapshots = MemorySnapshots()
        self.history = TierHistory(MemoryHistoryTables(), retention_of(history_raw, history_1m, history_1h), "memory")

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait for the history's queued writes."""
        return self.history.flush(timeout)

    def close(self) -> None:
        """Stop the history's writer."""
        self.history.close()

    def describe(self) -> str:
        """One line for the log."""
        return "memory (kept in this process only: lost on restart)"
