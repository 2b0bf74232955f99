"""Where the audit trail's rows live: a table in the collector's SQLite store, or a bounded list in memory.

One row per request to a node (or operator action): written when the request
arrives, *before* it is forwarded, then updated in place once its outcome is
known. ``collector/audit.py`` holds the policy (what to record, retention, the
``Audit`` answer); this module only stores and selects rows.
"""

from __future__ import annotations

import json
import sqlite3
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any, Protocol

__all__ = ["AuditRow", "AuditTable", "MemoryAuditTable", "SQLiteAuditTable", "encode_params", "row_of"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    who TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    type TEXT NOT NULL,
    params TEXT NOT NULL,
    node TEXT NOT NULL,
    outcome TEXT,
    bytes INTEGER,
    finished REAL
);
CREATE INDEX IF NOT EXISTS audit_time ON audit (time);
"""

_COLUMNS = "id, time, who, fingerprint, type, params, node, outcome, bytes, finished"
MEMORY_ROWS = 100_000  # the in-memory table (journal = false) keeps at most this many rows


@dataclass
class AuditRow:
    """One audited request: who asked what of which node, when, and how it ended (None: not yet known)."""

    id: int
    time: float
    who: str
    fingerprint: str
    type: str
    params: dict[str, str]
    node: str
    outcome: str | None = None
    bytes: int | None = None
    finished: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """The row as the ``Audit`` answer carries it (msgpack/JSON-able)."""
        return asdict(self)


class AuditTable(Protocol):
    """Storage of audit rows; every write is durable when the method returns (for a durable table)."""

    durable: bool

    def insert(self, row: AuditRow) -> int:
        """Store ``row`` (its id is ignored) and return the id it was given."""
        ...

    def finish(self, row_id: int, outcome: str, nbytes: int | None, finished: float) -> None:
        """Record the outcome of row ``row_id``."""
        ...

    def select(self, since: float, node: str, limit: int) -> list[AuditRow]:
        """The newest ``limit`` rows with time >= ``since`` (of ``node`` when given), oldest first."""
        ...

    def prune(self, older_than: float, keep_rows: int) -> int:
        """Drop rows older than ``older_than`` and all but the newest ``keep_rows``; returns how many."""
        ...


class SQLiteAuditTable:
    """The ``audit`` table of the collector's SQLite store (autocommit: each write is its own transaction)."""

    durable = True

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        db.executescript(SCHEMA)

    def insert(self, row: AuditRow) -> int:
        """Insert and commit ``row``; raises sqlite3.Error when it could not be written."""
        cursor = self.db.execute(
            "INSERT INTO audit (time, who, fingerprint, type, params, node, outcome, bytes, finished) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                row.time,
                row.who,
                row.fingerprint,
                row.type,
                encode_params(row.params),
                row.node,
                row.outcome,
                row.bytes,
                row.finished,
            ),
        )
        return int(cursor.lastrowid or 0)

    def finish(self, row_id: int, outcome: str, nbytes: int | None, finished: float) -> None:
        """Update the row's outcome, bytes and end time."""
        self.db.execute(
            "UPDATE audit SET outcome = ?, bytes = ?, finished = ? WHERE id = ?", (outcome, nbytes, finished, row_id)
        )

    def select(self, since: float, node: str, limit: int) -> list[AuditRow]:
        """The newest ``limit`` matching rows, oldest first."""
        where, args = "time >= ?", list[Any]([since])
        if node:
            where += " AND node = ?"
            args.append(node)
        rows = self.db.execute(
            f"SELECT {_COLUMNS} FROM audit WHERE {where} ORDER BY id DESC LIMIT ?", [*args, limit]
        ).fetchall()
        return [row_of(values) for values in reversed(rows)]

    def prune(self, older_than: float, keep_rows: int) -> int:
        """Delete rows past retention, then beyond the newest ``keep_rows``."""
        old = self.db.execute("DELETE FROM audit WHERE time < ?", (older_than,)).rowcount
        extra = self.db.execute(
            "DELETE FROM audit WHERE id <= (SELECT COALESCE(MAX(id), 0) FROM audit) - ?", (keep_rows,)
        ).rowcount
        return int(old) + int(extra)


class MemoryAuditTable:
    """Audit rows in memory only (the collector runs with ``journal = false``): lost on restart."""

    durable = False

    def __init__(self, max_rows: int = MEMORY_ROWS) -> None:
        self.rows: deque[AuditRow] = deque(maxlen=max_rows)
        self.by_id: dict[int, AuditRow] = {}
        self.last_id = 0

    def insert(self, row: AuditRow) -> int:
        """Keep a copy of ``row`` under a new id."""
        self.last_id += 1
        kept = AuditRow(**{**row.as_dict(), "id": self.last_id})
        if len(self.rows) == self.rows.maxlen:
            self.by_id.pop(self.rows[0].id, None)
        self.rows.append(kept)
        self.by_id[kept.id] = kept
        return kept.id

    def finish(self, row_id: int, outcome: str, nbytes: int | None, finished: float) -> None:
        """Update the row if it is still kept."""
        row = self.by_id.get(row_id)
        if row is not None:
            row.outcome, row.bytes, row.finished = outcome, nbytes, finished

    def select(self, since: float, node: str, limit: int) -> list[AuditRow]:
        """The newest ``limit`` matching rows, oldest first."""
        found = [r for r in self.rows if r.time >= since and (not node or r.node == node)]
        return found[-limit:] if limit else []

    def prune(self, older_than: float, keep_rows: int) -> int:
        """Drop rows past retention (the deque already bounds the count)."""
        dropped = 0
        while self.rows and (self.rows[0].time < older_than or len(self.rows) > keep_rows):
            self.by_id.pop(self.rows.popleft().id, None)
            dropped += 1
        return dropped


def encode_params(params: dict[str, str]) -> str:
    """A row's params as the text the SQL tables keep (JSON, keys sorted)."""
    return json.dumps(params, sort_keys=True)


def row_of(values: tuple[Any, ...]) -> AuditRow:
    """The :class:`AuditRow` of a row of the SQL tables (columns as in ``SELECT id, time, ... finished``)."""
    row_id, time, who, fingerprint, type, params, node, outcome, nbytes, finished = values
    try:
        decoded = json.loads(params)
    except ValueError:
        decoded = {"?": params}
    return AuditRow(row_id, time, who, fingerprint, type, decoded, node, outcome, nbytes, finished)
