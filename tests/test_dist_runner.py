"""The distribution runner without sockets: queue policy, thread, retry, backoff, containment, shutdown."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from collector.addons import Figures, Report
from collector.config import DistSection
from collector.dist import DataPoint, DistCore, Distribution, ReportItem
from collector.dist_host import Fanout
from collector.dist_runner import MAX_ATTEMPTS, DistQueue, Runner, Signal, backoff, collapse_key
from messages import Encoding
from tests.conftest import REPO, wait_for

pytestmark = pytest.mark.timeout(30)


def section(**fields: Any) -> DistSection:
    fields = {"name": "t", "type": "test", "cpu_limit": 1.0, **fields}
    return DistSection(**fields)


class Recorder(Distribution):
    """Records, in its own thread, every call the runner makes."""

    def __init__(self, core: DistCore) -> None:
        super().__init__(core)
        self.sent: list[Any] = []
        self.batches = 0
        self.connects = 0
        self.closed = 0
        self.threads: set[int] = set()
        self.refuse: set[Any] = set()  # payload codes whose first sendUpdate returns False

    def connect(self) -> bool:
        self.connects += 1
        return True

    def sendUpdate(self, payload: Any) -> bool:
        self.threads.add(threading.get_ident())
        if isinstance(payload, DataPoint) and payload.code in self.refuse:
            self.refuse.discard(payload.code)
            return False
        self.sent.append(payload)
        return True

    def updateBatchComplete(self) -> None:
        self.batches += 1

    def close(self) -> None:
        self.closed += 1


class Notices(list[tuple[str, str, str]]):
    """What the runner's thread reported, as (kind, severity, message)."""

    def __call__(self, kind: str, severity: str, message: str) -> None:
        self.append((kind, severity, message))

    def kinds(self) -> list[str]:
        return [kind for kind, _, _ in self]


def point(code: str, value: Any = 1.0, at: float = 100.0, node: str | None = None) -> tuple[Any, ...]:
    return (code, value, at, node)


@pytest.fixture
def run() -> Iterator[Any]:
    """Start runners; every one still running is stopped at teardown."""
    started: list[Runner] = []

    def start(dist_cls: type[Distribution] = Recorder, **fields: Any) -> tuple[Runner, Any, Notices]:
        sec = section(**fields)
        dist = dist_cls(DistCore(sec.name, sec.type, sec.mode))
        notices = Notices()
        runner = Runner(sec, dist, notices)
        runner.start()
        started.append(runner)
        return runner, dist, notices

    yield start
    for runner in started:
        runner.stop()
    for runner in started:
        assert runner.join(10), f"runner {runner.name} did not stop"


# ---------------------------------------------------------------- the queue


def test_drop_oldest_keeps_the_newest_and_counts_exactly() -> None:
    queue = DistQueue(3)
    for i in range(10):
        queue.put(point(f"n/{i}"))
    assert [item[0] for item in queue.items] == ["n/7", "n/8", "n/9"]
    assert queue.dropped() == {"queue-full": 7, "collapsed": 0}
    assert [item[0] for item in queue.take(2)] == ["n/7", "n/8"]
    queue.put(point("n/10"))
    assert queue.dropped() == {"queue-full": 7, "collapsed": 0} and len(queue) == 2


def test_drop_oldest_counts_items_not_lists_and_cuts_into_a_list() -> None:
    queue = DistQueue(5)
    queue.put_many([point(f"a/{i}") for i in range(3)])
    queue.put_many([point(f"b/{i}") for i in range(4)])  # two of the first list go
    assert [item[0] for item in queue.items] == ["a/2", "b/0", "b/1", "b/2", "b/3"]
    assert [item[0] for item in queue.take(2)] == ["a/2", "b/0"]  # across the lists
    queue.put_many([point(f"c/{i}") for i in range(6)])  # more than queue_max at once: its newest five stay
    assert [item[0] for item in queue.items] == [f"c/{i}" for i in range(1, 6)]
    assert queue.dropped() == {"queue-full": 2 + 3 + 1, "collapsed": 0}
    assert queue.offered == 13 == queue.taken + len(queue) + queue.dropped()["queue-full"]
    assert queue.take(100) and len(queue) == 0 and queue.take(1) == []


