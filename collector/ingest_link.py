"""The top collector's loop side of ingest: the sites' reports take the path agents' reports take.

:class:`IngestLink` runs in a greenlet of its own. Woken by the NATS thread
(collector/ingest.py), it takes each batch in order and, per report of site
SITE and node NODE: the record ``SITE:NODE`` (made on first sight), the
duplicate check (a seq at or below the node's last applied seq is dropped and
counted as ``ingest-duplicates``), the journal, the modules (``Report.node`` is
``SITE:NODE``). Then it commits the journal (one transaction, the nodes' last
seqs with it) and only after that commit hands the batch back to the thread,
which acknowledges its messages to JetStream. A crash before the commit leaves
the messages unacknowledged (delivered again; applied once, since the last
seqs were not committed either); a crash after it leaves acknowledged or
re-delivered messages that the committed last seqs drop.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import gevent
import gevent.event

from collector.addons import Report
from collector.config import CollectorConfig
from collector.counters import Counters
from collector.greenwait import wait_event
from collector.host import ModuleHost
from collector.ingest import IngestFeed, Item, Taken
from collector.journal import Journal
from collector.registry import NodeRegistry
from collector.site_view import SiteView
from messages import Envelope, Kind
from messages.limits import MAX_SEQ, MAX_TIME

__all__ = ["IngestLink"]

log = logging.getLogger(__name__)

IDLE_WAIT = 0.25  # seconds parked between looks at the site timeouts
REPORT = int(Kind.REPORT)


class IngestLink:
    """Applies the sites' reports on the collector's loop, commits, then lets the NATS thread acknowledge."""

    def __init__(
        self,
        config: CollectorConfig,
        registry: NodeRegistry,
        host: ModuleHost,
        counters: Counters,
        journal: Journal,
        on_ingest: Callable[[], bool] = lambda: False,
    ) -> None:
        self.registry = registry
        self.host = host
        self.counters = counters
        self.journal = journal
        self.on_ingest = on_ingest
        self.wake = gevent.event.Event()
        self.hub = gevent.get_hub()
        self.feed = IngestFeed(config, self._wake_threadsafe)
        self.view = SiteView(registry, host, counters, journal.touched, config.ingest_site_timeout)
        self.running = True
        self._waiting: list[Taken] = []  # applied, not yet committed (the journal refused): acknowledged later

    def _wake_threadsafe(self) -> None:
        self.hub.loop.run_callback_threadsafe(self.wake.set)

    def start(self) -> None:
        """Start the NATS thread."""
        self.feed.start()

    def stop(self) -> None:
        """End the loop after this pass, and the NATS thread after its last acknowledgements."""
        self.running = False
        self.feed.stop()

    def run(self) -> None:
        """Apply, commit and hand back until :meth:`stop`; runs in its own greenlet."""
        try:
            while self.running:
                wait_event(self.wake, IDLE_WAIT)
                self.wake.clear()
                self.pass_once(time.monotonic(), time.time())
        finally:
            # Killed mid-pass at shutdown: journal what the modules applied before their snapshots are
            # taken; those messages stay unacknowledged, and their re-delivery is dropped by seq.
            self.journal.commit()

    def pass_once(self, monotonic: float, now: float) -> None:
        """One pass: site messages, every waiting batch, the commit, the site timeouts."""
        while self.feed.status:
            kind, data = self.feed.status.popleft()
            self.view.on_status(kind, data, monotonic, now)
        applied = False
        while self.feed.handoff:
            taken = self.feed.handoff.popleft()
            applied = self.apply(taken, now) or applied
            self._waiting.append(taken)
            gevent.sleep(0)  # a large catch-up must not starve requests and updates
        if applied and self.on_ingest():
            gevent.sleep(0)
        if self._waiting and self.journal.commit():
            self.feed.committed.extend(self._waiting)
            self._waiting.clear()
        self.view.expire(monotonic)
        self._copy_counts()

    def _copy_counts(self) -> None:
        """The NATS thread's counts into the collector's counters (only the thread writes them)."""
        counts, counters = self.feed.counts, self.counters
        counters["ingest-fetched"] = counts.fetched
        counters["ingest-skipped"] = counts.skipped
        counters["ingest-other-site"] = counts.other_site
        counters["ingest-reanchors"] = counts.reanchors
        counters["ingest-stream-gap"] = counts.stream_gap
        counters["ingest-errors"] = counts.errors

    def apply(self, taken: Taken, now: float) -> bool:
        """Apply one batch's new reports (journal and modules); True when any was new."""
        fresh: dict[str, list[Envelope]] = {}
        for item in taken.items:
            env = self._apply_one(item, now)
            if env is not None:
                fresh.setdefault(env.node, []).append(env)
        for envelopes in fresh.values():
            self.journal.add(envelopes, b"", False)
        return bool(fresh)

    def _apply_one(self, item: Item, now: float) -> Envelope | None:
        """One report: None when it is a duplicate or out of bounds, else its envelope (already delivered)."""
        if not (0 < item.seq <= MAX_SEQ and 0.0 <= item.time <= MAX_TIME):
            self.counters["ingest-out-of-range"] += 1
            return None
        record = self.view.record(item.site, item.node, now)
        if item.seq <= record.last_seq:
            self.counters["ingest-duplicates"] += 1
            return None
        if item.seq != record.last_seq + 1 and record.last_seq:
            record.gaps = min(MAX_SEQ, record.gaps + item.seq - record.last_seq - 1)
        record.last_seq = item.seq
        self.journal.touched[record.node] = record
        self.counters["reports"] += 1
        self.counters["ingest-reports"] += 1
        report = Report(record.node, item.type, item.seq, item.time, item.payload, item.encoding, item.schema)
        if not self.host.deliver(report):
            self.counters["unrouted"] += 1
        return Envelope(
            kind=REPORT,  # type: ignore[arg-type]  # the stubs type enums as wrappers; upb takes ints
            node=record.node,
            seq=item.seq,
            time=item.time,
            type=item.type,
            payload=item.payload,
            encoding=item.encoding,  # type: ignore[arg-type]
            schema=item.schema,
        )
