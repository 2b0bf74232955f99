"""The audit trail (collector/audit.py) and the per-client limits (collector/throttle.py), without sockets."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from collector.audit import MAX_LIMIT, AuditFailed, AuditTrail
from collector.audit_table import AuditTable, MemoryAuditTable, SQLiteAuditTable
from collector.config import parse_args
from collector.counters import Counters
from collector.store import NullStore, SQLiteStore
from collector.throttle import ClientLimits, TokenBucket
from messages.errors import ConfigError, RequestError


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["sqlite", "memory"])
def table(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AuditTable]:
    """Both tables the trail can keep its rows in: the store's SQLite table and the in-memory one."""
    if request.param == "memory":
        yield MemoryAuditTable()
        return
    store = SQLiteStore(tmp_path / "store.sqlite3")
    yield store.audit_table()
    store.close()


def test_an_entry_is_recorded_then_finished_in_place(table: AuditTable) -> None:
    clock, counters = Clock(), Counters()
    trail = AuditTrail(table, 3600, counters, clock)
    entry = trail.record("10.0.0.7", "", "NodeFile", {"node": "n1", "path": "a.txt", "credit": "8"}, "n1")
    (row,) = trail.answer({})
    assert row == {
        "id": entry,
        "time": clock.now,
        "who": "10.0.0.7",
        "fingerprint": "",
        "type": "NodeFile",
        "params": {"node": "n1", "path": "a.txt", "credit": "8"},
        "node": "n1",
        "outcome": None,
        "bytes": None,
        "finished": None,
    }
    clock.now += 2
    trail.finish(entry, "ok", 1234)
    (row,) = trail.answer({})
    assert (row["id"], row["outcome"], row["bytes"], row["finished"]) == (entry, "ok", 1234, clock.now)
    assert counters["client-audited"] == 1


def test_a_refused_request_is_recorded_with_its_outcome(table: AuditTable) -> None:
    clock = Clock()
    trail = AuditTrail(table, 3600, Counters(), clock)
    trail.record("op", "ab:cd", "ProcessList", {"node": "gone"}, "gone", outcome="not-found")
    (row,) = trail.answer({})
    assert (row["outcome"], row["finished"], row["fingerprint"]) == ("not-found", clock.now, "ab:cd")


def test_answer_filters_by_since_and_node_newest_last_and_bounded(table: AuditTable) -> None:
    clock = Clock()
    trail = AuditTrail(table, 10 * 86400, Counters(), clock)
    for i in range(6):
        clock.now += 10
        trail.record("c", "", "ProcessList", {"node": f"n{i % 2}"}, f"n{i % 2}")
    times = [row["time"] for row in trail.answer({})]
    assert times == sorted(times) and len(times) == 6
    assert [r["node"] for r in trail.answer({"node": "n1"})] == ["n1"] * 3
    assert [r["time"] for r in trail.answer({"since": str(clock.now - 20)})] == times[-3:]
    assert [r["time"] for r in trail.answer({"limit": "2"})] == times[-2:]
    assert trail.answer({"limit": "0"}) == []


def test_answer_defaults_to_the_last_24_hours(table: AuditTable) -> None:
    clock = Clock()
    trail = AuditTrail(table, 10 * 86400, Counters(), clock)
    trail.record("c", "", "ProcessList", {"node": "n1"}, "n1")
    clock.now += 86400 + 1
    trail.record("c", "", "RunProbe", {"node": "n1"}, "n1")
    assert [r["type"] for r in trail.answer({})] == ["RunProbe"]
    assert [r["type"] for r in trail.answer({"since": "0"})] == ["ProcessList", "RunProbe"]


@pytest.mark.parametrize(
    "params",
    [{"since": "yesterday"}, {"since": "nan"}, {"since": "inf"}, {"limit": "-1"}, {"limit": "1.5"}, {"limit": "x"}]
    + [{"limit": str(MAX_LIMIT + 1)}],
)
def test_bad_parameters_are_bad_requests(params: dict[str, str]) -> None:
    trail = AuditTrail(MemoryAuditTable(), 3600, Counters(), Clock())
    with pytest.raises(RequestError) as caught:
        trail.answer(params)
    assert caught.value.code == "bad-request"


def test_entries_past_retention_are_pruned_on_a_later_record(table: AuditTable) -> None:
    clock = Clock()
    trail = AuditTrail(table, 100, Counters(), clock)
    trail.record("c", "", "ProcessList", {"node": "n1"}, "n1")
    clock.now += 150  # past the retention, and past the once-a-minute prune period
    trail.record("c", "", "RunProbe", {"node": "n1"}, "n1")
    assert [r["type"] for r in trail.answer({"since": "0"})] == ["RunProbe"]


def test_the_sqlite_entry_is_on_disk_when_record_returns(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "store.sqlite3")
    trail = AuditTrail(store.audit_table(), 3600, Counters(), Clock())
    trail.record("10.0.0.7", "", "ProcessList", {"node": "n1"}, "n1")
    # Another connection (as after a crash: nothing of this process's state) sees the committed row.
    with sqlite3.connect(tmp_path / "store.sqlite3") as other:
        assert other.execute("SELECT who, type, node, outcome FROM audit").fetchall() == [
            ("10.0.0.7", "ProcessList", "n1", None)
        ]
    store.close()


