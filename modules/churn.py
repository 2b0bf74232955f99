"""The ``churn`` module: which nodes come and go, and which have gone quiet, for the testbed operator.

A built-in example of the module lifecycle (docs/modules.md): ``on_node_joined``
(replayed at start-up for every node the collector already knows) and
``on_node_left`` count each node's joins and losses; ``main`` wakes every
``check_interval`` seconds and marks live nodes silent for more than
``silent_after`` seconds (an early warning, before ``node_timeout`` declares
them lost), logging each once; ``on_shutdown`` logs the summary.

- REQUEST ``NodeChurn [node=ID]`` -> ``{"nodes": {ID: {...}}, "silent": [IDs],
  "flapping": [IDs], "checked": epoch}`` (msgpack); each node: ``status``,
  ``joins``, ``losses`` (since the collector started), ``changes`` (joins and
  losses within the last ``window`` seconds), ``silent_for`` (seconds since it
  was last heard), ``last_change`` (epoch). A node with at least
  ``flap_changes`` changes in the window is *flapping*. Unknown ``node``: ``not-found``.

Sample config block::

    [modules.churn]
    # check_interval = 1.0    # seconds between silence checks
    # silent_after = 3.0      # seconds without a word before a live node counts as silent
    # window = 3600.0         # seconds of joins and losses counted in "changes"
    # flap_changes = 4        # changes within the window that make a node "flapping"
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from collector.addons import Aggregator, ExcInfo, NodeRecord, Option, Param, Payload, Request, RequestError, RequestSpec
from messages import Code

__all__ = ["Churn", "NodeChurn"]


@dataclass
class NodeChurn:
    """One node's comings and goings since the collector started."""

    joins: int = 0
    losses: int = 0
    changes: deque[float] = field(default_factory=deque)  # times of joins and losses, oldest first
    last_change: float = 0.0
    silent: bool = False

    def change(self, now: float) -> None:
        """Record a join or a loss at ``now``."""
        self.changes.append(now)
        self.last_change = now

    def recent(self, since: float) -> int:
        """Changes at or after ``since`` (older ones are forgotten)."""
        while self.changes and self.changes[0] < since:
            self.changes.popleft()
        return len(self.changes)


class Churn(Aggregator):
    """Joins, losses and silences per node; ``main`` checks for silent nodes every ``check_interval``."""

    name = "churn"
    requesttypes = ("NodeChurn",)
    options = {
        "check_interval": Option(1.0, minimum=0.05, help="seconds between silence checks"),
        "silent_after": Option(3.0, minimum=0.0, help="seconds without a word before a live node is silent"),
        "window": Option(3600.0, minimum=1.0, help="seconds of joins and losses counted in changes"),
        "flap_changes": Option(4, minimum=1, help="changes within the window that make a node flapping"),
    }
    request_specs = {
        "NodeChurn": RequestSpec(
            "every node's joins, losses, recent changes and silence; which nodes are silent or flapping",
            Payload.msgpack(
                "map {nodes: {ID: {status, joins, losses, changes, silent, silent_for, last_change}}, "
                "silent: [IDs], flapping: [IDs], checked: epoch}"
            ),
            params=(Param("node", "only this node (unknown: not-found)"),),
        ),
    }

    def __init__(self) -> None:
        self.churn: dict[str, NodeChurn] = {}
        self.checked = 0.0

    def on_node_joined(self, node: NodeRecord) -> None:
        """Count a join; a node replayed at start-up (status ``lost``) is only remembered."""
        entry = self.churn.setdefault(node.node, NodeChurn())
        if node.status == "live":
            entry.joins += 1
            entry.change(time.time())

    def on_node_left(self, node: NodeRecord) -> None:
        """Count a loss (silent past the node timeout, or BYE)."""
        entry = self.churn.setdefault(node.node, NodeChurn())
        entry.losses += 1
        entry.silent = False
        entry.change(time.time())

    def main(self) -> None:
        """Check for silent nodes every ``check_interval`` seconds until the collector stops."""
        while not self.wait_for_shutdown(self.config["check_interval"]):
            self.check(time.time())

    def check(self, now: float) -> list[str]:
        """Mark live nodes silent past ``silent_after`` (each logged once per silence); returns the silent ones."""
        self.checked = now
        for record in self.collector.nodes():
            entry = self.churn.setdefault(record.node, NodeChurn())
            quiet = record.status == "live" and now - record.last_seen > self.config["silent_after"]
            if quiet and not entry.silent:
                self.log.warning("node %s silent for %.1f s", record.node, now - record.last_seen)
            entry.silent = quiet
        return sorted(node for node, entry in self.churn.items() if entry.silent)

    def processREQUEST(self, msg: Request) -> dict[str, Any]:
        """``NodeChurn [node=ID]``: the churn of every node, or of one."""
        if msg.node is not None and msg.node not in self.churn:
            raise RequestError(Code.NOT_FOUND, f"no churn recorded for node {msg.node!r}")
        now = time.time()
        nodes = {node: self._view(node, entry, now) for node, entry in sorted(self.churn.items())}
        if msg.node is not None:
            nodes = {msg.node: nodes[msg.node]}
        return {
            "nodes": nodes,
            "silent": [node for node, view in nodes.items() if view["silent"]],
            "flapping": [node for node, view in nodes.items() if view["changes"] >= self.config["flap_changes"]],
            "checked": self.checked,
        }

    def _view(self, node: str, entry: NodeChurn, now: float) -> dict[str, Any]:
        record = self.collector.node(node)
        return {
            "status": record.status if record is not None else "unknown",
            "joins": entry.joins,
            "losses": entry.losses,
            "changes": entry.recent(now - self.config["window"]),
            "silent": entry.silent,
            "silent_for": now - record.last_seen if record is not None and record.last_seen else None,
            "last_change": entry.last_change,
        }

    def on_shutdown(self, exc_info: ExcInfo | None = None) -> None:
        """Log the summary (and how ``main`` ended, when it raised)."""
        if exc_info is not None:
            self.log.error("main() ended early: %s: %s", exc_info[0].__name__, exc_info[1])
        joins = sum(entry.joins for entry in self.churn.values())
        losses = sum(entry.losses for entry in self.churn.values())
        self.log.info("%d nodes: %d joins, %d losses while the collector ran", len(self.churn), joins, losses)