def test_collapse_works_across_the_lists_a_pass_put() -> None:
    queue = DistQueue(4, "collapse")
    queue.put_many([point("a", 1), point("b", 1)])
    queue.take(1)
    queue.put_many([point("a", 2), point("b", 2), point("a", 3)])  # four waiting: within queue_max
    assert len(queue) == 4 and queue.dropped() == {"queue-full": 0, "collapsed": 0}
    queue.put_many([point("b", 3)])
    assert [(item[0], item[1]) for item in queue.items] == [("a", 3), ("b", 3)]
    assert queue.dropped() == {"queue-full": 0, "collapsed": 3} and len(queue) == 2


def test_the_queue_counts_data_points_a_sample_as_many_as_it_holds() -> None:
    queue = DistQueue(10)
    samples = [(None, f"n{i}", ("cpu", "mem", "load"), (1.0, 2.0, 3.0), 1.0, None) for i in range(3)]
    queue.put_many([*samples, (None, "n9", ("cpu", "mem", "load"), (1.0, 2.0, 3.0), 1.0, (2,)), point("n/x")])
    assert queue.offered == 3 * 3 + 1 + 1
    assert [item[0] or item[1] for item in queue.items] == ["n1", "n2", "n9", "n/x"]  # n0 went whole: 3 points
    assert queue.dropped()["queue-full"] == 3 and len(queue) == 8
    assert [item[1] for item in queue.take(2)] == ["n1", "n2"] and len(queue) == 2 and queue.taken == 6


def test_the_newest_entry_stays_even_when_it_alone_is_more_than_queue_max() -> None:
    queue = DistQueue(3)
    sample = (None, "n1", ("a", "b", "c", "d", "e"), (1, 2, 3, 4, 5), 1.0, None)
    queue.put(point("n/x"))
    queue.put(sample)
    assert queue.items == [sample] and len(queue) == 5 and queue.dropped()["queue-full"] == 1
    queue.put(point("n/y"))
    assert queue.items == [point("n/y")] and queue.dropped()["queue-full"] == 6


def test_collapse_keeps_only_the_newest_value_per_code() -> None:
    queue = DistQueue(4, "collapse")
    for code, value in (("a", 1), ("b", 1), ("a", 2), ("b", 2), ("a", 3)):
        queue.put(point(code, value))
    assert [(item[0], item[1]) for item in queue.items] == [("b", 2), ("a", 3)]
    assert queue.dropped() == {"queue-full": 0, "collapsed": 3}


def test_collapse_drops_the_oldest_codes_beyond_half_the_queue() -> None:
    queue = DistQueue(4, "collapse")
    for i in range(5):
        queue.put(point(f"c{i}"))
    assert [item[0] for item in queue.items] == ["c3", "c4"]
    assert queue.dropped() == {"queue-full": 3, "collapsed": 0}


def test_a_sample_collapses_with_the_newer_sample_of_the_same_node_and_names() -> None:
    n1 = [(None, "n1", ("cpu", "mem"), (float(i), 2.0), float(i), None) for i in range(4)]
    other = (None, "n2", ("cpu", "mem"), (5.0, 6.0), 2.0, None)
    assert collapse_key(n1[0]) == collapse_key(n1[3]) != collapse_key(other)
    queue = DistQueue(8, "collapse")  # counted in points: four samples of two
    for item in (n1[0], other, *n1[1:]):
        queue.put(item)
    assert list(queue.items) == [other, n1[3]]
    assert queue.dropped() == {"queue-full": 0, "collapsed": 3 * 2} and len(queue) == 4


