"""The agent's durable outbox, without sockets: numbering, commits, ACKs, restarts, bounds, chunked resend."""

from __future__ import annotations

import sqlite3
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from messages import ConfigError, Envelope, Event, Kind
from messages.codec import decode_payload
from node_agent.outbox import DELETE_DELAY, MAX_FRAME_BYTES, MAX_FRAME_ENVELOPES, Outbox
from node_agent.store import DB_NAME, OutboxError, OutboxStore


def report(size: int = 10, when: float | None = None, fill: bytes = b"x") -> Envelope:
    return Envelope(
        kind=Kind.REPORT, node="n", type="T", payload=fill * size, time=time.time() if when is None else when
    )


def fill(box: Outbox, count: int, size: int = 10, when: float | None = None) -> list[int]:
    seqs = [box.add(report(size, when)) for _ in range(count)]
    assert box.commit()
    return [s for s in seqs if s is not None]


def rows(folder: Path) -> list[int]:
    """The seqs in the outbox file, read by a connection of our own."""
    with sqlite3.connect(folder / DB_NAME) as db:
        return [seq for (seq,) in db.execute("SELECT seq FROM outbox ORDER BY seq")]


def meta(folder: Path) -> dict[str, str]:
    with sqlite3.connect(folder / DB_NAME) as db:
        return dict(db.execute("SELECT key, value FROM meta"))


def drain(box: Outbox, window: int = 1000) -> list[int]:
    """Every seq next_frame hands out, frame after frame (each marked sent)."""
    sent: list[int] = []
    while frame := box.next_frame(window):
        box.mark_sent(frame)
        sent.extend(e.seq for e in frame)
    return sent


def gap_events(frame: list[Envelope]) -> list[tuple[int, Event]]:
    events = []
    for env in frame:
        if env.type == "Event":
            event = decode_payload(env.payload, env.encoding, env.schema)
            assert isinstance(event, Event)
            events.append((env.seq, event))
    return events


@pytest.fixture
def box(tmp_path) -> Iterator[Outbox]:
    outbox = Outbox.open(tmp_path / "data", "n")
    yield outbox
    outbox.close(commit=False)


# ------------------------------------------------------------ numbering and ACKs


def test_file_is_wal_with_meta_and_numbers_from_one(box, tmp_path):
    folder = tmp_path / "data"
    assert [box.add(report()) for _ in range(5)] == [1, 2, 3, 4, 5]
    assert rows(folder) == [] and box.next_frame(100) == []  # nothing is sendable before it is on disk
    assert box.commit()
    assert rows(folder) == [1, 2, 3, 4, 5]
    info = meta(folder)
    assert info["node_id"] == "n" and info["next_seq"] == "6" and info["instance"] == box.instance
    assert len(box.instance) == 32
    with sqlite3.connect(folder / DB_NAME) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_acks_are_cumulative_and_deletes_wait_for_the_next_commit(box, tmp_path):
    fill(box, 5)
    assert box.ack(3) == 3
    assert len(box) == 2 and box.first_seq == 4 and box.last_seq == 5
    assert rows(tmp_path / "data") == [1, 2, 3, 4, 5]  # batched: deleted with the next commit
    assert 0 < box.commit_at - time.monotonic() <= DELETE_DELAY
    assert box.ack(2) == 0  # an old ACK changes nothing
    fill(box, 1)
    assert rows(tmp_path / "data") == [4, 5, 6]
    assert box.size == 30


def test_ack_beyond_last_numbers_on(box):
    fill(box, 2)
    box.ack(10)
    assert len(box) == 0
    assert fill(box, 1) == [11]


# -------------------------------------------------------------- restarts


