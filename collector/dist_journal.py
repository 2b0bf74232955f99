"""The durable report feed: reports read from the collector's journal after a saved cursor.

A reports-mode distribution whose class says ``feed = "journal"`` is not fed
by the loop. Its runner's thread reads the journal itself, through a
read-only SQLite connection of its own (WAL lets it read while the loop
writes) and the rows' bytes from the journal's segment files
(collector/segments.py), and only rows already committed, so only reports the agents have had
acknowledged. Each report becomes a :class:`~collector.dist.ReportItem` with
its ``journal_id``; the queue is filled only while it has room, so nothing is
ever dropped for want of it.

The **cursor** ``(row id, seq)`` of the last report delivered is saved in
``<data-dir>/distributions/NAME/cursor`` (written to a temporary file, then
renamed) only when the runner says a batch was delivered and completed. After
a restart (kill -9 included) the feed resumes after the cursor: what it sends
again is at most what was delivered after the cursor was last saved. A cursor
that goes back (a rename lost to a power cut) only means more re-sends, never
a loss; the destination drops them by ``(node, seq)`` (JetStream: by
``Nats-Msg-Id``).

The journal keeps the rows a durable distribution has not passed on, for at
most ``journal_hold`` seconds (:meth:`JournalFeed.hold`): older ones are
pruned anyway at the next checkpoint, and the reports lost that way are
counted as ``dist-gap`` (collector/journal.py).
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from collector.dist import ReportItem
from collector.segments import SegmentReader, segment_folder
from collector.store import BATCH_COLUMNS, row_batch
from messages import Batch

__all__ = ["CURSOR_FILE", "IDLE_POLL", "ROWS_PER_READ", "JournalFeed", "load_cursor", "save_cursor"]

log = logging.getLogger(__name__)

CURSOR_FILE = "cursor"
IDLE_POLL = 0.1  # seconds an idle runner waits before looking at the journal again
ROWS_PER_READ = 64

Cursor = tuple[int, int]  # (journal row id, seq of the last report of that row passed on)


def load_cursor(path: Path) -> Cursor:
    """The cursor saved at ``path``; ``(0, 0)`` (the journal's start) when there is none."""
    try:
        row, seq = path.read_text().split()
        return int(row), int(seq)
    except FileNotFoundError:
        return 0, 0
    except ValueError:
        log.warning("%s: unreadable cursor, starting from the journal's oldest row", path)
        return 0, 0


def save_cursor(path: Path, cursor: Cursor) -> None:
    """Write ``cursor`` to ``path`` atomically (temporary file, then rename)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{cursor[0]} {cursor[1]}\n")
    os.replace(tmp, path)


class JournalFeed:
    """Reads journal rows after its cursor into a runner's queue; saves the cursor once they are delivered."""

    durable = True
    idle_wait = IDLE_POLL

    def __init__(self, db_path: Path, cursor_path: Path, takes: Callable[[str], bool], hold: float) -> None:
        self.db_path = db_path
        self.cursor_path = cursor_path
        self.takes = takes  # does the distribution take code NODE/TYPE (its ``codes``)?
        self.hold = hold
        self.cursor = load_cursor(cursor_path)
        self.position = self.cursor  # the last report put into the queue
        self.db: sqlite3.Connection | None = None
        self.reader = SegmentReader(segment_folder(db_path))
        self.skipped_rows = 0  # rows pruned before they were read (also counted by the journal as dist-gap)

    # ------------------------------------------------------------ the thread's side

    def fill(self, put_many: Callable[[list[Any]], None], want: int) -> int:
        """Queue up to ``want`` reports after the position (one ``put_many`` of them all); returns how many.

        What was read before a failure (the journal unreadable for a moment) is still queued: the
        position has moved past it.
        """
        items: list[Any] = []
        try:
            return self._read(items.append, want)
        finally:
            if items:
                put_many(items)

    def _read(self, put: Callable[[Any], None], want: int) -> int:
        db = self._open()
        if db is None:
            return 0
        count = 0
        while count < want:
            row, seq = self.position
            rows = db.execute(
                f"SELECT id, {BATCH_COLUMNS} FROM journal WHERE id >= ? ORDER BY id LIMIT ?", (row, ROWS_PER_READ)
            ).fetchall()
            if not rows:
                break
            self._check_gap(rows[0][0])
            for row_id, *where in rows:
                batch = row_batch(self.reader, *where) or b""  # None: pruned meanwhile (counted as dist-gap)
                count += self._put_row(put, row_id, batch, seq if row_id == row else 0, want - count)
                if count >= want:
                    return count
        return count

    def _put_row(self, put: Callable[[Any], None], row_id: int, batch: bytes, after: int, room: int) -> int:
        """Put the row's reports with seq > ``after`` (at most ``room``); move the position."""
        count = 0
        for env in Batch.FromString(batch).envelopes:
            if env.seq <= after:
                continue
            if count >= room:
                return count  # the position stays inside this row
            self.position = (row_id, env.seq)
            if self.takes(f"{env.node}/{env.type}"):
                put(ReportItem(env.node, env.seq, env.type, env.time, env.encoding, env.schema, env.payload, row_id))
                count += 1
        self.position = (row_id + 1, 0)  # the whole row is read: the next read starts after it
        return count

    def _check_gap(self, first: int) -> None:
        row, seq = self.position
        expected = row if seq else max(row, 1)
        if row and first > expected:
            self.skipped_rows += first - expected
            log.warning(
                "journal feed %s: rows %d-%d were pruned before they were passed on (journal_hold)",
                self.cursor_path.parent.name,
                expected,
                first - 1,
            )

    def _open(self) -> sqlite3.Connection | None:
        if self.db is None:
            if not self.db_path.exists():
                return None
            self.db = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, check_same_thread=False)
        return self.db

    def delivered(self, last: ReportItem) -> None:
        """Everything up to ``last`` is delivered: save the cursor there."""
        if not last.journal_id:
            return
        cursor = (last.journal_id, last.seq)
        if cursor > self.cursor:
            save_cursor(self.cursor_path, cursor)
            self.cursor = cursor

    def rewind(self) -> None:
        """Read again from the saved cursor: what was read after it was not delivered (a failed batch)."""
        self.position = self.cursor

    def close(self) -> None:
        """Close the read connection and the segment files."""
        self.reader.close()
        db, self.db = self.db, None
        if db is not None:
            db.close()

    # ------------------------------------------------------------ the journal's side

    def held(self) -> tuple[int, float]:
        """``(row id, seconds)``: the journal must keep rows from this id on, at most this many seconds old."""
        return self.cursor[0], self.hold
