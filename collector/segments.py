"""The journal's bytes: append-only segment files beside the journal's SQLite file.

Performance choice: a journal row used to carry its pass's frames as a BLOB
(~125 KB a pass under load), which SQLite spreads over 4 KB overflow pages,
checksums page by page in the WAL and copies again at every checkpoint. Now
the bytes go to ``DATA_DIR/journal/`` with one ``write()`` per pass, before the
pass's SQLite transaction, and the row keeps only where they are
(``seg``, ``pos``, ``size``). A row is committed only after its bytes were
written, so every committed row points at bytes in the page cache: a killed
process (kill -9) loses nothing a row names. ``journal_sync = "full"`` fsyncs
the segment before the transaction (which fsyncs the WAL), so the same holds
across a power cut.

Memory choice: the loop never reads a segment back (replay at start-up and the
durable distributions read them), so keeping every written page in the page
cache only costs. Worse, on a virtual machine whose host backs memory lazily,
pages the guest never touched are expensive to hand out: on our 2-core test
machines a 128 KB write took 33 µs while freed pages were reused and 330 µs
once the page cache had grown past them. The journal's upkeep thread
(collector/walcheck.py) asks the kernel every 0.1 s to drop the current
segment's cached pages but its last :data:`CACHE_KEEP` bytes
(``posix_fadvise(DONTNEED)``, which first writes dirty pages back); the loop's
next writes then reuse those pages. Measured with the bench's ingest section
(three rounds each, alternated): the journal's cost fell from ~8 % of ingest to
~2 %.

A segment is named after the first row id it holds (``00000000000000001234.seg``)
and holds every later row up to the next segment's name; one is started at
every collector start and whenever the current one passes ``SEGMENT_BYTES``. A
segment whose rows are all pruned is deleted; bytes of a pass whose
transaction failed (or never happened: a crash) are never named by a row and
go with their segment.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

__all__ = ["SEGMENT_BYTES", "SegmentReader", "SegmentWriter", "segment_folder"]

log = logging.getLogger(__name__)

SEGMENT_BYTES = 64 * 2**20  # a new segment once the current one holds this much
CACHE_KEEP = 4 * 2**20  # the current segment's newest bytes left in the page cache (the durable feeds read them)
SUFFIX = ".seg"


def segment_folder(store_path: Path) -> Path:
    """Where the segments of the journal in ``store_path`` live: ``journal/`` beside it."""
    return store_path.parent / "journal"


def segment_path(folder: Path, first_id: int) -> Path:
    """The file of the segment whose first row is ``first_id``."""
    return folder / f"{first_id:020d}{SUFFIX}"


def segment_ids(folder: Path) -> list[int]:
    """The first row ids of the segments in ``folder``, oldest first."""
    if not folder.is_dir():
        return []
    return sorted(int(p.stem) for p in folder.iterdir() if p.suffix == SUFFIX and p.stem.isdigit())


class SegmentWriter:
    """Appends each pass's row bytes to the current segment; only the collector's ingest loop writes."""

    def __init__(self, folder: Path, next_id: int, sync: bool, limit: int = SEGMENT_BYTES) -> None:
        self.folder = folder
        self.sync = sync
        self.limit = limit
        self.current = 0  # first row id of the open segment; 0 until the first write
        self._fd = -1
        self._size = 0
        self._fd_lock = threading.Lock()  # the upkeep thread's release_cache never sees a closed or reused fd
        folder.mkdir(parents=True, exist_ok=True)
        for first in segment_ids(folder):
            if first >= next_id:  # begun by a run that crashed before its first row there was committed
                segment_path(folder, first).unlink(missing_ok=True)

    def write(self, first_id: int, parts: list[bytes]) -> tuple[int, list[int]]:
        """Append ``parts`` (the rows ``first_id``, ``first_id + 1`` ...); returns (segment, each part's offset).

        Raises OSError (disk full ...): the segment is cut back to where it was,
        and the caller keeps its rows for the next try.
        """
        if self._fd < 0 or self._size >= self.limit:
            self._start(first_id)
        start, offsets, at = self._size, [], self._size
        for part in parts:
            offsets.append(at)
            at += len(part)
        data = b"".join(parts)
        try:
            _write_all(self._fd, data)
            if self.sync:
                os.fsync(self._fd)
        except OSError:
            _truncate(self._fd, start)
            raise
        self._size = start + len(data)
        return self.current, offsets

    def _start(self, first_id: int) -> None:
        self.close()
        path = segment_path(self.folder, first_id)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
        with self._fd_lock:
            self._fd = fd
            self.current, self._size = first_id, 0
        if self.sync:
            _fsync_dir(self.folder)

    def release_cache(self, keep: int = CACHE_KEEP) -> None:
        """Drop the current segment's pages from the page cache, but its last ``keep`` bytes.

        Called by the journal's upkeep thread, never on the loop. Dirty pages are written back by
        the call and dropped by a later one, so every call asks for the whole range again (pages
        already gone cost the kernel next to nothing). Failures are ignored: the pages stay cached.
        """
        with self._fd_lock:
            end = self._size - keep
            if self._fd < 0 or end <= 0:
                return
            try:
                os.posix_fadvise(self._fd, 0, end, os.POSIX_FADV_DONTNEED)
            except OSError as exc:
                log.debug("journal segment %d: could not release its page cache: %s", self.current, exc)

    def prune(self, oldest_id: int | None) -> int:
        """Delete the segments whose rows all lie before ``oldest_id`` (None: no row left); returns how many."""
        firsts, removed = segment_ids(self.folder), 0
        for first, following in zip(firsts, firsts[1:], strict=False):
            if first == self.current or (oldest_id is not None and following > oldest_id):
                continue
            segment_path(self.folder, first).unlink(missing_ok=True)
            removed += 1
        return removed

    def close(self) -> None:
        """Close the open segment."""
        with self._fd_lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


class SegmentReader:
    """Reads rows' bytes back (replay, the durable distributions' feed); any thread may own one."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._open: dict[int, int] = {}

    def read(self, seg: int, pos: int, size: int) -> bytes | None:
        """The ``size`` bytes at ``pos`` of segment ``seg``, or None when they are gone (pruned, or a power cut)."""
        fd = self._open.get(seg)
        try:
            if fd is None:
                self._close_before(seg)
                fd = self._open[seg] = os.open(segment_path(self.folder, seg), os.O_RDONLY)
            data = os.pread(fd, size, pos)
        except FileNotFoundError:
            return None
        if len(data) != size:
            log.warning("journal segment %d: %d bytes at %d are missing; skipping that row", seg, size, pos)
            return None
        return data

    def _close_before(self, seg: int) -> None:
        """Readers go forward: close the older segments, so that pruning one frees its disk space."""
        for old in [first for first in self._open if first < seg]:
            os.close(self._open.pop(old))

    def close(self) -> None:
        """Close every segment file opened."""
        for fd in self._open.values():
            os.close(fd)
        self._open.clear()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _truncate(fd: int, size: int) -> None:
    try:
        os.ftruncate(fd, size)
    except OSError:  # best effort: bytes past the last row are never read
        pass


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
