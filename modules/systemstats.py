"""The ``systemstats`` module: every node's psutil samples, latest and recent history.

Takes ``SystemStats`` reports (a ``labscope.SystemStats`` payload) and answers:

- ``SystemStats node=ID``: the node's latest sample, exactly as the agent sent it
  (byte counts untouched, as psutil gave them);
- ``SystemStatsHistory node=ID [since=EPOCH]``: the node's kept samples, oldest
  first; with ``since``, only those whose ``time`` is strictly after it (so a
  client polling with the last time it saw gets no duplicates).

Errors: no ``node`` parameter, or a ``since`` that is not a finite number, is
``bad-request``; a node with no sample yet is ``not-found``.

For the distributions (docs/distributions.md) it publishes seven data points
per sample: ``NODE/cpu_percent``, ``NODE/mem_percent``, ``NODE/load1``,
``NODE/net_recv_rate``, ``NODE/net_send_rate``, ``NODE/disk_read_rate`` and
``NODE/disk_write_rate`` (bytes/s), stamped with the sample's time.

It pushes the ``SystemStatsSummary`` update (one ``NodeSummary`` per node,
sorted by node id) when a sample arrived or a node (re)joined since the last
push. A lost node's data is kept: views show lost nodes with their last values.

Sample config block::

    [modules.systemstats]
    # update_interval = 1.0     # seconds between SystemStatsSummary updates
    # history = 300             # samples kept in memory per node
"""

from __future__ import annotations

from collections import deque
from typing import Any

from collector.addons import (
    Aggregator,
    CollectorAPI,
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
    NodeList,
    NodeSummary,
    SystemStats,
    SystemStatsHistory,
    SystemStatsSummary,
)

__all__ = ["POINT_NAMES", "SystemStatsModule", "point_values", "publish_points", "summarize"]

DEFAULT_HISTORY = 300


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
    stats = SystemStats.FromString(data)
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


def publish_points(collector: CollectorAPI, msg: Report, at: float) -> None:
    """Offer a report's seven headline figures (:data:`POINT_NAMES`) to the distributions.

    The figures are read from the payload in the distributions' threads
    (:class:`~collector.addons.Figures`): ingest pays for one small object.
    """
    collector.publish_many(msg.node, POINT_NAMES, Figures(point_values, msg.data), at)


class SystemStatsModule(Aggregator):
    """Latest and recent ``SystemStats`` samples of every node."""

    name = "systemstats"
    reporttype = ("SystemStats",)
    requesttypes = ("SystemStats", "SystemStatsHistory")
    updatetype = "SystemStatsSummary"
    depends = ("nodes",)
    options = {"history": Option(DEFAULT_HISTORY, minimum=1, help="samples kept in memory per node")}
    request_specs = {
        "SystemStats": RequestSpec(
            "the node's latest sample, exactly as the agent sent it (no sample yet: not-found)",
            Payload.protobuf(SystemStats),
            params=(Param("node", "the node", required=True),),
        ),
        "SystemStatsHistory": RequestSpec(
            f"the node's kept samples (default the last {DEFAULT_HISTORY}), oldest first",
            Payload.protobuf(SystemStatsHistory),
            params=(
                Param("node", "the node", required=True),
                Param(
                    "since",
                    "only samples whose time is strictly after this epoch time (seconds); "
                    "not a finite number: bad-request",
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
        # One bounded deque per node; its last item doubles as the latest sample,
        # so the hot path touches a single dict. Samples are kept as the bytes that
        # arrived and parsed only when asked for: a report costs a deque append,
        # while requests and the once-a-second summary parse the few they need.
        self._history: dict[str, deque[tuple[float, bytes]]] = {}
        self._dirty = False

    def history_length(self) -> int:
        """Samples kept per node (``[modules.systemstats] history``, checked by the collector to be >= 1)."""
        return int(self.config["history"])

    def processReport(self, msg: Report) -> None:
        """Keep one sample; runs for every report of every node, so it never logs (a bad payload raises)."""
        stats = msg.parsed
        if not isinstance(stats, SystemStats):  # the collector parsed it already, unless it came without a schema
            stats = msg.message(SystemStats)  # a bad payload raises here, before any state changes
        if self.collector.publishing():
            publish_points(self.collector, msg, stats.time or msg.time)
        history = self._history.get(msg.node)
        if history is None:
            history = self._history[msg.node] = deque(maxlen=self.history_length())
        history.append((msg.time, msg.data))
        self._dirty = True

    def processREQUEST(self, msg: Request) -> SystemStats | SystemStatsHistory:
        """``SystemStats node=ID`` or ``SystemStatsHistory node=ID [since=EPOCH]``."""
        history = self._node_history(msg)
        if msg.type == "SystemStatsHistory":
            since = msg.epoch_param("since")
            samples = (parse(*item) for item in history)
            return SystemStatsHistory(node=msg.node, samples=[s for s in samples if since is None or s.time > since])
        return parse(*history[-1])

    def _node_history(self, msg: Request) -> deque[tuple[float, bytes]]:
        if not msg.node:
            raise RequestError(Code.BAD_REQUEST, f"{msg.type} needs the parameter node=ID")
        history = self._history.get(msg.node)
        if not history:
            raise RequestError(Code.NOT_FOUND, f"no SystemStats from node {msg.node!r}")
        return history

    def getUpdateMessage(self) -> SystemStatsSummary | None:
        """A summary of every node's latest sample when something changed since the last push, else None."""
        if not self._dirty:
            return None
        self._dirty = False
        hostnames = self._hostnames()
        return SystemStatsSummary(
            nodes=[
                summarize(node, hostnames.get(node, ""), parse(*self._history[node][-1]))
                for node in sorted(self._history)
            ]
        )

    def _hostnames(self) -> dict[str, str]:
        """Every node's hostname, from the ``nodes`` module (hence ``depends``): one request per summary."""
        node_list: NodeList = self.collector.request("NodeList")
        return {status.node: status.hostname for status in node_list.nodes}

    def on_node_joined(self, node: NodeRecord) -> None:
        """A (re)joined node may bring a new hostname: push the summary again."""
        if node.node in self._history:
            self._dirty = True

    def on_node_left(self, node: NodeRecord) -> None:
        """Keep the node's data: views show lost nodes with their last values."""

    def snapshot(self) -> dict[str, list[list[Any]]]:
        """Every node's kept samples as ``[time, bytes]`` pairs, oldest first."""
        return {node: [[t, data] for t, data in history] for node, history in self._history.items()}

    def restore(self, state: dict[str, list[list[Any]]]) -> None:
        """Take back what :meth:`snapshot` returned."""
        restored = {
            node: deque(((float(t), bytes(data)) for t, data in samples), maxlen=self.history_length())
            for node, samples in state.items()
        }
        self._history = restored
        self._dirty = bool(restored)
