"""Built-in module ``samples``: the latest batch of numeric samples of every node.

Probes that measure many values at once send them as one ``Samples`` report
(``messages.Samples``: time, optional metric names, values). This module keeps
each node's latest batch and answers ``Samples node=ID`` with it. Named values
are recorded into the store's ``history`` part (docs/stores.md), one series per
name, downsampled there into 1-minute and 1-hour min/avg/max buckets (values
without a name are not). On the collector's loop a batch costs one queue entry
whatever its number of values: the store's writer thread does the rest.

``SamplesHistory node=ID [name=N,...] [since=EPOCH] [until=EPOCH] [resolution=raw|1m|1h]``
answers the node's series with since < time <= until (default resolution
``1m``) as a msgpack map ``{node, resolution, series: {name: {time, min, avg,
max, count}}}``, each list oldest first (in the raw tier min, avg and max are
the values, count 1).

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

TIERS = ("raw", "1m", "1h")


class SamplesModule(Aggregator):
    """Latest ``Samples`` per node."""

    name = "samples"
    reporttype = "Samples"
    requesttypes = ("Samples", "SamplesHistory")
    request_specs = {
        "Samples": RequestSpec(
            "the latest Samples report of a node (no samples yet: not-found)",
            Payload.protobuf(Samples),
            params=(Param("node", "the node", required=True),),
        ),
        "SamplesHistory": RequestSpec(
            "the node's named series from the store's history, oldest first (raw tier: min = avg = max, count 1)",
            Payload.msgpack("{node, resolution, series: {name: {time, min, avg, max, count}}}"),
            params=(
                Param("node", "the node", required=True),
                Param("name", "only these series (comma-separated names)"),
                Param("since", "only times strictly after this epoch time (s); not a finite number: bad-request"),
                Param("until", "only times at or before this epoch time (s)"),
                Param("resolution", "raw, 1m (default) or 1h; anything else: bad-request"),
            ),
        ),
    }

    def __init__(self) -> None:
        self.latest: dict[str, Samples] = {}
        self.counts: dict[str, int] = {}

    def processReport(self, msg: Report) -> None:
        """Keep the node's newest batch and count its values."""
        samples = msg.message(Samples)
        if samples.names:
            at = samples.time or msg.time
            if self.collector.publishing():
                self.collector.publish_many(msg.node, samples.names, samples.values, at)
            self.collector.store.history.record(msg.node, samples.names, at, samples.values, "Samples")
        self.latest[msg.node] = samples
        self.counts[msg.node] = self.counts.get(msg.node, 0) + len(samples.values)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """The latest batch (as bytes) and value count of every node."""
        return {"latest": {node: s.SerializeToString() for node, s in self.latest.items()}, "counts": self.counts}

    def restore(self, state: dict[str, dict[str, Any]]) -> None:
        """Take back what :meth:`snapshot` returned."""
        latest = {node: Samples.FromString(data) for node, data in state["latest"].items()}
        self.latest, self.counts = latest, {node: int(n) for node, n in state["counts"].items()}

    def processREQUEST(self, msg: Request) -> Samples | dict[str, Any]:
        """``Samples node=ID``: that node's latest batch; ``SamplesHistory``: its series (see the docstring)."""
        if not msg.node:
            raise RequestError(Code.BAD_REQUEST, f"{msg.type} needs the parameter node=ID")
        if msg.type == "SamplesHistory":
            return self._history(msg, msg.node)
        if msg.node not in self.latest:
            raise RequestError(Code.NOT_FOUND, f"no samples from node {msg.node!r}")
        return self.latest[msg.node]

    def _history(self, msg: Request, node: str) -> dict[str, Any]:
        since, until = msg.epoch_param("since"), msg.epoch_param("until")
        tier = msg.params.get("resolution") or "1m"
        if tier not in TIERS:
            raise RequestError(Code.BAD_REQUEST, f"resolution={tier!r} is not one of {', '.join(TIERS)}")
        names = [n for n in (msg.params.get("name") or "").split(",") if n]
        history = self.collector.store.history
        found = self.collector.run_in_thread(history.query, node, tier, since, until, names)
        series = {
            s.name: {
                "time": list(s.time),
                "min": list(s.min),
                "avg": list(s.avg),
                "max": list(s.max),
                "count": list(s.count),
            }
            for s in found
        }
        return {"node": node, "resolution": tier, "series": series}
