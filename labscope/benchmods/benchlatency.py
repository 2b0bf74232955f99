"""Bench-only module: pushes the send times of the reports it saw, as soon as it saw them.

REPORT ``BenchProbe`` (no payload; the envelope's time is the agent's send
time) -> UPDATE ``BenchLatency``: msgpack list of those send times, pushed on
change (update_interval 0). ``labscope bench`` loads it to measure report-to-
update latency.
"""

from __future__ import annotations

from collector.addons import Aggregator, Report


class BenchLatency(Aggregator):
    """Collects send times and hands them to the next push."""

    reporttype = "BenchProbe"
    updatetype = "BenchLatency"
    update_interval = 0

    def __init__(self) -> None:
        self.pending: list[float] = []

    def processReport(self, msg: Report) -> None:
        """Remember when the report was sent."""
        self.pending.append(msg.time)

    def getUpdateMessage(self) -> list[float] | None:
        """The send times seen since the last push, or None."""
        if not self.pending:
            return None
        sent, self.pending = self.pending, []
        return sent
