"""The ``history`` part: series of numbers per (node, series name) in three tiers, downsampled as data arrives.

Tiers: ``raw`` (every sample, default 1 hour), ``1m`` (1-minute buckets with
min/avg/max/count, default 30 days) and ``1h`` (1-hour buckets, default 2
years); each retention is a store_arg (``history_raw``, ``history_1m``,
``history_1h``: seconds, or a number with s/m/h/d/y). A raw row is one
recorded sample: its series names and values, and optionally its whole
payload (e.g. the ``SystemStats`` bytes the ``systemstats`` module answers
raw requests with).

:class:`~collector.stores.tiers.TierHistory` is the part every backend
shares: recording only queues (the collector's loop never waits); one writer
thread downsamples, writes in batches and expires old rows as data arrives.
A backend supplies only :class:`HistoryTables` (a few primitive reads and one
batched write); bucket rows are kept in *chunks* of :data:`CHUNK_BUCKETS`
buckets per series (one row each), so reading a week of 1-minute buckets
reads 168 rows per series, not 10080.

Exactly once across restarts: a bucket keeps its count and the time of its
last sample; a bucket opened again after a restart (or a journal replay)
starts from its stored row and skips samples not newer than that last time;
rows are upserted, never added to. Open buckets are written as partial rows
at every checkpoint (``systemstats`` asks for one whenever the collector takes
its snapshot) and when the store closes. This module holds the shared shapes
and codecs; collector/stores/tiers.py the engine.
"""

from __future__ import annotations

import json
import math
import re
import sys
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from messages.errors import ConfigError

__all__ = [
    "CHUNK_BUCKETS",
    "DEFAULT_RETENTION",
    "TIERS",
    "WIDTH",
    "Bucket",
    "HistoryTables",
    "Series",
    "WriteBatch",
    "chunk_series",
    "decode_chunk",
    "decode_values",
    "encode_chunk",
    "encode_names",
    "encode_values",
    "raw_series",
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


def encode_names(names: Sequence[str]) -> str:
    """A raw row's series names, as JSON text."""
    return json.dumps(list(names), ensure_ascii=False)


def encode_values(values: Sequence[float]) -> bytes:
    """A raw row's values: little-endian doubles."""
    packed = values if isinstance(values, array) and sys.byteorder == "little" else array("d", values)
    if sys.byteorder == "big":  # pragma: no cover - the stored form is little-endian everywhere
        packed.byteswap()
    return packed.tobytes()


def decode_values(data: bytes) -> array[float]:
    """The values of a raw row."""
    values = array("d")
    values.frombytes(bytes(data))
    if sys.byteorder == "big":  # pragma: no cover
        values.byteswap()
    return values


RawRow = tuple[str, str, str, float, bytes, bytes]  # node, kind, names, time, values, data


@dataclass
class WriteBatch:
    """What one writer pass writes, in one transaction."""

    raw: list[RawRow] = field(default_factory=list)  # node, kind, names (JSON), time, values, payload
    chunks: list[tuple[str, str, str, float, bytes]] = field(default_factory=list)  # tier, node, series, start, data
    expire_raw: list[tuple[str, str, float]] = field(default_factory=list)  # node, kind, cutoff
    expire_chunks: list[tuple[str, str, str, float]] = field(default_factory=list)  # tier, node, series, cutoff

    def __bool__(self) -> bool:
        return any((self.raw, self.chunks, self.expire_raw, self.expire_chunks))


class HistoryTables(Protocol):
    """What a backend stores for the history part; called from its writer thread and from readers.

    Raw rows are one per recorded sample: ``(node, kind, names, time)`` is
    their key (a second row with the same key is ignored), with the values
    and the payload. Chunk rows hold a series' buckets (:func:`encode_chunk`).
    """

    durable: bool

    def write(self, batch: WriteBatch) -> None:
        """Write ``batch`` at once: new raw rows kept, chunks replaced, expired rows deleted.

        A raw cutoff deletes ``node``'s rows of ``kind`` older than it; a chunk
        cutoff deletes the series' chunks that start before it.
        """
        ...

    def load_chunks(self, tier: str, keys: list[ChunkKey]) -> dict[ChunkKey, bytes]:
        """The stored chunks of these keys (absent keys left out)."""
        ...

    def read_chunks(self, tier: str, node: str, lo: float, hi: float) -> list[tuple[str, float, bytes]]:
        """``(series, start, data)`` of ``node``'s chunks with lo < start <= hi, by series then start."""
        ...

    def read_raw(self, node: str, lo: float, hi: float) -> list[tuple[float, str, bytes]]:
        """``(time, names, values)`` of ``node``'s raw rows (every kind) with lo < time <= hi, by time."""
        ...

    def read_samples(self, node: str, kind: str, lo: float, hi: float, limit: int) -> list[tuple[float, bytes]]:
        """The newest ``limit`` ``(time, payload)`` of ``kind`` with lo < time <= hi, oldest first."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def raw_series(rows: list[tuple[float, str, bytes]], wanted: set[str]) -> list[Series]:
    """The series of raw rows (time, names, values), by name."""
    found: dict[str, tuple[list[float], list[float]]] = {}
    names_of: dict[str, list[str]] = {}
    for t, names_text, data in rows:
        names = names_of.get(names_text)
        if names is None:
            names = names_of[names_text] = json.loads(names_text)
        for name, value in zip(names, decode_values(data), strict=False):
            if wanted and name not in wanted:
                continue
            columns = found.get(name)
            if columns is None:
                columns = found[name] = ([], [])
            columns[0].append(t)
            columns[1].append(value)
    return [
        Series(name, times, values, values, values, [1.0] * len(times))
        for name, (times, values) in sorted(found.items())
    ]


def chunk_series(
    rows: list[tuple[str, float, bytes]], wanted: set[str], lo: float, hi: float, span: float
) -> dict[str, list[array[float]]]:
    """The columns (start, min, avg, max, count) of chunk rows of ``span`` seconds, by series, lo < start <= hi.

    Chunks wholly inside the window (most of them: only the edges are not) are
    kept as they are stored, and each column is cut from them and built once
    at the end; the edge chunks are decoded bucket by bucket.
    """
    found: dict[str, list[bytes]] = {}
    for series, start, data in rows:
        if wanted and series not in wanted:
            continue
        if not (lo < start and start + span <= hi):
            data = _inside(data, len(data) // 48, lo, hi)
        found.setdefault(series, []).append(data)
    return {series: _cut_columns(chunks) for series, chunks in found.items()}


def _inside(data: bytes, n: int, lo: float, hi: float) -> bytes:
    """A chunk row reduced to its buckets with lo < start <= hi (same layout)."""
    _, v = _columns(data)
    inside = [i for i in range(n) if lo < v[i] <= hi]
    return encode_values([v[c * n + i] for c in range(6) for i in inside])


def _cut_columns(chunks: list[bytes]) -> list[array[float]]:
    """The five columns of a series' chunk rows, in row order."""
    sizes = [len(data) // 6 for data in chunks]
    views = [memoryview(data) for data in chunks]
    return [
        decode_values(b"".join([view[c * size : (c + 1) * size] for view, size in zip(views, sizes, strict=True)]))
        for c in range(5)
    ]
