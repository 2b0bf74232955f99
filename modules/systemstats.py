"""The ``systemstats`` module: every node's psutil samples, latest in memory, history in the store's tiers.

Takes ``SystemStats`` reports (a ``labscope.SystemStats`` payload). It keeps
each node's latest sample in memory (that is all its snapshot holds) and
records every sample into the store's ``history`` part (docs/stores.md): the
whole sample in the raw tier, and its seven figures (:data:`POINT_NAMES`) as
series downsampled into 1-minute and 1-hour min/avg/max buckets. It answers:

- ``SystemStats node=ID``: the node's latest sample, exactly as the agent sent it
  (byte counts untouched, as psutil gave them);
- ``SystemStatsHistory node=ID [since=EPOCH] [until=EPOCH] [resolution=auto|raw|1m|1h]``:
  the node's history with since < time <= until, oldest first. ``raw`` answers
  whole samples (``samples``; without ``since``, the newest ``history`` ones, as
  before tiers); ``1m`` and ``1h`` answer one ``HistorySeries`` per figure
  (bucket start, min, avg, max) and ``step``. ``auto`` (the default) is raw
  without ``since``; with it, the finest tier giving at most ~2000 points per
  series over the window (raw for up to 2000 s, as agents sample at most once a
  second; 1m up to 2000 minutes) whose retention still covers ``since``.
  ``until`` defaults to the node's latest sample (so a client polling with the
  last time it saw gets no duplicates).

Errors: no ``node`` parameter, a ``since``/``until`` that is not a finite number,
``until`` not after ``since``, or another ``resolution`` is ``bad-request``; a
node with no sample and no history is ``not-found``.

For the distributions (docs/distributions.md) it publishes seven data points
per sample: ``NODE/cpu_percent``, ``NODE/mem_percent``, ``NODE/load1``,
``NODE/net_recv_rate``, ``NODE/net_send_rate``, ``NODE/disk_read_rate`` and
``NODE/disk_write_rate`` (bytes/s), stamped with the sample's time.

A sample's time is its report's (``Report.time``; the agent stamps both from
one clock reading), or the sample's own ``SystemStats.time`` when the report
carries none: so the loop never parses a payload the collector has checked.

It pushes the ``SystemStatsSummary`` update (one ``NodeSummary`` per node,
sorted by node id) when a sample arrived or a node (re)joined since the last
push. A lost node's data is kept: views show lost nodes with their last values.

Sample config block::

    [modules.systemstats]
    # update_interval = 1.0     # seconds between SystemStatsSummary updates
    # history = 300             # raw samples answered by SystemStatsHistory without since

The tiers' retentions are the store's (``[collector.store_args]`` ``history_raw``,
``history_1m``, ``history_1h``; docs/stores.md).
"""

from __future__ import annotations

import math
import sys
import time
from array import array
from typing import Any

from collector.addons import (
    Aggregator,
    Figures,
    NodeRecord,
    Option,
    Param,
    Payload,
    Report,
    Request,
    RequestError,
    RequestSpec,
    UpdateSpec,
)
from messages import (
    Code,
    Encoding,
    NodeList,
    NodeSummary,
    SystemStats,
    SystemStatsHistory,
    SystemStatsSummary,
)
from messages.codec import Serialized, field_key

__all__ = ["POINT_NAMES", "SystemStatsModule", "choose_resolution", "point_values", "summarize"]

DEFAULT_HISTORY = 300
AUTO_POINTS = 2000  # auto resolution: at most about this many points per series
RESOLUTIONS = ("auto", "raw", "1m", "1h")
STEP = {"raw": 1.0, "1m": 60.0, "1h": 3600.0}  # raw: agents sample at most once a second
KIND = "SystemStats"  # the raw payloads' kind in the store's history
SCHEMA = SystemStats.DESCRIPTOR.full_name
PROTOBUF = Encoding.PROTOBUF
HISTORY_SCHEMA = SystemStatsHistory.DESCRIPTOR.full_name
HOSTNAMES_TTL = 30.0  # seconds a hostname answer is used (a join asks again at once)


