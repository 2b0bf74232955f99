"""The ``history`` part: series of numbers per (node, series name) in three tiers, downsampled as data arrives.

Tiers: ``raw`` (every value, default 1 hour), ``1m`` (1-minute buckets with
min/avg/max, default 30 days) and ``1h`` (1-hour buckets, default 2 years);
each retention is a store_arg (``history_raw``, ``history_1m``,
``history_1h``: seconds, or a number with s/m/h/d/y). Besides the figures,
the raw tier keeps whole sample payloads (``record_sample``), e.g. the
``SystemStats`` bytes the ``systemstats`` module answers raw requests with.

:class:`TierHistory` is the part every backend shares: :meth:`record` only
queues (the collector's loop never waits); one writer thread
(collector/stores/writer.py) downsamples, writes in batches and expires old
rows as data arrives. A backend supplies only :class:`HistoryTables` (a few
primitive reads and one batched write); bucket rows are kept in *chunks* of
:data:`CHUNK_BUCKETS` buckets per series (one row each), so reading a week
of 1-minute buckets reads 168 rows per series, not 10080.

Exactly once across restarts: a bucket row keeps its count and the time of
its last sample; a bucket opened again after a restart (or a journal replay)
starts from the stored row and skips samples not newer than that last time;
rows are upserted, never added to. Open buckets are written as partial rows
at every :meth:`checkpoint` (a module calls it when the collector takes its
snapshot) and at :meth:`close`.
"""

from __future__ import annotations

import math
import re
import sys
import threading
import time
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from collector.stores.writer import Writer
from messages.errors import ConfigError

__all__ = [
    "CHUNK_BUCKETS",
    "DEFAULT_RETENTION",
    "TIERS",
    "WIDTH",
    "Bucket",
    "HistoryTables",
    "MemoryHistoryTables",
    "NullHistory",
    "Series",
    "TierHistory",
    "WriteBatch",
    "decode_chunk",
    "encode_chunk",
    "retention_of",
]

TIERS = ("raw", "1m", "1h")
WIDTH = {"raw": 0.0, "1m": 60.0, "1h": 3600.0}  # bucket width, seconds
BUCKET_TIERS = ("1m", "1h")
DEFAULT_RETENTION = {"raw": 3600.0, "1m": 30 * 86400.0, "1h": 2 * 365 * 86400.0}
CHUNK_BUCKETS = 60  # buckets per stored chunk row: 1 hour of 1m, 60 hours of 1h
EXPIRE_EVERY = 60.0  # seconds of data between two expiry deletes of one series
QUERY_FLUSH = 2.0  # seconds a read waits for queued writes
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "y": 365 * 86400.0}
_DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?)\s*([smhdy]?)\s*$")

BucketRow = tuple[float, float, float, float, float]  # min, avg, max, count, last
ChunkKey = tuple[str, str, float]  # node, series, chunk start


def retention_of(history_raw: Any = None, history_1m: Any = None, history_1h: Any = None) -> dict[str, float]:
    """The tiers' retentions (seconds) from the store_args; ConfigError (one line) for a bad value."""
    given = {"raw": history_raw, "1m": history_1m, "1h": history_1h}
    return {tier: _seconds(f"history_{tier}", value, DEFAULT_RETENTION[tier]) for tier, value in given.items()}


def _seconds(key: str, value: Any, default: float) -> float:
    if value is None:
        return default
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value)) if isinstance(value, str) else None
        seconds = float(match.group(1)) * _UNITS[match.group(2)] if match else -1.0
    if not (math.isfinite(seconds) and seconds > 0):
        raise ConfigError(
            f"store_args {key}={value!r}: must be a positive number of seconds or a duration like 90m, 36h, 30d, 2y"
        )
    return seconds


@dataclass
class Series:
    """One series of a query answer, oldest first; in the raw tier ``min``, ``avg`` and ``max`` are the values.

    ``count`` is each bucket's number of samples (1 in the raw tier).
    """

    name: str
    time: Sequence[float]
    min: Sequence[float]
    avg: Sequence[float]
    max: Sequence[float]
    count: Sequence[float]


