"""WAL checkpoints of the journal's SQLite file, run by a thread of their own, off the ingest loop.

Latency choice: by default SQLite checkpoints a WAL file from inside the commit
that takes it past ``wal_autocheckpoint`` pages (1000), and with
``synchronous = NORMAL`` that checkpoint is where the fsyncs happen, so now and
then a pass's commit on the ingest loop waited for the disk. Measured with
8-report passes on the shared 2-core machine (5,000 commits, two runs each):
the 99.9th percentile of a commit was 60 and 9.5 ms with SQLite's own
checkpoints, 7.5 and 6.6 ms without. The journal's connection turns
``wal_autocheckpoint`` off, and this thread runs a PASSIVE checkpoint on a
connection of its own every ``interval``: a passive checkpoint never blocks a
writer, and its fsyncs release the interpreter lock. After each checkpoint it
runs ``upkeep`` (the journal's segments drop their written pages from the page
cache: collector/segments.py).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path

from collector.counters import ThrottledLog
from collector.native import Gate, start_thread

__all__ = ["CHECKPOINT_INTERVAL", "WalCheckpointer"]

log = logging.getLogger(__name__)

CHECKPOINT_INTERVAL = 0.1  # seconds; ~1000 WAL pages at the busiest (a few pages a commit, 1000+ commits/s)


class WalCheckpointer:
    """Checkpoints the WAL of the SQLite file at ``path`` every ``interval`` seconds until :meth:`stop`."""

    def __init__(
        self, path: Path, interval: float = CHECKPOINT_INTERVAL, upkeep: Callable[[], None] = lambda: None
    ) -> None:
        """Open the thread's connection (raises sqlite3.Error); :meth:`start` starts the thread.

        ``upkeep`` runs in the thread after every checkpoint; it must not raise.
        """
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA busy_timeout=1000")
        self.path = path
        self.interval = interval
        self.upkeep = upkeep
        self.checkpoints = 0  # passive checkpoints run (those with nothing to copy included)
        self._stop = Gate()
        self._stopped = Gate()
        self._throttled = ThrottledLog(log)

    def start(self) -> None:
        """Start the thread."""
        start_thread(self._run)

    def stop(self) -> None:
        """Stop the thread after its current checkpoint (waits for it at most a few seconds)."""
        self._stop.open()
        self._stopped.wait(5.0)

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.interval):
                self._checkpoint()
                self.upkeep()
            self._checkpoint()
        finally:
            self.db.close()
            self._stopped.open()

    def _checkpoint(self) -> None:
        try:
            self.db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            self.checkpoints += 1
        except sqlite3.Error as exc:  # e.g. disk full: the WAL grows meanwhile, the next try may succeed
            self._throttled.warning("wal-checkpoint", "journal %s: WAL checkpoint failed: %s", self.path, exc)