def parse(report_time: float, data: bytes) -> SystemStats:
    """A kept sample as a message; a sample without its own time takes its report's."""
    stats = SystemStats.FromString(data)
    if not stats.time:
        stats.time = report_time
    return stats


def summarize(node: str, hostname: str, stats: SystemStats) -> NodeSummary:
    """The one-line summary of a node's latest sample."""
    return NodeSummary(
        node=node,
        hostname=hostname,
        time=stats.time,
        cpu_percent=stats.cpu_percent,
        memory_percent=stats.memory.percent,
        load1=stats.load1,
        net_recv_rate=stats.net_io_total.recv_rate,
        net_send_rate=stats.net_io_total.send_rate,
        disk_read_rate=stats.disk_io_total.read_rate,
        disk_write_rate=stats.disk_io_total.write_rate,
    )


# The figures of a sample published for the distributions, as NODE/NAME points (one publish_many per report).
POINT_NAMES = (
    "cpu_percent",
    "mem_percent",
    "load1",
    "net_recv_rate",
    "net_send_rate",
    "disk_read_rate",
    "disk_write_rate",
)


def point_values(data: bytes) -> tuple[float, ...]:
    """The figures :data:`POINT_NAMES` of one ``SystemStats`` payload (run in the distributions' threads)."""
    return figures(SystemStats.FromString(data))


def figures(stats: SystemStats) -> tuple[float, ...]:
    """The figures :data:`POINT_NAMES` of a parsed sample."""
    net, disk = stats.net_io_total, stats.disk_io_total
    return (
        stats.cpu_percent,
        stats.memory.percent,
        stats.load1,
        net.recv_rate,
        net.send_rate,
        disk.read_rate,
        disk.write_rate,
    )


def choose_resolution(since: float, until: float, retention: dict[str, float]) -> str:
    """The finest tier with at most ~:data:`AUTO_POINTS` points over (since, until] that still covers ``since``."""
    for tier in ("raw", "1m"):
        if (until - since) / STEP[tier] <= AUTO_POINTS and since >= until - retention.get(tier, 0.0):
            return tier
    return "1h"


def tier_answer(node: str, tier: str, series: list[Any]) -> Serialized:
    """A 1m/1h answer in wire form: one HistorySeries per figure, made from the store's columns.

    A week of 1-minute buckets is 70k points per column set (2.8 MB): setting
    them through the protobuf API costs ~10 ms, and parsing the result only to
    serialize it again at the socket costs as much. The packed wire form of a
    ``repeated double`` is the column's own little-endian bytes, so the answer
    is written in that form (docs/protocol.md: field numbers of HistorySeries)
    as buffers over the columns' memory, joined once into the frame that
    carries it; clients parse it as any SystemStatsHistory.
    """
    parts: list[Any] = [SystemStatsHistory(node=node, resolution=tier, step=STEP[tier]).SerializeToString()]
    for one in series:
        fields = _series_fields(one)
        parts.append(field_key(5, sum(len(part) for part in fields)))
        parts.extend(fields)
    return Serialized(parts, HISTORY_SCHEMA)  # joined once, into the frame that carries it


def _series_fields(one: Any) -> list[Any]:
    """One HistorySeries' fields (name, time, min, avg, max, count: fields 1-6) as buffers, in wire order."""
    name = str(one.name).encode()
    fields: list[Any] = [field_key(1, len(name)), name]
    for number, column in enumerate((one.time, one.min, one.avg, one.max, one.count), start=2):
        data = _little_endian(column)
        if len(data):
            fields += [field_key(number, len(data)), data]
    return fields


def _little_endian(values: Any) -> memoryview:
    """A column's doubles as little-endian bytes (the packed wire form), without a copy where they already are."""
    packed = values if isinstance(values, array) and values.typecode == "d" else array("d", values)
    if sys.byteorder == "big":  # pragma: no cover - the wire form is little-endian
        packed = array("d", packed)
        packed.byteswap()
    return memoryview(packed).cast("B")


