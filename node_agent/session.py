"""The agent's session with the collector: the handshake and liveness state machine, without sockets.

States and what moves between them (docs/protocol.md, "Agent conversation")::

    saying HELLO --HELLO{CollectorInfo}--> ready --silent 3 heartbeat intervals--> saying HELLO
         ^   |                               |
         +---+ no answer: again, back-off     +--ERROR hello-required--> saying HELLO (same socket)
               0.5 s doubling to 10 s         +--ERROR duplicate-node--> refused (the agent exits 1)

The agent owns the socket, the outbox and the request pool; it asks the
session what is due (:meth:`Session.due`), how long it may sleep
(:meth:`Session.deadline`), and tells it what happened (:meth:`hello_sent`,
:meth:`heard`, :meth:`welcome`, :meth:`heartbeat_sent`, :meth:`on_error`).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass

from messages import CollectorInfo, Envelope
from messages.codec import decode_payload
from messages.errors import Code, ProtocolError
from messages.limits import MAX_INTERVAL, MIN_INTERVAL, interval_ok

__all__ = ["HELLO_BACKOFF_MAX", "HELLO_BACKOFF_MIN", "LIVENESS_INTERVALS", "AgentStats", "Due", "Session"]

log = logging.getLogger(__name__)

INF = float("inf")
HELLO_BACKOFF_MIN = 0.5
HELLO_BACKOFF_MAX = 10.0
LIVENESS_INTERVALS = 3

LogSometimes = Callable[..., None]


@dataclass
class AgentStats:
    """Counters of the agent's conversation with the collector."""

    handshakes: int = 0
    reconnects: int = 0  # handshakes after the first: a lost collector or a "hello-required"
    losses: int = 0  # times the collector fell silent for three heartbeat intervals
    hello_retries: int = 0
    heartbeats: int = 0
    bad_frames: int = 0
    oversized: int = 0  # frames from the collector over the frame size limit: dropped unparsed (also bad_frames)
    errors_received: int = 0
    requests_refused: int = 0
    out_of_range: int = 0  # values from the collector outside their bounds (messages/limits.py), ignored
    refused: bool = False  # the collector refused our node id (duplicate-node)


class Due(enum.Enum):
    """What the session wants done now."""

    NOTHING = "nothing"
    RETRY_HELLO = "retry-hello"  # no answer to our HELLO: a new socket and HELLO again
    LOST = "lost"  # the collector fell silent: a new socket and HELLO again
    HEARTBEAT = "heartbeat"  # a heartbeat interval passed without one
    REHELLO = "rehello"  # the collector asked for a new handshake on this socket
    REFUSED = "refused"  # the collector refused our node id: stop


