"""The ``history`` part on every backend: tiers, downsampling, queries, restarts, expiry, threads.

Every backend must give the same answers as a plain computation of the buckets (so SQLite and
PostgreSQL give the same results); the durable ones keep them across a reopen without losing or
doubling a bucket. PostgreSQL runs against 127.0.0.1:5432 (skips with one line without it).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

import pytest

from collector.stores import Store
from collector.stores.history import CHUNK_BUCKETS, Series, chunk_start
from collector.stores.history_memory import NullHistory
from tests.stores.conftest import BACKENDS

MakeStore = Callable[..., Store]
PERSISTENT = ("sqlite", "postgresql")
# Whole hours, four hours ago: every bucket is inside the default retentions (raw: the last hour).
T0 = math.floor(time.time() / 3600) * 3600 - 4 * 3600

pytestmark = pytest.mark.parametrize("backend", BACKENDS)


def wave(i: int) -> float:
    """A value that moves (and repeats), so min, avg and max differ within a bucket."""
    return float((i * 7) % 23) + 0.25


def samples(start: float, count: int, step: float = 10.0) -> list[tuple[float, float]]:
    return [(start + i * step, wave(i)) for i in range(count)]


def expected(points: list[tuple[float, float]], width: float) -> list[tuple[float, float, float, float, float]]:
    """(start, min, avg, max, count) of every bucket, computed plainly."""
    buckets: dict[float, list[float]] = {}
    for t, v in points:
        buckets.setdefault(t - t % width, []).append(v)
    return [(s, min(vs), sum(vs) / len(vs), max(vs), float(len(vs))) for s, vs in sorted(buckets.items())]


def rows(series: Series) -> list[tuple[float, float, float, float, float]]:
    return list(zip(series.time, series.min, series.avg, series.max, series.count, strict=True))


def by_name(found: list[Series]) -> dict[str, Series]:
    return {s.name: s for s in found}


def record(store: Store, node: str, points: list[tuple[float, float]], names: tuple[str, ...] = ("a", "b")) -> None:
    for t, v in points:
        store.history.record(node, names, t, [v, 2 * v][: len(names)])


def approx(got: list[tuple[float, ...]], want: list[tuple[float, ...]]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g == pytest.approx(w, rel=1e-12)


def test_tiers_are_downsampled_as_data_arrives(make_store: MakeStore, backend: str) -> None:
    store = make_store(backend)
    points = samples(T0, 3 * 360)  # 3 hours, one sample every 10 s
    record(store, "n1", points)
    record(store, "n2", samples(T0, 30), names=("a",))
    if isinstance(store.history, NullHistory):
        assert store.history.query("n1", "1m") == [] and store.history.samples("n1", "K") == []
        return
    minute = by_name(store.history.query("n1", "1m"))
    assert sorted(minute) == ["a", "b"]
    approx(rows(minute["a"]), expected(points, 60.0))
    approx(rows(minute["b"]), [(s, 2 * lo, 2 * av, 2 * hi, n) for s, lo, av, hi, n in expected(points, 60.0)])
    hour = by_name(store.history.query("n1", "1h"))
    approx(rows(hour["a"]), expected(points, 3600.0))
    assert len(hour["a"].time) == 3
    other = store.history.query("n2", "1m")
    assert [s.name for s in other] == ["a"] and len(other[0].time) == 5


def test_queries_by_time_range_name_and_tier(make_store: MakeStore, backend: str) -> None:
    store = make_store(backend)
    points = samples(T0 + 3 * 3600, 180)  # the last 30 minutes before T0 + 3.5 h: raw keeps them all
    record(store, "n1", points)
    if isinstance(store.history, NullHistory):
        return
    since, until = T0 + 3 * 3600 + 600, T0 + 3 * 3600 + 1200
    raw = by_name(store.history.query("n1", "raw", since=since, until=until))
    assert raw["a"].time == [t for t, _ in points if since < t <= until]
    assert raw["a"].min == raw["a"].avg == raw["a"].max == [v for t, v in points if since < t <= until]
    assert raw["a"].count == [1.0] * len(raw["a"].time)
    minute = store.history.query("n1", "1m", since=since, until=until, names=["b"])
    assert [s.name for s in minute] == ["b"]
    assert list(minute[0].time) == [since + 60 * i for i in range(1, 11)]  # since < start <= until
    assert store.history.query("n1", "1m", since=until + 3600) == []
    assert store.history.query("nobody", "1h") == []
    with pytest.raises(ValueError, match="tier"):
        store.history.query("n1", "5m")


def test_raw_sample_payloads(make_store: MakeStore, backend: str) -> None:
    store = make_store(backend)
    for i in range(5):
        store.history.record("n1", ("k",), T0 + 3 * 3600 + i, (float(i),), "Kind", f"payload {i}".encode())
    store.history.record("n1", (), T0 + 3 * 3600, (), "Other", b"x")
    if isinstance(store.history, NullHistory):
        return
    got = store.history.samples("n1", "Kind", since=T0 + 3 * 3600)
    assert got == [(T0 + 3 * 3600 + i, f"payload {i}".encode()) for i in range(1, 5)]
    assert [d for _, d in store.history.samples("n1", "Kind", limit=2)] == [b"payload 3", b"payload 4"]
    assert store.history.samples("n1", "Kind", until=T0 + 3 * 3600) == [(T0 + 3 * 3600, b"payload 0")]
    store.history.record("n1", ("k",), T0 + 3 * 3600, (9.0,), "Kind", b"again")  # the same key again: kept once
    assert len(store.history.samples("n1", "Kind")) == 5
    assert store.history.samples("n1", "Kind", limit=1) == [(T0 + 3 * 3600 + 4, b"payload 4")]
    (k,) = store.history.query("n1", "raw", names=["k"])
    assert list(k.avg) == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_open_buckets_answer_and_late_samples_stay_out(make_store: MakeStore, backend: str) -> None:
    store = make_store(backend)
    record(store, "n1", [(T0 + 5.0, 1.0), (T0 + 15.0, 3.0)])
    if isinstance(store.history, NullHistory):
        return
    (a, _) = store.history.query("n1", "1m")
    assert rows(a) == [(T0, 1.0, 2.0, 3.0, 2.0)]  # the open bucket, not yet finished
    record(store, "n1", [(T0 + 65.0, 10.0), (T0 + 20.0, 100.0)])  # the second is late: its bucket is finished
    store.history.flush()
    (a, _) = store.history.query("n1", "1m")
    assert rows(a) == [(T0, 1.0, 2.0, 3.0, 2.0), (T0 + 60, 10.0, 10.0, 10.0, 1.0)]
    assert store.history.late == 2  # both series
    raw = by_name(store.history.query("n1", "raw"))
    assert T0 + 20.0 in raw["a"].time  # the raw tier keeps it


def test_a_reopen_neither_loses_nor_doubles_a_bucket(make_store: MakeStore, backend: str) -> None:
    if backend not in PERSISTENT:
        pytest.skip(f"{backend} keeps nothing across a restart (by design)")
    points = samples(T0 + 7, 100, step=13.0)  # buckets cut across the restart
    store = make_store(backend)
    record(store, "n1", points[:55])
    store.history.checkpoint()  # as a module's snapshot does
    record(store, "n1", points[55:70])
    store.close()  # writes the open buckets too
    again = make_store(backend)
    record(again, "n1", points[40:])  # a journal replay sends some samples again
    for tier, width in (("1m", 60.0), ("1h", 3600.0)):
        approx(rows(by_name(again.history.query("n1", tier))["a"]), expected(points, width))
    assert len(by_name(again.history.query("n1", "raw"))["a"].time) == 100
    again.close()
    third = make_store(backend)
    approx(rows(by_name(third.history.query("n1", "1m"))["a"]), expected(points, 60.0))


def test_old_rows_expire_by_retention_as_data_arrives(make_store: MakeStore, backend: str) -> None:
    if "dropin" in backend:
        pytest.skip("the drop-in takes only its own store_arg")
    store = make_store(backend, history_raw=600, history_1m="2h", history_1h="1d")
    assert store.history.retention == {"raw": 600.0, "1m": 7200.0, "1h": 86400.0}
    # Two days, one sample every 10 minutes, starting 40 hours into a 60-hour chunk of the 1h tier: the chunk's
    # other 20 hours are past the day of retention when the data ends, so that chunk goes whatever the clock says.
    start = chunk_start("1h", T0 - 2 * 86400 - 3600 * CHUNK_BUCKETS) + 40 * 3600
    record(store, "n1", samples(start, 48 * 6, step=600.0))
    if isinstance(store.history, NullHistory):
        return
    newest = start + (48 * 6 - 1) * 600.0
    raw = by_name(store.history.query("n1", "raw"))["a"]
    assert raw.time[-1] == newest and raw.time[0] >= newest - 600 - 600  # one expiry pass per minute of data
    minute = by_name(store.history.query("n1", "1m"))["a"]
    assert minute.time[0] >= newest - 7200 - 60 * CHUNK_BUCKETS  # whole chunks go
    hour = by_name(store.history.query("n1", "1h"))["a"]
    assert hour.time[0] >= newest - 86400 - 3600 * CHUNK_BUCKETS
    assert hour.time[0] >= chunk_start("1h", start) + 3600 * CHUNK_BUCKETS  # the oldest chunk went
    assert len(hour.time) == 48 - 20
    assert len(minute.time) <= (7200 + 60 * CHUNK_BUCKETS) / 600 + 1


def test_many_threads_record_at_once(make_store: MakeStore, backend: str) -> None:
    store = make_store(backend)
    errors: list[BaseException] = []

    def run(t: int) -> None:
        try:
            record(store, f"t{t}", samples(T0, 120), names=("a",))
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(t,)) for t in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors
    if isinstance(store.history, NullHistory):
        return
    for t in range(6):
        (a,) = store.history.query(f"t{t}", "1m")
        approx(rows(a), expected(samples(T0, 120), 60.0))
