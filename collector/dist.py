"""The distribution API: forward the collector's data to another system, from a thread of its own.

A distribution is one file ``dist_<type>.py`` holding one subclass of
:class:`Distribution`; ``<type>`` is what a ``[distributions.NAME]`` section of
the collector's config names in ``type``. The class *is* the contract: each
method's docstring below says what it gets, what it returns and what it may
raise. The collector's runner (collector/dist_runner.py) owns everything else:
the thread, the bounded queue and its drop policy, the drop counters, the
reconnect backoff and the retry of an undelivered item.

The classic form works unchanged (the starting point ``dist_custom.py`` is
exactly this)::

    from collector import dist

    class CustomDistribution(dist.Distribution):
        def __init__(self, core):
            super(CustomDistribution, self).__init__(core)
        def configure(self, config):
            self.config = config
        def isConnected(self):
            return True
        def connect(self):
            return True
        def sendData(self, code, value):
            self.queueData([str(code), str(value)])
        def sendUpdate(self, payload):
            return True
        def updateBatchComplete(self):
            pass

**Threads.** The constructor and :meth:`Distribution.configure` run once at
the collector's start-up. Every other method runs in the distribution's own
thread, one call at a time: the runner never calls a distribution from two
threads, so a distribution needs no locks, and nothing it does (block, sleep,
wait on a network) can slow ingest, the modules, the clients or another
distribution.

**Data.** A data point is :class:`DataPoint` ``(code, value, time, node)``;
codes are ``NODE/METRIC`` for node data and ``collector/METRIC`` for the
collector's own health. Modules publish points with
``self.collector.publish(code, value, time=None, node=None)``. A distribution
configured with ``mode = "reports"`` gets whole REPORTs instead, as
:class:`ReportItem`.

Sample config block (TOML, in the collector's ``--config`` file)::

    [distributions.NAME]
    type = "custom"              # the file dist_custom.py (built-in, or in a --distributions-dir)
    # codes = ["*"]              # glob patterns (fnmatch) a code must match; reports: NODE/TYPE
    # mode = "points"            # or "reports": whole REPORTs as ReportItem
    # queue_max = 10000          # data points queued at most while the destination is slow or away
    # on_full = "drop-oldest"    # or "collapse": keep only the newest value per code
    # batch_max = 1000           # items per batch, then updateBatchComplete()
    # cpu_limit = 0.02           # share of one core its thread may use while ingest is saturated
    # any key of the type's own (its ``options``)
"""

from __future__ import annotations

import logging
import time as _time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

from collector.addons import Option
from messages import Encoding
from messages.errors import ConfigError

__all__ = [
    "FEEDS",
    "JOURNAL_FEED",
    "MEMORY_FEED",
    "MODES",
    "POINTS",
    "REPORTS",
    "ConfigError",
    "DataPoint",
    "DistCore",
    "Distribution",
    "Option",
    "ReportItem",
]

POINTS, REPORTS = "points", "reports"
MODES = (POINTS, REPORTS)

# Where a reports-mode distribution's reports come from (Distribution.feed).
MEMORY_FEED = "memory"  # each report as it is applied, from memory: lost if the queue overflows or on a crash
JOURNAL_FEED = "journal"  # durably from the collector's journal, after a saved cursor (collector/dist_journal.py)
FEEDS = (MEMORY_FEED, JOURNAL_FEED)


class DataPoint(NamedTuple):
    """One data point: ``code`` (``NODE/METRIC``), ``value``, ``time`` (epoch s) and ``node``."""

    code: str
    value: Any
    time: float
    node: str


@dataclass(frozen=True, slots=True)
class ReportItem:
    """One whole REPORT, as a ``mode = "reports"`` distribution gets it.

    ``node``, ``seq`` (the node's sequence number: ``(node, seq)`` is unique and
    makes a good de-duplication id), ``type``, ``time`` (sender's clock, epoch
    s), ``encoding`` (the ``messages.Encoding`` number), ``schema`` (the
    protobuf full name, when PROTOBUF) and ``payload`` (the bytes exactly as
    the agent sent them). ``journal_id`` is the collector's journal row the
    report is in when it comes from the journal feed (0 from the memory feed).
    """

    node: str
    seq: int
    type: str
    time: float
    encoding: int
    schema: str
    payload: bytes
    journal_id: int = 0

    @property
    def encoding_name(self) -> str:
        """The encoding's name: ``NONE``, ``PROTOBUF``, ``MSGPACK`` or ``RAW`` (a number it does not know: as text)."""
        try:
            return str(Encoding.Name(self.encoding))
        except ValueError:
            return str(self.encoding)


