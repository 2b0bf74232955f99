"""The history tables in SQL, for the ``sqlite`` and ``postgresql`` stores (collector/stores/history.py).

Two tables: ``history_raw`` (node, kind, names, time, values, data: one row
per recorded sample, its values packed as doubles beside its payload) and
``history_chunks`` (tier, node, series, start, data:
:data:`~collector.stores.history.CHUNK_BUCKETS` buckets packed as doubles).
Both backends run the same statements (``?`` becomes ``%s`` for psycopg); raw
rows are inserted if new, chunks upserted.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from collector.stores.history import ChunkKey, WriteBatch

__all__ = ["PG_SCHEMA", "SQLITE_SCHEMA", "PGHistoryTables", "SQLiteHistoryTables"]

READER_MMAP = 256 << 20  # bytes of the store file the history's reader maps

SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS history_raw (
    node TEXT NOT NULL, kind TEXT NOT NULL, names TEXT NOT NULL, time REAL NOT NULL, vals BLOB NOT NULL,
    data BLOB NOT NULL, PRIMARY KEY (node, kind, names, time)
);
CREATE INDEX IF NOT EXISTS history_raw_time ON history_raw (node, time);
CREATE TABLE IF NOT EXISTS history_chunks (
    tier TEXT NOT NULL, node TEXT NOT NULL, series TEXT NOT NULL, start REAL NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (tier, node, series, start)
);
"""

PG_SCHEMA = """
CREATE TABLE IF NOT EXISTS history_raw (
    node TEXT NOT NULL, kind TEXT NOT NULL, names TEXT NOT NULL, time DOUBLE PRECISION NOT NULL, vals BYTEA NOT NULL,
    data BYTEA NOT NULL, PRIMARY KEY (node, kind, names, time)
);
CREATE INDEX IF NOT EXISTS history_raw_time ON history_raw (node, time);
CREATE TABLE IF NOT EXISTS history_chunks (
    tier TEXT NOT NULL, node TEXT NOT NULL, series TEXT NOT NULL, start DOUBLE PRECISION NOT NULL,
    data BYTEA NOT NULL, PRIMARY KEY (tier, node, series, start)
);
"""

_INSERT_RAW = "INSERT INTO history_raw VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
_UPSERT_CHUNK = (
    "INSERT INTO history_chunks VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (tier, node, series, start) DO UPDATE SET data = excluded.data"
)
_EXPIRE_RAW = "DELETE FROM history_raw WHERE node = ? AND kind = ? AND time < ?"
_EXPIRE_CHUNKS = "DELETE FROM history_chunks WHERE tier = ? AND node = ? AND series = ? AND start < ?"
_LOAD_CHUNK = "SELECT data FROM history_chunks WHERE tier = ? AND node = ? AND series = ? AND start = ?"
_READ_CHUNKS = (
    "SELECT series, start, data FROM history_chunks WHERE tier = ? AND node = ? AND start > ? AND start <= ? "
    "ORDER BY series, start"
)
_READ_RAW = "SELECT time, names, vals FROM history_raw WHERE node = ? AND time > ? AND time <= ? ORDER BY time"
_READ_SAMPLES = (
    "SELECT time, data FROM history_raw WHERE node = ? AND kind = ? AND time > ? AND time <= ? "
    "ORDER BY time DESC LIMIT ?"
)


def _finite(value: float) -> float:
    """Infinite bounds as the largest doubles (both servers compare them; psycopg sends inf as text)."""
    return max(-1.7976931348623157e308, min(1.7976931348623157e308, value))


