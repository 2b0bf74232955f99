"""The distributions of one collector: built at start-up, fed by the loop, reported on.

:class:`DistributionHost` builds one :class:`~collector.dist_runner.Runner` per
``[distributions.NAME]`` section (collector/dist_loader.py finds the class),
hands the module host a :class:`Fanout` that gathers a pass's data points
and reports and puts them into the queues of the runners whose ``codes``
globs match (matched once per code, then cached), turns what the runners'
threads report into Events on the loop, and answers ``Distributions``.
"""

from __future__ import annotations

import functools
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from fnmatch import fnmatchcase
from typing import Any

import gevent

from collector import dist_loader
from collector.addons import Aggregator, Figures, ReadFigures, Report
from collector.config import CollectorConfig, DistSection
from collector.counters import Counters
from collector.dist import JOURNAL_FEED, POINTS, REPORTS, DistCore, Distribution
from collector.dist_journal import CURSOR_FILE, JournalFeed
from collector.dist_runner import Notify, ReportFeed, Runner
from messages.errors import ConfigError

__all__ = [
    "ROUTE_CACHE_MAX",
    "CodeMatcher",
    "DistributionHost",
    "DistributionsView",
    "EmitEvent",
    "Fanout",
    "PointRoute",
    "ReportRoute",
    "Schedule",
    "matches",
]

log = logging.getLogger(__name__)

Picked = tuple[int, ...]  # which names of a sample a distribution takes
Schedule = Callable[[Callable[[], None]], Any]  # runs a function once the loop runs its callbacks
EmitEvent = Callable[..., None]  # ModuleHost.emit_event(kind, node, severity, message, **attrs)

# Distinct codes (and samples) whose routes are cached before the cache starts over: codes are
# NODE/METRIC, bounded in practice; a flood of distinct ones costs routing again, never unbounded memory.
ROUTE_CACHE_MAX = 100_000
_now = time.time
STORE_FILE = "collector.sqlite3"  # the journal's file in the data dir (collector/server.py)
STOP_TIMEOUT = 3.0  # seconds the collector waits at shutdown for the distributions to deliver and close


def matches(code: str, patterns: tuple[str, ...]) -> bool:
    """True when ``code`` matches one of the glob ``patterns`` (fnmatch, case-sensitive)."""
    return any(fnmatchcase(code, pattern) for pattern in patterns)


