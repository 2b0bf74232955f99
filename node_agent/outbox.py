"""The agent's durable outbox: every REPORT, numbered and on disk before it is sent, until ACKed.

The rows live in SQLite (node_agent/store.py); this class keeps the numbers
that say where things stand, all in memory:

- ``first_seq .. last_seq`` is held, contiguous: reports are numbered when
  they enter, ACKs are cumulative and bounds drop the oldest, so the front
  only ever moves forward.
- reports added during a loop tick wait in a batch; :meth:`commit` writes
  them, the deletes acknowledged since the last commit, any bound drops and
  ``next_seq`` in one transaction. Only committed reports are sent, so a
  number the collector has seen is never handed out again, kill -9 or not.
- ``sent`` is how far the current connection has gone: :meth:`rewind`
  after a new handshake sends everything unacknowledged again, read back
  from SQLite one frame at a time.

When the size or age bound is hit, the oldest reports go and a ``gap``
Event report (first, last, count) is numbered and stored like any other.
A gap event that is itself dropped later is merged into the next one, so
the newest gap event always names the whole lost range. docs/agent-outbox.md
says what happens when the disk is full.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from messages import Envelope, Event, Kind
from messages.codec import envelope
from messages.limits import MAX_SEQ
from messages.logs import ThrottledLog
from node_agent.store import Drop, OutboxError, OutboxStore, Transaction

__all__ = [
    "DEFAULT_MAX_AGE",
    "DEFAULT_MAX_BYTES",
    "MAX_FRAME_BYTES",
    "MAX_FRAME_ENVELOPES",
    "Outbox",
    "OutboxStats",
]

log = logging.getLogger(__name__)

MAX_FRAME_ENVELOPES = 256
MAX_FRAME_BYTES = 1024 * 1024
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
DEFAULT_MAX_AGE = 7 * 24 * 3600.0
DEFAULT_MEMORY_LIMIT = 1000
# Acknowledged rows wait up to this long for the next commit, so their delete rides along with the
# next insert instead of costing a transaction (and a wake-up) of its own; after a kill -9 at most
# this much acknowledged data is sent again, and the collector drops it as duplicates.
DELETE_DELAY = 5.0
WRITE_RETRY = 1.0
LOG_EVERY = 10.0
INF = float("inf")

Gap = tuple[int, int, int]  # (gap event's seq, first lost, last lost)


@dataclass
class OutboxStats:
    """Counters of what went through the outbox since the agent started."""

    added: int = 0
    acked: int = 0
    dropped: int = 0  # removed by a bound before being acknowledged
    sent: int = 0
    resent: int = 0
    discarded: int = 0  # never numbered: the outbox could not be written and memory was full
    write_errors: int = 0
    gap_events: int = 0


@dataclass
class _Plan:
    """One commit's outcome, applied to the in-memory state only once SQLite has committed it."""

    next_seq: int
    gaps: list[Gap]
    deleted: tuple[int, int] = (0, 0)
    added_bytes: int = 0
    drop: Drop | None = None
    events: list[Envelope] = field(default_factory=list)
    gap_events: int = 0
    looked_up: bool = False  # whether this commit looked up the oldest unacknowledged row's time
    oldest: float | None = None  # that time (None: no such row)


