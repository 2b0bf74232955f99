"""The SQLite file under the agent's outbox: ``<data-dir>/outbox.sqlite3``.

Two tables (docs/agent-outbox.md)::

    meta(key TEXT PRIMARY KEY, value TEXT)   node_id, instance, next_seq, gaps
    outbox(seq INTEGER PRIMARY KEY, time REAL, type TEXT, encoding INTEGER, schema TEXT, payload BLOB)

WAL mode with ``synchronous=NORMAL``: a commit is a write into the WAL file,
fsynced only at checkpoints, so it survives a kill -9 of the agent (the
bytes are in the kernel's page cache) but the last commits may roll back
after a power cut or an OS crash; the file itself stays consistent.

Every write happens inside :meth:`OutboxStore.transaction`, so the rows of
one loop tick, the deletes acknowledged since the last one and ``next_seq``
land together or not at all. The data folder is locked (``agent.lock``,
``flock``) for the life of the process: two agents on one outbox would hand
out the same sequence numbers.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import sqlite3
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from messages import Envelope, Kind
from messages.errors import ConfigError, OutboxError

__all__ = ["DB_NAME", "LOCK_NAME", "Drop", "Held", "OutboxError", "OutboxStore", "Transaction"]

log = logging.getLogger(__name__)

DB_NAME = "outbox.sqlite3"
LOCK_NAME = "agent.lock"

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT)",
    "CREATE TABLE IF NOT EXISTS outbox(seq INTEGER PRIMARY KEY, time REAL, type TEXT, encoding INTEGER, "
    "schema TEXT, payload BLOB)",
)
_COLUMNS = "seq, time, type, encoding, schema, payload"
_INSERT = f"INSERT INTO outbox({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"
# Field tag + length prefix of one envelope inside a Batch.
_ENVELOPE_OVERHEAD = 6
_SET_META = "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value"


@dataclass
class Held:
    """What the outbox file holds: row count, payload bytes, oldest and newest seq (0 when empty)."""

    count: int = 0
    size: int = 0
    first: int = 0
    last: int = 0


@dataclass
class Drop:
    """Rows removed by a bound: ``first..last``, ``count`` of them, ``size`` payload bytes."""

    first: int
    last: int
    count: int
    size: int


def _error(where: str, exc: sqlite3.Error | OSError) -> OutboxError:
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return OutboxError(f"{where}: {reason}", getattr(exc, "sqlite_errorname", "") or type(exc).__name__)


class Transaction:
    """The writes of one commit; only valid inside :meth:`OutboxStore.transaction`."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def delete_upto(self, seq: int) -> tuple[int, int]:
        """Delete every row numbered ``seq`` or lower; returns (rows, payload bytes) removed."""
        count, size = self._db.execute(
            "SELECT count(*), coalesce(sum(length(payload)), 0) FROM outbox WHERE seq <= ?", (seq,)
        ).fetchone()
        if count:
            self._db.execute("DELETE FROM outbox WHERE seq <= ?", (seq,))
        return int(count), int(size)

    def insert(self, envelopes: Iterable[Envelope]) -> None:
        """Store REPORT envelopes under their own seq."""
        self._db.executemany(_INSERT, ((e.seq, e.time, e.type, e.encoding, e.schema, e.payload) for e in envelopes))

    def set_meta(self, **values: str) -> None:
        """Set meta keys."""
        self._db.executemany(_SET_META, values.items())

    def oldest_time(self, after: int) -> float | None:
        """The time of the oldest row numbered above ``after``."""
        row = self._db.execute("SELECT time FROM outbox WHERE seq > ? ORDER BY seq LIMIT 1", (after,)).fetchone()
        return None if row is None else float(row[0])

    def drop_oldest(self, after: int, keep: int, excess: int, cutoff: float) -> Drop | None:
        """Delete the oldest rows above ``after`` while ``excess`` bytes remain or a row is older than ``cutoff``.

        The row numbered ``keep`` and everything newer stay whatever the bounds say,
        so the outbox never empties itself. Returns what went, or None.
        """
        first = last = count = size = 0
        rows = self._db.execute(
            "SELECT seq, time, length(payload) FROM outbox WHERE seq > ? AND seq < ? ORDER BY seq", (after, keep)
        )
        try:
            for seq, when, length in rows:
                if size >= excess and when >= cutoff:
                    break
                first = first or seq
                last, count, size = seq, count + 1, size + (length or 0)
        finally:
            rows.close()
        if not count:
            return None
        self._db.execute("DELETE FROM outbox WHERE seq <= ?", (last,))
        return Drop(first, last, count, size)


