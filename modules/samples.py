"""Built-in module ``samples``: the latest batch of numeric samples of every node.

Probes that measure many values at once send them as one ``Samples`` report
(``messages.Samples``: time, optional metric names, values). This module keeps
each node's latest batch and answers ``Samples node=ID`` with it. It does no
per-value work on ingest, so a node can report thousands of values a second.

For the distributions (docs/distributions.md) it publishes each named value
as the data point ``NODE/NAME`` (values without a name are not published),
only while some distribution takes points.

Sample config block::

    [modules.samples]
    # update_interval = 1.0
"""

from __future__ import annotations

from typing import Any

from collector.addons import Aggregator, Param, Payload, Report, Request, RequestError, RequestSpec
from messages import Code, Samples


class SamplesModule(Aggregator):
    """Latest ``Samples`` per node."""

    name = "samples"
    reporttype = "Samples"
    requesttypes = ("Samples",)
    request_specs = {
        "Samples": RequestSpec(
            "the latest Samples report of a node (no samples yet: not-found)",
            Payload.protobuf(Samples),
            params=(Param("node", "the node", required=True),),
        ),
    }

    def __init__(self) -> None:
        self.latest: dict[str, Samples] = {}
        self.counts: dict[str, int] = {}

    def processReport(self, msg: Report) -> None:
        """Keep the node's newest batch and count its values."""
        samples = msg.message(Samples)
        if samples.names and self.collector.publishing():
            self.collector.publish_many(msg.node, samples.names, samples.values, samples.time or msg.time)
        self.latest[msg.node] = samples
        self.counts[msg.node] = self.counts.get(msg.node, 0) + len(samples.values)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """The latest batch (as bytes) and value count of every node."""
        return {"latest": {node: s.SerializeToString() for node, s in self.latest.items()}, "counts": self.counts}

    def restore(self, state: dict[str, dict[str, Any]]) -> None:
        """Take back what :meth:`snapshot` returned."""
        latest = {node: Samples.FromString(data) for node, data in state["latest"].items()}
        self.latest, self.counts = latest, {node: int(n) for node, n in state["counts"].items()}

    def processREQUEST(self, msg: Request) -> Samples:
        """``Samples node=ID``: that node's latest batch."""
        if not msg.node:
            raise RequestError(Code.BAD_REQUEST, "Samples needs the parameter node=ID")
        if msg.node not in self.latest:
            raise RequestError(Code.NOT_FOUND, f"no samples from node {msg.node!r}")
        return self.latest[msg.node]
