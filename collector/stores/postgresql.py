"""The ``postgresql`` store: every part in PostgreSQL (psycopg 3 with a connection pool).

store_args: ``dsn`` (libpq connection string, default ``host=127.0.0.1 dbname=labscope``),
``schema`` (default ``labscope``; created when missing), ``pool_size`` (default 8),
``connect_timeout`` (seconds, default 10), ``queue_max`` (queued events and node
records, default 100000), ``history_raw``, ``history_1m``, ``history_1h`` (the
history tiers' retentions, collector/stores/history.py; the history has a
writer thread of its own).

Tables are created on first start by versioned migrations recorded in
``SCHEMA.schema_version`` (under an advisory lock, so two collectors starting at
once migrate once). Events and node records go through a background writer
(collector/stores/writer.py): the ingest loop only queues them. Everything
else (metadata, blobs, probes, audit, snapshots, and every read) runs on
demand on a pooled connection; under the collector's gevent patching psycopg
waits cooperatively, so such a call holds only the greenlet that made it.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from collector.addons import NodeRecord
from collector.audit_table import AuditRow
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
from collector.stores.history_sql import PG_SCHEMA as HISTORY_SCHEMA
from collector.stores.history_sql import PGHistoryTables
from collector.stores.rows import EVENT_COLUMNS, NODE_COLUMNS, event_of_row, event_row, node_of_row, node_row
from collector.stores.tiers import TierHistory
from collector.stores.writer import Writer

try:
    import psycopg
    import psycopg_pool
except ImportError:  # pragma: no cover - the extra is not installed
    psycopg = None  # type: ignore[assignment]
    psycopg_pool = None  # type: ignore[assignment]

__all__ = ["MIGRATIONS", "PostgreSQLStore"]

_SCHEMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_AUDIT_COLUMNS = "id, time, who, fingerprint, type, params, node, outcome, bytes, finished"
_LOCK_KEY = 0x6C616273  # advisory lock id for migrations ("labs")

MIGRATIONS: dict[int, str] = {
    1: """
