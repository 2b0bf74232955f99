"""The collector's local journal file: the report journal the ACKs depend on, and each node's last applied seq.

It is one SQLite file in the data dir (WAL mode), and it stays local whatever
store is configured: it is the durability path. Events, metadata, blobs,
probes, the audit trail, the node registry and module snapshots go to the
configured store (collector/stores/, docs/stores.md); with the default
``sqlite`` store they live in this same file, in the tables they always had. The journal
is written by *group commit*: once per ingest pass, every report applied in
that pass goes to disk in one transaction together with the nodes' last
applied sequence numbers, and only then are the ACKs sent. Each journal row
stands for one node's applied reports of one pass as a serialized ``Batch``
(concatenated frame bodies are themselves a valid Batch), so journaling costs
one insert per node per pass, not one per report. The Batch bytes themselves
go to an append-only segment file (collector/segments.py), written once per
pass before the transaction; the row says where they are (``seg``, ``pos``,
``size``). Rows of journals written before the segments keep their bytes in
``batch`` and are read from there.

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
from collector.segments import SegmentReader, SegmentWriter, segment_folder
from collector.stores.base import Snapshot, Snapshots
from collector.stores.null import NullSnapshots
from collector.stores.rows import node_of_row
from collector.stores.sqlite import SQLiteSnapshots
from collector.walcheck import WalCheckpointer
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
    batch BLOB NOT NULL,
    seg INTEGER NOT NULL DEFAULT 0,
    pos INTEGER NOT NULL DEFAULT 0,
    size INTEGER NOT NULL DEFAULT 0
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

# Columns a journal written before the segments lacks (collector/segments.py): added when it opens.
SEGMENT_COLUMNS = ("seg", "pos", "size")
BATCH_COLUMNS = "batch, seg, pos, size"  # what :func:`row_batch` reads
INSERT_ROW = (
    "INSERT INTO journal (id, node, first_seq, last_seq, received, batch, seg, pos, size) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)

__all__ = ["BATCH_COLUMNS", "NullStore", "SQLiteStore", "Snapshot", "Store", "row_batch"]


def row_batch(reader: SegmentReader, batch: bytes, seg: int, pos: int, size: int) -> bytes | None:
    """A journal row's Batch bytes (its ``BATCH_COLUMNS``): from its segment, or its own ``batch`` (older rows).

    None when the segment no longer has them (pruned meanwhile, or lost to a power cut without
    ``journal_sync = "full"``).
    """
    return reader.read(seg, pos, size) if seg else batch


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
            self.db.execute("PRAGMA wal_autocheckpoint=0")  # checkpoints and their fsyncs: collector/walcheck.py
            self.db.executescript(SCHEMA)
            self._add_segment_columns()
            self.epoch = self._epoch()
            self.last_id = self.db.execute("SELECT COALESCE(MAX(id), 0) FROM journal").fetchone()[0]
            self.segments = SegmentWriter(segment_folder(path), self.last_id + 1, sync == "full")
            self.checkpointer = WalCheckpointer(path, upkeep=self.segments.release_cache)
        except (sqlite3.Error, OSError) as exc:
            raise LabscopeError(f"store {path}: {exc}; check the --data-dir (free space, permissions)") from None
        self.path = path
        self.reader = SegmentReader(segment_folder(path))
        self.checkpointer.start()
        self.pending: list[tuple[int, str, int, int, float, bytes]] = []
        # Where snapshots go: this file's table unless the collector points it at the configured store's part.
        self.snapshots: Snapshots = SQLiteSnapshots(self.db, threading.RLock())

    def _add_segment_columns(self) -> None:
        """Give a journal written before the segments their columns (its rows keep their ``batch``)."""
        columns = {row[1] for row in self.db.execute("PRAGMA table_info(journal)")}
        for column in SEGMENT_COLUMNS:
            if column not in columns:
                self.db.execute(f"ALTER TABLE journal ADD COLUMN {column} INTEGER NOT NULL DEFAULT 0")

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
        """Queued rows' bytes to the segment, then one transaction: the rows, then the touched nodes' state.

        Raises OSError or sqlite3.Error (disk full ...) with the rows still queued.
        """
        rows = self._segment_rows()
        db = self.db
        db.execute("BEGIN")
        try:
            if rows:
                db.executemany(INSERT_ROW, rows)
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

    def _segment_rows(self) -> list[tuple[int, str, int, int, float, bytes, int, int, int]]:
        """Write the queued rows' bytes to the segment (one write); the rows as inserted, pointing at them."""
        if not self.pending:
            return []
        seg, offsets = self.segments.write(self.pending[0][0], [row[5] for row in self.pending])
        return [
            (row_id, node, first, last, received, b"", seg, pos, len(batch))
            for (row_id, node, first, last, received, batch), pos in zip(self.pending, offsets, strict=True)
        ]

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
        rows = self.db.execute(f"SELECT id, {BATCH_COLUMNS} FROM journal WHERE id > ? ORDER BY id", (after_id,))
        for row_id, *where in rows:
            batch = row_batch(self.reader, *where)
            if batch is None:
                continue
            for env in Batch.FromString(batch).envelopes:
                yield row_id, env
        self.reader.close()  # replay runs once, at start-up: hold no segment open after it

    def prune(self, older_than: float) -> int:
        """Drop rows received before ``older_than``; ids grow with time, so the oldest go first."""
        cursor = self.db.execute(
            "DELETE FROM journal WHERE id < (SELECT COALESCE(MIN(id), 0) FROM journal "
            "WHERE received >= ?) OR (SELECT MAX(received) FROM journal) < ?",
            (older_than, older_than),
        )
        self._prune_segments()
        return int(cursor.rowcount)

    def _prune_segments(self) -> None:
        """Delete the segments no row points into any more."""
        (oldest,) = self.db.execute("SELECT MIN(id) FROM journal").fetchone()
        removed = self.segments.prune(oldest)
        if removed:
            log.info("deleted %d journal segments whose rows were all pruned", removed)

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
        self._prune_segments()
        return int(cursor.rowcount), int(gap)

    def audit_table(self) -> AuditTable:
        """The ``audit`` table of this database (each write committed before the call returns)."""
        return SQLiteAuditTable(self.db)

    def close(self) -> None:
        """Stop the checkpoints; close the segments and the database."""
        self.checkpointer.stop()
        self.segments.close()
        self.reader.close()
        self.db.close()