class Bucket:
    """One open bucket: min, max, sum and count of its samples, and the time of the newest."""

    __slots__ = ("count", "last", "max", "min", "start", "sum")

    def __init__(self, start: float, row: BucketRow | None = None) -> None:
        self.start = start
        mn, avg, mx, count, last = row or (math.inf, 0.0, -math.inf, 0.0, -math.inf)
        self.min, self.max, self.count, self.last = mn, mx, int(count), last
        self.sum = avg * count

    def add(self, t: float, value: float) -> None:
        """Count one sample unless it is not newer than the newest counted (a replay or a duplicate)."""
        if t <= self.last:
            return
        self.last = t
        self.count += 1
        self.sum += value
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value

    def row(self) -> BucketRow:
        """The stored form: min, avg, max, count, last."""
        return (self.min, self.sum / self.count, self.max, float(self.count), self.last)


def encode_chunk(buckets: dict[float, BucketRow]) -> bytes:
    """A chunk row's bytes: little-endian doubles, columns start, min, avg, max, count, last."""
    starts = sorted(buckets)
    columns = array("d", starts)
    for i in range(5):
        columns.extend(buckets[s][i] for s in starts)
    if sys.byteorder == "big":  # pragma: no cover - the stored form is little-endian everywhere
        columns.byteswap()
    return columns.tobytes()


def _columns(data: bytes) -> tuple[int, array[float]]:
    values = array("d")
    values.frombytes(bytes(data))
    if sys.byteorder == "big":  # pragma: no cover
        values.byteswap()
    return len(values) // 6, values


def decode_chunk(data: bytes) -> dict[float, BucketRow]:
    """The buckets of a chunk row, by start."""
    n, v = _columns(data)
    return {v[i]: (v[n + i], v[2 * n + i], v[3 * n + i], v[4 * n + i], v[5 * n + i]) for i in range(n)}


def chunk_start(tier: str, start: float) -> float:
    """The start of the chunk holding the bucket that starts at ``start``."""
    span = WIDTH[tier] * CHUNK_BUCKETS
    return math.floor(start / span) * span


@dataclass
class WriteBatch:
    """What one writer pass writes, in one transaction."""

    raw: list[tuple[str, str, float, float]] = field(default_factory=list)  # node, series, time, value
    samples: list[tuple[str, str, float, bytes]] = field(default_factory=list)  # node, kind, time, data
    chunks: list[tuple[str, str, str, float, bytes]] = field(default_factory=list)  # tier, node, series, start, data
    expire_raw: list[tuple[str, str, float]] = field(default_factory=list)  # node, series, cutoff
    expire_samples: list[tuple[str, str, float]] = field(default_factory=list)  # node, kind, cutoff
    expire_chunks: list[tuple[str, str, str, float]] = field(default_factory=list)  # tier, node, series, cutoff

    def __bool__(self) -> bool:
        return any((self.raw, self.samples, self.chunks, self.expire_raw, self.expire_samples, self.expire_chunks))