CREATE TABLE IF NOT EXISTS events (
    id BIGSERIAL PRIMARY KEY, time DOUBLE PRECISION NOT NULL, node TEXT NOT NULL, kind TEXT NOT NULL,
    severity TEXT NOT NULL, message TEXT NOT NULL, attrs TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_time ON events (time);
CREATE TABLE IF NOT EXISTS metadata (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS blobs (
    name TEXT NOT NULL, version INTEGER NOT NULL, digest TEXT NOT NULL, size BIGINT NOT NULL,
    stored DOUBLE PRECISION NOT NULL, data BYTEA NOT NULL, PRIMARY KEY (name, version)
);
CREATE TABLE IF NOT EXISTS probes (name TEXT PRIMARY KEY, definition BYTEA NOT NULL);
CREATE TABLE IF NOT EXISTS audit (
    id BIGSERIAL PRIMARY KEY, time DOUBLE PRECISION NOT NULL, who TEXT NOT NULL, fingerprint TEXT NOT NULL,
    type TEXT NOT NULL, params TEXT NOT NULL, node TEXT NOT NULL, outcome TEXT, bytes BIGINT,
    finished DOUBLE PRECISION
);
CREATE INDEX IF NOT EXISTS audit_time ON audit (time);
CREATE TABLE IF NOT EXISTS nodes (
    node TEXT PRIMARY KEY, last_seq BIGINT NOT NULL, first_seen DOUBLE PRECISION NOT NULL,
    last_seen DOUBLE PRECISION NOT NULL, gaps BIGINT NOT NULL, reconnects BIGINT NOT NULL, info BYTEA NOT NULL
);
CREATE TABLE IF NOT EXISTS snapshots (
    module TEXT PRIMARY KEY, journal_id BIGINT NOT NULL, taken DOUBLE PRECISION NOT NULL, state BYTEA NOT NULL,
    journal TEXT NOT NULL DEFAULT ''
);
""",
    2: HISTORY_SCHEMA,
}


class _Pool:
    """The connection pool, with psycopg errors turned into one-line :class:`StoreError` s."""

    def __init__(self, dsn: str, schema: str, size: int, timeout: float) -> None:
        self.where = f"postgresql store (schema {schema})"
        kwargs = {"autocommit": True, "options": f"-c search_path={schema}", "connect_timeout": int(timeout)}
        _probe(dsn, kwargs, self.where)  # one connection first: a refused server is one line, not pool retries
        self.pool = psycopg_pool.ConnectionPool(
            dsn, min_size=1, max_size=size, kwargs=kwargs, open=False, timeout=timeout, name="labscope"
        )
        try:
            self.pool.open(wait=True, timeout=timeout)
        except psycopg_pool.PoolTimeout:
            self.pool.close()
            raise StoreError(f"{self.where}: cannot connect to {dsn!r} within {timeout:g} s") from None

    @contextmanager
    def conn(self) -> Iterator[Any]:
        """A pooled connection (autocommit; use ``conn.transaction()`` for several statements)."""
        try:
            with self.pool.connection() as conn:
                yield conn
        except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
            raise StoreError(f"{self.where}: {type(exc).__name__}: {exc}".strip()) from None

    def all(self, sql: str, args: tuple[Any, ...] | list[Any] = ()) -> list[Any]:
        """Rows of one query."""
        with self.conn() as conn:
            rows: list[Any] = conn.execute(sql, args).fetchall()
        return rows

    def run(self, sql: str, args: tuple[Any, ...] | list[Any] = ()) -> None:
        """One statement."""
        with self.conn() as conn:
            conn.execute(sql, args)


def _probe(dsn: str, kwargs: dict[str, Any], where: str) -> None:
    """Connect once; raise StoreError with the first line of libpq's reason when that fails."""
    try:
        psycopg.connect(dsn, **kwargs).close()
    except psycopg.Error as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise StoreError(f"{where}: cannot connect to {dsn!r}: {reason}") from None


class PGEvents:
    """The ``events`` table; appends are queued for the writer, reads wait for it first (2 s at most)."""

    durable = True

    def __init__(self, db: _Pool, writer: Writer) -> None:
        self.db = db
        self.writer = writer

    def append(self, event: EventDict) -> None:
        """Queue ``event`` (dropped and counted when the queue is full)."""
        self.writer.submit(("event", event_row(event)))

    def recent(self, since: float | None = None, limit: int = DEFAULT_RECENT, node: str = "") -> list[EventDict]:
        """The newest matching events, newest first."""
        self.writer.flush(2.0)
        where, args = "time > %s", list[Any]([float("-inf") if since is None else since])
        if node:
            where += " AND node = %s"
            args.append(node)
        sql = f"SELECT {EVENT_COLUMNS} FROM events WHERE {where} ORDER BY time DESC, id DESC LIMIT %s"
        return [event_of_row(row) for row in self.db.all(sql, [*args, limit])]


class PGMetadata:
    """The ``metadata`` table."""

    def __init__(self, db: _Pool) -> None:
        self.db = db

    def get(self, key: str) -> str | None:
        """The text under ``key``, or None."""
        rows = self.db.all("SELECT value FROM metadata WHERE key = %s", (key,))
        return str(rows[0][0]) if rows else None

    def put(self, key: str, value: str) -> None:
        """Set ``key``."""
        self.db.run(
            "INSERT INTO metadata VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value", (key, value)
        )

    def delete(self, key: str) -> None:
        """Forget ``key``."""
        self.db.run("DELETE FROM metadata WHERE key = %s", (key,))

    def keys(self, prefix: str = "") -> list[str]:
        """Keys starting with ``prefix``, sorted."""
        rows = self.db.all("SELECT key FROM metadata WHERE left(key, %s) = %s ORDER BY key", (len(prefix), prefix))
        return [str(row[0]) for row in rows]


class PGBlobs:
    """The ``blobs`` table; a put takes a per-name advisory lock, so versions never collide."""

    def __init__(self, db: _Pool) -> None:
        self.db = db

    def put(self, name: str, data: bytes) -> BlobVersion:
        """Insert the next version of ``name``."""
        data = bytes(data)
        with self.db.conn() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (name,))
            (last,) = conn.execute("SELECT COALESCE(MAX(version), 0) FROM blobs WHERE name = %s", (name,)).fetchone()
            meta = BlobVersion(name, int(last) + 1, digest_of(data), len(data), time.time())
            conn.execute(
                "INSERT INTO blobs VALUES (%s, %s, %s, %s, %s, %s)",
                (name, meta.version, meta.digest, meta.size, meta.stored, data),
            )
        return meta

    def get(self, name: str, version: int | None = None) -> Blob | None:
        """The latest (or the given) version, or None."""
        columns = "name, version, digest, size, stored, data"
        args: tuple[Any, ...] = (name,)
        sql = f"SELECT {columns} FROM blobs WHERE name = %s ORDER BY version DESC LIMIT 1"
        if version is not None:
            sql, args = f"SELECT {columns} FROM blobs WHERE name = %s AND version = %s", (name, version)
        rows = self.db.all(sql, args)
        if not rows:
            return None
        *meta, data = rows[0]
        return Blob(BlobVersion(*meta), bytes(data))

    def versions(self, name: str) -> list[BlobVersion]:
        """Every version's metadata, oldest first."""
        sql = "SELECT name, version, digest, size, stored FROM blobs WHERE name = %s ORDER BY version"
        return [BlobVersion(*row) for row in self.db.all(sql, (name,))]

    def names(self) -> list[str]:
        """Every name, sorted."""
        return [str(row[0]) for row in self.db.all("SELECT DISTINCT name FROM blobs ORDER BY name")]


class PGProbes:
    """The ``probes`` table."""

    def __init__(self, db: _Pool) -> None:
        self.db = db

    def put(self, name: str, definition: bytes) -> None:
        """Set probe ``name``."""
        self.db.run(
            "INSERT INTO probes VALUES (%s, %s) ON CONFLICT (name) DO UPDATE SET definition = EXCLUDED.definition",
            (name, bytes(definition)),
        )

    def get(self, name: str) -> bytes | None:
        """Probe ``name``'s definition, or None."""
        rows = self.db.all("SELECT definition FROM probes WHERE name = %s", (name,))
        return bytes(rows[0][0]) if rows else None

    def delete(self, name: str) -> None:
        """Forget probe ``name``."""
        self.db.run("DELETE FROM probes WHERE name = %s", (name,))

    def list(self) -> dict[str, bytes]:
        """Every definition, by name."""
        return {str(n): bytes(d) for n, d in self.db.all("SELECT name, definition FROM probes ORDER BY name")}


class PGAudit:
    """The ``audit`` table; each write is committed before the call returns (the audit's promise)."""

    durable = True

    def __init__(self, db: _Pool) -> None:
        self.db = db

    def insert(self, row: AuditRow) -> int:
        """Insert ``row``; returns its id."""
        from collector.audit_table import encode_params

        sql = (
            "INSERT INTO audit (time, who, fingerprint, type, params, node, outcome, bytes, finished) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id"
        )
        args = (row.time, row.who, row.fingerprint, row.type, encode_params(row.params), row.node)
        return int(self.db.all(sql, (*args, row.outcome, row.bytes, row.finished))[0][0])

    def finish(self, row_id: int, outcome: str, nbytes: int | None, finished: float) -> None:
        """Record the outcome of row ``row_id``."""
        self.db.run(
            "UPDATE audit SET outcome = %s, bytes = %s, finished = %s WHERE id = %s",
            (outcome, nbytes, finished, row_id),
        )

    def select(self, since: float, node: str, limit: int) -> list[AuditRow]:
        """The newest ``limit`` matching rows, oldest first."""
        from collector.audit_table import row_of

        where, args = "time >= %s", list[Any]([since])
        if node:
            where += " AND node = %s"
            args.append(node)
        sql = f"SELECT {_AUDIT_COLUMNS} FROM audit WHERE {where} ORDER BY id DESC LIMIT %s"
        return [row_of(values) for values in reversed(self.db.all(sql, [*args, limit]))]

    def prune(self, older_than: float, keep_rows: int) -> int:
        """Delete rows past retention, then beyond the newest ``keep_rows``."""
        with self.db.conn() as conn:
            old = conn.execute("DELETE FROM audit WHERE time < %s", (older_than,)).rowcount
            extra = conn.execute(
                "DELETE FROM audit WHERE id <= (SELECT COALESCE(MAX(id), 0) FROM audit) - %s", (keep_rows,)
            ).rowcount
        return int(old) + int(extra)


class PGNodes:
    """The ``nodes`` table; saves are queued for the writer, loads wait for it first."""

    def __init__(self, db: _Pool, writer: Writer) -> None:
        self.db = db
        self.writer = writer

    def save(self, records: list[NodeRecord]) -> None:
        """Queue ``records`` (a later save of the same node replaces it)."""
        for record in records:
            self.writer.submit(("node", node_row(record)))

    def load(self) -> list[NodeRecord]:
        """Every node recorded, status ``lost``."""
        self.writer.flush(5.0)
        return [node_of_row(row) for row in self.db.all(f"SELECT {NODE_COLUMNS} FROM nodes")]


class PGSnapshots:
    """The ``snapshots`` table."""

    def __init__(self, db: _Pool) -> None:
        self.db = db

    def save(self, module: str, journal_id: int, state: bytes, journal: str = "") -> None:
        """Replace ``module``'s snapshot."""
        self.db.run(
            "INSERT INTO snapshots VALUES (%s, %s, %s, %s, %s) ON CONFLICT (module) DO UPDATE SET "
            "journal_id = EXCLUDED.journal_id, taken = EXCLUDED.taken, state = EXCLUDED.state, "
            "journal = EXCLUDED.journal",
            (module, journal_id, time.time(), bytes(state), journal),
        )

    def load(self, module: str) -> Snapshot | None:
        """``module``'s snapshot, or None."""
        rows = self.db.all("SELECT journal_id, taken, state, journal FROM snapshots WHERE module = %s", (module,))
        if not rows:
            return None
        journal_id, taken, state, journal = rows[0]
        return Snapshot(int(journal_id), float(taken), bytes(state), str(journal))


class PostgreSQLStore(Store):
    """``store = "postgresql"``: see the module docstring for its store_args."""

    name = "postgresql"

    def __init__(
        self,
        data_dir: Path | None = None,
        dsn: str = "host=127.0.0.1 dbname=labscope",
        schema: str = "labscope",
        pool_size: int = 8,
        connect_timeout: float = 10.0,
        queue_max: int = 100_000,
        history_raw: Any = None,
        history_1m: Any = None,
        history_1h: Any = None,
    ) -> None:
        retention = retention_of(history_raw, history_1m, history_1h)
        if psycopg is None:
            raise StoreError('the postgresql store needs psycopg 3: pip install "labscope[postgresql]"')
        if not _SCHEMA_NAME.match(schema):
            raise StoreError(f"postgresql store: schema {schema!r} must be letters, digits and _ (a plain identifier)")
        self.dsn, self.schema = dsn, schema
        self.db = _Pool(dsn, schema, max(2, int(pool_size)), float(connect_timeout))
        try:
            self.version = self._migrate()
        except StoreError:
            self.db.pool.close()
            raise
        self.writer = Writer(f"postgresql:{schema}", self._write, int(queue_max))
        self.events = PGEvents(self.db, self.writer)
        self.metadata = PGMetadata(self.db)
        self.blobs = PGBlobs(self.db)
        self.probes = PGProbes(self.db)
        self.audit = PGAudit(self.db)
        self.nodes = PGNodes(self.db, self.writer)
        self.snapshots = PGSnapshots(self.db)
        self.history = TierHistory(PGHistoryTables(self.db), retention, f"postgresql:{schema}")
        self._closed = threading.Event()

    def _migrate(self) -> int:
        with self.db.conn() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, "
                "applied TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            (current,) = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()
            for version in sorted(v for v in MIGRATIONS if v > current):
                conn.execute(MIGRATIONS[version])
                conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))
                current = version
        return int(current)

    def _write(self, items: list[tuple[str, tuple[Any, ...]]]) -> None:
        """One transaction for a writer batch: events inserted, node records upserted (the last one wins)."""
        events = [row for kind, row in items if kind == "event"]
        nodes = {row[0]: row for kind, row in items if kind == "node"}
        with self.db.conn() as conn, conn.transaction(), conn.cursor() as cur:
            if events:
                cur.executemany(f"INSERT INTO events ({EVENT_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s)", events)
            if nodes:
                cur.executemany(
                    f"INSERT INTO nodes ({NODE_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (node) "
                    "DO UPDATE SET last_seq = EXCLUDED.last_seq, first_seen = EXCLUDED.first_seen, "
                    "last_seen = EXCLUDED.last_seen, gaps = EXCLUDED.gaps, reconnects = EXCLUDED.reconnects, "
                    "info = EXCLUDED.info",
                    list(nodes.values()),
                )

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait for the writers' queues to be written."""
        return self.writer.flush(timeout) and self.history.flush(timeout)

    def close(self) -> None:
        """Write what is queued, stop the writer, close the pool."""
        if self._closed.is_set():
            return
        self._closed.set()
        self.history.close()
        self.writer.close()
        self.db.pool.close()

    def describe(self) -> str:
        """One line for the log."""
        version = self.version
        return f"postgresql schema {self.schema} (schema version {version}; events and nodes written in the background)"