class _SQLTables:
    """The statements; subclasses give a write transaction (a cursor) and a read (rows of one query)."""

    durable = True
    placeholder = "?"

    def _sql(self, statement: str) -> str:
        return statement if self.placeholder == "?" else statement.replace("?", self.placeholder)

    def _transaction(self) -> AbstractContextManager[Any]:
        raise NotImplementedError

    def _read(self, sql: str, args: tuple[Any, ...]) -> list[Any]:
        raise NotImplementedError

    def write(self, batch: WriteBatch) -> None:
        """Write ``batch`` in one transaction."""
        steps = (
            (_INSERT_RAW, batch.raw),
            (_UPSERT_CHUNK, batch.chunks),
            (_EXPIRE_RAW, batch.expire_raw),
            (_EXPIRE_CHUNKS, batch.expire_chunks),
        )
        with self._transaction() as cur:
            for sql, rows in steps:
                if rows:
                    cur.executemany(self._sql(sql), rows)

    def load_chunks(self, tier: str, keys: list[ChunkKey]) -> dict[ChunkKey, bytes]:
        """The stored chunks of ``keys``."""
        found: dict[ChunkKey, bytes] = {}
        for key in keys:
            rows = self._read(self._sql(_LOAD_CHUNK), (tier, *key))
            if rows:
                found[key] = bytes(rows[0][0])
        return found

    def read_chunks(self, tier: str, node: str, lo: float, hi: float) -> list[tuple[str, float, bytes]]:
        """``node``'s chunks with lo < start <= hi, by series then start."""
        return self._read(self._sql(_READ_CHUNKS), (tier, node, _finite(lo), _finite(hi)))  # bytes: read as they come

    def read_raw(self, node: str, lo: float, hi: float) -> list[tuple[float, str, bytes]]:
        """``node``'s raw rows of every kind with lo < time <= hi, by time."""
        rows = self._read(self._sql(_READ_RAW), (node, _finite(lo), _finite(hi)))
        return [(float(t), str(names), bytes(values)) for t, names, values in rows]

    def read_samples(self, node: str, kind: str, lo: float, hi: float, limit: int) -> list[tuple[float, bytes]]:
        """The newest ``limit`` samples with lo < time <= hi, oldest first."""
        rows = self._read(self._sql(_READ_SAMPLES), (node, kind, _finite(lo), _finite(hi), max(0, limit)))
        return [(float(t), bytes(data)) for t, data in reversed(rows)]


class SQLiteHistoryTables(_SQLTables):
    """The tables in the store's SQLite file, on two connections of their own (one writes, one reads)."""

    def __init__(self, connect: Callable[[], sqlite3.Connection]) -> None:
        self._writer_db = connect()
        self._reader_db = connect()
        # reads of weeks of chunks copy megabytes of pages: memory-mapped, about twice as fast (measured)
        self._reader_db.execute(f"PRAGMA mmap_size={READER_MMAP}")
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()

    def _transaction(self) -> AbstractContextManager[Any]:
        return _sqlite_transaction(self._writer_db, self._write_lock)

    def _read(self, sql: str, args: tuple[Any, ...]) -> list[Any]:
        with self._read_lock:
            return self._reader_db.execute(sql, args).fetchall()

    def close(self) -> None:
        """Close both connections."""
        with self._write_lock, self._read_lock:
            self._writer_db.close()
            self._reader_db.close()


@contextmanager
def _sqlite_transaction(db: sqlite3.Connection, lock: threading.Lock) -> Iterator[sqlite3.Cursor]:
    with lock:
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db.cursor()
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")


class PGHistoryTables(_SQLTables):
    """The tables in the PostgreSQL store's schema, on its pool (``pool.conn()`` gives a connection)."""

    placeholder = "%s"

    def __init__(self, pool: Any) -> None:
        self.pool = pool

    def _transaction(self) -> AbstractContextManager[Any]:
        return _pg_transaction(self.pool)

    def _read(self, sql: str, args: tuple[Any, ...]) -> list[Any]:
        rows: list[Any] = self.pool.all(sql, args)
        return rows

    def close(self) -> None:
        """The pool is the store's: nothing of its own to release."""


@contextmanager
def _pg_transaction(pool: Any) -> Iterator[Any]:
    with pool.conn() as conn, conn.transaction(), conn.cursor() as cur:
        yield cur


def sqlite_connector(path: Path, sync: str) -> Callable[[], sqlite3.Connection]:
    """A function opening one more connection to the store's file."""
    from collector.stores.sqlite import connect

    return lambda: connect(path, sync)