class HistoryTables(Protocol):
    """What a backend stores for :class:`TierHistory`; called from its writer thread and from readers."""

    durable: bool

    def write(self, batch: WriteBatch) -> None:
        """Write ``batch`` at once: raw rows and samples kept if new, chunks replaced, expired rows deleted.

        A chunk's cutoff deletes the chunks whose last bucket starts before it.
        """
        ...

    def load_chunks(self, tier: str, keys: list[ChunkKey]) -> dict[ChunkKey, bytes]:
        """The stored chunks of these keys (absent keys left out)."""
        ...

    def read_chunks(self, tier: str, node: str, lo: float, hi: float) -> list[tuple[str, float, bytes]]:
        """``(series, start, data)`` of ``node``'s chunks with lo < start <= hi, by series then start."""
        ...

    def read_raw(self, node: str, lo: float, hi: float) -> list[tuple[str, float, float]]:
        """``(series, time, value)`` of ``node``'s raw rows with lo < time <= hi, by series then time."""
        ...

    def read_samples(self, node: str, kind: str, lo: float, hi: float, limit: int) -> list[tuple[float, bytes]]:
        """The newest ``limit`` ``(time, data)`` samples with lo < time <= hi, oldest first."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


class TierHistory:
    """The ``history`` part of a store (see the module docstring); every method is safe from any thread."""

    def __init__(self, tables: HistoryTables, retention: dict[str, float], name: str, queue_max: int = 100_000):
        self.tables = tables
        self.retention = dict(retention)
        self.durable = tables.durable
        self.opened = time.time()
        self.late = 0  # samples older than their series' open bucket: kept raw, left out of the buckets
        self._lock = threading.Lock()
        self._open: dict[str, dict[tuple[str, str], Bucket]] = {}  # node -> (series, tier) -> open bucket
        self._expired: dict[tuple[str, str], float] = {}  # (node, series or kind) -> time of the last expiry
        self._closed = False
        self.writer = Writer(f"history:{name}", self._write, queue_max)

    # ------------------------------------------------------------ writes (queued)

    def record(self, node: str, names: Sequence[str], time: float, values: Sequence[float]) -> None:
        """Queue one sample of several series: ``names[i]`` has ``values[i]`` at ``time`` (never blocks)."""
        self.writer.submit(("r", node, names, float(time), values))

    def record_sample(self, node: str, kind: str, time: float, data: bytes) -> None:
        """Queue a whole sample payload of ``kind`` for the raw tier (never blocks)."""
        self.writer.submit(("s", node, kind, float(time), bytes(data)))

    def checkpoint(self) -> None:
        """Queue writing every open bucket as it is (a partial row, completed later)."""
        self.writer.submit(("c",))

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until what is queued is written (True) or ``timeout`` passed."""
        return self.writer.flush(timeout)

    def close(self) -> None:
        """Write the open buckets and what is queued, stop the writer, release the tables (once)."""
        if self._closed:
            return
        self._closed = True
        self.checkpoint()
        self.writer.close()
        self.tables.close()

    # ------------------------------------------------------------ reads

    def query(
        self, node: str, tier: str, since: float | None = None, until: float | None = None, names: Iterable[str] = ()
    ) -> list[Series]:
        """``node``'s series in ``tier`` with since < time <= until (bucket start), by name; open buckets included."""
        if tier not in WIDTH:
            raise ValueError(f"tier {tier!r} is not one of {', '.join(TIERS)}")
        self.flush(QUERY_FLUSH)
        lo, hi = -math.inf if since is None else since, math.inf if until is None else until
        wanted = set(names)
        if tier == "raw":
            return _raw_series(self.tables.read_raw(node, lo, hi), wanted)
        span = WIDTH[tier] * CHUNK_BUCKETS
        found = _chunk_series(self.tables.read_chunks(tier, node, lo - span, hi), wanted, lo, hi)
        self._add_open(found, node, tier, wanted, lo, hi)
        return [Series(name, *columns) for name, columns in sorted(found.items())]

    def samples(
        self, node: str, kind: str, since: float | None = None, until: float | None = None, limit: int = 1_000_000
    ) -> list[tuple[float, bytes]]:
        """The newest ``limit`` raw payloads of ``kind`` with since < time <= until, oldest first."""
        self.flush(QUERY_FLUSH)
        lo, hi = -math.inf if since is None else since, math.inf if until is None else until
        return self.tables.read_samples(node, kind, lo, hi, limit)

    def _add_open(
        self, found: dict[str, list[array[float]]], node: str, tier: str, wanted: set[str], lo: float, hi: float
    ) -> None:
        with self._lock:
            open_buckets = [(s, b) for (s, t), b in self._open.get(node, {}).items() if t == tier and b.count]
        for series, bucket in open_buckets:
            if (wanted and series not in wanted) or not lo < bucket.start <= hi:
                continue
            columns = found.setdefault(series, [array("d") for _ in range(5)])
            mn, avg, mx, count, _ = bucket.row()
            if columns[0] and columns[0][-1] == bucket.start:  # its checkpointed partial row: the open one is newer
                for column in columns:
                    column.pop()
            for column, value in zip(columns, (bucket.start, mn, avg, mx, count), strict=True):
                column.append(value)

    # ------------------------------------------------------------ the writer thread

    def _write(self, items: list[Any]) -> None:
        """One writer pass; safe to run again on the same items (a retry): buckets skip what they counted."""
        batch = WriteBatch()
        finished: dict[str, dict[ChunkKey, list[Bucket]]] = {tier: {} for tier in BUCKET_TIERS}
        with self._lock:
            for item in items:
                if item[0] == "r":
                    self._take(batch, finished, *item[1:])
                elif item[0] == "s":
                    self._take_sample(batch, *item[1:])
                else:
                    self._take_open(finished)
        for tier, groups in finished.items():
            self._merge_chunks(batch, tier, groups)
        if batch:
            self.tables.write(batch)

    def _take(
        self,
        batch: WriteBatch,
        finished: dict[str, dict[ChunkKey, list[Bucket]]],
        node: str,
        names: Sequence[str],
        t: float,
        values: Sequence[float],
    ) -> None:
        buckets = self._open.get(node)
        if buckets is None:
            buckets = self._open[node] = {}
        for name, value in zip(names, values, strict=False):
            value = float(value)
            batch.raw.append((node, name, t, value))
            for tier in BUCKET_TIERS:
                start = t - t % WIDTH[tier]
                bucket = buckets.get((name, tier))
                if bucket is None or bucket.start < start:
                    if bucket is not None and bucket.count:
                        finished[tier].setdefault((node, name, chunk_start(tier, bucket.start)), []).append(bucket)
                    bucket = buckets[(name, tier)] = self._resume(node, name, tier, start)
                elif start < bucket.start:
                    self.late += 1
                    continue
                bucket.add(t, value)
            self._maybe_expire(batch, node, name, t)

    def _take_sample(self, batch: WriteBatch, node: str, kind: str, t: float, data: bytes) -> None:
        batch.samples.append((node, kind, t, data))
        cutoff = self._due(node, "\0" + kind, t, "raw")
        if cutoff is not None:
            batch.expire_samples.append((node, kind, cutoff))

    def _take_open(self, finished: dict[str, dict[ChunkKey, list[Bucket]]]) -> None:
        for node, buckets in self._open.items():
            for (name, tier), bucket in buckets.items():
                if bucket.count:
                    finished[tier].setdefault((node, name, chunk_start(tier, bucket.start)), []).append(bucket)

    def _resume(self, node: str, name: str, tier: str, start: float) -> Bucket:
        """A new open bucket; one that may have been written before this process started starts from its row."""
        if start >= self.opened:
            return Bucket(start)
        key = (node, name, chunk_start(tier, start))
        stored = self.tables.load_chunks(tier, [key]).get(key)
        return Bucket(start, decode_chunk(stored).get(start) if stored else None)

    def _maybe_expire(self, batch: WriteBatch, node: str, name: str, t: float) -> None:
        cutoff = self._due(node, name, t, "raw")
        if cutoff is None:
            return
        batch.expire_raw.append((node, name, cutoff))
        for tier in BUCKET_TIERS:
            span = WIDTH[tier] * CHUNK_BUCKETS
            batch.expire_chunks.append((tier, node, name, min(t, time.time()) - self.retention[tier] - span))

    def _due(self, node: str, name: str, t: float, tier: str) -> float | None:
        """The raw cutoff when this series is due for an expiry pass (once per EXPIRE_EVERY of its data)."""
        last = self._expired.get((node, name))
        if last is not None and t - last < EXPIRE_EVERY:
            return None
        self._expired[(node, name)] = t
        return min(t, time.time()) - self.retention[tier]

    def _merge_chunks(self, batch: WriteBatch, tier: str, groups: dict[ChunkKey, list[Bucket]]) -> None:
        if not groups:
            return
        stored = self.tables.load_chunks(tier, list(groups))
        for key, buckets in groups.items():
            rows = decode_chunk(stored[key]) if key in stored else {}
            for bucket in buckets:
                rows[bucket.start] = bucket.row()
            batch.chunks.append((tier, *key, encode_chunk(rows)))


