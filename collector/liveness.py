"""The liveness clock: which live nodes have been silent for longer than the node timeout.

Checked between ingest passes, at most every LIVENESS_PERIOD; a node found
silent is marked ``lost`` once (its modules' ``on_node_left`` fires once).

Silence is the collector's to prove: while ingest is behind (its last pass left
frames waiting), a node's next frame may be among them, so silence is measured
up to the last moment ingest had read every frame waiting, not up to now. A
collector busy for a few seconds (thousands of agents, a loaded machine) then
does not declare lost the nodes whose reports it has not read yet; only after
BEHIND_GRACE seconds more does the clock move on regardless (a collector that
never catches up still finds its dead nodes).
"""

from __future__ import annotations

import logging
import time

from collector.addons import NodeRecord
from collector.counters import Counters
from collector.registry import NodeRegistry

__all__ = ["BEHIND_GRACE", "LIVENESS_PERIOD", "LivenessClock"]

log = logging.getLogger(__name__)

LIVENESS_PERIOD = 0.5  # seconds between lost-node checks
BEHIND_GRACE = 30.0  # seconds ingest may be behind before silence is measured up to now again


class LivenessClock:
    """Declares silent nodes lost; ``due`` says when a check (and the housekeeping beside it) is up."""

    def __init__(
        self,
        registry: NodeRegistry,
        counters: Counters,
        timeout: float,
        period: float = LIVENESS_PERIOD,
        behind_grace: float = BEHIND_GRACE,
    ) -> None:
        self.registry = registry
        self.counters = counters
        self.timeout = timeout
        self.period = period
        self.behind_grace = behind_grace
        self.caught_up_at: float | None = None  # epoch time ingest last found no frame waiting
        self._next = 0.0

    def due(self, monotonic: float) -> bool:
        """True (and the clock moves on a period) when a check is up at ``monotonic``."""
        if monotonic < self._next:
            return False
        self._next = monotonic + self.period
        return True

    def caught_up(self, now: float) -> None:
        """Ingest read every frame waiting at ``now`` (epoch seconds)."""
        self.caught_up_at = now

    def expire(self, behind: bool = False, now: float | None = None) -> list[NodeRecord]:
        """Mark every live node silent past the timeout as lost; returns them.

        ``behind``: ingest's last pass left frames waiting; silence is then measured up to
        :meth:`caught_up` (at most BEHIND_GRACE seconds before ``now``), not up to ``now``.
        """
        now = time.time() if now is None else now
        until = now
        if behind and self.caught_up_at is not None:
            until = min(now, max(self.caught_up_at, now - self.behind_grace))
            if until < now:
                self.counters["liveness-deferred"] += 1
        lost = self.registry.expire(until, self.timeout)
        for record in lost:
            self.counters["nodes-lost"] += 1
            log.info("node %s lost: silent for more than %.1f s", record.node, self.timeout)
        return lost
