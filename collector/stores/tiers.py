""":class:`TierHistory`: the ``history`` part every backend shares, over the backend's :class:`HistoryTables`.

:meth:`TierHistory.record` costs the caller one ``deque.append`` (no lock:
it runs on the collector's loop for every report). One OS thread, started by
the first write, drains the deque every :data:`POLL` s (every second at most
once it has been idle; at once when a reader flushes), downsamples,
writes a batch per pass and expires old rows as data arrives. A full deque
drops the sample and counts it (``dropped``); a batch the backend fails to
write three times is dropped, counted and logged. See collector/stores/history.py
for the tiers and the exactly-once rules, docs/stores.md for the bounds.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from array import array
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

from collector.addons import Figures
from collector.stores.history import (
    BUCKET_TIERS,
    CHUNK_BUCKETS,
    QUERY_FLUSH,
    WIDTH,
    Bucket,
    ChunkKey,
    HistoryTables,
    Series,
    WriteBatch,
    chunk_series,
    chunk_start,
    decode_chunk,
    encode_chunk,
    encode_names,
    encode_values,
    raw_series,
)

__all__ = ["POLL", "QUEUE_MAX", "TierHistory"]

log = logging.getLogger(__name__)

POLL = 0.05  # seconds the writer sleeps when there is nothing to write (doubling up to IDLE_MAX)
IDLE_MAX = 1.0
QUEUE_MAX = 200_000  # samples waiting for the writer; more are dropped and counted
BATCH_MAX = 5_000  # samples per writer pass (one transaction)
EXPIRE_EVERY = 60.0  # seconds of a series' data between two expiry deletes
RETRIES = 3
NAMES_KEPT = 10_000  # distinct name lists whose JSON text is kept (cleared when full)
_Finished = dict[str, dict[ChunkKey, list[Bucket]]]


class TierHistory:
    """The ``history`` part of a store (collector/stores/history.py); every method is safe from any thread."""

    def __init__(self, tables: HistoryTables, retention: dict[str, float], name: str) -> None:
        self.tables = tables
        self.retention = dict(retention)
        self.durable = tables.durable
        self.name = name
        self.opened = time.time()
        self.late = 0  # samples older than their series' open bucket: kept raw, left out of the buckets
        self.dropped = 0  # samples lost: queue full, or their batch failed to write
        self._queue: deque[tuple[Any, ...]] = deque()
        self._wake = threading.Event()
        self._lock = threading.Lock()  # the open buckets: the writer changes them, readers look
        self._open: dict[str, dict[str, dict[str, Bucket]]] = {}  # node -> tier -> series -> open bucket
        self._newest: dict[tuple[str, str, str], float] = {}  # (node, kind, names) -> newest time taken
        self._expired: dict[tuple[str, str], float] = {}  # (node, kind or series) -> data time of the last expiry
        self._names: dict[tuple[str, ...], str] = {}  # names -> their JSON text
        self._stopping = False
        self._closed = False
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None  # started by the first write or read

    def _started(self) -> threading.Thread:
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=f"labscope-history-{self.name}", daemon=True)
                self._thread.start()
            return self._thread

    # ------------------------------------------------------------ writes (queued)

    def record(
        self,
        node: str,
        names: Sequence[str],
        time: float,
        values: Sequence[float],
        kind: str = "values",
        data: bytes = b"",
    ) -> None:
        """Queue one sample: ``names[i]`` has ``values[i]`` at ``time``; ``data``, the whole payload (never blocks).

        ``values`` may be a :class:`~collector.addons.Figures`: it is read in the writer thread.
        """
        if len(self._queue) >= QUEUE_MAX:
            self.dropped += 1
            if self.dropped % 10_000 == 1:
                log.warning("history %s: queue full, %d samples dropped so far", self.name, self.dropped)
            return
        self._queue.append((node, names, time, values, kind, data))
        if self._thread is None:
            self._started()

    def checkpoint(self) -> None:
        """Queue writing every open bucket as it is (a partial row, completed later)."""
        self._queue.append(("",))

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until what was queued before this call is written (True) or ``timeout`` passed."""
        done = threading.Event()
        self._queue.append((done,))
        thread = self._started()
        self._wake.set()
        return done.wait(timeout) if thread.is_alive() else False

    def close(self) -> None:
        """Write the open buckets and what is queued, stop the writer, release the tables (once)."""
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            self.checkpoint()
            self.flush(30.0)
            self._stopping = True
            self._wake.set()
            self._thread.join(10.0)
        self.tables.close()

    # ------------------------------------------------------------ reads

    def query(
        self, node: str, tier: str, since: float | None = None, until: float | None = None, names: Iterable[str] = ()
    ) -> list[Series]:
        """``node``'s series in ``tier`` with since < time <= until (bucket start), by name; open buckets included."""
        if tier not in WIDTH:
            raise ValueError(f"tier {tier!r} is not one of raw, 1m, 1h")
        self.flush(QUERY_FLUSH)
        lo, hi = -math.inf if since is None else since, math.inf if until is None else until
        wanted = set(names)
        if tier == "raw":
            return raw_series(self.tables.read_raw(node, lo, hi), wanted)
        span = WIDTH[tier] * CHUNK_BUCKETS
        found = chunk_series(self.tables.read_chunks(tier, node, lo - span, hi), wanted, lo, hi, span)
        self._add_open(found, node, tier, wanted, lo, hi)
        return [Series(name, *columns) for name, columns in sorted(found.items())]

    def samples(
        self, node: str, kind: str, since: float | None = None, until: float | None = None, limit: int = 1_000_000
    ) -> list[tuple[float, bytes]]:
        """The newest ``limit`` payloads of ``kind`` with since < time <= until, oldest first."""
        self.flush(QUERY_FLUSH)
        lo, hi = -math.inf if since is None else since, math.inf if until is None else until
        return self.tables.read_samples(node, kind, lo, hi, limit)

    def _add_open(
        self, found: dict[str, list[array[float]]], node: str, tier: str, wanted: set[str], lo: float, hi: float
    ) -> None:
        with self._lock:
            in_tier = self._open.get(node, {}).get(tier, {})
            open_buckets = [(s, b, b.row()) for s, b in in_tier.items() if b.count]
        for series, bucket, (mn, avg, mx, count, _) in open_buckets:
            if (wanted and series not in wanted) or not lo < bucket.start <= hi:
                continue
            columns = found.setdefault(series, [array("d") for _ in range(5)])
            if columns[0] and columns[0][-1] == bucket.start:  # its checkpointed partial row: the open one is newer
                for column in columns:
                    column.pop()
            for column, value in zip(columns, (bucket.start, mn, avg, mx, count), strict=True):
                column.append(value)

    # ------------------------------------------------------------ the writer thread

    def _run(self) -> None:
        idle = POLL
        while True:
            if not self._queue:
                if self._stopping:
                    return
                self._wake.wait(idle)
                self._wake.clear()
                idle = min(IDLE_MAX, idle * 2)  # a quiet store costs (almost) nothing; flush and close wake it
                continue
            idle = POLL
            items = [self._queue.popleft() for _ in range(min(len(self._queue), BATCH_MAX))]
            try:
                self._pass(items)
            except Exception:  # a bug must not stop the writer: log it, count the samples, go on
                log.exception("history %s: a writer pass failed", self.name)
                self.dropped += sum(1 for item in items if len(item) == 6)
            for item in items:
                if len(item) == 1 and isinstance(item[0], threading.Event):
                    item[0].set()

    def _pass(self, items: list[tuple[Any, ...]]) -> None:
        batch = WriteBatch()
        finished: _Finished = {tier: {} for tier in BUCKET_TIERS}
        with self._lock:
            for item in items:
                if len(item) == 6:
                    self._take(batch, finished, *item)
                elif item[0] == "":
                    self._take_open(finished)
        for tier, groups in finished.items():
            self._merge_chunks(batch, tier, groups)
        if batch:
            self._write(batch)

    def _write(self, batch: WriteBatch) -> None:
        for attempt in range(1, RETRIES + 1):
            try:
                self.tables.write(batch)
                return
            except Exception as exc:  # the server may be gone: log, wait, try again, then drop
                log.warning("history %s: writing failed (try %d of %d): %s", self.name, attempt, RETRIES, exc)
                time.sleep(0.5 * attempt)
        self.dropped += len(batch.raw)

    def _take(
        self,
        batch: WriteBatch,
        finished: _Finished,
        node: str,
        names: Sequence[str],
        t: float,
        values: Sequence[float],
        kind: str,
        data: bytes,
    ) -> None:
        names = names if isinstance(names, tuple) else tuple(names)
        names_text = self._names.get(names)
        if names_text is None:
            if len(self._names) >= NAMES_KEPT:
                self._names.clear()
            names_text = self._names[names] = encode_names(names)
        key = (node, kind, names_text)
        if self._newest.get(key) == t:  # the same sample again (a resend or a replay): nothing new
            return
        self._newest[key] = t
        packed = array("d", values.values() if isinstance(values, Figures) else values)
        batch.raw.append((node, kind, names_text, t, encode_values(packed), bytes(data)))
        self._add_to_buckets(finished, node, names, t, packed)
        self._maybe_expire(batch, node, kind, names, t)

    def _add_to_buckets(
        self, finished: _Finished, node: str, names: Sequence[str], t: float, values: Sequence[float]
    ) -> None:
        tiers = self._open.get(node)
        if tiers is None:
            tiers = self._open[node] = {tier: {} for tier in BUCKET_TIERS}
        for tier in BUCKET_TIERS:
            start = t - t % WIDTH[tier]
            buckets = tiers[tier]
            for name, value in zip(names, values, strict=False):
                bucket = buckets.get(name)
                if bucket is None or bucket.start != start:
                    bucket = self._next_bucket(finished, buckets, node, name, tier, start)
                    if bucket is None:
                        continue
                if t > bucket.last:  # Bucket.add, inlined: this runs for every value of every sample
                    bucket.last = t
                    bucket.count += 1
                    bucket.sum += value
                    if value < bucket.min:
                        bucket.min = value
                    if value > bucket.max:
                        bucket.max = value

    def _next_bucket(
        self, finished: _Finished, buckets: dict[str, Bucket], node: str, name: str, tier: str, start: float
    ) -> Bucket | None:
        """The bucket a sample starting ``start`` goes to: a new one (the open one finished), or None when late."""
        bucket = buckets.get(name)
        if bucket is not None and start < bucket.start:
            self.late += 1
            return None
        if bucket is not None and bucket.count:
            finished[tier].setdefault((node, name, chunk_start(tier, bucket.start)), []).append(bucket)
        bucket = buckets[name] = self._resume(node, name, tier, start)
        return bucket

    def _take_open(self, finished: _Finished) -> None:
        for node, tiers in self._open.items():
            for tier, buckets in tiers.items():
                for name, bucket in buckets.items():
                    if bucket.count:
                        finished[tier].setdefault((node, name, chunk_start(tier, bucket.start)), []).append(bucket)

    def _resume(self, node: str, name: str, tier: str, start: float) -> Bucket:
        """A new open bucket; one that may have been written before this process started starts from its row."""
        if start >= self.opened:
            return Bucket(start)
        key = (node, name, chunk_start(tier, start))
        stored = self.tables.load_chunks(tier, [key]).get(key)
        return Bucket(start, decode_chunk(stored).get(start) if stored else None)

    def _maybe_expire(self, batch: WriteBatch, node: str, kind: str, names: Sequence[str], t: float) -> None:
        """Once per EXPIRE_EVERY of a node's data of ``kind``: delete what is past each tier's retention."""
        last = self._expired.get((node, kind))
        if last is not None and 0 <= t - last < EXPIRE_EVERY:
            return
        self._expired[(node, kind)] = t
        now = min(t, time.time())
        batch.expire_raw.append((node, kind, now - self.retention["raw"]))
        for tier in BUCKET_TIERS:
            cutoff = now - self.retention[tier] - WIDTH[tier] * CHUNK_BUCKETS
            batch.expire_chunks.extend((tier, node, name, cutoff) for name in names)

    def _merge_chunks(self, batch: WriteBatch, tier: str, groups: dict[ChunkKey, list[Bucket]]) -> None:
        if not groups:
            return
        stored = self.tables.load_chunks(tier, list(groups))
        for key, buckets in groups.items():
            rows = decode_chunk(stored[key]) if key in stored else {}
            for bucket in buckets:
                rows[bucket.start] = bucket.row()
            batch.chunks.append((tier, *key, encode_chunk(rows)))