class Session:
    """Handshake and liveness of one agent's conversation; times are ``time.monotonic()`` seconds."""

    def __init__(
        self, collector: str, heartbeat_interval: float, stats: AgentStats, now: float, log_sometimes: LogSometimes
    ) -> None:
        self.collector = collector
        self.heartbeat_interval = heartbeat_interval
        self.stats = stats
        self.ready = False
        self.backoff = HELLO_BACKOFF_MIN
        self.hello_deadline = INF
        self.last_recv = self.last_heartbeat = now
        self._log_sometimes = log_sometimes

    # ------------------------------------------------------------ what is due

    def due(self, now: float, flush_pending: bool) -> Due:
        """What to do at ``now``; ``flush_pending``: a frame leaves soon anyway (it carries the heartbeat)."""
        if not self.ready:
            return Due.RETRY_HELLO if now >= self.hello_deadline else Due.NOTHING
        if now - self.last_recv >= LIVENESS_INTERVALS * self.heartbeat_interval:
            return Due.LOST
        if self.heartbeat_due(now) and not flush_pending:
            return Due.HEARTBEAT
        return Due.NOTHING

    def deadline(self, flush_pending: bool) -> float:
        """The next time something of the session's is due."""
        if not self.ready:
            return self.hello_deadline
        heartbeat = INF if flush_pending else self.last_heartbeat + self.heartbeat_interval
        return min(heartbeat, self.last_recv + LIVENESS_INTERVALS * self.heartbeat_interval)

    def heartbeat_due(self, now: float) -> bool:
        """A heartbeat interval has passed since the last heartbeat."""
        return now - self.last_heartbeat >= self.heartbeat_interval

    # ------------------------------------------------------------ what happened

    def hello_sent(self, now: float) -> None:
        """A HELLO left: wait for its answer for the current back-off (it told the backlog too)."""
        self.ready = False
        self.hello_deadline = now + self.backoff
        self.last_heartbeat = now

    def retrying(self) -> None:
        """No answer to the HELLO: the next wait doubles, up to HELLO_BACKOFF_MAX."""
        self.stats.hello_retries += 1
        # One INFO line per outage; each retry after it only at DEBUG.
        level = logging.INFO if self.backoff == HELLO_BACKOFF_MIN else logging.DEBUG
        self.backoff = min(self.backoff * 2, HELLO_BACKOFF_MAX)
        log.log(
            level,
            "no answer from the collector at %s; saying HELLO again (next wait %.1f s)",
            self.collector,
            self.backoff,
        )

    def lost(self, now: float) -> None:
        """The collector fell silent for LIVENESS_INTERVALS heartbeat intervals."""
        log.info(
            "lost the collector at %s: nothing heard for %.1f s; reconnecting", self.collector, now - self.last_recv
        )
        self.stats.losses += 1
        self.backoff = HELLO_BACKOFF_MIN

    def heard(self, now: float) -> None:
        """Something arrived from the collector."""
        self.last_recv = now

    def heartbeat_sent(self, now: float) -> None:
        """A heartbeat left (alone or riding in a report frame)."""
        self.last_heartbeat = now
        self.stats.heartbeats += 1

    def welcome(self, env: Envelope) -> CollectorInfo | None:
        """The collector's HELLO: the session is ready; returns its CollectorInfo (None: not a CollectorInfo)."""
        if env.type != "CollectorInfo":
            log.debug("ignoring a HELLO of type %r", env.type)
            return None
        info = _collector_info(env)
        self._take_interval(info.heartbeat_interval)
        self.stats.handshakes += 1
        self.stats.reconnects = self.stats.handshakes - 1
        self.ready = True
        self.backoff = HELLO_BACKOFF_MIN
        self.hello_deadline = INF
        return info

    def on_error(self, env: Envelope, node: str) -> Due:
        """An ERROR from the collector: REFUSED, REHELLO, or NOTHING (logged now and then)."""
        self.stats.errors_received += 1
        if env.error_code == Code.DUPLICATE_NODE:
            log.error(
                "collector refused node id %s: %s; another agent with this node id is live",
                node,
                env.error or "no reason given",
            )
            self.stats.refused = True
            return Due.REFUSED
        if env.error_code != Code.HELLO_REQUIRED:
            self._log_sometimes(
                f"error-{env.error_code}",
                logging.WARNING,
                "collector refused %s: %s (%s)",
                env.type or "an envelope",
                env.error,
                env.error_code,
            )
            return Due.NOTHING
        if not self.ready:
            return Due.NOTHING  # a HELLO is already on its way; answering every refused frame would multiply them
        log.info("collector asks for a new handshake (it restarted?); saying HELLO again")
        return Due.REHELLO

    def _take_interval(self, seconds: float) -> None:
        """Adopt the collector's heartbeat interval when it is within bounds; 0 (not said) keeps ours quietly."""
        if interval_ok(seconds):
            self.heartbeat_interval = seconds
        elif seconds:
            self.stats.out_of_range += 1
            self._log_sometimes(
                "interval",
                logging.WARNING,
                "ignoring the collector's heartbeat interval %r (not within %g..%g s); keeping %.3g s",
                seconds,
                MIN_INTERVAL,
                MAX_INTERVAL,
                self.heartbeat_interval,
            )


def _collector_info(env: Envelope) -> CollectorInfo:
    try:
        info = decode_payload(env.payload, env.encoding, env.schema)
    except ProtocolError as exc:
        log.warning("collector's HELLO carries a bad CollectorInfo: %s", exc)
        return CollectorInfo()
    return info if isinstance(info, CollectorInfo) else CollectorInfo()