def _raw_series(rows: list[tuple[str, float, float]], wanted: set[str]) -> list[Series]:
    found: dict[str, tuple[list[float], list[float]]] = {}
    for series, t, value in rows:
        if wanted and series not in wanted:
            continue
        columns = found.get(series)
        if columns is None:
            columns = found[series] = ([], [])
        columns[0].append(t)
        columns[1].append(value)
    return [
        Series(name, times, values, values, values, [1.0] * len(times))
        for name, (times, values) in sorted(found.items())
    ]


def _chunk_series(
    rows: list[tuple[str, float, bytes]], wanted: set[str], lo: float, hi: float
) -> dict[str, list[array[float]]]:
    found: dict[str, list[array[float]]] = {}
    for series, _, data in rows:
        if wanted and series not in wanted:
            continue
        columns = found.get(series)
        if columns is None:
            columns = found[series] = [array("d") for _ in range(5)]
        n, v = _columns(data)
        if n and lo < v[0] and v[n - 1] <= hi:  # the whole chunk is inside: copy the columns as they are
            for i, column in enumerate(columns):
                column.extend(v[i * n : (i + 1) * n])
            continue
        for i in range(n):
            if lo < v[i] <= hi:
                for c, column in enumerate(columns):
                    column.append(v[c * n + i])
    return found


