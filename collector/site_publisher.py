"""A site's heartbeat and node status on NATS (docs/sites.md).

A collector with ``site = NAME`` and a ``nats`` distribution in reports mode
publishes, besides the reports the distribution sends:

- ``PREFIX.NAME.heartbeat`` every ``site_heartbeat`` seconds;
- ``PREFIX.NAME.nodes`` (every node's status) when a node joins, is lost or
  its backlog changes, and with every heartbeat.

Both are core NATS messages (JSON, collector/sites.py), a live signal that the
stream does not keep. A greenlet on the collector's loop reads the node
registry and queues the messages; an OS thread of its own, with its own asyncio
loop, holds the NATS connection (nats-py reconnects by itself, across the
cluster's servers) and publishes them. The queue keeps only the newest few: a
site cut off from NATS publishes the current state once it is back, not the
history.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import Any

import gevent

from collector import sites
from collector.config import CollectorConfig, DistSection
from collector.counters import Counters
from collector.native import new_event_loop, start_thread
from collector.registry import NodeRegistry
from messages.errors import ConfigError
from messages.logs import ThrottledLog

__all__ = ["SitePublisher", "check_tiers", "site_section"]

log = logging.getLogger(__name__)
throttled = ThrottledLog(log, period=30.0)  # NATS away: once per 30 s, not once per retry

TICK = 0.5  # seconds between looks at the node registry
POLL = 0.05  # seconds the publishing thread rests when nothing is queued
OUTBOX = 8  # messages kept while NATS is away (the newest)


def site_section(config: CollectorConfig) -> DistSection:
    """The ``nats`` distribution in reports mode a site publishes through; ConfigError when there is none."""
    for section in config.distributions:
        if section.type == "nats" and section.mode == "reports":
            return section
    raise ConfigError(
        f'site {config.site!r} needs a [distributions.NAME] section with type = "nats" and mode = "reports" '
        "(its reports reach the top collector through it; docs/sites.md)"
    )


def check_tiers(config: CollectorConfig) -> None:
    """A site needs its nats distribution, a top or a site needs nats-py, ingest_sites needs ingest_nats.

    Raises ConfigError (exit 2) naming the key and the fix.
    """
    from collector.ingest import check_installed

    if config.ingest_sites and not config.ingest_nats:
        raise ConfigError("ingest_sites (--ingest-sites) needs ingest_nats (--ingest-nats URL)")
    if config.site:
        site_section(config)
    if config.site or config.ingest_nats:
        check_installed()


class SitePublisher:
    """Queues the site's heartbeat and node status from the loop; publishes them from a thread."""

    def __init__(self, config: CollectorConfig, registry: NodeRegistry, counters: Counters) -> None:
        section = site_section(config).values
        self.site = config.site
        self.interval = config.site_heartbeat
        self.servers = sites.servers(str(section.get("url", "nats://127.0.0.1:4222")))
        self.prefix = str(section.get("prefix", "labscope"))
        self.timeout = float(section.get("timeout", 5.0))
        self.registry = registry
        self.counters = counters
        self.outbox: collections.deque[tuple[str, bytes]] = collections.deque(maxlen=OUTBOX)
        self.running = True
        self.published = 0  # written by the thread only
        self.failed = 0
        self._last_view: tuple[tuple[str, str, int], ...] | None = None
        self._next_beat = 0.0

    def start(self) -> None:
        """Start the publishing thread (the caller spawns :meth:`watch` on the loop)."""
        start_thread(self._thread_main)

    def stop(self) -> None:
        """Ask the thread to end (it closes the connection)."""
        self.running = False

    # ------------------------------------------------------------ the collector's loop

    def watch(self) -> None:
        """Every TICK: queue the node status when it changed, and the heartbeat (with the status) when due."""
        while self.running:
            self.tick(time.monotonic(), time.time())
            gevent.sleep(TICK)

    def tick(self, monotonic: float, now: float) -> None:
        """One look at the registry: queue what is due."""
        records = list(self.registry.records.values())
        view = tuple((r.node, r.status, r.backlog) for r in sorted(records, key=lambda r: r.node))
        beat = monotonic >= self._next_beat
        if beat or view != self._last_view:
            self._last_view = view
            self.outbox.append(
                (sites.nodes_subject(self.prefix, self.site), sites.nodes_message(self.site, now, records))
            )
        if beat:
            self._next_beat = monotonic + self.interval
            body = sites.heartbeat_message(self.site, now, self.interval, len(records))
            self.outbox.append((sites.heartbeat_subject(self.prefix, self.site), body))
        self.counters["site-published"] = self.published
        self.counters["site-publish-failed"] = self.failed

    # ------------------------------------------------------------ the publishing thread

    def _thread_main(self) -> None:
        loop = new_event_loop()
        try:
            loop.run_until_complete(self._publish_forever())
        except Exception as exc:  # never expected; the site's reports still flow through the distribution
            log.error("site %s: the status publisher stopped: %s: %s", self.site, type(exc).__name__, exc)
        finally:
            loop.close()

    async def _publish_forever(self) -> None:
        import nats

        nc: Any = None
        while self.running:
            if nc is None:
                nc = await self._connect(nats)
                continue
            if not self.outbox:
                await asyncio.sleep(POLL)
                continue
            subject, body = self.outbox[0]
            try:
                await nc.publish(subject, body)
                await nc.flush(timeout=self.timeout)
            except Exception as exc:  # the client reconnects by itself; keep the message and try again
                self.failed += 1
                log.debug("site %s: publishing on %s failed: %s", self.site, subject, exc)
                await asyncio.sleep(TICK)
                continue
            self.outbox.popleft()
            self.published += 1
        if nc is not None:
            await nc.close()

    async def _connect(self, nats: Any) -> Any:
        try:
            return await nats.connect(
                self.servers,
                connect_timeout=self.timeout,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,
                name=f"labscope-site-{self.site}",
                **sites.client_callbacks(log, f"site {self.site}"),
            )
        except Exception as exc:  # NATS away: try again (the heartbeat is missed meanwhile: the top sees the site lost)
            self.failed += 1
            throttled.warning("connect", "site %s: cannot reach NATS at %s: %s", self.site, ",".join(self.servers), exc)
            await asyncio.sleep(1.0)
            return None