@dataclass(frozen=True)
class DistCore:
    """What the collector tells a distribution about itself: the ``core`` handed to ``__init__``.

    ``name`` is the config section's NAME, ``type`` its type, ``mode`` points
    or reports, ``alias`` the collector's name, ``site`` its site name (docs/sites.md;
    "" when it is not a site), ``data_root`` the collector's
    data dir, ``distributions`` a function returning every distribution's
    figures (the ``Distributions`` answer: ``queued``, ``dropped`` by reason,
    ``sent``, ``connected``, ...), safe to call from any thread (it only reads;
    the ``prometheus`` type exports them).
    """

    name: str
    type: str
    mode: str = POINTS
    alias: str = ""
    data_root: Path = Path(".")
    distributions: Callable[[], dict[str, dict[str, Any]]] | None = field(default=None, compare=False, repr=False)
    site: str = ""

    @property
    def log(self) -> logging.Logger:
        """A logger named after the distribution (``labscope.dist.NAME``)."""
        return logging.getLogger(f"labscope.dist.{self.name}")

    def data_dir(self) -> Path:
        """``<data-dir>/distributions/<NAME>``, the distribution's own folder (created on demand)."""
        path = self.data_root / "distributions" / self.name
        path.mkdir(parents=True, exist_ok=True)
        return path


class Distribution:
    """Base class of every distribution; subclass it in one file named ``dist_<type>.py``.

    Class attributes:

    - ``options``: the type's own config keys under ``[distributions.NAME]``,
      with their defaults (a plain value, or an :class:`Option` with bounds),
      checked at start-up like a module's: a wrong type, an out-of-range value
      or (when ``options`` is not empty) an unknown key stops the collector
      with one line. With no ``options`` (the classic form) any key is passed.
    - ``modes``: the modes the type supports (``"points"``, ``"reports"``).
    - ``feed``: for ``mode = "reports"``, where reports come from:
      ``"memory"`` (each report as it is applied) or ``"journal"`` (durably,
      from the collector's journal after a cursor saved once the reports are
      delivered; collector/dist_journal.py; needs ``journal = true``).

    Attached before :meth:`configure`: ``self.core`` (a :class:`DistCore`).
    While :meth:`sendData` runs, ``self.point`` is the whole
    :class:`DataPoint` being sent (its time and node included).
    """

    options: ClassVar[dict[str, Any]] = {}
    modes: ClassVar[tuple[str, ...]] = MODES
    feed: ClassVar[str] = MEMORY_FEED

    core: DistCore
    config: dict[str, Any]
    point: DataPoint | None
    _outbox: deque[Any]

    def __init__(self, core: DistCore) -> None:
        """Keep ``core``; no network here (connect in :meth:`connect`)."""
        self.core = core
        self.config = {}
        self.point = None
        self._outbox = deque()

    @property
    def name(self) -> str:
        """The config section's NAME."""
        return self.core.name

    @property
    def log(self) -> logging.Logger:
        """A logger named after the distribution."""
        return self.core.log

    def configure(self, config: dict[str, Any]) -> None:
        """Take the ``[distributions.NAME]`` section as a dict (common keys filled with their defaults).

        Called once at start-up, before the thread starts. Raise ConfigError
        for a value the operator must fix: the collector stops with that one
        line (exit status 2). Any other exception is logged, counted, and the
        distribution runs on with whatever it kept.
        """
        self.config = config

    def isConnected(self) -> bool:
        """True while the destination is reachable; checked before each batch.

        False (or an exception) makes the runner call :meth:`connect`.
        """
        return True

    def connect(self) -> bool:
        """Connect (or reconnect) to the destination; True when connected.

        False or an exception: the runner waits (0.5 s, doubling up to 30 s)
        and calls it again. Items keep queueing meanwhile, within ``queue_max``.
        """
        return True

    def sendData(self, code: str, value: Any) -> None:
        """Queue one data point (``mode = "points"``): called once per point whose code matches ``codes``.

        Re-format the data here and queue it with :meth:`queueData` (zero,
        one or several payloads); ``self.point`` holds its time and node. The
        default queues the :class:`DataPoint` itself. An exception drops the
        point (counted as an error and a drop with reason ``error``).
        """
        point = self.point
        if point is None or point.code != code or point.value is not value:
            point = DataPoint(code, value, _time.time(), code.partition("/")[0])
        self.queueData(point)

    def sendReport(self, report: ReportItem) -> None:
        """Queue one whole REPORT (``mode = "reports"``); the default queues the :class:`ReportItem` itself.

        Exceptions as for :meth:`sendData`.
        """
        self.queueData(report)

    def sendUpdate(self, payload: Any) -> bool:
        """Deliver one queued payload (what :meth:`queueData` got); called per item, in order.

        Send it now, or keep it in memory and send the batch in
        :meth:`updateBatchComplete`. Return True when it is delivered (or
        kept), False when it is not: the runner keeps it, calls
        :meth:`connect` after a backoff, and offers it again. An exception
        counts as an error and a False; an item that raises three times in a
        row is dropped (reason ``error``) so one bad item cannot stop the rest.
        """
        return True

    def updateBatchComplete(self) -> None:
        """Called after each batch (the queue drained, or ``batch_max`` items): transmit a kept batch here.

        An exception is counted and makes the runner reconnect before the next batch.
        """

    def close(self) -> None:
        """Called once when the collector stops, after the last batch: release the destination."""

    def queueData(self, payload: Any) -> None:
        """Queue ``payload`` for :meth:`sendUpdate`; call it from :meth:`sendData` or :meth:`sendReport`."""
        self._outbox.append(payload)