def test_a_write_that_fails_raises_audit_failed_and_is_counted(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "store.sqlite3")
    counters = Counters()
    trail = AuditTrail(store.audit_table(), 3600, counters, Clock())
    store.db.execute("DROP TABLE audit")  # what a broken disk looks like to the trail: sqlite3.Error
    with pytest.raises(AuditFailed):
        trail.record("c", "", "ProcessList", {"node": "n1"}, "n1")
    trail.finish(1, "ok")  # an outcome that cannot be written is counted, never raised
    assert counters["client-audit-failed"] == 3  # the prune before the insert, the insert, the outcome
    store.close()


def test_without_a_journal_the_trail_lives_in_memory() -> None:
    table = NullStore().audit_table()
    assert isinstance(table, MemoryAuditTable) and not table.durable


def test_the_memory_table_is_bounded() -> None:
    table = MemoryAuditTable(max_rows=3)
    trail = AuditTrail(table, 3600, Counters(), Clock())
    ids = [trail.record("c", "", "T", {}, f"n{i}") for i in range(5)]
    assert [r["id"] for r in trail.answer({})] == ids[-3:]
    trail.finish(ids[0], "ok")  # forgotten already: nothing happens
    assert len(table.by_id) == 3


def test_sqlite_table_keeps_its_rows_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    first = SQLiteStore(path)
    entry = AuditTrail(first.audit_table(), 3600, Counters(), Clock()).record("c", "", "T", {"node": "n"}, "n")
    first.close()
    again = SQLiteStore(path)
    table = again.audit_table()
    assert isinstance(table, SQLiteAuditTable)
    assert [r.id for r in table.select(0, "", 10)] == [entry]
    again.close()


# ------------------------------------------------------------ token bucket and client limits


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    bucket = TokenBucket(rate=2.0, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert not bucket.take(0.4)  # 0.8 of a token earned
    assert bucket.take(0.5)  # one token at 0.5 s
    assert not bucket.take(0.5)
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]  # never more than the burst


def test_token_bucket_ignores_a_clock_going_back() -> None:
    bucket = TokenBucket(rate=1.0, burst=1, now=10.0)
    assert bucket.take(10.0)
    assert not bucket.take(5.0)
    assert not bucket.take(5.5)  # from 5.0 on, not from 10: no time travel either way
    assert bucket.take(6.0)


@pytest.mark.parametrize(("rate", "burst"), [(0.0, 1), (-1.0, 1), (1.0, 0)])
def test_token_bucket_refuses_a_meaningless_configuration(rate: float, burst: int) -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate, burst, 0.0)


def test_client_limits_keep_one_bucket_per_client() -> None:
    clock = Clock(0.0)
    limits = ClientLimits(rate=1.0, burst=2, max_streams=2, clock=clock)
    assert [limits.admit(b"flood") for _ in range(5)] == [True, True, False, False, False]
    assert limits.admit(b"other") and limits.admit(b"other")
    clock.now += 1.0
    assert limits.admit(b"flood") and not limits.admit(b"flood")


def test_client_limits_forget_idle_clients_when_there_are_many(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("collector.throttle.MAX_BUCKETS", 3)
    clock = Clock(0.0)
    limits = ClientLimits(rate=1.0, burst=1, max_streams=1, clock=clock)
    for key in (b"a", b"b", b"c"):
        limits.admit(key)
    clock.now += 5  # every bucket full again: idle
    limits.admit(b"d")
    assert set(limits.buckets) == {b"d"}


def test_stream_slots() -> None:
    limits = ClientLimits(rate=1.0, burst=1, max_streams=2)
    assert limits.streams_left(0) and limits.streams_left(1) and not limits.streams_left(2)


# ------------------------------------------------------------ config keys


def test_limit_keys_have_defaults_and_take_config_values(tmp_path: Path) -> None:
    defaults = parse_args([])
    assert (defaults.client_request_rate, defaults.client_request_burst, defaults.client_max_streams) == (200, 400, 4)
    assert (defaults.max_nodes, defaults.audit_retention) == (10_000, 30 * 86400)
    path = tmp_path / "c.toml"
    path.write_text(
        "[collector]\nclient_request_rate = 2.5\nclient_max_streams = 1\nmax_nodes = 3\naudit_retention = 60\n"
    )
    config = parse_args(["--config", str(path)])
    assert (config.client_request_rate, config.client_max_streams, config.max_nodes) == (2.5, 1, 3)
    assert config.audit_retention == 60


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("client_request_rate = 0", "client_request_rate must be greater than 0 \\(and finite\\), not 0"),
        ("client_request_burst = 1.5", "client_request_burst must be int"),
        ("client_max_streams = -1", "client_max_streams must be greater than 0 \\(and finite\\), not -1"),
        ("max_nodes = 'many'", "max_nodes must be int"),
        ("audit_retention = 0", "audit_retention must be greater than 0 \\(and finite\\), not 0"),
    ],
)
def test_bad_limit_keys_are_one_clear_config_error(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f"[collector]\n{line}\n")
    with pytest.raises(ConfigError, match=message) as caught:
        parse_args(["--config", str(path)])
    assert str(path) in str(caught.value)