class Fanout:
    """Routes data points, samples and reports to the runners whose ``codes`` match.

    On the loop, a point, a sample or a report costs one tuple appended to the
    pass's list (a report: the report itself). The list is handed on when the
    loop next runs its callbacks, which is once the ingest pass (or whichever
    greenlet published) has yielded: whole, one list shared by every
    distribution whose ``codes`` include ``"*"``, and filtered for the others
    (:class:`PointRoute`, :class:`ReportRoute`, each route worked out once per
    code and cached). A sample published with ``publish_many`` is one item
    whose points are made in the distribution's thread, which is what keeps
    ingest fast.
    """

    def __init__(self, runners: list[Runner], schedule: Schedule | None = None) -> None:
        self.points = [r for r in runners if r.section.mode == POINTS]
        self.reports = [r for r in runners if r.section.mode == REPORTS and not r.durable]  # durable: read the journal
        self._point_routes = [PointRoute(r) for r in self.points]
        self._report_routes = [ReportRoute(r) for r in self.reports]
        self._points: list[Any] = []  # this pass's points and samples
        self._weight = 0  # the data points in them
        self._reports: list[Report] = []  # this pass's applied reports
        self._armed = False  # a flush is scheduled
        self._schedule = schedule

    def publish(self, code: str, value: Any, time: float | None, node: str | None) -> None:
        """Offer ``(code, value, time, node)`` to every points distribution that takes ``code``."""
        self._points.append((code, value, _now() if time is None else time, node))
        self._weight += 1
        if not self._armed:
            self._arm()

    def publish_many(self, node: str, names: Sequence[str], values: Sequence[Any], time: float | None = None) -> None:
        """Offer one sample ``(None, node, names, values, time, None)``; its points are made in the threads.

        Hot path (once per report of a module that publishes): no isinstance on
        the ``Figures`` ABC, no routing here; lists become tuples, so a module
        may reuse them.
        """
        if type(names) is not tuple:
            names = tuple(names)
        if type(values) is not Figures:  # Figures are read later, in the distributions' threads
            values = tuple(values)
        self._points.append((None, node, names, values, _now() if time is None else time, None))
        self._weight += len(names)
        if not self._armed:
            self._arm()

    def publish_read(
        self, node: str, names: Sequence[str], read: ReadFigures, data: bytes, time: float | None = None
    ) -> None:
        """Offer one sample ``(None, node, names, data, time, None, read)``: ``publish_many`` without a ``Figures``.

        The distributions' threads make the ``Figures(read, data)`` (collector/dist_runner.py).
        """
        if type(names) is not tuple:
            names = tuple(names)
        self._points.append((None, node, names, data, _now() if time is None else time, None, read))
        self._weight += len(names)
        if not self._armed:
            self._arm()

    def feed(self, report: Report) -> None:
        """Offer an applied report to every reports distribution whose ``codes`` match ``NODE/TYPE``."""
        self._reports.append(report)
        if not self._armed:
            self._arm()

    def _arm(self) -> None:
        self._armed = True
        schedule = self._schedule or gevent.get_hub().loop.run_callback
        schedule(self.flush)

    def flush(self) -> None:
        """Hand what was offered since the last flush to the queues (runs as a loop callback; call it at stop)."""
        self._armed = False
        points, self._points = self._points, []
        weight, self._weight = self._weight, 0
        reports, self._reports = self._reports, []
        if points:
            for route in self._point_routes:
                route.put(points, weight)
        if reports:
            for by_type in self._report_routes:
                by_type.put(reports)


class PointRoute:
    """One points distribution's share of a pass: all of it when its ``codes`` hold ``"*"``, else what matches.

    A point is taken when its code matches; a sample when ``NODE/NAME`` of
    some of its names does (the item then says which: ``picked``). Each
    code's (each node and names') answer is cached, up to ROUTE_CACHE_MAX.
    """

    def __init__(self, runner: Runner) -> None:
        self.put_many = runner.put_many
        self.codes = runner.section.codes
        self.everything = "*" in self.codes
        self._taken: dict[Any, Picked | bool] = {}

    def put(self, items: list[Any], points: int) -> None:
        """Queue the items (``points`` data points in all) this one takes (the list itself when it takes all)."""
        if self.everything:
            self.put_many(items, points)
            return
        mine = [kept for kept in map(self._pick, items) if kept is not None]
        if mine:
            self.put_many(mine)

    def _pick(self, item: tuple[Any, ...]) -> tuple[Any, ...] | None:
        code = item[0]
        key = code if code is not None else (item[1], item[2])
        taken = self._taken.get(key)
        if taken is None:
            taken = _cached(self._taken, key, self._route(item))
        if taken is True:
            return item
        if not taken:
            return None
        return (*item[:5], taken, *item[6:])

    def _route(self, item: tuple[Any, ...]) -> Picked | bool:
        """True: all of it; False: none of it; a tuple: the indexes of the sample's names taken."""
        if item[0] is not None:
            return matches(item[0], self.codes)
        node, names = item[1], item[2]
        picked = tuple(i for i, name in enumerate(names) if matches(f"{node}/{name}", self.codes))
        if not picked:
            return False
        return True if len(picked) == len(names) else picked


class CodeMatcher:
    """``matcher(code)``: does ``code`` match one of ``codes``? Each code's answer is cached (ROUTE_CACHE_MAX)."""

    def __init__(self, codes: tuple[str, ...]) -> None:
        self.codes = codes
        self._taken: dict[str, bool] = {}

    def __call__(self, code: str) -> bool:
        """True when ``code`` matches (a lookup after the first time)."""
        taken = self._taken.get(code)
        if taken is None:
            taken = _cached(self._taken, code, matches(code, self.codes))
        return taken


