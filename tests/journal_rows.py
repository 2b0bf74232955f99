"""Read a collector's journal from its files, as a test sees it: Batch bytes from the segment files."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from collector.segments import SegmentReader, segment_folder
from collector.store import BATCH_COLUMNS, row_batch

__all__ = ["journal_batches"]


def journal_batches(store_file: Path, node: str | None = None) -> list[bytes]:
    """Every journal row's Batch bytes (of ``node`` when given), oldest first, read by a connection of our own."""
    where, params = ("WHERE node = ?", (node,)) if node is not None else ("", ())
    reader = SegmentReader(segment_folder(store_file))
    try:
        with contextlib.closing(sqlite3.connect(f"file:{store_file}?mode=ro", uri=True, timeout=5)) as db:
            rows = db.execute(f"SELECT {BATCH_COLUMNS} FROM journal {where} ORDER BY id", params).fetchall()
        return [row_batch(reader, *row) or b"" for row in rows]
    finally:
        reader.close()
