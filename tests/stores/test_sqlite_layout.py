"""The sqlite store on a data dir of an earlier version, and the journal's epoch guarding snapshots."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from collector.audit_table import SCHEMA as AUDIT_SCHEMA
from collector.store import SQLiteStore
from collector.stores.memory import MemorySnapshots
from collector.stores.sqlite import MIGRATIONS, SQLiteStoreBackend
from messages import NodeInfo

OLD_LAYOUT = """
CREATE TABLE journal (id INTEGER PRIMARY KEY, node TEXT NOT NULL, first_seq INTEGER NOT NULL,
    last_seq INTEGER NOT NULL, received REAL NOT NULL, batch BLOB NOT NULL);
CREATE TABLE nodes (node TEXT PRIMARY KEY, last_seq INTEGER NOT NULL, first_seen REAL NOT NULL,
    last_seen REAL NOT NULL, gaps INTEGER NOT NULL, reconnects INTEGER NOT NULL, info BLOB NOT NULL);
CREATE TABLE snapshots (module TEXT PRIMARY KEY, journal_id INTEGER NOT NULL, taken REAL NOT NULL,
    state BLOB NOT NULL);
"""


def old_data_dir(tmp_path: Path) -> Path:
    """A collector.sqlite3 as the collector wrote it before the store interface."""
    path = tmp_path / "collector.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(OLD_LAYOUT + AUDIT_SCHEMA)
    info = NodeInfo(node="old", hostname="h-old").SerializeToString()
    db.execute("INSERT INTO nodes VALUES ('old', 42, 1.0, 2.0, 0, 1, ?)", (info,))
    db.execute("INSERT INTO snapshots VALUES ('systemstats', 7, 3.0, x'80')")
    db.execute(
        "INSERT INTO audit (time, who, fingerprint, type, params, node) VALUES (5.0, 'op', '', 'Ping', '{}', 'old')"
    )
    db.commit()
    db.close()
    return tmp_path


def test_an_old_data_dir_opens_and_reads_as_it_was(tmp_path: Path) -> None:
    data_dir = old_data_dir(tmp_path)
    journal = SQLiteStore(data_dir / "collector.sqlite3")  # the collector opens the journal first
    store = SQLiteStoreBackend(data_dir)
    journal.snapshots = store.snapshots
    try:
        assert store.version == max(MIGRATIONS)
        (record,) = store.nodes.load()
        assert (record.node, record.last_seq, record.info.hostname, record.status) == ("old", 42, "h-old", "lost")
        snap = journal.load_snapshot("systemstats")  # written before epochs: belongs to this journal
        assert snap is not None and (snap.journal_id, snap.state) == (7, b"\x80")
        assert [(r.who, r.node) for r in store.audit.select(0.0, "", 10)] == [("op", "old")]
        store.events.append({"time": 9.0, "node": "old", "kind": "k", "message": "m", "attrs": {}})
        assert store.events.recent()[0]["message"] == "m"
    finally:
        store.close()
        journal.close()


def test_a_snapshot_of_another_journal_is_not_restored(tmp_path: Path) -> None:
    shared = MemorySnapshots()  # a store that outlives the data dir, as PostgreSQL does
    first = SQLiteStore(tmp_path / "a.sqlite3")
    first.snapshots = shared
    first.save_snapshot("m", 100, b"\x80")
    assert first.load_snapshot("m") is not None
    again = SQLiteStore(tmp_path / "a.sqlite3")
    again.snapshots = shared
    assert again.epoch == first.epoch and again.load_snapshot("m") is not None
    fresh = SQLiteStore(tmp_path / "b.sqlite3")  # an empty data dir: a new journal
    fresh.snapshots = shared
    assert fresh.epoch != first.epoch and fresh.load_snapshot("m") is None
    for store in (first, again, fresh):
        store.close()


def test_the_history_has_a_file_of_its_own_so_the_journal_never_waits_for_its_writer(tmp_path: Path) -> None:
    journal = SQLiteStore(tmp_path / "collector.sqlite3")
    store = SQLiteStoreBackend(tmp_path)
    try:
        assert store.history_path == tmp_path / "collector-history.sqlite3" and store.history_path.exists()
        tables = store.history.tables
        with tables._transaction():  # the history's writer holds its file's write lock, as during a big pass
            journal.append("n1", 1, 1, b"report")
            assert journal.commit([]) == 1  # with one shared file: "database is locked" after 10 s
            store.events.append({"time": 9.0, "node": "n1", "kind": "k", "message": "m", "attrs": {}})
        store.history.record("n1", ("cpu",), 60.0, (5.0,))
        assert [list(s.avg) for s in store.history.query("n1", "1m")] == [[5.0]]
    finally:
        store.close()
        journal.close()


def test_history_an_earlier_version_kept_in_the_store_file_is_moved_once(tmp_path: Path) -> None:
    first = SQLiteStoreBackend(tmp_path, history_path=str(tmp_path / "collector.sqlite3"))  # the old layout
    first.history.record("n1", ("cpu",), 60.0, (5.0,))
    first.history.record("n1", ("cpu",), 61.0, (7.0,))
    first.close()
    store = SQLiteStoreBackend(tmp_path)
    try:
        (series,) = store.history.query("n1", "1m")
        assert (series.name, list(series.avg), list(series.count)) == ("cpu", [6.0], [2.0])
        assert len(store.history.query("n1", "raw")[0].time) == 2
        main = sqlite3.connect(tmp_path / "collector.sqlite3")
        tables = {row[0] for row in main.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        main.close()
        assert not tables & {"history_raw", "history_chunks"}
    finally:
        store.close()
    again = SQLiteStoreBackend(tmp_path)  # nothing left to move: the same answer
    try:
        assert [list(s.avg) for s in again.history.query("n1", "1m")] == [[6.0]]
    finally:
        again.close()
