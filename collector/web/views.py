"""What the web page shows, as JSON-ready values read from the running collector.

Everything here runs in the collector's hub, between its other greenlets, and
only reads: the node registry, the module host, the counters and the answers
the collector and its modules already give (``SystemStats``, ``Events``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from collector.addons import RequestError
from collector.counters import Counters
from collector.host import ModuleHost, Running
from collector.registry import NodeRegistry

__all__ = ["EVENTS_LIMIT", "WebSource"]

EVENTS_LIMIT = 100  # the newest events the page and /api/events show


@dataclass(frozen=True)
class WebSource:
    """The parts of the collector the web page reads; ``stats`` and ``distributions`` are its own answers."""

    alias: str
    registry: NodeRegistry
    host: ModuleHost
    counters: Counters
    stats: Callable[[], dict[str, Any]]
    distributions: Callable[[], dict[str, Any]]

    def nodes(self) -> list[dict[str, Any]]:
        """Every node, sorted by id: status, CPU and memory of its latest sample, last seen, backlog."""
        return [self._node(self.registry.records[node]) for node in sorted(self.registry.records)]

    def _node(self, record: Any) -> dict[str, Any]:
        sample = self._sample(record.node)
        return {
            "node": record.node,
            "hostname": record.info.hostname,
            "status": record.status,
            "cpu_percent": sample.cpu_percent if sample is not None else None,
            "memory_percent": sample.memory.percent if sample is not None else None,
            "last_seen": record.last_seen,
            "backlog": record.backlog,
            "last_seq": record.last_seq,
            "reconnects": record.reconnects,
            "bad_reports": record.bad_reports,
        }

    def _sample(self, node: str) -> Any:
        """The node's latest ``SystemStats`` from the module that answers it, or None."""
        if "SystemStats" not in self.host.request_routes:
            return None
        try:
            return self.host.answer("SystemStats", {"node": node})
        except RequestError:
            return None

    def modules(self) -> list[dict[str, Any]]:
        """Running modules in start order, then the ones that failed, with their error counts and types."""
        running = [self._module(r) for r in self.host.running]
        failed = [
            {"name": name, "status": "failed", "reason": reason, "errors": self.counters[f"module-error:{name}"]}
            for name, reason in sorted(self.host.failed.items())
        ]
        return running + failed

    def _module(self, running: Running) -> dict[str, Any]:
        host = self.host
        return {
            "name": running.name,
            "status": "running",
            "errors": self.counters[f"module-error:{running.name}"],
            "report_types": sorted(t for t, targets in host.report_routes.items() if running in targets),
            "request_types": sorted(t for t, r in host.request_routes.items() if r is running),
            "update_type": running.updatetype,
            "update_interval": running.update_interval,
        }

    def events(self, limit: int = EVENTS_LIMIT) -> list[dict[str, Any]]:
        """The newest events (from the module answering ``Events``), newest first; [] without one."""
        if "Events" not in self.host.request_routes:
            return []
        try:
            answer = self.host.answer("Events", {})
        except RequestError:
            return []
        return list(answer)[:limit] if isinstance(answer, list) else []

    def summary(self) -> dict[str, Any]:
        """``/api/stats``: the alias and the ``CollectorStats`` answer."""
        return {"alias": self.alias, **self.stats()}
