"""The collector's local journal file: the report journal the ACKs depend on, and each node's last applied seq.

It is one SQLite file in the data dir (WAL mode), and it stays local whatever
store is configured: it is the durability path. Events, metadata, blobs,
probes, the audit trail, the node registry and module snapshots go to the
configured store (collector/stores/, docs/stores.md); with the default
``sqlite`` store they live in this same file, in the tables they always had. The journal
is written by *group commit*: once per ingest pass, every report applied in
that pass goes to disk in one transaction together with the nodes' last
applied sequence numbers, and only then are the ACKs sent. Each journal row
holds one node's applied reports of one pass as a serialized ``Batch``
(concatenated frame bodies are themselves a valid Batch), so journaling costs
one insert per node per pass, not one per report.

``synchronous = NORMAL`` (default) survives any crash of the collector process
(kill -9 included); ``journal_sync = "full"`` also survives power loss, at the
cost of one fsync per pass.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from collector.addons import NodeRecord
from collector.audit_table import AuditTable, MemoryAuditTable, SQLiteAuditTable
from collector.stores.base import Snapshot, Snapshots
from collector.stores.null import NullSnapshots
from collector.stores.rows import node_of_row
from collector.stores.sqlite import SQLiteSnapshots
from messages import Batch, Envelope
from messages.errors import LabscopeError

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS journal (
    id INTEGER PRIMARY KEY,
    node TEXT NOT NULL,
    first_seq INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    received REAL NOT NULL,
    batch BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS nodes (
    node TEXT PRIMARY KEY,
    last_seq INTEGER NOT NULL,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    gaps INTEGER NOT NULL,
    reconnects INTEGER NOT NULL,
    info BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS snapshots (
    module TEXT PRIMARY KEY,
    journal_id INTEGER NOT NULL,
    taken REAL NOT NULL,
    state BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS journal_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

__all__ = ["NullStore", "SQLiteStore", "Snapshot", "Store"]


class Store:
    """The store interface; :class:`SQLiteStore` is the default, :class:`NullStore` keeps nothing."""

    durable = False
    last_id = 0  # id of the newest committed journal row
    epoch = ""  # this journal's identity: a snapshot taken against another journal is not restored
    snapshots: Snapshots = NullSnapshots()  # where save_snapshot/load_snapshot keep them (the configured store's part)

    def append(self, node: str, first_seq: int, last_seq: int, batch: bytes) -> None:
        """Queue one node's applied reports of this pass (a serialized Batch) for the next commit."""

    def commit(self, touched: list[NodeRecord]) -> int:
        """Write queued rows and the touched nodes in one transaction; returns the last journal id."""
        return 0

    def load_nodes(self) -> list[NodeRecord]:
        """Every node recorded, with its last applied sequence number."""
        return []

    def save_snapshot(self, module: str, journal_id: int, state: bytes) -> None:
        """Keep ``module``'s state as complete up to journal row ``journal_id``."""

    def load_snapshot(self, module: str) -> Snapshot | None:
        """The module's latest snapshot, or None."""
        return None

    def replay(self, after_id: int) -> Iterator[tuple[int, Envelope]]:
        """Every journaled report after row ``after_id``, oldest first, with its row id."""
        return iter(())

    def prune(self, older_than: float) -> int:
        """Drop journal rows received before ``older_than`` (epoch s); returns how many."""
        return 0

    def prune_held(self, older_than: float, holds: list[tuple[int, float]]) -> tuple[int, int]:
        """Prune as :meth:`prune`, keeping the rows durable distributions hold; returns (rows pruned, gap)."""
        return self.prune(older_than), 0

    def audit_table(self) -> AuditTable:
        """Where the audit trail (collector/audit.py) keeps its rows: in memory unless the store is durable."""
        return MemoryAuditTable()

    def close(self) -> None:
        """Release the store."""


class NullStore(Store):
    """No journal: reports are acknowledged once applied in memory (``journal = false``)."""