class OutboxStore:
    """The outbox's SQLite file (or an in-memory database when ``folder`` is None)."""

    def __init__(self, folder: Path | None, node: str) -> None:
        self.folder = folder
        self.node = node
        self.path = ":memory:" if folder is None else str(folder / DB_NAME)
        self._lock: IO[str] | None = None
        self._db: sqlite3.Connection | None = None
        self.meta: dict[str, str] = {}

    # ------------------------------------------------------------------ open

    def open(self) -> OutboxStore:
        """Create or open the outbox; raises ConfigError (another node's folder) or OutboxError."""
        try:
            if self.folder is not None:
                self._make_folder(self.folder)
                self._lock = self._take_lock(self.folder)
            self._db = self._connect()
            self._load_meta()
        except BaseException:
            self.close()
            raise
        return self

    @staticmethod
    def _make_folder(folder: Path) -> None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _error(f"data dir {folder}: cannot create it", exc) from None

    @staticmethod
    def _take_lock(folder: Path) -> IO[str]:
        path = folder / LOCK_NAME
        try:
            handle = open(path, "a+")  # held open (and locked) for the life of the process
        except OSError as exc:
            raise _error(f"data dir {folder}: cannot write {LOCK_NAME}", exc) from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            owner = handle.read().strip() or "?"
            handle.close()
            raise OutboxError(f"data dir {folder} is in use by another agent (pid {owner})") from None
        handle.truncate(0)
        handle.write(str(os.getpid()))
        handle.flush()
        return handle

    def _connect(self) -> sqlite3.Connection:
        try:
            # Autocommit mode: transactions are begun and ended explicitly (see transaction()).
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error as exc:
            raise _error(f"outbox {self.path}: cannot open", exc) from None
        return db

    def _load_meta(self) -> None:
        with self.transaction() as tx:
            assert self._db is not None
            for statement in _SCHEMA:
                self._db.execute(statement)
            self.meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
            owner = self.meta.get("node_id")
            if owner is not None and owner != self.node:
                raise ConfigError(
                    f"data dir {self.folder} belongs to node {owner}; give --node-id {owner} or another --data-dir"
                )
            if owner is None:
                self.meta.update(node_id=self.node, instance=uuid.uuid4().hex, next_seq="1")
                log.info("new outbox %s for node %s (instance %s)", self.path, self.node, self.meta["instance"])
            # A write at start: an unwritable file or a full disk is a start-up error, not a surprise later.
            tx.set_meta(**self.meta)

    # ----------------------------------------------------------------- access

    @property
    def instance(self) -> str:
        """The outbox's identity (uuid4 hex), made when the file was created."""
        return self.meta["instance"]

    @property
    def next_seq(self) -> int:
        """The next sequence number to hand out, as last committed."""
        return int(self.meta.get("next_seq", "1"))

    @property
    def gaps(self) -> list[tuple[int, int, int]]:
        """Held gap events as committed: (event seq, first lost, last lost)."""
        return [(int(a), int(b), int(c)) for a, b, c in json.loads(self.meta.get("gaps") or "[]")]

    def held(self) -> Held:
        """Count, payload bytes and seq range of the rows (one scan; call at start only)."""
        count, size, first, last = (
            self._conn()
            .execute(
                "SELECT count(*), coalesce(sum(length(payload)), 0), coalesce(min(seq), 0), coalesce(max(seq), 0) "
                "FROM outbox"
            )
            .fetchone()
        )
        return Held(int(count), int(size), int(first), int(last))

    def read(self, first: int, limit: int, max_bytes: int, node: str) -> list[Envelope]:
        """Up to ``limit`` REPORTs from ``first`` on, oldest first, at most ``max_bytes`` as a Batch.

        Rows are stepped through one at a time, so a large backlog is never loaded whole;
        the first row is returned whatever its size.
        """
        frame: list[Envelope] = []
        size = 0
        rows = self._conn().execute(
            f"SELECT {_COLUMNS} FROM outbox WHERE seq >= ? ORDER BY seq LIMIT ?", (first, limit)
        )
        try:
            for seq, when, rtype, encoding, schema, payload in rows:
                env = Envelope(
                    kind=Kind.REPORT,
                    node=node,
                    seq=seq,
                    time=when,
                    type=rtype,
                    encoding=encoding,
                    schema=schema,
                    payload=payload,
                )
                size += env.ByteSize() + _ENVELOPE_OVERHEAD
                if frame and size > max_bytes:
                    break
                frame.append(env)
        finally:
            rows.close()  # ends the read transaction at once, so checkpoints are not held up
        return frame

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """One atomic write; raises OutboxError (after rolling back) when SQLite fails."""
        db = self._conn()
        try:
            db.execute("BEGIN IMMEDIATE")
            yield Transaction(db)
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise _error(f"outbox {self.path}", exc) from None
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def remember(self, **values: str) -> None:
        """Update the cached meta after a transaction that wrote those values committed."""
        self.meta.update(values)

    def limit_pages(self, pages: int) -> None:
        """Cap the database at ``pages`` pages (SQLite then fails writes as a full disk would)."""
        self._conn().execute(f"PRAGMA max_page_count = {int(pages)}")

    def page_count(self) -> int:
        """Pages the database uses now."""
        return int(self._conn().execute("PRAGMA page_count").fetchone()[0])

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise OutboxError(f"outbox {self.path} is closed")
        return self._db

    def close(self) -> None:
        """Close the database and release the folder's lock."""
        if self._db is not None:
            try:
                self._db.close()
            except sqlite3.Error as exc:
                log.warning("closing outbox %s: %s", self.path, exc)
            self._db = None
        if self._lock is not None:
            self._lock.close()  # closing the descriptor releases the flock
            self._lock = None
