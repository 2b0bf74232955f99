"""The ``nodes`` module: the testbed's node list, for requests and live updates.

Answers the request ``NodeList`` (optional ``node=ID`` narrows it to one node)
with a ``labscope.NodeList`` built from the collector's node registry, sorted
by node id, and pushes the same view as the ``NodeList`` update whenever it
changed since the last push (a node joined or was lost, or a node's
``last_seen``/``last_seq``/``backlog``/... moved).

For the distributions (docs/distributions.md) it publishes ``NODE/up``: 1 when
a node joins (or comes back), 0 when it is lost.

Sample config block::

    [modules.nodes]
    # update_interval = 1.0     # seconds between NodeList updates
"""

from __future__ import annotations

from collector.addons import Aggregator, NodeRecord, Param, Payload, Request, RequestError, RequestSpec, UpdateSpec
from messages import Code, NodeList, NodeStatus

__all__ = ["Nodes", "node_status"]


def node_status(record: NodeRecord) -> NodeStatus:
    """The wire view of one node record."""
    info = record.info
    return NodeStatus(
        node=record.node,
        hostname=info.hostname,
        agent_version=info.agent_version,
        first_seen=record.first_seen,
        last_seen=record.last_seen,
        status=record.status,
        last_seq=record.last_seq,
        backlog=record.backlog,
        gaps=record.gaps,
        reconnects=record.reconnects,
        os=info.os,
        cpu_count=info.cpu_count,
        memory_total=info.memory_total,
        bad_reports=record.bad_reports,
        site=record.site,
    )


class Nodes(Aggregator):
    """Every node the collector knows, live or lost, as a ``labscope.NodeList``."""

    name = "nodes"
    requesttypes = ("NodeList",)
    updatetype = "NodeList"
    request_specs = {
        "NodeList": RequestSpec(
            "every node the collector knows, live or lost, sorted by node id",
            Payload.protobuf(NodeList),
            params=(Param("node", "only this node (unknown: not-found)"),),
        ),
    }
    update_spec = UpdateSpec(
        "every node, when any node's status, last_seen, last_seq, backlog, gaps or "
        "reconnects changed, or a node joined or left",
        Payload.protobuf(NodeList),
    )

    def __init__(self) -> None:
        self._last_pushed: NodeList | None = None
        self._changed = True

    def node_list(self) -> NodeList:
        """The current NodeList of every node, sorted by node id."""
        records = sorted(self.collector.nodes(), key=lambda record: record.node)
        return NodeList(nodes=[node_status(record) for record in records])

    def processREQUEST(self, msg: Request) -> NodeList:
        """``NodeList [node=ID]``: every node, or just ID (unknown ID: ``not-found``)."""
        if msg.node is None:
            return self.node_list()
        record = self.collector.node(msg.node)
        if record is None:
            raise RequestError(Code.NOT_FOUND, f"unknown node {msg.node!r}")
        return NodeList(nodes=[node_status(record)])

    def getUpdateMessage(self) -> NodeList | None:
        """The NodeList when it differs from the last one pushed (or a node joined/left), else None."""
        current = self.node_list()
        if not self._changed and current == self._last_pushed:
            return None
        self._changed = False
        self._last_pushed = current
        return current

    def on_node_joined(self, node: NodeRecord) -> None:
        """Push at the next update even if the record looks the same (a quick reconnect); publish ``NODE/up``.

        1 for a live node; 0 for one replayed at start-up that has not said HELLO again yet.
        """
        self._changed = True
        self.collector.publish(f"{node.node}/up", 1 if node.status == "live" else 0, node=node.node)

    def on_node_left(self, node: NodeRecord) -> None:
        """Push at the next update: the node's status changed; publish ``NODE/up`` 0."""
        self._changed = True
        self.collector.publish(f"{node.node}/up", 0, node=node.node)