class ReportRoute:
    """One reports distribution's share of a pass: the reports whose ``NODE/TYPE`` match its ``codes``."""

    def __init__(self, runner: Runner) -> None:
        self.put_many = runner.put_many
        self.everything = "*" in runner.section.codes
        self._takes = CodeMatcher(runner.section.codes)

    def put(self, reports: list[Report]) -> None:
        """Queue the reports this distribution takes."""
        if self.everything:
            self.put_many(reports)
            return
        mine = [report for report in reports if self._takes(f"{report.node}/{report.type}")]
        if mine:
            self.put_many(mine)


class DistributionsView(Aggregator):
    """The collector's own ``Distributions`` update: every distribution's figures, every update interval."""

    name = "collector"
    updatetype = "Distributions"

    def __init__(self, stats: Callable[[], dict[str, dict[str, Any]]]) -> None:
        self._stats = stats

    def getUpdateMessage(self) -> dict[str, dict[str, Any]]:
        """The ``Distributions`` answer, pushed periodically."""
        return self._stats()


class DistributionHost:
    """Every configured distribution; ``emit_event`` is the module host's (called on the loop only)."""

    def __init__(self, config: CollectorConfig, emit_event: EmitEvent) -> None:
        self.config = config
        self.emit_event = emit_event
        self.runners: list[Runner] = []
        self._notices: deque[tuple[str, str, str, DistSection]] = deque()
        self._wake_loop: Callable[[], None] | None = None
        self._fanout: Fanout | None = None

    # ------------------------------------------------------------ start/stop

    def load(self) -> None:
        """Import, construct and configure every distribution (start-up; no thread yet).

        Raises ConfigError (exit status 2) for anything the operator must fix.
        A constructor or configure() that raises anything else is counted and
        logged: the collector runs on (a distribution whose constructor failed
        stays listed, with its error, and gets nothing).
        """
        dist_loader.check_dirs(self.config.distributions_dirs)
        for section in self.config.distributions:
            self.runners.append(self._build(section))

    def _build(self, section: DistSection) -> Runner:
        path, dirs = self.config.config_path, self.config.distributions_dirs
        cls = dist_loader.load_class(section, dirs, path)
        values = dist_loader.check_section(cls, section, path)
        core = DistCore(
            section.name,
            section.type,
            section.mode,
            self.config.alias,
            self.config.data_dir,
            self.stats,
            site=self.config.site,
        )
        notify = self._notifier(section)
        try:
            dist = cls(core)
        except ConfigError as exc:
            raise ConfigError(f"config {path}: [distributions.{section.name}]: {exc}") from None
        except Exception as exc:  # isolation: one broken distribution never stops the collector
            runner = Runner(section, None, notify)
            runner.error("__init__", exc)
            log.error(
                "distribution %s (%s) failed to start: %s: %s", section.name, section.type, type(exc).__name__, exc
            )
            return runner
        _fill_classic(dist, core)
        runner = Runner(section, dist, notify, self._feed(section, cls, core, values))
        self._configure(runner, dist, values)
        return runner

    def _feed(
        self, section: DistSection, cls: type[Distribution], core: DistCore, values: dict[str, Any]
    ) -> ReportFeed | None:
        """The journal feed for a reports-mode type that asks for it (None: the memory feed)."""
        if section.mode != REPORTS or cls.feed != JOURNAL_FEED:
            return None
        if not self.config.journal:
            raise ConfigError(
                f"config {self.config.config_path}: [distributions.{section.name}] mode: type {section.type} "
                "reads reports from the journal; it needs journal = true"
            )
        hold = float(values.get("journal_hold", self.config.retention))
        takes = CodeMatcher(section.codes)  # NODE/TYPE: a report costs a lookup, not a glob match
        return JournalFeed(self.config.data_dir / STORE_FILE, core.data_dir() / CURSOR_FILE, takes, hold)

    def journal_holds(self) -> list[tuple[int, float]]:
        """``(row id, seconds)`` per durable distribution: rows the journal keeps for them (collector/journal.py)."""
        return [r.feed.held() for r in self.runners if r.durable and isinstance(r.feed, JournalFeed)]

    def _configure(self, runner: Runner, dist: Distribution, values: dict[str, Any]) -> None:
        try:
            dist.configure(values)
        except ConfigError as exc:
            raise ConfigError(f"config {self.config.config_path}: [distributions.{runner.name}]: {exc}") from None
        except Exception as exc:  # counted; the distribution runs on with what it kept
            runner.error("configure", exc)

    def start(self) -> None:
        """Start every distribution's thread; call it from the gevent loop's thread."""
        if not self.runners:
            return
        self._wake_loop = functools.partial(gevent.get_hub().loop.run_callback_threadsafe, self.drain_notices)
        for runner in self.runners:
            runner.start()
        log.info("distributions running: %s", ", ".join(f"{r.name} ({r.section.type})" for r in self.runners))

    def set_pressure(self, pressure: Callable[[], bool]) -> None:
        """Tell every runner how to know that ingest is busy (then ``cpu_limit`` applies)."""
        for runner in self.runners:
            runner.pressure = pressure

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Ask every distribution to deliver what it can and close; wait up to ``timeout`` s in all."""
        if self._fanout is not None:
            self._fanout.flush()  # what the last pass offered
        for runner in self.runners:
            runner.stop()
        deadline = time.monotonic() + timeout
        for runner in self.runners:
            if not runner.join(max(0.0, deadline - time.monotonic())):
                log.warning("distribution %s did not stop within %g s; left behind", runner.name, timeout)

    # ------------------------------------------------------------ routing

    def fanout(self) -> Fanout:
        """What the module host hands data points and applied reports to (flushed at :meth:`stop`)."""
        self._fanout = Fanout([r for r in self.runners if r.dist is not None])
        return self._fanout

    # ------------------------------------------------------------ events

    def _notifier(self, section: DistSection) -> Notify:
        def notify(kind: str, severity: str, message: str) -> None:
            self._notices.append((kind, severity, message, section))
            wake = self._wake_loop
            if wake is not None:
                wake()

        return notify

    def drain_notices(self) -> int:
        """Turn what the threads reported into Events (on the loop); returns how many."""
        count = 0
        while self._notices:
            kind, severity, message, section = self._notices.popleft()
            self.emit_event(kind, "", severity, message, distribution=section.name, type=section.type)
            count += 1
        return count

    # ------------------------------------------------------------ visible

    def stats(self) -> dict[str, dict[str, Any]]:
        """The ``Distributions`` answer: per distribution its type, state, queue and counters."""
        return {runner.name: runner.snapshot() for runner in self.runners}

    def count(self, counters: Counters) -> None:
        """Set the ``dist-*`` counters from the runners' figures (only when distributions exist)."""
        if not self.runners:
            return
        sent = dropped = errors = 0
        for runner in self.runners:
            lost = sum(runner.dropped().values())
            counters[f"dist-dropped:{runner.name}"] = lost
            counters[f"dist-errors:{runner.name}"] = runner.stats.errors
            sent, dropped, errors = sent + runner.stats.sent, dropped + lost, errors + runner.stats.errors
        counters["dist-sent"] = sent
        counters["dist-dropped"] = dropped
        counters["dist-errors"] = errors


def _cached(cache: dict[Any, Any], key: Any, value: Any) -> Any:
    if len(cache) >= ROUTE_CACHE_MAX:
        cache.clear()
    cache[key] = value
    return value


def _fill_classic(dist: Distribution, core: DistCore) -> None:
    """Give a distribution whose ``__init__`` skipped ``super().__init__`` what the base would have set."""
    attrs = vars(dist)
    attrs.setdefault("core", core)
    attrs.setdefault("config", {})
    attrs.setdefault("point", None)
