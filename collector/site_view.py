"""The sites as a top collector sees them: their nodes, the status each site gives them, and silent sites.

A site node's record (``SITE:NODE``, :attr:`NodeRecord.site` set) is never
expired by the top's own node timeout: its status is the one its site last
published on ``PREFIX.SITE.nodes``. A site whose heartbeat (or node status) has
not arrived for ``ingest_site_timeout`` seconds is **silent**: every one of its
live nodes becomes ``lost`` (``on_node_left`` fires once each) until the site
is heard again, when each node takes the status its site gives it. Runs on the
collector's loop only.
"""

from __future__ import annotations

import logging
from typing import Any

from collector import sites
from collector.addons import NodeRecord
from collector.counters import Counters
from collector.host import ModuleHost
from collector.registry import NodeRegistry
from messages import NodeInfo

__all__ = ["SiteView"]

log = logging.getLogger(__name__)

LIVE, LOST = "live", "lost"


class SiteView:
    """Site liveness and node status at the top; hands node joins and losses to the modules."""

    def __init__(
        self,
        registry: NodeRegistry,
        host: ModuleHost,
        counters: Counters,
        touched: dict[str, NodeRecord],
        timeout: float,
    ) -> None:
        self.registry = registry
        self.host = host
        self.counters = counters
        self.touched = touched  # the journal's: a changed record is saved with the next commit
        self.timeout = timeout
        self.heard: dict[str, float] = {}  # site -> monotonic time it was last heard
        self.silent: set[str] = set()
        self.reported: dict[str, dict[str, dict[str, Any]]] = {}  # site -> node -> its latest entry
        self.members: dict[str, dict[str, NodeRecord]] = {}  # site -> qualified node id -> record
        self._adopt()

    def _adopt(self) -> None:
        """Take the qualified records a previous run recorded as site nodes (their site part becomes ``site``)."""
        for record in self.registry.records.values():
            parts = sites.split_qualified(record.node)
            if parts is not None:
                record.site = parts[0]
                self.members.setdefault(record.site, {})[record.node] = record

    def alive(self, site: str) -> bool:
        """True while the site has been heard within the timeout."""
        return site in self.heard and site not in self.silent

    def on_status(self, kind: str, data: dict[str, Any], monotonic: float, now: float) -> None:
        """A heartbeat or node status message of one site."""
        site = data["site"]
        self.heard[site] = monotonic
        if site in self.silent:
            self.silent.discard(site)
            log.info("site %s is heard again", site)
        if kind == "nodes" and isinstance(data.get("nodes"), list):
            self.reported[site] = {entry["node"]: entry for entry in data["nodes"]}
        self.counters["site-messages"] += 1
        for node in self.reported.get(site, {}):
            self.record(site, node, now)
        for record in self._records_of(site):
            self._settle(record)

    def expire(self, monotonic: float) -> None:
        """Declare the sites silent past the timeout; their live nodes become lost."""
        for site, heard in self.heard.items():
            if site not in self.silent and monotonic - heard > self.timeout:
                self.silent.add(site)
                self.counters["sites-lost"] += 1
                log.warning("site %s: no heartbeat for %.1f s; its nodes are lost", site, self.timeout)
                for record in self._records_of(site):
                    self._settle(record)

    def record(self, site: str, node: str, now: float) -> NodeRecord:
        """The top's record of ``node`` of ``site``, made (and announced when live) on first sight."""
        qualified = sites.qualify(site, node)
        record = self.registry.records.get(qualified)
        if record is None:
            record = NodeRecord(node=qualified, info=NodeInfo(node=qualified), first_seen=now, status=LOST)
            record.site = site
            self.registry.records[qualified] = record
            self.members.setdefault(site, {})[qualified] = record
            self.touched[qualified] = record
            self._settle(record)
        return record

    def _records_of(self, site: str) -> list[NodeRecord]:
        return list(self.members.get(site, {}).values())

    def _settle(self, record: NodeRecord) -> None:
        """Give ``record`` its site's view of it (lost while the site is silent); tell the modules of a change."""
        entry = self.reported.get(record.site, {}).get(record.node.partition(":")[2])
        if entry is not None:
            _take_entry(record, entry)
        wanted = LIVE if self.alive(record.site) and (entry is None or entry["status"] == LIVE) else LOST
        if wanted == record.status:
            return
        record.status = wanted
        if wanted == LIVE:
            self.host.node_joined(record)
        else:
            self.counters["nodes-lost"] += 1
            self.host.node_left(record)


def _take_entry(record: NodeRecord, entry: dict[str, Any]) -> None:
    """Copy what a site says of a node into the top's record (numbers only when they are numbers)."""
    backlog, last_seen = entry.get("backlog"), entry.get("last_seen")
    if isinstance(backlog, int) and backlog >= 0:
        record.backlog = backlog
    if isinstance(last_seen, (int, float)) and last_seen > record.last_seen:
        record.last_seen = float(last_seen)
    info = record.info
    for name in ("hostname", "os"):
        if isinstance(entry.get(name), str):
            setattr(info, name, entry[name])
    for name, limit in (("cpu_count", 2**32), ("memory_total", 2**64)):
        value = entry.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < limit:
            setattr(info, name, value)