class Outbox:
    """Reports by sequence number until acknowledged, in SQLite, bounded by size and age."""

    def __init__(
        self,
        store: OutboxStore,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_age: float = DEFAULT_MAX_AGE,
        memory_limit: int = DEFAULT_MEMORY_LIMIT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self.node = store.node
        self.max_bytes = max_bytes
        self.max_age = max_age
        self.memory_limit = memory_limit
        self._clock = clock
        held = store.held()
        self.next_seq = max(store.next_seq, held.last + 1)
        self.committed = self.next_seq - 1
        self.first_seq = held.first if held.count else self.next_seq
        self.acked = self._deleted = self.sent = self._highest_sent = self.first_seq - 1
        self.size = held.size
        self.commit_at = INF
        self.write_retry = WRITE_RETRY
        self.stats = OutboxStats()
        self._batch: list[Envelope] = []
        self._gaps = store.gaps
        self._unreported_discards = 0
        self._failing = False
        self._throttled = ThrottledLog(log, LOG_EVERY, suffix="")
        # No unacknowledged row is older than this (None: not known). Acknowledging only removes the
        # oldest rows and new ones are newer, so a bound within the age limit spares a commit the lookup.
        self._oldest_bound: float | None = None
        self._last_wall = float("-inf")

    @classmethod
    def open(
        cls,
        folder: Path | None,
        node: str,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_age: float = DEFAULT_MAX_AGE,
        memory_limit: int = DEFAULT_MEMORY_LIMIT,
    ) -> Outbox:
        """Open (or create) the outbox of ``node`` in ``folder`` (None: in memory, for tests).

        Raises ConfigError when the folder belongs to another node, OutboxError when it cannot be written.
        """
        store = OutboxStore(folder, node).open()
        try:
            return cls(store, max_bytes, max_age, memory_limit)
        except BaseException:
            store.close()
            raise

    # ------------------------------------------------------------ figures

    @property
    def instance(self) -> str:
        """The outbox's identity: the same across restarts on the same data folder."""
        return self._store.instance

    def __len__(self) -> int:
        """Unacknowledged reports held (committed or waiting for the next commit)."""
        return self.next_seq - self.first_seq

    @property
    def last_seq(self) -> int:
        """The newest sequence number handed out so far."""
        return self.next_seq - 1

    @property
    def in_flight(self) -> int:
        """Reports sent on the current connection and not yet acknowledged."""
        return max(0, min(self.sent, self.committed) - max(self.acked, self.first_seq - 1))

    @property
    def unsent(self) -> int:
        """Committed reports not yet sent on the current connection."""
        return max(0, self.committed - max(self.sent, self.first_seq - 1))

    @property
    def pending(self) -> int:
        """Reports numbered but not yet committed."""
        return len(self._batch)

    # ------------------------------------------------------------ changes

    def add(self, env: Envelope) -> int | None:
        """Number ``env`` and queue it for the next :meth:`commit`; returns its seq.

        While the file cannot be written, at most ``memory_limit`` reports wait in
        memory; beyond that a report is discarded unnumbered (counted) and None returned.
        """
        if self._failing and len(self._batch) >= self.memory_limit:
            self.stats.discarded += 1
            self._unreported_discards += 1
            return None
        if self.next_seq > MAX_SEQ:  # numbers end there (SQLite INTEGER); only a hostile ACK gets us here
            self.stats.discarded += 1
            self._log_sometimes(
                "exhausted",
                logging.ERROR,
                "sequence numbers used up (a collector acknowledged "
                "%d); reports are discarded until the outbox starts afresh",
                self.acked,
            )
            return None
        seq = env.seq = self.next_seq
        self.next_seq += 1
        self._batch.append(env)
        self.stats.added += 1
        return seq

    def ack(self, seq: int) -> int:
        """Everything up to ``seq`` is acknowledged; returns how many held reports that covers.

        The rows are deleted with the next commit (at most DELETE_DELAY from now).
        """
        if seq <= self.acked:
            return 0
        if seq > self.committed:
            # Only a collector that confuses us with another agent does this; numbering on
            # from its figure keeps our new reports from being taken for duplicates.
            log.warning(
                "collector acknowledged seq %s beyond the last one stored (%s); numbering on from %s",
                seq,
                self.committed,
                seq + 1,
            )
            self._renumber(seq + 1)
        removed = max(0, min(seq, self.committed) - max(self.acked, self.first_seq - 1))
        self.acked = seq
        self.sent = max(self.sent, seq)
        self.first_seq = max(self.first_seq, seq + 1)
        self.stats.acked += removed
        self.commit_at = min(self.commit_at, time.monotonic() + DELETE_DELAY)
        return removed

    def _renumber(self, start: int) -> None:
        room = max(0, MAX_SEQ - start + 1)
        self.stats.discarded += max(0, len(self._batch) - room)
        del self._batch[room:]  # those would need numbers past MAX_SEQ
        for offset, env in enumerate(self._batch):
            env.seq = start + offset
        self.committed = start - 1
        self.next_seq = start + len(self._batch)

    def rewind(self) -> None:
        """Treat every unacknowledged report as unsent (after a new handshake)."""
        self.sent = max(self.acked, self.first_seq - 1)

    # -------------------------------------------------------------- commit

    def commit(self) -> bool:
        """Write the batch, the acknowledged deletes, bound drops and next_seq in one transaction.

        Returns False (and keeps everything in memory) when SQLite fails, e.g. on a full
        disk; after a failure the next real attempt waits ``write_retry`` seconds.
        """
        if (
            not self._batch
            and self.acked <= self._deleted
            and not self._unreported_discards
            and self.next_seq == self._store.next_seq
        ):
            self.commit_at = INF
            return True
        if self._failing and time.monotonic() < self.commit_at:
            return False  # a full disk is tried again once a WRITE_RETRY, not on every flush
        try:
            with self._store.transaction() as tx:
                plan = self._write(tx, self._clock())
        except OutboxError as exc:
            self._write_failed(exc)
            return False
        self._apply(plan)
        return True

    def _write(self, tx: Transaction, wall: float) -> _Plan:
        plan = _Plan(next_seq=self.next_seq, gaps=[g for g in self._gaps if g[0] > self.acked])
        if self.acked > self._deleted:
            plan.deleted = tx.delete_upto(self.acked)
        tx.insert(self._batch)
        plan.added_bytes = sum(len(e.payload) for e in self._batch)
        plan.drop = self._enforce_bounds(tx, plan, self.size - plan.deleted[1] + plan.added_bytes, wall)
        if plan.drop is not None:
            plan.events.extend(self._gap_events(plan, wall))
        if self._unreported_discards:
            plan.events.append(self._discard_event(plan, wall))
        plan.events = [e for e in plan.events if e.seq <= MAX_SEQ]  # no number is left for the others
        tx.insert(plan.events)
        written = self._store.meta
        changed = {"next_seq": str(plan.next_seq), "gaps": json.dumps(plan.gaps)}
        changed = {key: value for key, value in changed.items() if written.get(key) != value}
        if changed:
            tx.set_meta(**changed)
        return plan

    def _enforce_bounds(self, tx: Transaction, plan: _Plan, size: int, wall: float) -> Drop | None:
        excess = size - self.max_bytes
        cutoff = wall - self.max_age
        if wall < self._last_wall:
            self._oldest_bound = None  # the clock went back: new rows may be "older" than the bound
        self._last_wall = wall
        if excess <= 0:
            if self._oldest_bound is not None and self._oldest_bound >= cutoff:
                return None
            oldest = plan.oldest = tx.oldest_time(self.acked)
            plan.looked_up = True
            if oldest is None or oldest >= cutoff:
                return None
        # The newest report stays whatever the bounds say: an outbox never empties itself.
        return tx.drop_oldest(after=self.acked, keep=self.next_seq - 1, excess=excess, cutoff=cutoff)

    def _gap_events(self, plan: _Plan, wall: float) -> list[Envelope]:
        drop = plan.drop
        assert drop is not None
        swallowed = [g for g in plan.gaps if drop.first <= g[0] <= drop.last]
        plan.gaps = [g for g in plan.gaps if g not in swallowed]
        reason = "full" if self.size - plan.deleted[1] + plan.added_bytes > self.max_bytes else "age"
        events = []
        for first, last in _merge([(g[1], g[2]) for g in swallowed] + [(drop.first, drop.last)]):
            env = self._event(plan, wall, _gap_event(self.node, wall, first, last, reason))
            plan.gaps.append((env.seq, first, last))
            events.append(env)
        plan.gap_events = len(events)
        return events

    def _discard_event(self, plan: _Plan, wall: float) -> Envelope:
        count = self._unreported_discards
        event = Event(
            time=wall,
            node=self.node,
            kind="outbox-error",
            severity="error",
            message=f"outbox could not be written: {count} reports discarded",
            attrs={"count": str(count)},
        )
        return self._event(plan, wall, event)

    def _event(self, plan: _Plan, wall: float, event: Event) -> Envelope:
        env = envelope(Kind.REPORT, "Event", event, node=self.node, seq=plan.next_seq, time=wall)
        plan.next_seq += 1
        return env

    def _apply(self, plan: _Plan) -> None:
        self._deleted = self.acked
        if plan.drop is not None or plan.looked_up:
            self._oldest_bound = None if plan.drop is not None else plan.oldest
        self.size += plan.added_bytes - plan.deleted[1] + sum(len(e.payload) for e in plan.events)
        drop = plan.drop
        if drop is not None:
            self.size -= drop.size
            self.first_seq = max(self.first_seq, drop.last + 1)
            self.stats.dropped += drop.count
            self.stats.gap_events += plan.gap_events
            self._log_sometimes(
                "drop",
                logging.WARNING,
                "outbox bound reached (%s bytes at most, %.0f s old at "
                "most): dropped the %d oldest reports (seq %d-%d); %d dropped since start",
                self.max_bytes,
                self.max_age,
                drop.count,
                drop.first,
                drop.last,
                self.stats.dropped,
            )
        self.next_seq = plan.next_seq
        self.committed = self.next_seq - 1
        self._batch = []
        self._gaps = plan.gaps
        self._unreported_discards = 0
        if self._failing:
            log.info("outbox %s is writable again", self._store.path)
        self._failing = False
        self.commit_at = INF
        self._store.remember(next_seq=str(plan.next_seq), gaps=json.dumps(plan.gaps))

    def _write_failed(self, exc: OutboxError) -> None:
        self.stats.write_errors += 1
        self._failing = True
        self.commit_at = time.monotonic() + self.write_retry
        self._log_sometimes(
            "write",
            logging.ERROR,
            "cannot write the outbox (%s): %d new reports wait in memory "
            "(at most %d) and are not sent until it can be written; %d discarded so far",
            exc,
            len(self._batch),
            self.memory_limit,
            self.stats.discarded,
        )

    # ------------------------------------------------------------- sending

    def next_frame(self, window: int) -> list[Envelope]:
        """The next committed reports to send: at most 256 or 1 MiB, keeping ≤ ``window`` in flight.

        Read from SQLite, so a backlog of any size costs one frame of memory. Call
        :meth:`mark_sent` once they really went out.
        """
        room = min(window - self.in_flight, MAX_FRAME_ENVELOPES, self.unsent)
        if room <= 0:
            return []
        return self._store.read(max(self.sent + 1, self.first_seq), room, MAX_FRAME_BYTES, self.node)

    def mark_sent(self, frame: list[Envelope]) -> None:
        """Record that ``frame`` (from :meth:`next_frame`) was handed to the socket."""
        if not frame:
            return
        last = frame[-1].seq
        resent = max(0, min(last, self._highest_sent) - frame[0].seq + 1)
        self.stats.resent += resent
        self.stats.sent += len(frame) - resent
        self.sent = last
        self._highest_sent = max(self._highest_sent, last)

    def close(self, commit: bool = True) -> None:
        """Commit what is pending (unless ``commit`` is False) and close the file."""
        if commit:
            self.commit()
        self._store.close()

    def _log_sometimes(self, key: str, level: int, msg: str, *args: object) -> None:
        self._throttled.log(level, key, msg, *args)


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Join overlapping or adjacent ``(first, last)`` ranges."""
    merged: list[tuple[int, int]] = []
    for first, last in sorted(ranges):
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(last, merged[-1][1]))
        else:
            merged.append((first, last))
    return merged


def _gap_event(node: str, wall: float, first: int, last: int, reason: str) -> Event:
    count = last - first + 1
    what = "outbox full" if reason == "full" else "outbox age limit"
    return Event(
        time=wall,
        node=node,
        kind="gap",
        severity="warning",
        message=f"{what}: {count} reports lost (seq {first}-{last})",
        attrs={"first": str(first), "last": str(last), "count": str(count), "reason": reason},
    )
