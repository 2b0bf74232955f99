"""The journal's segment files (collector/segments.py) and the SQLite journal rows that point into them."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import pytest

from collector.addons import NodeRecord
from collector.segments import SegmentReader, SegmentWriter, segment_folder, segment_ids, segment_path
from collector.store import SQLiteStore
from messages import Envelope, Kind, NodeInfo
from messages.codec import envelope, pack

NODE = "n1"


def reports(first: int, count: int, node: str = NODE) -> list[Envelope]:
    return [
        envelope(Kind.REPORT, "Probe", b"x%d" % seq, node=node, seq=seq, time=1.0)
        for seq in range(first, first + count)
    ]


def record(node: str, last_seq: int) -> NodeRecord:
    return NodeRecord(node=node, info=NodeInfo(node=node), last_seq=last_seq)


def journal_pass(store: SQLiteStore, first: int, count: int, node: str = NODE) -> list[Envelope]:
    """One ingest pass: ``count`` reports of ``node`` from seq ``first``, committed."""
    envs = reports(first, count, node)
    store.append(node, first, first + count - 1, pack(envs))
    store.commit([record(node, first + count - 1)])
    return envs


def replayed(store: SQLiteStore, after: int = 0) -> list[tuple[str, int]]:
    return [(env.node, env.seq) for _, env in store.replay(after)]


def test_rows_keep_only_where_their_bytes_are_and_replay_reads_them(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "collector.sqlite3")
    journal_pass(store, 1, 3)
    journal_pass(store, 4, 2)
    rows = store.db.execute("SELECT id, length(batch), seg, pos, size FROM journal ORDER BY id").fetchall()
    assert [(row_id, blob, seg) for row_id, blob, seg, _, _ in rows] == [(1, 0, 1), (2, 0, 1)]
    assert rows[1][3] == rows[0][4]  # the second pass's bytes follow the first's
    assert replayed(store) == [(NODE, seq) for seq in range(1, 6)]
    assert replayed(store, after=1) == [(NODE, 4), (NODE, 5)]
    store.close()


def test_a_restart_reads_the_old_segment_and_writes_a_new_one(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "collector.sqlite3")
    journal_pass(store, 1, 2)
    store.close()
    again = SQLiteStore(tmp_path / "collector.sqlite3")
    journal_pass(again, 3, 2)
    assert segment_ids(segment_folder(tmp_path / "collector.sqlite3")) == [1, 2]
    assert replayed(again) == [(NODE, seq) for seq in range(1, 5)]
    again.close()


def test_a_segment_begun_by_a_crashed_run_without_a_committed_row_is_removed(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "collector.sqlite3")
    journal_pass(store, 1, 2)
    store.close()
    folder = segment_folder(tmp_path / "collector.sqlite3")
    segment_path(folder, 2).write_bytes(b"bytes no committed row names")
    again = SQLiteStore(tmp_path / "collector.sqlite3")
    assert segment_ids(folder) == [1]
    journal_pass(again, 3, 1)
    assert replayed(again) == [(NODE, 1), (NODE, 2), (NODE, 3)]
    again.close()


def test_pruning_rows_deletes_the_segments_none_of_them_points_into(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "collector.sqlite3")
    store.segments.limit = 1  # every pass starts a new segment
    for first in (1, 3, 5):
        journal_pass(store, first, 2)
    folder = segment_folder(tmp_path / "collector.sqlite3")
    assert segment_ids(folder) == [1, 2, 3]
    store.db.execute("UPDATE journal SET received = 0 WHERE id < 3")
    assert store.prune(older_than=1.0) == 2
    assert segment_ids(folder) == [3]  # the current segment stays, with the row left
    assert replayed(store) == [(NODE, 5), (NODE, 6)]
    store.close()


def test_rows_of_a_journal_written_before_the_segments_still_replay(tmp_path: Path) -> None:
    path = tmp_path / "collector.sqlite3"
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE journal (id INTEGER PRIMARY KEY, node TEXT NOT NULL, first_seq INTEGER NOT NULL,"
        " last_seq INTEGER NOT NULL, received REAL NOT NULL, batch BLOB NOT NULL)"
    )
    db.execute("INSERT INTO journal VALUES (1, ?, 1, 2, 1.0, ?)", (NODE, pack(reports(1, 2))))
    db.commit()
    db.close()
    store = SQLiteStore(path)
    journal_pass(store, 3, 1)
    assert replayed(store) == [(NODE, 1), (NODE, 2), (NODE, 3)]
    store.close()


def test_a_failed_write_keeps_the_rows_for_the_next_commit(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "collector.sqlite3")
    journal_pass(store, 1, 1)
    envs = reports(2, 2)
    store.append(NODE, 2, 3, pack(envs))
    writable = store.segments._fd
    store.segments._fd = os.open(tmp_path / "read-only", os.O_RDONLY | os.O_CREAT)  # writes fail, as on a full disk
    with pytest.raises(OSError):
        store.commit([record(NODE, 3)])
    assert store.db.execute("SELECT COUNT(*) FROM journal").fetchone() == (1,)
    os.close(store.segments._fd)
    store.segments._fd = writable
    assert store.commit([record(NODE, 3)]) == 2
    assert replayed(store) == [(NODE, 1), (NODE, 2), (NODE, 3)]
    store.close()


def test_the_reader_says_none_for_bytes_that_are_gone(tmp_path: Path) -> None:
    writer = SegmentWriter(tmp_path, next_id=1, sync=True)
    seg, offsets = writer.write(1, [b"abc", b"defg"])
    writer.close()
    reader = SegmentReader(tmp_path)
    assert (reader.read(seg, offsets[0], 3), reader.read(seg, offsets[1], 4)) == (b"abc", b"defg")
    assert reader.read(seg, offsets[1], 5) is None  # past the end: a power cut took them
    assert reader.read(99, 0, 1) is None  # pruned
    reader.close()


def test_the_reader_lets_go_of_older_segments_as_it_moves_on(tmp_path: Path) -> None:
    writer = SegmentWriter(tmp_path, next_id=1, sync=False, limit=1)
    first, _ = writer.write(1, [b"one"])
    second, _ = writer.write(2, [b"two"])
    writer.close()
    reader = SegmentReader(tmp_path)
    assert reader.read(first, 0, 3) == b"one" and reader.read(second, 0, 3) == b"two"
    assert list(reader._open) == [second]  # a pruned older segment's space is not held by an open file
    reader.close()


def test_the_wal_is_checkpointed_by_its_own_thread_not_by_a_commit(tmp_path: Path) -> None:
    path = tmp_path / "collector.sqlite3"
    store = SQLiteStore(path)
    assert store.db.execute("PRAGMA wal_autocheckpoint").fetchone() == (0,)
    before = path.stat().st_size
    for first in range(1, 1001, 2):  # a few dozen WAL pages: far below SQLite's own 1000-page checkpoint
        journal_pass(store, first, 2)
    deadline = time.monotonic() + 10
    while path.stat().st_size <= before and time.monotonic() < deadline:
        time.sleep(0.05)  # the main file grows only when a checkpoint copies the WAL's pages into it
    assert path.stat().st_size > before and store.checkpointer.checkpoints > 0
    store.close()


def cached_bytes(path: Path) -> int:
    """How many of the file's bytes are in the page cache now (mincore(2) of a mapping of it)."""
    import ctypes
    import mmap

    size = path.stat().st_size
    page = mmap.PAGESIZE
    pages = (size + page - 1) // page
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    fd = os.open(path, os.O_RDONLY)
    try:
        address = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        assert address not in (None, ctypes.c_void_p(-1).value), os.strerror(ctypes.get_errno())
        vector = ctypes.create_string_buffer(pages)
        try:
            assert libc.mincore(address, size, vector) == 0, os.strerror(ctypes.get_errno())
        finally:
            libc.munmap(address, size)
    finally:
        os.close(fd)
    return sum(byte & 1 for byte in vector.raw) * page


