"""The ``sqlite`` store (the default): every part but the history in ``DATA_DIR/collector.sqlite3``, beside the journal.

The history has ``DATA_DIR/collector-history.sqlite3`` (see :class:`SQLiteStoreBackend`).

It opens the same file as the report journal (collector/store.py) with a
connection of its own, so the tables of earlier versions (``nodes``,
``snapshots``, ``audit``) stay where they were and readable. Its own tables
are created by versioned migrations recorded in ``schema_version``. One
connection and one lock serve every part: a call from the collector's loop and
calls from other threads take turns (each is short; WAL lets readers of the
journal's connection go on meanwhile; ``busy_timeout`` covers the journal's
writes).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from collector.addons import NodeRecord
from collector.audit_table import SCHEMA as AUDIT_SCHEMA
from collector.audit_table import AuditRow, AuditTable, SQLiteAuditTable
from collector.stores.base import (
    DEFAULT_RECENT,
    Blob,
    BlobVersion,
    EventDict,
    Snapshot,
    Store,
    StoreError,
    digest_of,
)
from collector.stores.history import retention_of
from collector.stores.history_sql import SQLITE_SCHEMA as HISTORY_SCHEMA
from collector.stores.history_sql import SQLiteHistoryTables
from collector.stores.rows import EVENT_COLUMNS, NODE_COLUMNS, event_of_row, event_row, node_of_row, node_row
from collector.stores.tiers import TierHistory

__all__ = [
    "BUSY_TIMEOUT_MS",
    "MIGRATIONS",
    "STORE_FILE",
    "SQLiteSnapshots",
    "SQLiteStoreBackend",
    "connect",
    "history_file",
    "move_history",
]

log = logging.getLogger(__name__)

STORE_FILE = "collector.sqlite3"
BUSY_TIMEOUT_MS = 10_000
HISTORY_TABLES = ("history_chunks", "history_raw")

# Version -> SQL. 1 is the layout before the Store interface (nodes, snapshots, audit); never edit a
# released step, add the next one.
MIGRATIONS: dict[int, str] = {
    1: """