def test_restart_keeps_instance_resends_unacked_and_continues_the_sequence(tmp_path):
    folder = tmp_path / "data"
    first = Outbox.open(folder, "n")
    instance = first.instance
    for k in range(6):
        first.add(report(fill=bytes([65 + k])))
    first.commit()
    drain(first)
    first.ack(2)
    first.close()

    again = Outbox.open(folder, "n")
    try:
        assert again.instance == instance
        assert (again.first_seq, again.next_seq, len(again)) == (3, 7, 4)
        frame = again.next_frame(100)
        assert [e.seq for e in frame] == [3, 4, 5, 6]
        assert [e.payload for e in frame] == [b"C" * 10, b"D" * 10, b"E" * 10, b"F" * 10]
        assert all(e.node == "n" and e.kind == Kind.REPORT for e in frame)
        assert fill(again, 1) == [7]
    finally:
        again.close()


def test_uncommitted_reports_are_gone_after_a_crash_but_numbers_never_go_back(tmp_path):
    folder = tmp_path / "data"
    box = Outbox.open(folder, "n")
    fill(box, 3)
    box.ack(3)
    box.commit()  # everything acknowledged and deleted: only next_seq says where we were
    box.add(report())
    box.add(report())
    box.close(commit=False)  # as a kill -9 between two commits leaves it
    again = Outbox.open(folder, "n")
    try:
        assert len(again) == 0 and again.first_seq == 4
        assert fill(again, 1) == [4]  # 4 and 5 were never on disk, so never sent: taking them again is safe
    finally:
        again.close()


def test_data_dir_of_another_node_is_refused(tmp_path):
    Outbox.open(tmp_path / "data", "alpha").close()
    with pytest.raises(ConfigError) as err:
        Outbox.open(tmp_path / "data", "beta")
    assert str(err.value) == (
        f"data dir {tmp_path / 'data'} belongs to node alpha; give --node-id alpha or another --data-dir"
    )


def test_data_dir_in_use_is_refused(box, tmp_path):
    with pytest.raises(OutboxError, match="in use by another agent"):
        Outbox.open(tmp_path / "data", "n")