class MemoryHistoryTables:
    """:class:`HistoryTables` in dictionaries (the ``memory`` store's; lost on restart)."""

    durable = False

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._raw: dict[tuple[str, str], dict[float, float]] = {}
        self._samples: dict[tuple[str, str], dict[float, bytes]] = {}
        self._chunks: dict[tuple[str, str, str], dict[float, bytes]] = {}  # (tier, node, series) -> start -> data

    def write(self, batch: WriteBatch) -> None:
        """Apply ``batch``."""
        with self._lock:
            for node, series, t, value in batch.raw:
                self._raw.setdefault((node, series), {}).setdefault(t, value)
            for node, kind, t, data in batch.samples:
                self._samples.setdefault((node, kind), {}).setdefault(t, data)
            for tier, node, series, start, data in batch.chunks:
                self._chunks.setdefault((tier, node, series), {})[start] = data
            for node, series, cutoff in batch.expire_raw:
                _drop_before(self._raw.get((node, series)), cutoff)
            for node, kind, cutoff in batch.expire_samples:
                _drop_before(self._samples.get((node, kind)), cutoff)
            for tier, node, series, cutoff in batch.expire_chunks:
                _drop_before(self._chunks.get((tier, node, series)), cutoff)

    def load_chunks(self, tier: str, keys: list[ChunkKey]) -> dict[ChunkKey, bytes]:
        """The stored chunks of ``keys``."""
        with self._lock:
            found = {key: self._chunks.get((tier, key[0], key[1]), {}).get(key[2]) for key in keys}
        return {key: data for key, data in found.items() if data is not None}

    def read_chunks(self, tier: str, node: str, lo: float, hi: float) -> list[tuple[str, float, bytes]]:
        """``node``'s chunks with lo < start <= hi."""
        with self._lock:
            series = {s: dict(rows) for (t, n, s), rows in self._chunks.items() if t == tier and n == node}
        return [(s, start, series[s][start]) for s in sorted(series) for start in sorted(series[s]) if lo < start <= hi]

    def read_raw(self, node: str, lo: float, hi: float) -> list[tuple[str, float, float]]:
        """``node``'s raw rows with lo < time <= hi."""
        with self._lock:
            series = {s: dict(rows) for (n, s), rows in self._raw.items() if n == node}
        return [(s, t, series[s][t]) for s in sorted(series) for t in sorted(series[s]) if lo < t <= hi]

    def read_samples(self, node: str, kind: str, lo: float, hi: float, limit: int) -> list[tuple[float, bytes]]:
        """The newest ``limit`` samples with lo < time <= hi, oldest first."""
        with self._lock:
            rows = dict(self._samples.get((node, kind), {}))
        times = [t for t in sorted(rows) if lo < t <= hi]
        return [(t, rows[t]) for t in times[-limit:]] if limit > 0 else []

    def close(self) -> None:
        """Nothing to release."""


def _drop_before(rows: dict[float, Any] | None, cutoff: float) -> None:
    if rows:
        for key in [k for k in rows if k < cutoff]:
            del rows[key]


class NullHistory:
    """The ``null`` store's history: everything dropped, every answer empty."""

    durable = False
    late = 0

    def __init__(self, retention: dict[str, float] | None = None) -> None:
        self.retention = dict(retention or DEFAULT_RETENTION)

    def record(self, node: str, names: Sequence[str], time: float, values: Sequence[float]) -> None:
        """Drop the sample."""

    def record_sample(self, node: str, kind: str, time: float, data: bytes) -> None:
        """Drop the payload."""

    def checkpoint(self) -> None:
        """Nothing is open."""

    def flush(self, timeout: float = 5.0) -> bool:
        """Nothing is queued."""
        return True

    def close(self) -> None:
        """Nothing to release."""

    def query(
        self, node: str, tier: str, since: float | None = None, until: float | None = None, names: Iterable[str] = ()
    ) -> list[Series]:
        """Nothing is kept."""
        if tier not in WIDTH:
            raise ValueError(f"tier {tier!r} is not one of {', '.join(TIERS)}")
        return []

    def samples(
        self, node: str, kind: str, since: float | None = None, until: float | None = None, limit: int = 1_000_000
    ) -> list[tuple[float, bytes]]:
        """Nothing is kept."""
        return []