CREATE TABLE IF NOT EXISTS nodes (
    node TEXT PRIMARY KEY, last_seq INTEGER NOT NULL, first_seen REAL NOT NULL, last_seen REAL NOT NULL,
    gaps INTEGER NOT NULL, reconnects INTEGER NOT NULL, info BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS snapshots (
    module TEXT PRIMARY KEY, journal_id INTEGER NOT NULL, taken REAL NOT NULL, state BLOB NOT NULL
);
"""
    + AUDIT_SCHEMA,
    2: """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL, node TEXT NOT NULL, kind TEXT NOT NULL,
    severity TEXT NOT NULL, message TEXT NOT NULL, attrs TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_time ON events (time);
CREATE TABLE IF NOT EXISTS metadata (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS blobs (
    name TEXT NOT NULL, version INTEGER NOT NULL, digest TEXT NOT NULL, size INTEGER NOT NULL,
    stored REAL NOT NULL, data BLOB NOT NULL, PRIMARY KEY (name, version)
);
CREATE TABLE IF NOT EXISTS probes (name TEXT PRIMARY KEY, definition BLOB NOT NULL);
""",
    3: HISTORY_SCHEMA,
}


def connect(path: Path, sync: str = "normal") -> sqlite3.Connection:
    """An autocommit WAL connection any thread may use (callers serialize with a lock).

    ``sync`` "normal" survives any crash of the process; "full" also power loss (an fsync per write).
    """
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={'FULL' if sync == 'full' else 'NORMAL'}")
    return db


def migrate(db: sqlite3.Connection) -> int:
    """Apply the missing :data:`MIGRATIONS` in order; returns the schema version now."""
    db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied REAL NOT NULL)")
    (current,) = db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()
    for version in sorted(v for v in MIGRATIONS if v > current):
        db.executescript(MIGRATIONS[version])
        db.execute("INSERT INTO schema_version VALUES (?, ?)", (version, time.time()))
        current = version
    return int(current)


class _Part:
    """A part on the store's connection, one call at a time."""

    def __init__(self, db: sqlite3.Connection, lock: threading.RLock) -> None:
        self.db = db
        self.lock = lock

    def _all(self, sql: str, args: tuple[Any, ...] | list[Any] = ()) -> list[Any]:
        with self.lock:
            return self.db.execute(sql, args).fetchall()

    def _run(self, sql: str, args: tuple[Any, ...] | list[Any] = ()) -> None:
        with self.lock:
            self.db.execute(sql, args)


class SQLiteEvents(_Part):
    """The ``events`` table: each append is its own (short) transaction."""

    durable = True

    def append(self, event: EventDict) -> None:
        """Insert ``event``."""
        self._run(f"INSERT INTO events ({EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)", event_row(event))

    def recent(self, since: float | None = None, limit: int = DEFAULT_RECENT, node: str = "") -> list[EventDict]:
        """The newest matching events, newest first."""
        where, args = "time > ?", list[Any]([float("-inf") if since is None else since])
        if node:
            where += " AND node = ?"
            args.append(node)
        rows = self._all(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE {where} ORDER BY time DESC, id DESC LIMIT ?", [*args, limit]
        )
        return [event_of_row(row) for row in rows]


class SQLiteMetadata(_Part):
    """The ``metadata`` table."""

    def get(self, key: str) -> str | None:
        """The text under ``key``, or None."""
        rows = self._all("SELECT value FROM metadata WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None

    def put(self, key: str, value: str) -> None:
        """Set ``key``."""
        self._run("INSERT OR REPLACE INTO metadata VALUES (?, ?)", (key, value))

    def delete(self, key: str) -> None:
        """Forget ``key``."""
        self._run("DELETE FROM metadata WHERE key = ?", (key,))

    def keys(self, prefix: str = "") -> list[str]:
        """Keys starting with ``prefix``, sorted."""
        rows = self._all("SELECT key FROM metadata WHERE substr(key, 1, ?) = ? ORDER BY key", (len(prefix), prefix))
        return [str(row[0]) for row in rows]


class SQLiteBlobs(_Part):
    """The ``blobs`` table: one row per version."""

    def put(self, name: str, data: bytes) -> BlobVersion:
        """Insert the next version of ``name`` (read and insert under the lock, in one transaction)."""
        data = bytes(data)
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                (last,) = self.db.execute(
                    "SELECT COALESCE(MAX(version), 0) FROM blobs WHERE name = ?", (name,)
                ).fetchone()
                meta = BlobVersion(name, int(last) + 1, digest_of(data), len(data), time.time())
                self.db.execute(
                    "INSERT INTO blobs VALUES (?, ?, ?, ?, ?, ?)",
                    (name, meta.version, meta.digest, meta.size, meta.stored, data),
                )
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
        return meta

    def get(self, name: str, version: int | None = None) -> Blob | None:
        """The latest (or the given) version, or None."""
        columns = "name, version, digest, size, stored, data"
        if version is None:
            rows = self._all(f"SELECT {columns} FROM blobs WHERE name = ? ORDER BY version DESC LIMIT 1", (name,))
        else:
            rows = self._all(f"SELECT {columns} FROM blobs WHERE name = ? AND version = ?", (name, version))
        if not rows:
            return None
        *meta, data = rows[0]
        return Blob(BlobVersion(*meta), bytes(data))

    def versions(self, name: str) -> list[BlobVersion]:
        """Every version's metadata, oldest first."""
        rows = self._all(
            "SELECT name, version, digest, size, stored FROM blobs WHERE name = ? ORDER BY version", (name,)
        )
        return [BlobVersion(*row) for row in rows]

    def names(self) -> list[str]:
        """Every name, sorted."""
        return [str(row[0]) for row in self._all("SELECT DISTINCT name FROM blobs ORDER BY name")]


class SQLiteProbes(_Part):
    """The ``probes`` table."""

    def put(self, name: str, definition: bytes) -> None:
        """Set probe ``name``."""
        self._run("INSERT OR REPLACE INTO probes VALUES (?, ?)", (name, bytes(definition)))

    def get(self, name: str) -> bytes | None:
        """Probe ``name``'s definition, or None."""
        rows = self._all("SELECT definition FROM probes WHERE name = ?", (name,))
        return bytes(rows[0][0]) if rows else None

    def delete(self, name: str) -> None:
        """Forget probe ``name``."""
        self._run("DELETE FROM probes WHERE name = ?", (name,))

    def list(self) -> dict[str, bytes]:
        """Every definition, by name."""
        return {str(name): bytes(d) for name, d in self._all("SELECT name, definition FROM probes ORDER BY name")}


class SQLiteNodes(_Part):
    """The ``nodes`` table, the same one the journal writes its nodes' sequence numbers to."""

    def save(self, records: list[NodeRecord]) -> None:
        """Insert or replace ``records`` in one transaction."""
        rows = [node_row(r) for r in records]
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                self.db.executemany("INSERT OR REPLACE INTO nodes VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise

    def load(self) -> list[NodeRecord]:
        """Every node recorded, status ``lost``."""
        return [node_of_row(row) for row in self._all(f"SELECT {NODE_COLUMNS} FROM nodes")]


class SQLiteSnapshots(_Part):
    """The ``snapshots`` table (with the ``journal`` column added to the layout of earlier versions)."""

    def __init__(self, db: sqlite3.Connection, lock: threading.RLock) -> None:
        super().__init__(db, lock)
        with lock:
            columns = [row[1] for row in db.execute("PRAGMA table_info(snapshots)")]
            if "journal" not in columns:
                db.execute("ALTER TABLE snapshots ADD COLUMN journal TEXT NOT NULL DEFAULT ''")

    def save(self, module: str, journal_id: int, state: bytes, journal: str = "") -> None:
        """Replace ``module``'s snapshot."""
        self._run(
            "INSERT OR REPLACE INTO snapshots (module, journal_id, taken, state, journal) VALUES (?, ?, ?, ?, ?)",
            (module, journal_id, time.time(), bytes(state), journal),
        )

    def load(self, module: str) -> Snapshot | None:
        """``module``'s snapshot, or None."""
        rows = self._all("SELECT journal_id, taken, state, journal FROM snapshots WHERE module = ?", (module,))
        if not rows:
            return None
        journal_id, taken, state, journal = rows[0]
        return Snapshot(journal_id, taken, bytes(state), journal)


class LockedAuditTable:
    """An audit table whose every call holds ``lock``."""

    def __init__(self, table: AuditTable, lock: threading.RLock) -> None:
        self.table = table
        self.lock = lock
        self.durable = table.durable

    def insert(self, row: AuditRow) -> int:
        """Store ``row``; returns its id."""
        with self.lock:
            return self.table.insert(row)

    def finish(self, row_id: int, outcome: str, nbytes: int | None, finished: float) -> None:
        """Record the outcome of row ``row_id``."""
        with self.lock:
            self.table.finish(row_id, outcome, nbytes, finished)

    def select(self, since: float, node: str, limit: int) -> list[AuditRow]:
        """The newest ``limit`` matching rows, oldest first."""
        with self.lock:
            return self.table.select(since, node, limit)

    def prune(self, older_than: float, keep_rows: int) -> int:
        """Drop rows past retention; returns how many."""
        with self.lock:
            return self.table.prune(older_than, keep_rows)


class SQLiteStoreBackend(Store):
    """``store = "sqlite"``: the default.

    store_args: ``path`` (default ``DATA_DIR/collector.sqlite3``), ``sync`` ("normal" or "full";
    the collector passes its ``journal_sync`` unless given), ``history_raw``, ``history_1m``,
    ``history_1h`` (the history tiers' retentions, collector/stores/history.py),
    ``history_path`` (default: beside ``path``, ``NAME-history.sqlite3``).

    The history has a file of its own: SQLite lets one connection write a file at a time, and the
    history's writer thread, writing thousands of samples a second, made the journal's commits on
    the loop wait for its transactions (seconds at 5000 nodes, and nodes were declared lost).
    """

    name = "sqlite"

    def __init__(
        self,
        data_dir: Path,
        path: str = "",
        sync: str = "normal",
        history_raw: Any = None,
        history_1m: Any = None,
        history_1h: Any = None,
        history_path: str = "",
    ) -> None:
        retention = retention_of(history_raw, history_1m, history_1h)
        self.path = Path(path) if path else Path(data_dir) / STORE_FILE
        self.history_path = Path(history_path) if history_path else history_file(self.path)
        if sync not in ("normal", "full"):
            raise StoreError(f'sqlite store: sync must be "normal" or "full", not {sync!r}')
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = connect(self.path, sync)
            self.version = migrate(self.db)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"sqlite store {self.path}: {exc}; check the folder (free space, permissions)") from None
        try:
            self.history_path.parent.mkdir(parents=True, exist_ok=True)
            open_history_file(self.history_path, sync)
            same = self.history_path.resolve() == self.path.resolve()  # history_path = path: the layout before
            moved = 0 if same else move_history(self.db, self.history_path)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(
                f"sqlite store history {self.history_path}: {exc}; check the folder (free space, permissions)"
            ) from None
        if moved:
            log.info("moved %d history rows from %s into %s", moved, self.path.name, self.history_path.name)
        self.lock = threading.RLock()
        self.events = SQLiteEvents(self.db, self.lock)
        self.metadata = SQLiteMetadata(self.db, self.lock)
        self.blobs = SQLiteBlobs(self.db, self.lock)
        self.probes = SQLiteProbes(self.db, self.lock)
        self.audit = LockedAuditTable(SQLiteAuditTable(self.db), self.lock)
        self.nodes = SQLiteNodes(self.db, self.lock)
        self.snapshots = SQLiteSnapshots(self.db, self.lock)
        tables = SQLiteHistoryTables(lambda: connect(self.history_path, sync))
        self.history = TierHistory(tables, retention, f"sqlite:{self.history_path.name}")

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait for the history's queued writes (every other part writes at once)."""
        return self.history.flush(timeout)

    def close(self) -> None:
        """Write the history's open buckets and queue, then close the connections."""
        self.history.close()
        with self.lock:
            self.db.close()

    def describe(self) -> str:
        """One line for the log."""
        return f"sqlite {self.path} (schema version {self.version}), history in {self.history_path.name}"


def history_file(path: Path) -> Path:
    """The history's file beside the store's: ``collector.sqlite3`` -> ``collector-history.sqlite3``."""
    return path.with_name(f"{path.stem}-history{path.suffix}")


def open_history_file(path: Path, sync: str) -> None:
    """Create the history's file and tables when missing."""
    db = connect(path, sync)
    try:
        db.executescript(HISTORY_SCHEMA)
    finally:
        db.close()


def move_history(db: sqlite3.Connection, history: Path) -> int:
    """Move history tables an earlier version kept in the store's own file into ``history``; rows moved.

    Copies are ``INSERT OR IGNORE`` (a move cut short by a crash is done again, rows written to the
    new file since win), then the old tables are dropped. Nothing to move: nothing done.
    """
    names = ", ".join(f"'{name}'" for name in HISTORY_TABLES)
    old = [row[0] for row in db.execute(f"SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ({names})")]
    if not old:
        return 0
    db.execute("ATTACH DATABASE ? AS moved_history", (str(history),))
    try:
        db.execute("BEGIN IMMEDIATE")
        try:
            moved = 0
            for table in sorted(old):
                moved += db.execute(f"INSERT OR IGNORE INTO moved_history.{table} SELECT * FROM main.{table}").rowcount
                db.execute(f"DROP TABLE main.{table}")
        except sqlite3.Error:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
    finally:
        db.execute("DETACH DATABASE moved_history")
    return moved