class SQLiteStore(Store):
    """The journal, nodes and snapshots in ``DATA_DIR/collector.sqlite3``."""

    durable = True

    def __init__(self, path: Path, sync: str = "normal") -> None:
        try:
            self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute(f"PRAGMA synchronous={'FULL' if sync == 'full' else 'NORMAL'}")
            self.db.execute("PRAGMA busy_timeout=10000")  # the sqlite store writes this file too, on its own connection
            self.db.executescript(SCHEMA)
            self.epoch = self._epoch()
        except sqlite3.Error as exc:
            raise LabscopeError(f"store {path}: {exc}; check the --data-dir (free space, permissions)") from None
        self.path = path
        self.pending: list[tuple[int, str, int, int, float, bytes]] = []
        self.last_id = self.db.execute("SELECT COALESCE(MAX(id), 0) FROM journal").fetchone()[0]
        # Where snapshots go: this file's table unless the collector points it at the configured store's part.
        self.snapshots: Snapshots = SQLiteSnapshots(self.db, threading.RLock())

    def _epoch(self) -> str:
        row = self.db.execute("SELECT value FROM journal_meta WHERE key = 'epoch'").fetchone()
        if row:
            return str(row[0])
        epoch = uuid.uuid4().hex
        self.db.execute("INSERT INTO journal_meta VALUES ('epoch', ?)", (epoch,))
        return epoch

    def append(self, node: str, first_seq: int, last_seq: int, batch: bytes) -> None:
        """Queue a row for the next commit; ids are given here (this process is the only writer)."""
        self.pending.append((self.last_id + len(self.pending) + 1, node, first_seq, last_seq, time.time(), batch))

    def commit(self, touched: list[NodeRecord]) -> int:
        """One transaction: queued journal rows, then the touched nodes' state."""
        db = self.db
        db.execute("BEGIN")
        try:
            if self.pending:
                db.executemany("INSERT INTO journal VALUES (?, ?, ?, ?, ?, ?)", self.pending)
            db.executemany(
                "INSERT OR REPLACE INTO nodes VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (r.node, r.last_seq, r.first_seen, r.last_seen, r.gaps, r.reconnects, r.info.SerializeToString())
                    for r in touched
                ],
            )
            db.execute("COMMIT")
        except sqlite3.Error:
            db.execute("ROLLBACK")
            raise  # the rows stay queued: the next pass tries them again, and nothing is acknowledged
        if self.pending:
            self.last_id = self.pending[-1][0]
        self.pending.clear()
        return int(self.last_id)

    def load_nodes(self) -> list[NodeRecord]:
        """Every node recorded; each starts as ``lost`` until its agent says HELLO again."""
        rows = self.db.execute("SELECT node, last_seq, first_seen, last_seen, gaps, reconnects, info FROM nodes")
        return [node_of_row(row) for row in rows]

    def save_snapshot(self, module: str, journal_id: int, state: bytes) -> None:
        """Replace the module's snapshot (in :attr:`snapshots`), marked with this journal's epoch."""
        self.snapshots.save(module, journal_id, state, self.epoch)

    def load_snapshot(self, module: str) -> Snapshot | None:
        """The module's snapshot, or None; one taken against another journal (a new data dir) is ignored."""
        snap = self.snapshots.load(module)
        if snap is not None and snap.journal not in ("", self.epoch):
            log.info("snapshot of %s belongs to another journal (a new data dir): rebuilding from this one", module)
            return None
        return snap

    def replay(self, after_id: int) -> Iterator[tuple[int, Envelope]]:
        """Journaled reports after ``after_id``, in the order they were applied."""
        rows = self.db.execute("SELECT id, batch FROM journal WHERE id > ? ORDER BY id", (after_id,))
        for row_id, batch in rows:
            for env in Batch.FromString(batch).envelopes:
                yield row_id, env

    def prune(self, older_than: float) -> int:
        """Drop rows received before ``older_than``; ids grow with time, so the oldest go first."""
        cursor = self.db.execute(
            "DELETE FROM journal WHERE id < (SELECT COALESCE(MIN(id), 0) FROM journal "
            "WHERE received >= ?) OR (SELECT MAX(received) FROM journal) < ?",
            (older_than, older_than),
        )
        return int(cursor.rowcount)

    def prune_held(self, older_than: float, holds: list[tuple[int, float]]) -> tuple[int, int]:
        """Prune as :meth:`prune`, but keep rows ``id >= row`` received at or after ``since`` for each hold.

        ``holds`` are ``(row id, since)`` of the durable distributions. Returns
        (rows pruned, reports pruned that some hold had not passed on: the gap).
        """
        if not holds:
            return self.prune(older_than), 0
        kept = " OR ".join("(id >= ? AND received >= ?)" for _ in holds)
        args: list[float] = [value for hold in holds for value in hold]
        where = f"received < ? AND NOT ({kept})"
        floor = min(row for row, _ in holds)
        (gap,) = self.db.execute(
            f"SELECT COALESCE(SUM(last_seq - first_seq + 1), 0) FROM journal WHERE {where} AND id >= ?",
            [older_than, *args, floor],
        ).fetchone()
        cursor = self.db.execute(f"DELETE FROM journal WHERE {where}", [older_than, *args])
        return int(cursor.rowcount), int(gap)

    def audit_table(self) -> AuditTable:
        """The ``audit`` table of this database (each write committed before the call returns)."""
        return SQLiteAuditTable(self.db)

    def close(self) -> None:
        """Close the database."""
        self.db.close()