def test_data_dir_that_cannot_be_made_is_an_outbox_error(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(OutboxError, match="cannot create it"):
        Outbox.open(tmp_path / "file" / "data", "n")


# ----------------------------------------------------------- sending


def test_window_limits_in_flight_and_acks_open_it(box):
    fill(box, 10)
    frame = box.next_frame(window=4)
    assert [e.seq for e in frame] == [1, 2, 3, 4]
    box.mark_sent(frame)
    assert box.in_flight == 4 and box.unsent == 6
    assert box.next_frame(window=4) == []
    box.ack(2)
    assert [e.seq for e in box.next_frame(window=4)] == [5, 6]


def test_frame_holds_at_most_256_envelopes(box):
    fill(box, 600)
    sizes = []
    while frame := box.next_frame(window=1000):
        box.mark_sent(frame)
        sizes.append(len(frame))
    assert sizes == [MAX_FRAME_ENVELOPES, MAX_FRAME_ENVELOPES, 600 - 2 * MAX_FRAME_ENVELOPES]


def test_frame_holds_at_most_one_mebibyte_but_always_one_report(box):
    fill(box, 5, size=300_000)
    fill(box, 1, size=2 * MAX_FRAME_BYTES)
    counts = []
    while frame := box.next_frame(window=1000):
        assert len(frame) == 1 or sum(e.ByteSize() for e in frame) <= MAX_FRAME_BYTES
        box.mark_sent(frame)
        counts.append(len(frame))
    assert counts == [3, 2, 1]


def test_rewind_resends_unacked_oldest_first_and_counts_resends(box):
    fill(box, 6)
    box.mark_sent(box.next_frame(window=100))
    box.ack(2)
    box.rewind()
    frame = box.next_frame(window=100)
    assert [e.seq for e in frame] == [3, 4, 5, 6]
    box.mark_sent(frame)
    assert box.stats.resent == 4 and box.stats.sent == 6


def test_a_large_backlog_is_read_back_one_frame_at_a_time(tmp_path):
    folder = tmp_path / "data"
    box = Outbox.open(folder, "n")
    for _ in range(4):
        fill(box, 50, size=100_000)  # 20 MB on disk
    box.close()
    again = Outbox.open(folder, "n")
    try:
        tracemalloc.start()
        frame = again.next_frame(window=1000)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert len(frame) == 10 and frame[0].seq == 1
        assert peak < 3 * MAX_FRAME_BYTES, f"{peak} bytes allocated to read one frame"
        again.mark_sent(frame)
        assert drain(again) == list(range(11, 201))
    finally:
        again.close()


def test_empty_outbox_has_nothing_to_send(box):
    assert box.first_seq == 1 and box.unsent == 0 and box.in_flight == 0 and len(box) == 0
    assert box.next_frame(window=10) == []


# ------------------------------------------------------------------ bounds


def test_size_bound_drops_oldest_and_sends_a_gap_event(tmp_path):
    box = Outbox.open(tmp_path / "data", "n", max_bytes=1000)
    try:
        fill(box, 30, size=100)  # 3000 bytes: the 20 oldest go
        assert box.stats.dropped == 20 and box.first_seq == 21
        frame = box.next_frame(window=1000)
        assert [e.seq for e in frame] == list(range(21, 32))
        [(seq, event)] = gap_events(frame)
        assert seq == 31 and event.node == "n" and (event.kind, event.severity) == ("gap", "warning")
        assert event.message == "outbox full: 20 reports lost (seq 1-20)"
        assert dict(event.attrs) == {"first": "1", "last": "20", "count": "20", "reason": "full"}
        assert rows(tmp_path / "data") == list(range(21, 32))
    finally:
        box.close()


def test_a_dropped_gap_event_is_merged_into_the_next_one(tmp_path):
    box = Outbox.open(tmp_path / "data", "n", max_bytes=1000)
    try:
        for _ in range(5):
            fill(box, 12, size=100)
        frame = box.next_frame(window=1000)
        events = gap_events(frame)
        assert len(events) == 1, "the earlier gap events were dropped and merged"
        seq, event = events[0]
        first, last = int(event.attrs["first"]), int(event.attrs["last"])
        assert first == 1 and last == frame[0].seq - 1 and event.attrs["count"] == str(last)
        assert seq == frame[-1].seq and box.stats.gap_events >= 2
    finally:
        box.close()


def test_gap_range_survives_a_restart_and_is_still_merged(tmp_path):
    folder = tmp_path / "data"
    box = Outbox.open(folder, "n", max_bytes=1000)
    fill(box, 15, size=100)
    box.close()
    again = Outbox.open(folder, "n", max_bytes=1000)
    try:
        fill(again, 15, size=100)
        [(_, event)] = gap_events(again.next_frame(window=1000))
        assert event.attrs["first"] == "1"
    finally:
        again.close()


def test_the_newest_report_stays_even_when_it_alone_exceeds_the_bound(tmp_path):
    box = Outbox.open(tmp_path / "data", "n", max_bytes=100)
    try:
        fill(box, 1, size=500)
        assert box.stats.dropped == 0 and [e.seq for e in box.next_frame(10)] == [1]
        fill(box, 1, size=500)
        assert box.stats.dropped == 1
        assert [e.seq for e in box.next_frame(10)] == [2, 3]  # the newest report and the gap event
    finally:
        box.close()


def clocked_box(tmp_path: Path, now: list[float], max_age: float) -> Outbox:
    """An outbox in tmp_path/data whose wall clock is ``now[0]``."""
    return Outbox(OutboxStore(tmp_path / "data", "n").open(), max_age=max_age, clock=lambda: now[0])


def test_age_bound_drops_reports_older_than_max_age(tmp_path):
    now = [10_000.0]
    box = clocked_box(tmp_path, now, max_age=60)
    try:
        for when in (9_900.0, 9_900.0, 9_900.0, 9_990.0, 9_990.0):  # the first three are 100 s old
            box.add(report(when=when))
        assert box.commit()
        assert box.stats.dropped == 3
        frame = box.next_frame(window=100)
        [(_, event)] = gap_events(frame)
        assert event.attrs == {"first": "1", "last": "3", "count": "3", "reason": "age"}
        assert event.message == "outbox age limit: 3 reports lost (seq 1-3)"
        assert [e.seq for e in frame] == [4, 5, 6]
    finally:
        box.close()


def traced_statements(store: OutboxStore) -> list[str]:
    """Every SQL statement the store's connection runs from now on."""
    statements: list[str] = []
    assert store._db is not None
    store._db.set_trace_callback(statements.append)
    return statements


def test_a_steady_agents_commit_skips_the_age_lookup_and_unchanged_meta(tmp_path):
    # One report a second, each acknowledged before the next: the shape of an idle agent's commits.
    now = [10_000.0]
    box = clocked_box(tmp_path, now, max_age=60)
    try:
        statements = traced_statements(box._store)
        for second in range(30):
            now[0] += 1
            [seq] = fill(box, 1, when=now[0])
            box.ack(seq)
        lookups = [sql for sql in statements if sql.startswith("SELECT time FROM outbox")]
        gap_writes = [sql for sql in statements if "INSERT INTO meta" in sql and "'gaps'" in sql]
        assert len(lookups) <= 2, f"{len(lookups)} age lookups in 30 commits"
        assert len(gap_writes) <= 1, f"the unchanged gap list was written {len(gap_writes)} times"
        assert meta(tmp_path / "data")["next_seq"] == "31" and rows(tmp_path / "data") == [30]
    finally:
        box.close()


def test_the_age_bound_holds_when_the_clock_goes_back(tmp_path):
    now = [10_000.0]
    box = clocked_box(tmp_path, now, max_age=100)
    try:
        [first] = fill(box, 1, when=now[0])
        box.ack(first)
        now[0] = 5_000.0  # stepped back: the next report is "older" than the one before it
        fill(box, 1, when=now[0])
        now[0] = 5_110.0
        fill(box, 1, when=now[0])
        assert box.stats.dropped == 1  # the report of 5_000 is 110 s old
    finally:
        box.close()


def test_acknowledged_reports_are_never_counted_as_dropped(tmp_path):
    box = Outbox.open(tmp_path / "data", "n", max_bytes=1000)
    try:
        fill(box, 9, size=100)
        box.mark_sent(box.next_frame(100))
        box.ack(9)
        fill(box, 9, size=100)
        assert box.stats.dropped == 0 and box.size == 900
    finally:
        box.close()


# --------------------------------------------------------------- disk full


def test_full_disk_keeps_reports_in_memory_unsent_then_writes_them(tmp_path):
    folder = tmp_path / "data"
    store = OutboxStore(folder, "n").open()
    box = Outbox(store, memory_limit=50)
    box.write_retry = 0.0  # try the disk again on every commit
    try:
        fill(box, 2)
        store.limit_pages(store.page_count())  # SQLite now fails writes with SQLITE_FULL
        box.add(report(size=40_000))
        assert not box.commit()
        for _ in range(59):
            box.add(report(size=4000))
        assert not box.commit()
        assert box.stats.write_errors == 2 and box.pending == 50 and box.stats.discarded == 10
        assert [e.seq for e in box.next_frame(100)] == [1, 2]  # what is not on disk is not sent
        assert rows(folder) == [1, 2] and meta(folder)["next_seq"] == "3"
        store.limit_pages(1_000_000)
        box.write_retry = 60.0
        assert box.commit()  # a retry delay of 0 has passed: a real attempt, and the disk has room again
        box.add(report(size=40_000))
        store.limit_pages(store.page_count())
        assert not box.commit() and box.pending == 1
        store.limit_pages(1_000_000)
        assert not box.commit() and box.stats.write_errors == 3  # waits for the retry delay, counts no attempt
        box.commit_at = 0.0
        assert box.commit() and box.pending == 0
        frame = box.next_frame(100)
        assert [e.seq for e in frame] == list(range(1, 55))
        assert box.stats.sent == 0 and meta(folder)["next_seq"] == "55"
        [(seq, event)] = gap_events(frame)
        assert seq == 53 and event.kind == "outbox-error" and event.attrs["count"] == "10"
    finally:
        box.close()
