"""The report journal of the ingest loop: group commit, then ACKs; checkpoints between passes.

A journal is not a store. It gathers what one ingest pass applied — each
node's new reports as the frame bodies they came in, and the nodes whose
state changed — and writes them to the store in one transaction at the end of
the pass; only then do the ACKs leave. Between passes, every
``snapshot_interval``, it checkpoints: the modules' snapshots are saved as
complete up to the last committed row, and rows past the retention are pruned,
except those a durable distribution has not passed on yet (collector/dist_journal.py),
which are kept up to its ``journal_hold``; what is pruned beyond that is counted
as ``dist-gap`` (reports).
The store (collector/store.py) is where all of this lands.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable

from collector.addons import NodeRecord
from collector.config import CollectorConfig
from collector.counters import Counters, ThrottledLog
from collector.host import ModuleHost
from collector.registry import NodeRegistry
from collector.store import Store
from collector.stores.base import StoreError
from messages import Envelope
from messages.codec import pack

__all__ = ["Journal"]

log = logging.getLogger(__name__)


class Journal:
    """This pass's applied reports and changed nodes, committed to ``store`` in one transaction."""

    def __init__(
        self, store: Store, host: ModuleHost, registry: NodeRegistry, counters: Counters, config: CollectorConfig
    ) -> None:
        self.store = store
        self.host = host
        self.registry = registry
        self.counters = counters
        self.config = config
        self.throttled = ThrottledLog(log)
        # Nodes whose state changed since the last commit. The ingest loop writes here directly (hot path).
        self.touched: dict[str, NodeRecord] = {}
        self._rows: dict[str, tuple[int, list[bytes]]] = {}  # node -> (first seq, frame bodies) this pass
        self._next_checkpoint = time.monotonic() + config.snapshot_interval
        # (row id, seconds) per durable distribution: rows from that id on are kept up to that age.
        self.holds: Callable[[], list[tuple[int, float]]] = list
        # Called at every checkpoint, journal or not (the collector saves its node registry to the store).
        self.on_checkpoint: Callable[[], None] = _nothing

    @property
    def idle(self) -> bool:
        """True when nothing waits for a commit: module state and the journal agree."""
        return not self._rows and not self.touched

    def add(self, applied: list[Envelope], body: bytes, whole: bool) -> None:
        """Keep one frame's new reports (all from one node); ``whole``: they are the entire frame ``body``."""
        # The common frame is all new reports: journal its bytes as they came (no re-encoding).
        self.add_frame(applied[0].node, applied[0].seq, body if whole else pack(applied))

    def add_frame(self, node: str, seq: int, body: bytes) -> None:
        """Keep the bytes of new reports of ``node``, the first of them ``seq`` (one frame's, as they came)."""
        pending = self._rows.get(node)
        if pending is None:
            self._rows[node] = (seq, [body])
        else:
            pending[1].append(body)

    def commit(self) -> bool:
        """Journal this pass's reports and node states in one transaction; False when the disk refused."""
        if self.idle:
            return True
        for node, (first_seq, parts) in self._rows.items():
            self.store.append(node, first_seq, self.registry.records[node].last_seq, b"".join(parts))
        self._rows.clear()
        try:
            self.store.commit(list(self.touched.values()))
        except (sqlite3.Error, OSError) as exc:  # e.g. disk full: keep the rows queued, acknowledge nothing, retry
            self._failed("journal write failed (%s); holding ACKs until it succeeds", exc)
            return False
        self.touched.clear()
        return True

    def maybe_checkpoint(self, monotonic: float) -> None:
        """Checkpoint when ``snapshot_interval`` has passed and nothing waits for a commit."""
        if monotonic >= self._next_checkpoint and self.idle:
            self._next_checkpoint = monotonic + self.config.snapshot_interval
            self.checkpoint()

    def checkpoint(self) -> None:
        """Snapshot the modules as complete up to the last committed row, and prune old journal rows.

        Runs between passes only, so module state and the journal agree.
        """
        self.on_checkpoint()
        if not self.store.durable:
            return
        try:
            self.host.take_snapshots(self.store)
            now = time.time()
            holds = [(row, now - seconds) for row, seconds in self.holds()]
            pruned, gap = self.store.prune_held(now - self.config.retention, holds)
        except (sqlite3.Error, StoreError) as exc:
            self._failed("snapshot or prune failed: %s", exc)
            return
        if gap:
            self.counters["dist-gap"] += gap
            self.throttled.warning(
                "dist-gap", "pruned %d journaled reports a durable distribution had not passed on (journal_hold)", gap
            )
        if pruned:
            log.info("pruned %d journal rows older than %.0f s", pruned, self.config.retention)

    def _failed(self, fmt: str, *args: object) -> None:
        self.counters["journal-failed"] += 1
        self.throttled.warning("journal-failed", fmt, *args)


def _nothing() -> None:
    """The default checkpoint hook."""