def test_backoff_doubles_from_half_a_second_to_thirty() -> None:
    assert [backoff(n) for n in range(9)] == [0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert backoff(10_000) == 30.0


def test_signal_sets_once_and_wakes_another_thread() -> None:
    signal = Signal()
    signal.set()
    signal.set()
    assert signal.wait(0) and not signal.wait(0)
    threading.Timer(0.05, signal.set).start()
    started = time.monotonic()
    assert signal.wait(5) and time.monotonic() - started < 4


# ---------------------------------------------------------------- delivery


def test_points_are_delivered_in_order_from_another_thread(run: Any) -> None:
    runner, dist, notices = run()
    for i in range(5):
        runner.put(point(f"n1/m{i}", float(i), at=50.0 + i))
    wait_for(lambda: len(dist.sent) == 5, 10, what="five points delivered")
    assert dist.sent == [DataPoint(f"n1/m{i}", float(i), 50.0 + i, "n1") for i in range(5)]
    assert threading.get_ident() not in dist.threads and len(dist.threads) == 1
    wait_for(lambda: dist.batches >= 1, 5, what="updateBatchComplete")
    stats = runner.snapshot()
    assert (stats["sent"], stats["offered"], stats["connected"], stats["errors"]) == (5, 5, True, 0)
    assert stats["last_success"] > 0 and notices == []


def test_a_sample_becomes_one_point_per_name_it_takes(run: Any) -> None:
    runner, dist, _ = run()
    runner.put((None, "n1", ("cpu", "mem", "load"), (1.0, 2.0, 3.0), 7.0, None))
    runner.put((None, "n2", ("cpu", "mem", "load"), (4.0, 5.0, 6.0), 8.0, (0, 2)))
    wait_for(lambda: len(dist.sent) == 5, 10, what="five points")
    assert [(p.code, p.value, p.time, p.node) for p in dist.sent] == [
        ("n1/cpu", 1.0, 7.0, "n1"),
        ("n1/mem", 2.0, 7.0, "n1"),
        ("n1/load", 3.0, 7.0, "n1"),
        ("n2/cpu", 4.0, 8.0, "n2"),
        ("n2/load", 6.0, 8.0, "n2"),
    ]


def test_figures_are_read_from_their_bytes_once_in_the_distributions_thread(run: Any) -> None:
    reads: list[tuple[bytes, int]] = []

    def read(data: bytes) -> tuple[float, ...]:
        reads.append((data, threading.get_ident()))
        return tuple(float(part) for part in data.split(b","))

    runner, dist, _ = run()
    runner.put((None, "n1", ("cpu", "mem", "load"), Figures(read, b"1,2,3"), 7.0, (0, 2)))
    wait_for(lambda: len(dist.sent) == 2, 10, what="two points")
    assert [(p.code, p.value) for p in dist.sent] == [("n1/cpu", 1.0), ("n1/load", 3.0)]
    assert len(reads) == 1 and reads[0][0] == b"1,2,3" and reads[0][1] in dist.threads


def test_a_published_read_is_made_into_points_in_the_distributions_thread(run: Any) -> None:
    reads: list[int] = []

    def read(data: bytes) -> tuple[float, ...]:
        reads.append(threading.get_ident())
        return tuple(float(part) for part in data.split(b","))

    runner, dist, _ = run()
    fanout = Fanout([runner])
    fanout.publish_read("n1", ["cpu", "mem"], read, b"4,5", 8.0)
    fanout.flush()  # what the loop's next turn does
    wait_for(lambda: len(dist.sent) == 2, 10, what="two points")
    assert [(p.code, p.value, p.time) for p in dist.sent] == [("n1/cpu", 4.0, 8.0), ("n1/mem", 5.0, 8.0)]
    assert len(reads) == 1 and reads[0] in dist.threads


def test_figures_whose_read_raises_drop_the_sample_and_count_it(run: Any) -> None:
    def broken(data: bytes) -> tuple[float, ...]:
        raise ValueError(f"cannot read {data!r}")

    runner, dist, _ = run()
    runner.put((None, "n1", ("cpu", "mem"), Figures(broken, b"x"), 7.0, None))
    runner.put(point("n1/after", 5.0))
    wait_for(lambda: len(dist.sent) == 1, 10, what="the point after the broken sample")
    assert dist.sent[0].code == "n1/after"
    assert runner.dropped()["error"] == 2 and runner.stats.errors_by_method == {"publish_many": 1}
    assert "cannot read b'x'" in runner.stats.last_error


def test_the_seed_style_send_data_sees_the_whole_point(run: Any) -> None:
    class Seedish(Recorder):
        def sendData(self, code: str, value: Any) -> None:
            assert self.point is not None
            self.queueData([str(code), str(value), self.point.node, self.point.time])

    runner, dist, _ = run(Seedish)
    runner.put(point("collector/nodes_live", 3, at=9.0, node="collector"))
    wait_for(lambda: dist.sent, 10, what="a payload")
    assert dist.sent == [["collector/nodes_live", "3", "collector", 9.0]]


def test_an_undelivered_item_is_kept_and_retried_after_connect(run: Any) -> None:
    def refusing(core: DistCore) -> Recorder:
        dist = Recorder(core)
        dist.refuse = {"n1/b"}
        return dist

    runner, dist, notices = run(refusing)
    for code in ("n1/a", "n1/b", "n1/c"):
        runner.put(point(code))
    wait_for(lambda: len(dist.sent) == 3, 10, what="all three delivered")
    assert [p.code for p in dist.sent] == ["n1/a", "n1/b", "n1/c"]  # b once, in its place
    assert dist.connects == 2
    wait_for(lambda: notices.kinds() == ["distribution-down", "distribution-up"], 5, what="down then up")
    assert "sendUpdate() returned False" in notices[0][2] and notices[0][1] == "warning"
    assert runner.snapshot()["reconnects"] == 1 and runner.snapshot()["connected"]


class Raising(Distribution):
    """Raises in every method the runner calls."""

    def configure(self, config: dict[str, Any]) -> None:
        raise RuntimeError("configure")

    def isConnected(self) -> bool:
        raise RuntimeError("isConnected")

    def connect(self) -> bool:
        raise RuntimeError("connect")

    def sendData(self, code: str, value: Any) -> None:
        raise RuntimeError("sendData")

    def sendUpdate(self, payload: Any) -> bool:
        raise RuntimeError("sendUpdate")

    def updateBatchComplete(self) -> None:
        raise RuntimeError("updateBatchComplete")

    def close(self) -> None:
        raise RuntimeError("close")


def test_exceptions_are_counted_and_the_runner_goes_on(run: Any) -> None:
    runner, _, notices = run(Raising)
    for i in range(3):
        runner.put(point(f"n1/m{i}"))
    wait_for(lambda: runner.stats.errors_by_method.get("connect", 0) >= 2, 10, what="two connect attempts")
    stats = runner.snapshot()
    assert stats["connected"] is False and stats["sent"] == 0 and stats["queued"] == 3
    assert stats["last_error"] == "connect: RuntimeError: connect"
    assert notices.kinds() == ["distribution-down"]  # once per outage, not once per attempt


def test_send_data_that_raises_drops_the_point_and_counts_it(run: Any) -> None:
    class BadData(Recorder):
        def sendData(self, code: str, value: Any) -> None:
            if value == "bad":
                raise ValueError("cannot format")
            super().sendData(code, value)

    runner, dist, _ = run(BadData)
    for value in ("ok", "bad", "fine"):
        runner.put(point("n1/x", value))
    wait_for(lambda: len(dist.sent) == 2, 10, what="the two good points")
    assert runner.dropped()["error"] == 1 and runner.stats.errors_by_method == {"sendData": 1}


def test_an_item_that_always_raises_is_dropped_after_three_attempts(run: Any) -> None:
    class Poison(Recorder):
        def sendUpdate(self, payload: Any) -> bool:
            if payload.value == "poison":
                raise TypeError("not serializable")
            return super().sendUpdate(payload)

    runner, dist, _ = run(Poison)
    for value in ("a", "poison", "b"):
        runner.put(point("n1/x", value))
    wait_for(lambda: len(dist.sent) == 2, 15, what="the items after the poison one")
    assert [p.value for p in dist.sent] == ["a", "b"]
    assert runner.dropped()["error"] == 1 and runner.stats.errors_by_method["sendUpdate"] == MAX_ATTEMPTS


def test_a_slow_distribution_drops_oldest_and_never_blocks_the_put(run: Any) -> None:
    class Slow(Recorder):
        def sendUpdate(self, payload: Any) -> bool:
            time.sleep(0.05)
            return super().sendUpdate(payload)

    runner, dist, _ = run(Slow, queue_max=5)
    started = time.perf_counter()
    for i in range(200):
        runner.put(point("n1/x", i))
    assert time.perf_counter() - started < 0.5  # 200 puts, a destination at 20 items/s
    wait_for(lambda: runner.queued() == 0, 10, what="the queue drained")
    dropped = runner.dropped()
    assert dropped["queue-full"] >= 150 and dropped["queue-full"] + len(dist.sent) == 200
    assert dist.sent[-1].value == 199  # the newest survived


def test_cpu_limit_holds_a_busy_distribution_back_while_ingest_is_busy(run: Any) -> None:
    class Burner(Recorder):
        def sendUpdate(self, payload: Any) -> bool:
            until = time.thread_time() + 0.002
            while time.thread_time() < until:
                pass
            return super().sendUpdate(payload)

    runner, dist, _ = run(Burner, cpu_limit=0.1, batch_max=10)
    started_wall = time.monotonic()
    for i in range(60):
        runner.put(point("n1/x", i))
    wait_for(lambda: len(dist.sent) >= 40, 20, what="forty items")
    wall = time.monotonic() - started_wall
    assert len(dist.sent) * 0.002 / wall < 0.15  # its CPU over wall time stays near the 10 % limit


def test_stop_delivers_what_is_queued_then_closes(run: Any) -> None:
    class Gated(Recorder):
        gate = threading.Event()

        def sendUpdate(self, payload: Any) -> bool:
            self.gate.wait(5)
            return super().sendUpdate(payload)

    runner, dist, _ = run(Gated)
    for i in range(10):
        runner.put(point("n1/x", i))
    runner.stop()
    Gated.gate.set()
    assert runner.join(10)
    assert len(dist.sent) == 10 and dist.closed == 1 and runner.dropped()["shutdown"] == 0


def test_stop_counts_what_a_disconnected_distribution_never_delivered(run: Any) -> None:
    class Away(Recorder):
        def connect(self) -> bool:
            return False

    runner, dist, _ = run(Away)
    for i in range(4):
        runner.put(point("n1/x", i))
    wait_for(lambda: runner.stats.down_since > 0, 5, what="the first failed connect")
    runner.stop()
    assert runner.join(10)
    assert runner.dropped()["shutdown"] == 4 and dist.closed == 1


# ---------------------------------------------------------------- reports


def test_reports_mode_gets_report_items_and_the_feed_hears_of_delivery(run: Any) -> None:
    class Feed:
        def __init__(self) -> None:
            self.last: list[ReportItem] = []

        def delivered(self, last: ReportItem) -> None:
            self.last.append(last)

    sec = section(mode="reports")
    dist = Recorder(DistCore(sec.name, sec.type, sec.mode))
    feed = Feed()
    runner = Runner(sec, dist, Notices(), feed=feed)
    runner.start()
    try:
        for seq in (1, 2):
            runner.put(Report("n1", "SystemStats", seq, 10.0 + seq, b"\x08\x01", Encoding.PROTOBUF, "labscope.X"))
        wait_for(lambda: len(dist.sent) == 2, 10, what="two reports")
        first = dist.sent[0]
        assert first == ReportItem("n1", 1, "SystemStats", 11.0, Encoding.PROTOBUF, "labscope.X", b"\x08\x01")
        assert first.encoding_name == "PROTOBUF"
        wait_for(lambda: feed.last and feed.last[-1].seq == 2, 5, what="the feed told of seq 2")
    finally:
        runner.stop()
        assert runner.join(10)


class ListFeed:
    """A durable feed over a list of reports: a position, a saved cursor, a rewind."""

    durable = True
    idle_wait = 0.05

    def __init__(self, reports: list[ReportItem]) -> None:
        self.reports = reports
        self.position = 0  # reports read into the queue
        self.cursor = 0  # reports delivered
        self.reads = 0

    def fill(self, put_many: Any, want: int) -> int:
        taken = self.reports[self.position : self.position + want]
        if taken:
            put_many(taken)
        self.position += len(taken)
        self.reads += len(taken)
        return len(taken)

    def delivered(self, last: ReportItem) -> None:
        self.cursor = last.seq

    def rewind(self) -> None:
        self.position = self.cursor


def test_a_failed_batch_rewinds_a_durable_feed_to_its_cursor() -> None:
    """A batch whose updateBatchComplete raises is read again from the cursor and counts as not sent."""

    class Batching(Recorder):
        def __init__(self, core: DistCore) -> None:
            super().__init__(core)
            self.kept: list[Any] = []
            self.fail_batches = 1

        def sendUpdate(self, payload: Any) -> bool:
            self.kept.append(payload)
            return True

        def updateBatchComplete(self) -> None:
            kept, self.kept = self.kept, []
            if self.fail_batches:
                self.fail_batches -= 1
                raise ConnectionError(f"{len(kept)} not acknowledged")
            self.sent.extend(kept)

    reports = [ReportItem("n1", seq, "T", 1.0, Encoding.RAW, "", b"x", journal_id=1) for seq in range(1, 26)]
    feed = ListFeed(reports)
    sec = section(mode="reports", batch_max=10)
    dist = Batching(DistCore(sec.name, sec.type, sec.mode))
    runner = Runner(sec, dist, Notices(), feed=feed)
    runner.start()
    try:
        wait_for(lambda: feed.cursor == 25, 15, what="every report delivered after the failed batch")
        assert [item.seq for item in dist.sent] == list(range(1, 26))  # the failed ten again, none twice
        assert feed.reads == 35 and runner.stats.sent == 25
        assert runner.stats.errors_by_method == {"updateBatchComplete": 1} and dist.connects == 2
    finally:
        runner.stop()
        assert runner.join(10)


# ---------------------------------------------------------------- real threads in a patched process

PATCHED = """
from gevent import monkey
monkey.patch_all(thread=False, queue=False)  # as labscope collector does (collector/cli.py)
import threading, time, gevent
from collector.config import DistSection
from collector.dist import Distribution, DistCore
from collector.dist_runner import Runner

class Blocking(Distribution):
    def sendUpdate(self, payload):
        self.ident = threading.get_native_id()
        with threading.Lock():  # a real lock
            time.sleep(1.0)  # patched: a hub of the thread's own waits, never the loop's
        return True

sec = DistSection(name="b", type="b", cpu_limit=1.0)
dist = Blocking(DistCore("b", "b"))
runner = Runner(sec, dist, lambda *a: None)
runner.start()
runner.put(("n/x", 1, 0.0, None))
ticks, started = 0, time.monotonic()
while time.monotonic() - started < 0.8:
    gevent.sleep(0.01)
    ticks += 1
while runner.stats.sent == 0:
    gevent.sleep(0.05)
runner.stop()
print(ticks, dist.ident != threading.get_native_id(), runner.join(5))
"""


@pytest.mark.e2e
def test_the_thread_is_real_and_a_blocked_distribution_never_blocks_the_loop() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PATCHED], capture_output=True, text=True, timeout=30, cwd=REPO, check=False
    )
    assert done.returncode == 0, done.stderr
    ticks, other_thread, joined = done.stdout.split()
    assert other_thread == joined == "True" and int(ticks) >= 20  # the loop kept ticking while the thread slept
