"""The history part's tables in memory (the ``memory`` store's) and the ``null`` store's history."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence

from collector.stores.history import DEFAULT_RETENTION, TIERS, WIDTH, ChunkKey, Series, WriteBatch

__all__ = ["MemoryHistoryTables", "NullHistory"]


class MemoryHistoryTables:
    """:class:`~collector.stores.history.HistoryTables` in dictionaries (lost on restart)."""

    durable = False

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._raw: dict[tuple[str, str], dict[tuple[str, float], tuple[bytes, bytes]]] = {}  # (node, kind) -> rows
        self._chunks: dict[tuple[str, str, str], dict[float, bytes]] = {}  # (tier, node, series) -> start -> data

    def write(self, batch: WriteBatch) -> None:
        """Apply ``batch``."""
        with self._lock:
            for node, kind, names, t, values, data in batch.raw:
                self._raw.setdefault((node, kind), {}).setdefault((names, t), (values, data))
            for tier, node, series, start, data in batch.chunks:
                self._chunks.setdefault((tier, node, series), {})[start] = data
            for node, kind, cutoff in batch.expire_raw:
                rows = self._raw.get((node, kind), {})
                for key in [k for k in rows if k[1] < cutoff]:
                    del rows[key]
            for tier, node, series, cutoff in batch.expire_chunks:
                chunks = self._chunks.get((tier, node, series), {})
                for start in [s for s in chunks if s < cutoff]:
                    del chunks[start]

    def load_chunks(self, tier: str, keys: list[ChunkKey]) -> dict[ChunkKey, bytes]:
        """The stored chunks of ``keys``."""
        with self._lock:
            found = {key: self._chunks.get((tier, key[0], key[1]), {}).get(key[2]) for key in keys}
        return {key: data for key, data in found.items() if data is not None}

    def read_chunks(self, tier: str, node: str, lo: float, hi: float) -> list[tuple[str, float, bytes]]:
        """``node``'s chunks with lo < start <= hi, by series then start."""
        with self._lock:
            series = {s: dict(rows) for (t, n, s), rows in self._chunks.items() if t == tier and n == node}
        return [(s, start, series[s][start]) for s in sorted(series) for start in sorted(series[s]) if lo < start <= hi]

    def read_raw(self, node: str, lo: float, hi: float) -> list[tuple[float, str, bytes]]:
        """``node``'s raw rows of every kind with lo < time <= hi, by time."""
        with self._lock:
            rows = [
                (t, names, values)
                for (n, _), kept in self._raw.items()
                if n == node
                for (names, t), (values, _) in kept.items()
            ]
        return sorted(row for row in rows if lo < row[0] <= hi)

    def read_samples(self, node: str, kind: str, lo: float, hi: float, limit: int) -> list[tuple[float, bytes]]:
        """The newest ``limit`` payloads of ``kind`` with lo < time <= hi, oldest first."""
        with self._lock:
            rows = sorted((t, data) for (_, t), (_, data) in self._raw.get((node, kind), {}).items() if lo < t <= hi)
        return rows[-limit:] if limit > 0 else []

    def close(self) -> None:
        """Nothing to release."""


class NullHistory:
    """The ``null`` store's history: everything dropped, every answer empty."""

    durable = False
    late = 0
    dropped = 0

    def __init__(self, retention: dict[str, float] | None = None) -> None:
        self.retention = dict(retention or DEFAULT_RETENTION)

    def record(
        self,
        node: str,
        names: Sequence[str],
        time: float,
        values: Sequence[float],
        kind: str = "values",
        data: bytes = b"",
    ) -> None:
        """Drop the sample."""

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
