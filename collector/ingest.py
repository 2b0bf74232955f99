"""The top collector's NATS side: the sites' reports from a durable JetStream pull consumer (docs/sites.md).

An OS thread of its own runs an asyncio loop with nats-py; the collector's
gevent loop never waits on NATS. The thread fetches batches of messages,
turns each into an :class:`Item` and appends the batch to :attr:`IngestFeed.handoff`
(at most :data:`HANDOFF` batches: when the loop is behind, the thread stops
fetching), then wakes the loop (``run_callback_threadsafe``). The loop
(collector/ingest_link.py) applies the batch, commits its journal, and hands
the batch back in :attr:`IngestFeed.committed`; only then does the thread
acknowledge it to JetStream: one cumulative ack (``AckPolicy.ALL``) of its
highest stream sequence, since batches are committed in order.

Order. The consumer takes the whole stream, so the stream sequences it delivers
follow each other. A message past the next expected one means an earlier one
was delivered and lost in transit (a NATS server died mid-fetch): applying the
later one first would make the earlier one look like a duplicate, so the thread
drops the rest of that fetch and **re-anchors**: it deletes the durable consumer
and creates it again at the first stream sequence not yet committed. It does the
same at start-up when the consumer has messages delivered but not acknowledged
(a top killed mid-batch), so nothing is ever applied ahead of an older message.
A hole that shows again at the same place after re-reading is in the stream
itself (aged out, deleted): counted as ``ingest-stream-gap``, and passed.
Redeliveries are harmless: the loop drops reports at or below a node's last seq.

The sites' heartbeats and node status arrive on core NATS subscriptions
(``PREFIX.*.heartbeat``, ``PREFIX.*.nodes``) into :attr:`IngestFeed.status`.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from collector import sites
from collector.config import CollectorConfig
from collector.native import new_event_loop, start_thread
from messages import Encoding
from messages.errors import ConfigError
from messages.logs import ThrottledLog

__all__ = ["HANDOFF", "IngestFeed", "Item", "MISSING", "Taken", "check_installed", "item_of"]

log = logging.getLogger(__name__)
throttled = ThrottledLog(log, period=30.0)  # NATS or the stream away: once per 30 s, not once per retry

MISSING = "--ingest-nats needs nats-py: pip install 'labscope[nats]'"
HANDOFF = 4  # batches waiting for the loop at most; then the thread stops fetching
BATCH = 512  # messages per fetch (256: ~7,500 reports/s at the top; 512: ~14,000/s, docs/sites.md)
FETCH_WAIT = 0.5  # seconds one fetch waits for messages
POLL = 0.02  # seconds the thread rests when the hand-off is full
MAX_ACK_PENDING = 16 * BATCH  # delivered, not yet acknowledged: the hand-off, the commit and the acks in flight
ACK_WAIT = 60.0  # seconds JetStream waits for an ack before it delivers a message again
RETRY = 1.0  # seconds between attempts to reach NATS or the stream

_ENCODINGS = {name: int(Encoding.Value(name)) for name in Encoding.keys()}


def _must_recreate(info: Any, start: int) -> bool:
    """True when the consumer has messages delivered and not acknowledged (they must come first), or
    acknowledges otherwise than cumulatively (made by hand, or by another version)."""
    from nats.js.api import AckPolicy

    delivered = info.delivered.stream_seq if info.delivered else 0
    return bool(delivered >= start or info.config.ack_policy != AckPolicy.ALL)


def check_installed() -> None:
    """Raise ConfigError (exit 2) when nats-py is missing."""
    try:
        import nats  # noqa: F401
    except ImportError:
        raise ConfigError(MISSING) from None


@dataclass(frozen=True)
class Item:
    """One report of one site, as the loop applies it."""

    site: str
    node: str
    seq: int
    type: str
    time: float
    encoding: int
    schema: str
    payload: bytes


@dataclass
class Taken:
    """One fetched batch: its reports in stream order, and the message to acknowledge once they are committed.

    The consumer acknowledges cumulatively (``AckPolicy.ALL``): acknowledging the batch's highest
    stream sequence acknowledges every message before it, which the loop has committed by then.
    """

    items: list[Item]
    last: Any = None  # the delivered message with the highest stream sequence
    last_stream_seq: int = 0


def item_of(subject: str, headers: dict[str, str] | None, data: bytes) -> Item | None:
    """The report a stream message holds, or None when it holds none (not a site's report, or malformed)."""
    head = headers or {}
    try:
        seq = int(head["Labscope-Seq"])
        site = head.get("Labscope-Site") or subject.split(".")[1]
        if not sites.SITE_PATTERN.match(site) or not head["Labscope-Node"]:
            return None  # a site name from the wire becomes a folder at the top: only a plain one
        return Item(
            site=site,
            node=head["Labscope-Node"],
            seq=seq,
            type=head.get("Labscope-Type", ""),
            time=float(head.get("Labscope-Time", "0")),
            encoding=_ENCODINGS[head.get("Labscope-Encoding", "NONE")],
            schema=head.get("Labscope-Schema", ""),
            payload=data,
        )
    except (KeyError, ValueError, IndexError):
        return None


@dataclass
class FeedCounts:
    """What the thread counted; the loop copies them into the collector's counters."""

    fetched: int = 0
    skipped: int = 0  # messages holding no report (acknowledged and left)
    other_site: int = 0  # reports of sites not in ingest_sites (acknowledged and left)
    reanchors: int = 0
    stream_gap: int = 0  # stream sequences gone before the top read them (stream limits)
    errors: int = 0


class IngestFeed:
    """The NATS thread of a top collector: fetch, hand over, acknowledge what the loop committed."""

    def __init__(self, config: CollectorConfig, wake: Callable[[], None]) -> None:
        self.servers = sites.servers(config.ingest_nats)
        self.stream = config.ingest_stream
        self.prefix = config.ingest_prefix
        self.durable = config.ingest_durable
        self.sites = frozenset(config.ingest_sites)
        self.wake = wake  # thread-safe: wakes the loop
        self.handoff: collections.deque[Taken] = collections.deque()
        self.committed: collections.deque[Taken] = collections.deque()
        self.status: collections.deque[tuple[str, dict[str, Any]]] = collections.deque(maxlen=10_000)
        self.counts = FeedCounts()
        self.running = True
        self._expected = 1  # the next stream sequence
        self._hole_at = 0  # where the last hole showed (a second time there: a gap in the stream itself)
        self._committed_seq = 0  # every stream sequence up to this one is committed at the top
        self._reanchor = True  # (re)create the consumer at the first uncommitted sequence
        self._nc: Any = None
        self._js: Any = None
        self._psub: Any = None

    def start(self) -> None:
        """Start the thread."""
        start_thread(self._thread_main)

    def stop(self) -> None:
        """Ask the thread to end: it acknowledges what was committed and closes the connection."""
        self.running = False

    def _thread_main(self) -> None:
        loop = new_event_loop()
        try:
            loop.run_until_complete(self._run())
        except Exception as exc:  # never expected: logged; the loop keeps the collector running
            log.error("ingest: the NATS thread stopped: %s: %s", type(exc).__name__, exc)
        finally:
            loop.close()

    async def _run(self) -> None:
        import nats

        acker = asyncio.get_running_loop().create_task(self._acknowledge_forever())
        while self.running:
            try:
                await self._step(nats)
            except Exception as exc:  # NATS away, a leader election, the stream missing: wait, then try again
                self.counts.errors += 1
                throttled.warning("ingest", "ingest from %s: %s: %s", ",".join(self.servers), type(exc).__name__, exc)
                self._reanchor = True
                await asyncio.sleep(RETRY)
        acker.cancel()
        await self._acknowledge()
        if self._nc is not None:
            await self._nc.close()

    async def _acknowledge_forever(self) -> None:
        """Acknowledge committed batches as soon as the loop hands them back, while a fetch waits."""
        while True:
            try:
                await self._acknowledge()
            except Exception as exc:  # the connection is down: the batch stays, and is acknowledged once it is back
                log.debug("ingest: acknowledging failed: %s", exc)
            await asyncio.sleep(POLL)

    async def _step(self, nats: Any) -> None:
        """One turn: connect, anchor the consumer, and fetch one batch unless the loop is behind."""
        if self._nc is None:
            await self._connect(nats)
        if self._reanchor:
            await self._anchor()
        if len(self.handoff) >= HANDOFF:
            await asyncio.sleep(POLL)  # backpressure: the loop has not caught up
            return
        try:
            messages = await self._psub.fetch(BATCH, timeout=FETCH_WAIT)
        except (TimeoutError, nats.errors.TimeoutError):  # nothing new (nats-py raises either)
            return
        taken = await self._take(messages)
        if taken is not None:
            self.handoff.append(taken)
            self.wake()

    # ------------------------------------------------------------ connection and consumer

    async def _connect(self, nats: Any) -> None:
        self._nc = await nats.connect(
            self.servers,
            connect_timeout=5,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            name="labscope-top",
            **sites.client_callbacks(log, "ingest"),
        )
        self._js = self._nc.jetstream(timeout=10)
        for kind in ("heartbeat", "nodes"):
            await self._nc.subscribe(f"{self.prefix}.*.{kind}", cb=self._on_status)
        log.info("ingest: connected to %s; stream %s, consumer %s", ",".join(self.servers), self.stream, self.durable)

    async def _anchor(self) -> None:
        """Bind the durable consumer, first re-creating it at the first uncommitted sequence when needed."""
        from nats.js.errors import NotFoundError

        try:
            info = await self._js.consumer_info(self.stream, self.durable)
        except NotFoundError:
            info = None
        start = self._start_of(info)
        if info is not None and _must_recreate(info, start):
            await self._js.delete_consumer(self.stream, self.durable)
            self.counts.reanchors += 1
            info = None
        if info is None:
            await self._create_consumer(start)
        if self._psub is not None:
            try:
                await self._psub.unsubscribe()
            except Exception as exc:  # the connection it lived on is gone: nothing to release
                log.debug("ingest: unsubscribing the old consumer's subscription: %s", exc)
        self._psub = await self._js.pull_subscribe_bind(self.durable, self.stream)
        self._expected = start
        self._reanchor = False

    def _start_of(self, info: Any) -> int:
        """The first stream sequence not committed here: after ours, the consumer's ack floor and its start."""
        if info is None:
            return self._committed_seq + 1
        floor = info.ack_floor.stream_seq if info.ack_floor else 0
        created_at = info.config.opt_start_seq or 1  # a consumer made at S reports floor 0 until its first ack
        return max(self._committed_seq + 1, floor + 1, created_at)

    async def _create_consumer(self, start: int) -> None:
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        config = ConsumerConfig(
            durable_name=self.durable,
            ack_policy=AckPolicy.ALL,  # one ack per committed batch (nats-server 2.9 or later)
            ack_wait=ACK_WAIT,
            max_ack_pending=MAX_ACK_PENDING,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE if start > 1 else DeliverPolicy.ALL,
            opt_start_seq=start if start > 1 else None,
        )
        await self._js.add_consumer(self.stream, config=config)
        log.info("ingest: consumer %s reads stream %s from sequence %d", self.durable, self.stream, start)

    # ------------------------------------------------------------ messages

    async def _take(self, messages: list[Any]) -> Taken | None:
        """The reports of one fetch in order; None (and a re-anchor) when one went missing before them."""
        taken = Taken([])
        for msg in messages:
            seq = msg.metadata.sequence.stream
            if seq > self._expected and not self._past_hole(seq):
                self._reanchor = True
                break
            self._expected = max(self._expected, seq + 1)
            self.counts.fetched += 1
            self._sort(msg, taken)
            if seq > taken.last_stream_seq:
                taken.last, taken.last_stream_seq = msg, seq
        return taken if taken.last is not None else None

    def _past_hole(self, seq: int) -> bool:
        """A message past the next expected one: True to take it (the hole is in the stream itself), False to re-anchor.

        The first time a hole shows at a sequence, an earlier message may have been lost in transit:
        re-anchor and read again from there. If the same hole shows again, the stream itself lacks
        those messages (aged out, or deleted): count them as ``ingest-stream-gap`` and go on.
        """
        if self._hole_at != self._expected:
            log.warning("ingest: stream sequence %d arrived before %d; reading again from there", seq, self._expected)
            self._hole_at = self._expected
            return False
        self.counts.stream_gap += seq - self._expected
        log.warning("ingest: stream sequences %d to %d are not in the stream any more", self._expected, seq - 1)
        return True

    def _sort(self, msg: Any, taken: Taken) -> None:
        """Put one message's report into ``taken``; count (and leave) a message that holds none for us."""
        item = item_of(msg.subject, msg.headers, msg.data)
        if item is None:
            self.counts.skipped += 1
        elif self.sites and item.site not in self.sites:
            self.counts.other_site += 1
        else:
            taken.items.append(item)

    async def _acknowledge(self) -> None:
        """Acknowledge the batches the loop has committed: one cumulative ack each."""
        while self.committed:
            taken = self.committed[0]
            await taken.last.ack()
            self.committed.popleft()
            self._committed_seq = max(self._committed_seq, taken.last_stream_seq)

    async def _on_status(self, msg: Any) -> None:
        kind = msg.subject.rsplit(".", 1)[-1]
        data = sites.parse_status(msg.data)
        if data is None:
            self.counts.skipped += 1
            return
        if self.sites and data["site"] not in self.sites:
            return
        self.status.append((kind, data))
        self.wake()
