"""The agent's outbox: every REPORT it made, kept until the collector acknowledges it.

Sequence numbers are contiguous: reports are numbered when they enter, ACKs
are cumulative and remove from the front, and an overflow drops the oldest.
So the held reports are always the range ``first_seq .. last_seq``.

The outbox also remembers how far the current connection has been sent
(``sent``): :meth:`rewind` after a new handshake makes every unacknowledged
report go out again, oldest first. For now it lives in memory; the data
folder is reserved for a durable one.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass

from messages import Envelope

__all__ = ["MAX_FRAME_BYTES", "MAX_FRAME_ENVELOPES", "Outbox", "OutboxStats"]

log = logging.getLogger(__name__)

MAX_FRAME_ENVELOPES = 256
MAX_FRAME_BYTES = 1024 * 1024
# Field tag + length prefix of one envelope inside a Batch.
_ENVELOPE_OVERHEAD = 6


@dataclass
class OutboxStats:
    """Counters of what went through the outbox."""

    added: int = 0
    acked: int = 0
    dropped: int = 0
    sent: int = 0
    resent: int = 0


class Outbox:
    """Reports by sequence number until acknowledged; bounded, dropping the oldest when full."""

    def __init__(self, capacity: int = 100_000, first_seq: int = 1) -> None:
        if capacity < 1:
            raise ValueError("outbox capacity must be at least 1")
        self.capacity = capacity
        self.next_seq = first_seq
        self.acked = first_seq - 1
        self.sent = first_seq - 1
        self._highest_sent = first_seq - 1
        self._items: OrderedDict[int, Envelope] = OrderedDict()
        self.stats = OutboxStats()

    def __len__(self) -> int:
        return len(self._items)

    @property
    def first_seq(self) -> int:
        """The oldest sequence number held (``next_seq`` when empty)."""
        return next(iter(self._items), self.next_seq)

    @property
    def last_seq(self) -> int:
        """The newest sequence number handed out so far."""
        return self.next_seq - 1

    @property
    def in_flight(self) -> int:
        """Held reports already sent on the current connection but not acknowledged."""
        return max(0, min(self.sent, self.last_seq) - self.first_seq + 1) if self._items else 0

    @property
    def unsent(self) -> int:
        """Held reports not yet sent on the current connection."""
        return max(0, self.last_seq - max(self.sent, self.first_seq - 1))

    def get(self, seq: int) -> Envelope | None:
        """The report numbered ``seq``, if still held."""
        return self._items.get(seq)

    def add(self, env: Envelope) -> int:
        """Number ``env`` with the next sequence number and keep it; returns the number."""
        seq = env.seq = self.next_seq
        self.next_seq += 1
        self._items[seq] = env
        self.stats.added += 1
        if len(self._items) > self.capacity:
            self._items.popitem(last=False)
            self.stats.dropped += 1
        return seq

    def ack(self, seq: int) -> int:
        """Forget every report numbered ``seq`` or lower; returns how many were removed."""
        if seq <= self.acked:
            return 0
        if seq > self.last_seq:
            # Only a collector that confuses us with another agent does this; numbering on
            # from its figure keeps our new reports from being taken for duplicates.
            log.warning("collector acknowledged seq %s beyond the last one made (%s); numbering on from %s",
                        seq, self.last_seq, seq + 1)
            self.next_seq = seq + 1
        self.acked = seq
        self.sent = max(self.sent, seq)
        removed = 0
        while self._items and next(iter(self._items)) <= seq:
            self._items.popitem(last=False)
            removed += 1
        self.stats.acked += removed
        return removed

    def rewind(self) -> None:
        """Treat every unacknowledged report as unsent (after a new handshake)."""
        self.sent = self.acked

    def next_frame(self, window: int) -> list[Envelope]:
        """The next reports to send: at most 256 or 1 MiB, keeping ≤ ``window`` in flight.

        Call :meth:`mark_sent` once they really went out.
        """
        room = min(window - self.in_flight, MAX_FRAME_ENVELOPES)
        seq = max(self.sent + 1, self.first_seq)
        frame: list[Envelope] = []
        size = 0
        while len(frame) < room and seq <= self.last_seq:
            env = self._items[seq]
            size += env.ByteSize() + _ENVELOPE_OVERHEAD
            if frame and size > MAX_FRAME_BYTES:
                break
            frame.append(env)
            seq += 1
        return frame

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
