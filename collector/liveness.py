"""The liveness clock: which live nodes have been silent for longer than the node timeout.

Checked between ingest passes, at most every LIVENESS_PERIOD; a node found
silent is marked ``lost`` once (its modules' ``on_node_left`` fires once).
"""

from __future__ import annotations

import logging
import time

from collector.addons import NodeRecord
from collector.counters import Counters
from collector.registry import NodeRegistry

__all__ = ["LIVENESS_PERIOD", "LivenessClock"]

log = logging.getLogger(__name__)

LIVENESS_PERIOD = 0.5  # seconds between lost-node checks


class LivenessClock:
    """Declares silent nodes lost; ``due`` says when a check (and the housekeeping beside it) is up."""

    def __init__(
        self, registry: NodeRegistry, counters: Counters, timeout: float, period: float = LIVENESS_PERIOD
    ) -> None:
        self.registry = registry
        self.counters = counters
        self.timeout = timeout
        self.period = period
        self._next = 0.0

    def due(self, monotonic: float) -> bool:
        """True (and the clock moves on a period) when a check is up at ``monotonic``."""
        if monotonic < self._next:
            return False
        self._next = monotonic + self.period
        return True

    def expire(self) -> list[NodeRecord]:
        """Mark every live node silent past the timeout as lost; returns them."""
        lost = self.registry.expire(time.time(), self.timeout)
        for record in lost:
            self.counters["nodes-lost"] += 1
            log.info("node %s lost: silent for more than %.1f s", record.node, self.timeout)
        return lost
