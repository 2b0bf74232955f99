"""The distribution runner: one real OS thread and one bounded queue per distribution.

The runner owns what every distribution needs and none should write itself
(Telegraf's running_output): the queue and its limit, the drop policy and the
drop counters, the reconnect backoff, the retry of an undelivered item, and
the containment of every exception a distribution raises.

Two threads meet here, and only through :class:`DistQueue`:

- the collector's gevent loop *puts* raw items (point and sample tuples, or
  reports), a pass's worth at once, and never blocks doing so: a put
  appends the pass's list under a native lock held for a few counters (and
  for dropping the oldest beyond ``queue_max``) and, when the thread is idle,
  releases another;
- the distribution's thread *takes* them in batches and calls the
  distribution (``sendData``/``sendReport``, ``sendUpdate``,
  ``updateBatchComplete``), one call at a time.

The thread is a real OS thread and the runner's locks are real locks, even
in a monkey-patched process (``gevent.monkey.get_original``): a distribution
may block, sleep or spin without stalling the loop. ``labscope collector``
patches with ``thread=False, queue=False``, so a distribution's own locks,
threads and queues are real too, and its patched sockets and ``time.sleep``
wait on a gevent hub of its own thread. (Under a full ``patch_all()`` a
distribution must not use ``threading`` primitives: gevent's locks do not
work across OS threads.) What the thread has to tell
the loop (a distribution went down or came back) goes through a callback that
must be thread-safe (collector/dist_host.py hands it to the loop with
``run_callback_threadsafe``).

CPU: Python threads share one interpreter lock, so a distribution that
computes flat out would take CPU from ingest. While ingest is saturated (a
pass read as many frames as a pass may, or the loop hardly parked in a window,
within the last half second: ``pressure()``, collector/agent_link.py), the thread rests after each batch
in proportion to the CPU it used, so that it uses at most ``cpu_limit`` of
one core on average (1 turns this off); an overloaded distribution then drops
items (counted) instead of slowing the collector. When ingest has time to
spare, a distribution runs at full speed.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from gevent import monkey

from collector.addons import Figures, Report
from collector.config import DistSection
from collector.dist import POINTS, DataPoint, Distribution, ReportItem
from messages.logs import ThrottledLog

__all__ = [
    "BACKOFF_FIRST",
    "BACKOFF_MAX",
    "MAX_ATTEMPTS",
    "DistQueue",
    "MemoryFeed",
    "Notify",
    "ReportFeed",
    "Runner",
    "RunnerStats",
    "Signal",
    "backoff",
    "weight",
]

log = logging.getLogger(__name__)

# The real ones, even after gevent.monkey.patch_all(): these must never become greenlets or gevent locks.
_start_thread = monkey.get_original("_thread", "start_new_thread")
_allocate_lock = monkey.get_original("_thread", "allocate_lock")

BACKOFF_FIRST = 0.5  # seconds before the first reconnect attempt after a failure
BACKOFF_MAX = 30.0  # the backoff doubles up to this
MAX_ATTEMPTS = 3  # an item whose sendUpdate raises this many times in a row is dropped
IDLE_WAIT = 1.0  # seconds an idle thread waits for items before checking isConnected() again
# While ingest is busy a batch ends after this much CPU (checked every SLICE_CHECK items), then the thread
# rests: the loop waits for the interpreter lock at most about this long, never a whole batch.
SLICE = 0.002
SLICE_CHECK = 16
DROP_REASONS = ("queue-full", "collapsed", "error", "shutdown")

Notify = Callable[[str, str, str], None]  # (event kind, severity, message); called from the thread


def _always() -> bool:
    return True


def backoff(failures: int) -> float:
    """Seconds to wait before reconnect attempt number ``failures`` (0.5 s doubling, capped at 30 s)."""
    if failures <= 0:
        return 0.0
    return min(BACKOFF_MAX, BACKOFF_FIRST * float(2 ** min(failures - 1, 16)))


class Signal:
    """An auto-reset event on a native lock: set from any thread (never blocks), waited on in one."""

    def __init__(self) -> None:
        self._lock = _allocate_lock()
        self._lock.acquire()  # held means "not set"

    def set(self) -> None:
        """Wake the waiter (or the next wait); setting twice is setting once."""
        try:
            self._lock.release()
        except RuntimeError:
            pass  # already set

    def clear(self) -> None:
        """Forget a pending set."""
        self._lock.acquire(False)

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for a set; True when set (and now cleared again)."""
        return bool(self._lock.acquire(True, max(0.0, timeout)))


