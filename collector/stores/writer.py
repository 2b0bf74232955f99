"""A background writer: one OS thread that writes queued items in batches, off the collector's loop.

The PostgreSQL store hands it events and node records, so the ingest loop
never waits for the server: :meth:`Writer.submit` only appends to a bounded
queue (a full queue drops the item and counts it). Reads that must see
earlier writes call :meth:`Writer.flush` first.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["Writer"]

log = logging.getLogger(__name__)

BATCH_MAX = 500
RETRIES = 3
RETRY_PAUSE = 0.5
_STOP = object()


class Writer:
    """Calls ``write(batch)`` from its own thread with what :meth:`submit` queued, oldest first."""

    def __init__(self, name: str, write: Callable[[list[Any]], None], max_queue: int = 100_000) -> None:
        self.name = name
        self._write = write
        self._queue: queue.Queue[Any] = queue.Queue(max_queue)
        self._done = threading.Condition()
        self.submitted = 0
        self.written = 0
        self.dropped = 0  # items lost: queue full, or a batch that failed RETRIES times
        self._thread = threading.Thread(target=self._run, name=f"labscope-store-{name}", daemon=True)
        self._thread.start()

    def submit(self, item: Any) -> bool:
        """Queue ``item``; False (and counted in ``dropped``) when the queue is full."""
        with self._done:
            try:
                self._queue.put_nowait(item)
            except queue.Full:
                self.dropped += 1
                return False
            self.submitted += 1
        return True

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything submitted so far is written or dropped; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._done:
            target = self.submitted
            while self.written + self._failed < target:
                left = deadline - time.monotonic()
                if left <= 0 or not self._thread.is_alive():
                    return False
                self._done.wait(left)
        return True

    _failed = 0  # items of failed batches (counted in ``dropped`` too)

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued (up to ``timeout`` s), then stop the thread."""
        self.flush(timeout)
        try:
            self._queue.put(_STOP, timeout=1.0)
        except queue.Full:
            return
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < BATCH_MAX and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            stop = any(item is _STOP for item in batch)
            items = [item for item in batch if item is not _STOP]
            ok = self._write_with_retries(items) if items else True
            with self._done:
                if ok:
                    self.written += len(items)
                else:
                    self._failed += len(items)
                    self.dropped += len(items)
                self._done.notify_all()
            if stop:
                return

    def _write_with_retries(self, items: list[Any]) -> bool:
        for attempt in range(1, RETRIES + 1):
            try:
                self._write(items)
                return True
            except Exception as exc:  # the server may be gone: log, wait, try again, then drop
                log.warning(
                    "store %s: writing %d items failed (try %d of %d): %s", self.name, len(items), attempt, RETRIES, exc
                )
                time.sleep(RETRY_PAUSE * attempt)
        return False