def read_history(
    history: Any, node: str, tier: str, since: float | None, until: float | None, limit: int
) -> tuple[SystemStatsHistory | Serialized, bool]:
    """The answer from the store's history (``limit`` raw samples at most, or the tier's series), and whether
    it holds anything (any thread)."""
    if tier == "raw":
        rows = history.samples(node, KIND, since, until, limit)
        return SystemStatsHistory(node=node, resolution="raw", samples=[parse(t, data) for t, data in rows]), bool(rows)
    series = history.query(node, tier, since, until, POINT_NAMES)
    return tier_answer(node, tier, series), bool(series)


class SystemStatsModule(Aggregator):
    """Latest ``SystemStats`` sample of every node; the history in the store's tiers."""

    name = "systemstats"
    reporttype = ("SystemStats",)
    requesttypes = ("SystemStats", "SystemStatsHistory")
    updatetype = "SystemStatsSummary"
    depends = ("nodes",)
    options = {
        "history": Option(DEFAULT_HISTORY, minimum=1, help="raw samples answered by SystemStatsHistory without since")
    }
    request_specs = {
        "SystemStats": RequestSpec(
            "the node's latest sample, exactly as the agent sent it (no sample yet: not-found)",
            Payload.protobuf(SystemStats),
            params=(Param("node", "the node", required=True),),
        ),
        "SystemStatsHistory": RequestSpec(
            "the node's history, oldest first: whole samples (raw tier; without since, the newest "
            f"{DEFAULT_HISTORY}) or one HistorySeries of bucket start, min, avg, max per figure (1m, 1h tiers)",
            Payload.protobuf(SystemStatsHistory),
            params=(
                Param("node", "the node", required=True),
                Param(
                    "since",
                    "only samples or buckets whose time is strictly after this epoch time (seconds); "
                    "not a finite number: bad-request",
                ),
                Param("until", "only those at or before this epoch time (default: the node's latest sample)"),
                Param(
                    "resolution",
                    "auto (default: the finest tier giving at most ~2000 points per series), raw, 1m or 1h; "
                    "anything else: bad-request",
                ),
            ),
        ),
    }
    update_spec = UpdateSpec(
        "one NodeSummary per node (its latest sample), sorted by node id, when a sample "
        "arrived or a node with samples rejoined",
        Payload.protobuf(SystemStatsSummary),
    )

    def __init__(self) -> None:
        # The latest sample of each node, as the bytes that arrived (parsed only when asked for):
        # the module's whole memory, whatever the number of samples. History lives in the store.
        self._latest: dict[str, tuple[float, bytes]] = {}
        self._dirty = False
        self._hosts: dict[str, str] | None = None  # every node's hostname, asked again after a join
        self._hosts_at = 0.0  # monotonic time of that answer

    def history_length(self) -> int:
        """Raw samples answered without ``since`` (``[modules.systemstats] history``, >= 1)."""
        return int(self.config["history"])

    def processReport(self, msg: Report) -> None:
        """Keep the latest sample and record it into the history; runs for every report, so it never logs."""
        if msg.time and msg.schema == SCHEMA and msg.encoding == PROTOBUF:
            at = msg.time  # the collector checked the payload before any module saw it: nothing to parse
        else:
            stats = msg.message(SystemStats)  # a bad payload raises here, before any state changes
            at = msg.time or stats.time
        node, data = msg.node, msg.data
        latest = self._latest.get(node)
        fresh = latest is None or latest[0] != at  # the same sample again (a resend) is not history again
        publishing = self.collector.publishing()
        if fresh:
            # read from the bytes once, off the loop, by whichever thread needs them first (history or distribution)
            figures = Figures(point_values, data)
            if publishing:
                self.collector.publish_many(node, POINT_NAMES, figures, at)
            self.collector.store.history.record(node, POINT_NAMES, at, figures, KIND, data)
        elif publishing:  # a resend, or reports sharing one time: nothing to share the figures with
            self.collector.publish_read(node, POINT_NAMES, point_values, data, at)
        self._latest[node] = (at, data)
        self._dirty = True

    def processREQUEST(self, msg: Request) -> SystemStats | SystemStatsHistory | Serialized:
        """``SystemStats node=ID`` or ``SystemStatsHistory node=ID [since] [until] [resolution]``."""
        if not msg.node:
            raise RequestError(Code.BAD_REQUEST, f"{msg.type} needs the parameter node=ID")
        if msg.type == "SystemStatsHistory":
            return self._history(msg, msg.node)
        latest = self._latest.get(msg.node)
        if latest is None:
            raise RequestError(Code.NOT_FOUND, f"no SystemStats from node {msg.node!r}")
        return parse(*latest)

    def _history(self, msg: Request, node: str) -> SystemStatsHistory | Serialized:
        since, until, tier = self._window(msg, node)
        history = self.collector.store.history
        limit = self.history_length() if since is None else 1_000_000_000
        # read and built in a worker thread: a week of buckets is megabytes, an hour of samples thousands
        answer, found = self.collector.run_in_thread(read_history, history, node, tier, since, until, limit)
        if not found and node not in self._latest:
            raise RequestError(Code.NOT_FOUND, f"no SystemStats from node {msg.node!r}")
        return answer

    def _window(self, msg: Request, node: str) -> tuple[float | None, float | None, str]:
        """``since``, ``until`` and the tier of a SystemStatsHistory request (bad-request when they are wrong)."""
        since, until = msg.epoch_param("since"), msg.epoch_param("until")
        resolution = msg.params.get("resolution") or "auto"
        if resolution not in RESOLUTIONS:
            raise RequestError(Code.BAD_REQUEST, f"resolution={resolution!r} is not one of {', '.join(RESOLUTIONS)}")
        if since is not None and until is not None and until <= since:
            raise RequestError(Code.BAD_REQUEST, f"until={until!r} must be after since={since!r}")
        if resolution != "auto":
            return since, until, resolution
        if since is None:
            return since, until, "raw"
        latest = self._latest.get(node)
        end = until if until is not None else (latest[0] if latest else math.inf)
        if not math.isfinite(end):
            end = time.time()
        return since, until, choose_resolution(since, end, self.collector.store.history.retention)

    def getUpdateMessage(self) -> SystemStatsSummary | None:
        """A summary of every node's latest sample when something changed since the last push, else None."""
        if not self._dirty:
            return None
        self._dirty = False
        hostnames = self._hostnames()
        return SystemStatsSummary(
            nodes=[
                summarize(node, hostnames.get(node, ""), parse(*self._latest[node])) for node in sorted(self._latest)
            ]
        )

    def _hostnames(self) -> dict[str, str]:
        """Every node's hostname, from the ``nodes`` module (hence ``depends``).

        Asked again after a node (re)joined, and every HOSTNAMES_TTL seconds: a NodeList of thousands
        of nodes a second was a tenth of the summary's cost.
        """
        clock = time.monotonic()
        if self._hosts is None or clock - self._hosts_at >= HOSTNAMES_TTL:
            node_list: NodeList = self.collector.request("NodeList")
            self._hosts = {status.node: status.hostname for status in node_list.nodes}
            self._hosts_at = clock
        return self._hosts

    def on_node_joined(self, node: NodeRecord) -> None:
        """A (re)joined node may bring a new hostname: ask for them again, push the summary again."""
        self._hosts = None
        if node.node in self._latest:
            self._dirty = True

    def on_node_left(self, node: NodeRecord) -> None:
        """Keep the node's data: views show lost nodes with their last values."""

    def snapshot(self) -> dict[str, list[Any]]:
        """Every node's latest sample as ``[time, bytes]``; also has the store write its open buckets."""
        self.collector.store.history.checkpoint()
        return {node: [t, data] for node, (t, data) in self._latest.items()}

    def restore(self, state: dict[str, list[Any]]) -> None:
        """Take back what :meth:`snapshot` returned (or an earlier version's ``[[time, bytes], ...]``: its last)."""
        latest: dict[str, tuple[float, bytes]] = {}
        for node, kept in state.items():
            if kept and isinstance(kept[0], list):  # before tiers: the node's kept samples, oldest first
                kept = kept[-1]
            if kept:
                latest[node] = (float(kept[0]), bytes(kept[1]))
        self._latest = latest
        self._dirty = bool(latest)