class DistQueue:
    """A distribution's bounded input queue: the loop puts (never blocking), the thread takes.

    An entry is a point ``(code, value, time, node)``, a sample ``(None, node,
    names, values, time, picked)`` from ``publish_many`` (one entry for all
    its points; ``publish_read`` adds the read function after ``picked`` and
    puts the data in place of the values), a ``Report`` or a ``ReportItem``. The loop puts a whole
    pass's entries at once (:meth:`put_many`, one list shared by every
    distribution that takes all of them); the queue keeps those lists as they
    are and reads past what the thread has taken, so a put costs the same for
    one entry as for a thousand.

    ``maxlen`` (``queue_max``) and every count (``offered``, ``taken``, the
    drops, ``len()``) are in **data points**, the unit ``sent`` is counted in
    too: a sample counts the points it holds (:func:`weight`), a point or a
    report one. ``on_full = "drop-oldest"``: the oldest entries beyond
    ``maxlen`` are dropped at the put (a list wholly dropped is let go at
    once), but never the newest entry. ``"collapse"``: when the queue overflows it keeps only the newest
    entry per code (:func:`collapse_key`); if more than half of ``maxlen``
    remains, the oldest are dropped down to half, so a collapse runs at most
    once every ``maxlen / 2`` points. Every drop is counted, exactly.
    """

    def __init__(self, maxlen: int, on_full: str = "drop-oldest", wake: Signal | None = None) -> None:
        self.maxlen = maxlen
        self.collapsing = on_full == "collapse"
        self._lists: deque[tuple[list[Any], int]] = deque()  # (entries, their points); never changed once put
        self._head = 0  # entries of the first list already taken or dropped
        self._head_points = 0  # and their points
        self._count = 0  # points waiting
        self.lock = _allocate_lock()
        self.wake = wake or Signal()
        self.idle = False  # the thread waits for entries: a put must wake it
        self.offered = 0
        self.taken = 0
        self.collapsed = 0
        self.overflowed = 0  # beyond maxlen (drop-oldest), or beyond half of it after a collapse

    def __len__(self) -> int:
        return self._count

    @property
    def items(self) -> list[Any]:
        """The waiting entries, oldest first (a copy: for tests and inspection)."""
        with self.lock:
            return self._waiting()

    def put(self, item: Any) -> None:
        """Queue one entry."""
        self.put_many([item])

    def put_many(self, items: list[Any], points: int = -1) -> None:
        """Queue ``items`` holding ``points`` data points (-1: count them); drops the oldest beyond maxlen.

        The list is kept as it is: the caller never changes it again.
        """
        if not items:
            return
        if points < 0:
            points = sum(map(weight, items))
        with self.lock:
            self._lists.append((items, points))
            self._count += points
            self.offered += points
            if self._count > self.maxlen:
                if self.collapsing:
                    self._collapse()
                else:
                    self._drop_oldest(self._count - self.maxlen)
        if self.idle:
            self.wake.set()

    def discard(self) -> None:
        """Let every waiting entry go uncounted: a durable feed reads them again (see ``Runner._rewind``)."""
        with self.lock:
            self._lists.clear()
            self._head = self._head_points = self._count = 0

    def _drop_oldest(self, excess: int) -> None:
        """Drop at least ``excess`` points, oldest first (a sample goes whole); the newest entry always stays.

        So a ``queue_max`` smaller than one sample still passes the newest sample on.
        """
        lists = self._lists
        newest = lists[-1][0]
        excess = min(excess, self._count - weight(newest[-1]))
        while excess > 0:
            items, points = lists[0]
            left = points - self._head_points
            if left <= excess:
                lists.popleft()
                self._head = self._head_points = 0
                dropped = left
            else:
                dropped = 0
                while dropped < excess:
                    dropped += weight(items[self._head])
                    self._head += 1
                self._head_points += dropped
            excess -= dropped
            self._count -= dropped
            self.overflowed += dropped

    def _collapse(self) -> None:
        waiting = self._waiting()
        newest: dict[Any, Any] = {}
        for item in reversed(waiting):
            newest.setdefault(collapse_key(item), item)
        kept = list(newest.values())
        kept.reverse()  # oldest first, each code where its newest value was
        kept_points = sum(map(weight, kept))
        self.collapsed += self._count - kept_points
        room, cut = max(1, self.maxlen // 2), 0
        while kept_points > room and cut < len(kept) - 1:
            points = weight(kept[cut])
            kept_points -= points
            self.overflowed += points
            cut += 1
        kept = kept[cut:]
        self._lists.clear()
        self._lists.append((kept, kept_points))
        self._head = self._head_points = 0
        self._count = kept_points

    def _waiting(self) -> list[Any]:
        found: list[Any] = []
        for at, (kept, _) in enumerate(self._lists):
            found.extend(kept[self._head :] if at == 0 else kept)
        return found

    def take(self, limit: int) -> list[Any]:
        """Up to ``limit`` entries, oldest first (the thread's side)."""
        batch: list[Any] = []
        with self.lock:
            lists = self._lists
            taken = 0
            while lists and len(batch) < limit:
                first = lists[0][0]
                head = self._head
                part = first[head : head + limit - len(batch)]
                batch.extend(part)
                points = sum(map(weight, part))
                taken += points
                self._head = head + len(part)
                if self._head >= len(first):
                    lists.popleft()
                    self._head = self._head_points = 0
                else:
                    self._head_points += points
            self._count -= taken
            self.taken += taken
        return batch

    def dropped(self) -> dict[str, int]:
        """Points dropped so far by the queue, by reason (``queue-full``, ``collapsed``)."""
        with self.lock:
            return {"queue-full": self.overflowed, "collapsed": self.collapsed}


def weight(item: Any) -> int:
    """The data points a queue entry holds: a sample's names (those ``picked``), else 1."""
    if type(item) is tuple and item[0] is None:
        picked = item[5]
        return len(item[2] if picked is None else picked)
    return 1


def collapse_key(item: Any) -> Any:
    """What makes two queued items "the same code": the code of a point, ``(node, names, picked)`` of a sample."""
    code = item[0]
    return code if code is not None else (item[1], item[2], item[5])


class ReportFeed(Protocol):
    """Where a reports-mode runner's reports come from, and who hears that they were delivered.

    The memory feed (:class:`MemoryFeed`) is the collector putting each report
    as it is applied. A durable feed (``durable = True``; collector/dist_journal.py)
    is read by the runner's thread itself: when the queue is empty the runner
    calls its ``fill(put_many, want)``, which queues a list of ``ReportItem``s with
    ``journal_id`` set (never more than ``want``, so nothing is ever dropped),
    and it advances and saves its cursor in :meth:`delivered`. An idle runner
    waits ``idle_wait`` seconds before it looks again. When a batch fails
    (``updateBatchComplete`` raised), the runner calls its ``rewind()``: the
    next ``fill`` starts again after the saved cursor. ``durable``,
    ``idle_wait``, ``fill`` and ``rewind`` are optional (a feed without them is fed by the loop).
    """

    def delivered(self, last: ReportItem) -> None:
        """Every report up to ``last`` (inclusive) was delivered and its batch completed (called in the thread)."""


class MemoryFeed:
    """Reports as the collector applies them, from memory: nothing to remember once delivered."""

    durable = False
    idle_wait = IDLE_WAIT

    def delivered(self, last: ReportItem) -> None:
        """Nothing to do: the memory feed keeps no cursor."""


@dataclass
class RunnerStats:
    """What a runner counted; written by its thread, read by the loop."""

    connected: bool = False
    sent: int = 0
    errors: int = 0
    errors_by_method: dict[str, int] = field(default_factory=dict)
    last_error: str = ""
    last_error_time: float = 0.0
    last_success: float = 0.0
    reconnects: int = 0
    dropped_error: int = 0
    dropped_shutdown: int = 0
    down_since: float = 0.0


class Runner:
    """Runs one distribution: its thread, its queue, its outage policy, its counters."""

    def __init__(
        self, section: DistSection, dist: Distribution | None, notify: Notify, feed: ReportFeed | None = None
    ) -> None:
        self.section = section
        self.name = section.name
        self.dist = dist
        self.notify = notify
        self.feed: ReportFeed = feed or MemoryFeed()
        self.durable = bool(getattr(self.feed, "durable", False))  # reads its reports itself: the loop puts none
        self.idle_wait = float(getattr(self.feed, "idle_wait", IDLE_WAIT))
        self._fill: Callable[[Callable[[list[Any]], None], int], int] | None = getattr(self.feed, "fill", None)
        self.wake = Signal()
        self.queue = DistQueue(section.queue_max, section.on_full, self.wake)
        self.put = self.queue.put
        self.put_many = self.queue.put_many
        self.stats = RunnerStats()
        self.outbox: deque[Any] = deque()  # queued by the distribution, not yet delivered
        self.attempts = 0  # exceptions in a row on outbox[0]
        self.failures = 0  # failures in a row (connect or delivery): the backoff
        self.need_connect = True
        self.announced_down = False
        self.stopping = False
        self.started = False
        self.done = Signal()
        self.last_report: ReportItem | None = None
        self.pressure: Callable[[], bool] = _always  # True while ingest is busy: cpu_limit applies
        self.throttled = ThrottledLog(logging.getLogger(f"labscope.dist.{self.name}"), period=10.0)
        if dist is not None:
            dist._outbox = self.outbox
        self._convert = self._convert_point if section.mode == POINTS else self._convert_report

    # ------------------------------------------------------------ the loop's side

    def start(self) -> None:
        """Start the distribution's thread (nothing happens for a distribution that failed to start)."""
        if self.dist is None or self.started:
            return
        self.started = True
        _start_thread(self._main, ())

    def stop(self) -> None:
        """Ask the thread to deliver what it can, close the distribution and end."""
        self.stopping = True
        self.wake.set()

    def join(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for the thread to end; True when it has (or never started)."""
        if not self.started:
            return True
        if self.done.wait(timeout):
            self.done.set()  # stays ended for the next join
            return True
        return False

    def queued(self) -> int:
        """Items waiting: entries in the queue, and payloads the distribution queued but did not deliver yet."""
        return len(self.queue) + len(self.outbox)

    def dropped(self) -> dict[str, int]:
        """Items dropped so far, by reason (every reason listed, zeros included)."""
        found = self.queue.dropped()
        found["error"] = self.stats.dropped_error
        found["shutdown"] = self.stats.dropped_shutdown
        return {reason: found.get(reason, 0) for reason in DROP_REASONS}

    def snapshot(self) -> dict[str, Any]:
        """The ``Distributions`` answer for this distribution."""
        section, stats = self.section, self.stats
        return {
            "type": section.type,
            "mode": section.mode,
            "codes": list(section.codes),
            "connected": stats.connected,
            "queued": self.queued(),
            "queue_max": section.queue_max,
            "on_full": section.on_full,
            "offered": self.queue.offered,
            "sent": stats.sent,
            "dropped": self.dropped(),
            "errors": stats.errors,
            "errors_by_method": dict(stats.errors_by_method),
            "last_error": stats.last_error,
            "last_error_time": stats.last_error_time,
            "last_success": stats.last_success,
            "reconnects": stats.reconnects,
        }

    def error(self, method: str, exc: BaseException) -> None:
        """Count and log (throttled) an exception the distribution raised in ``method``."""
        stats = self.stats
        stats.errors += 1
        stats.errors_by_method[method] = stats.errors_by_method.get(method, 0) + 1
        stats.last_error = f"{method}: {type(exc).__name__}: {exc}"
        stats.last_error_time = time.time()
        self.throttled.warning(
            method,
            "distribution %s (%s) raised in %s: %s: %s",
            self.name,
            self.section.type,
            method,
            type(exc).__name__,
            exc,
        )

    # ------------------------------------------------------------ the thread

    def _main(self) -> None:
        try:
            while not self.stopping:
                self._step()
            self._finish()
        except BaseException as exc:  # the runner's own bug: say so, never take the process down
            log.critical("distribution %s: runner thread failed: %r", self.name, exc, exc_info=True)
        finally:
            self.stats.connected = False
            self.done.set()

    def _step(self) -> None:
        if not self._ready():
            return
        started = time.thread_time()  # a durable feed's reading counts as the distribution's CPU too
        if not self._has_work():
            self._idle()
            return
        self._batch()
        self._throttle(time.thread_time() - started)

    def _has_work(self) -> bool:
        if self.outbox or len(self.queue):
            return True
        if self._fill is None:
            return False
        try:
            return bool(self._fill(self.queue.put_many, self.section.batch_max))
        except Exception as exc:  # e.g. the journal unreadable for a moment: counted, tried again
            self.error("feed", exc)
            return False

    def _idle(self) -> None:
        queue = self.queue
        queue.idle = True
        if not len(queue) and not self.stopping:
            self.wake.wait(self.idle_wait)
        queue.idle = False

    def _sleep(self, seconds: float) -> bool:
        """Rest ``seconds`` unless stopped meanwhile; False when stopping."""
        self.wake.clear()
        if not self.stopping and seconds > 0:
            self.wake.wait(seconds)
        return not self.stopping

    def _throttle(self, used: float) -> None:
        limit = self.section.cpu_limit
        if limit < 1.0 and used > 0 and self.pressure():
            self._sleep(used * (1.0 / limit - 1.0))

    # ------------------------------------------------------------ connection

    def _ready(self) -> bool:
        """True when connected; else one connect attempt (after the backoff), False when it failed."""
        if not self.need_connect:
            ok, connected = self._call("isConnected")
            if ok and connected:
                return True
            self._down("isConnected() said False" if ok else self.stats.last_error)
        if self.failures and not self._sleep(backoff(self.failures)):
            return False
        ok, connected = self._call("connect")
        if ok and connected:
            self.need_connect = False
            self._up()
            return True
        self._failed("connect() returned False" if ok else self.stats.last_error)
        return False

    def _call(self, method: str, *args: Any) -> tuple[bool, Any]:
        try:
            return True, getattr(self.dist, method)(*args)
        except Exception as exc:  # isolation: a distribution's bug must not reach the collector
            self.error(method, exc)
            return False, None

    def _failed(self, reason: str) -> None:
        self.failures += 1
        self._down(reason)

    def _down(self, reason: str) -> None:
        self.need_connect = True
        self.stats.connected = False
        if self.announced_down:
            return
        self.announced_down = True
        self.stats.down_since = time.time()
        message = f"distribution {self.name} ({self.section.type}) is down: {reason}"
        self.throttled.warning("down", "%s", message)
        self.notify("distribution-down", "warning", message)

    def _up(self) -> None:
        self.stats.connected = True
        if not self.announced_down:
            return
        self.announced_down = False
        self.stats.reconnects += 1
        message = (
            f"distribution {self.name} ({self.section.type}) is up again after "
            f"{time.time() - self.stats.down_since:.1f} s"
        )
        logging.getLogger(f"labscope.dist.{self.name}").info("%s", message)
        self.notify("distribution-up", "info", message)

    # ------------------------------------------------------------ batches

    def _batch(self) -> None:
        """Convert and deliver up to ``batch_max`` items (less while ingest is busy), then updateBatchComplete."""
        deadline = time.thread_time() + SLICE if self.pressure() else float("inf")
        delivered, complete = self._deliver(self.section.batch_max, deadline)
        if delivered or complete:
            self._complete(complete, delivered)

    def _deliver(self, limit: int, deadline: float = float("inf")) -> tuple[int, bool]:
        """(payloads delivered, True when everything taken was delivered); stops at ``deadline`` (thread CPU).

        Entries are taken from the queue one at a time, as they are converted:
        what waits stays in the queue, under its limit and drop policy.
        """
        delivered = converted = 0
        outbox, take = self.outbox, self.queue.take
        while True:
            if outbox:
                if not self._send_one(outbox[0]):
                    return delivered, False
                outbox.popleft()
                delivered += 1
                continue
            taken = take(1) if converted < limit else None
            if not taken:
                return delivered, True
            self._convert(taken[0])
            converted += 1
            if not converted % SLICE_CHECK and time.thread_time() > deadline:
                limit = converted  # deliver what this entry queued, take no more

    def _send_one(self, payload: Any) -> bool:
        assert self.dist is not None
        try:
            ok = self.dist.sendUpdate(payload)
        except Exception as exc:  # isolation; after MAX_ATTEMPTS the item goes, so it cannot block the rest
            self.error("sendUpdate", exc)
            self.attempts += 1
            if self.attempts >= MAX_ATTEMPTS:
                self.outbox.popleft()
                self.stats.dropped_error += 1
                self.attempts = 0
            self._failed(self.stats.last_error)
            return False
        if not ok:
            self._failed(f"sendUpdate() returned {ok!r}")
            return False
        self.attempts = self.failures = 0
        self.stats.sent += 1
        self.stats.last_success = time.time()
        return True

    def _convert_point(self, raw: tuple[Any, ...]) -> None:
        if raw[0] is None:
            self._convert_sample(raw)
            return
        code, value, at, node = raw
        self._send_data(DataPoint(code, value, at, node or code.partition("/")[0]))

    def _convert_sample(self, raw: tuple[Any, ...]) -> None:
        """One ``publish_many`` entry: its points ``NODE/NAME``, one sendData each."""
        _, node, names, values, at, picked = raw[:6]
        if len(raw) > 6:  # from publish_read: values is the data the read function takes
            values = Figures(raw[6], values)
        try:
            count = min(len(names), len(values))  # a Figures reads its bytes here
        except Exception as exc:  # a module's read function failed: the sample's points are lost, counted
            self.error("publish_many", exc)
            self.stats.dropped_error += len(names) if picked is None else len(picked)
            return
        for index in range(count) if picked is None else (i for i in picked if i < count):
            self._send_data(DataPoint(f"{node}/{names[index]}", values[index], at, node))

    def _send_data(self, point: DataPoint) -> None:
        assert self.dist is not None
        self.dist.point = point
        try:
            self.dist.sendData(point.code, point.value)
        except Exception as exc:  # the point is lost: counted as a drop
            self.error("sendData", exc)
            self.stats.dropped_error += 1

    def _convert_report(self, report: Report | ReportItem) -> None:
        assert self.dist is not None
        if isinstance(report, ReportItem):  # from a durable feed, journal_id set
            item = report
        else:
            item = ReportItem(
                report.node, report.seq, report.type, report.time, report.encoding, report.schema, report.data
            )
        self.last_report = item
        try:
            self.dist.sendReport(item)
        except Exception as exc:
            self.error("sendReport", exc)
            self.stats.dropped_error += 1

    def _complete(self, clean: bool, delivered: int) -> None:
        ok, _ = self._call("updateBatchComplete")
        if not ok:
            self._failed(self.stats.last_error)
            self._rewind(delivered)
        elif clean and self.last_report is not None and not self.outbox:
            self.feed.delivered(self.last_report)

    def _rewind(self, delivered: int) -> None:
        """After a failed batch, a durable feed starts again at its cursor: the batch counts as not sent.

        What waits in the queue and the outbox is read again from the journal, so it goes uncounted;
        what the failed batch had already delivered is sent again (a distribution that is exactly
        once, like ``nats``, drops it by its message id).
        """
        rewind = getattr(self.feed, "rewind", None)
        if rewind is None:
            return
        rewind()
        self.queue.discard()
        self.outbox.clear()
        self.last_report = None
        self.stats.sent -= delivered

    # ------------------------------------------------------------ shutdown

    def _finish(self, drain: float = 2.0) -> None:
        """At stop: deliver what is queued while connected (up to ``drain`` s), then close()."""
        deadline = time.monotonic() + drain
        if self._has_work() and self.need_connect:
            ok, connected = self._call("connect")  # one last attempt, no backoff
            self.need_connect = not (ok and connected)
        while not self.need_connect and self._has_work() and time.monotonic() < deadline:
            self._batch()
        left = 0 if self.durable else self.queued()  # a durable feed's are read again after the restart
        if left:
            self.stats.dropped_shutdown += left
            self.throttled.warning("shutdown", "distribution %s: %d items not delivered at shutdown", self.name, left)
        self._call("close")
        close = getattr(self.feed, "close", None)
        if close is not None:
            close()