def test_the_written_pages_leave_the_page_cache_but_the_newest(tmp_path: Path) -> None:
    writer = SegmentWriter(tmp_path / "journal", 1, sync=False)
    chunk = os.urandom(1 << 20)
    for row in range(12):  # 12 MiB in 1 MiB rows
        writer.write(row + 1, [chunk])
    path = segment_path(tmp_path / "journal", 1)
    assert cached_bytes(path) >= 11 << 20  # just written: all of it cached
    with open(path, "rb") as file:
        os.fsync(file.fileno())  # written back, so the kernel may drop the pages at once
    writer.release_cache(keep=4 << 20)
    assert cached_bytes(path) <= 4 << 20
    assert cached_bytes(path) >= 3 << 20  # the newest bytes stay: the durable feeds read them soon
    writer.close()
    reader = SegmentReader(tmp_path / "journal")
    assert reader.read(1, 5 << 20, 1 << 20) == chunk  # dropped from the cache, still on disk
    reader.close()


def test_the_upkeep_thread_keeps_the_journals_page_cache_from_growing(tmp_path: Path) -> None:
    """40 MB journaled in five passes: what stays cached is about the newest CACHE_KEEP bytes, not 40 MB."""
    store = SQLiteStore(tmp_path / "collector.sqlite3")
    folder = segment_folder(tmp_path / "collector.sqlite3")
    try:
        for first in range(1, 5 * 130, 130):  # five passes of 130 reports of 64 KB
            envs = [
                envelope(Kind.REPORT, "Probe", os.urandom(64_000), node=NODE, seq=seq)
                for seq in range(first, first + 130)
            ]
            store.append(NODE, first, first + 129, pack(envs))
            store.commit([record(NODE, first + 129)])
        path = segment_path(folder, segment_ids(folder)[0])
        assert path.stat().st_size > 40_000_000
        deadline = time.monotonic() + 20
        while (cached := cached_bytes(path)) > 12 << 20:  # every 0.1 s: writeback first, then the drop
            assert time.monotonic() < deadline, f"{cached} bytes of the journal still cached"
            time.sleep(0.1)
        assert [seq for _, seq in replayed(store)] == list(range(1, 651))  # dropped from the cache, read from disk
    finally:
        store.close()
