"""``nats``: data points or whole reports into a NATS JetStream stream (nats-py).

Reports mode is **durable and exactly once**. The reports come from the
collector's journal (``feed = "journal"``, collector/dist_journal.py) after a
cursor that moves only once JetStream has acknowledged (PubAck) everything up
to it. Every message carries ``Nats-Msg-Id: NODE:SEQ``, so the re-sends after a
crash (the reports after the saved cursor that had already reached the stream)
are dropped by JetStream inside the stream's duplicate window. Subject
``{prefix}.{site}.{node}.{type}`` (site: the collector's alias); the payload is
the report's payload bytes as the agent sent them, and the headers
``Labscope-Node``, ``Labscope-Seq``, ``Labscope-Type``, ``Labscope-Time``,
``Labscope-Encoding`` (by name) and ``Labscope-Schema`` say the rest.

Points mode: subject ``{prefix}.{site}.{node}.{metric}``, the value as UTF-8
text, the header ``Labscope-Time``; JetStream's PubAck is awaited as well (no
message id: points are a live feed, lost when the queue overflows).

A subject token cannot hold ``.``, ``*``, ``>`` or white space, and ``/`` would read badly: those become
``_`` (a metric ``disk/sda`` becomes ``disk_sda``). ``connect()`` creates the
stream (subjects ``{prefix}.*.*.>``, or ``{prefix}.>`` with a ``subject``
template of one's own; ``replicas`` copies) when no stream takes them yet.
A site (the collector's ``site`` key, docs/sites.md) uses its site name in the
subjects, ``SITE:NODE:SEQ`` as the message id and adds ``Labscope-Site``.
``url`` may list a cluster's servers, comma-separated.

Delivery is batched: ``sendUpdate`` keeps the message, ``updateBatchComplete``
publishes the batch without waiting between messages and then waits for every
PubAck at once (one round trip a batch, not one a message: ~30 µs of CPU a
report, the journal's reading included, instead of ~170). A batch that is not acknowledged in full within
``timeout`` raises: the runner counts the error and reconnects, and a durable
feed reads again from its saved cursor, so what the failed batch had already
put in the stream is sent again and dropped by JetStream as a duplicate. In
points mode the distribution keeps a failed batch and publishes it first in the
next one, once connected again: at least once (what of it had reached the
stream arrives twice, with the same ``Labscope-Time``), never silently lost.
It keeps at most :data:`KEEP_MAX` points; older ones are dropped, said in the
error and counted in ``lost``. Points still kept at ``close()`` are lost
(logged).

nats-py is asyncio: the distribution runs its own event loop in its own thread
(the runner's), driven one call at a time with ``run_until_complete``; it never
touches the collector's gevent loop. ``isConnected()`` gives the loop a turn,
so the client answers the server's pings while the distribution is idle.

Sample config block::

    [distributions.jetstream]
    type = "nats"
    mode = "reports"             # durable, exactly once; or "points"
    # url = "nats://127.0.0.1:4222"
    # stream = "LABSCOPE"        # created (subjects PREFIX.*.*.>) when no stream takes the subjects
    # replicas = 1               # copies of a stream it creates (3 on a three-server cluster)
    # max_age = 604800.0         # seconds a stream it creates keeps a message (0: for ever)
    # max_bytes = 0              # bytes a stream it creates may hold, oldest dropped first (0: no limit)
    # prefix = "labscope"
    # subject = ""               # a template; default PREFIX.{site}.{node}.{type} (points: .{metric})
    # timeout = 5.0              # seconds for connecting and for each batch's PubAcks
    # journal_hold = 604800.0    # reports mode: seconds the journal keeps what was not passed on yet
    # nkeys_seed = ""            # the NATS user's NKey seed file, or
    # credentials = ""           # its .creds file (docs/sites.md, "Commands down the tree")
    # codes = ["*"]
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from collector import dist
from collector.native import new_event_loop
from collector.nats_auth import auth_options, check_auth_files
from collector.sites import servers, wire_size

MISSING = "type nats needs nats-py: pip install 'labscope[nats]'"
try:
    import nats
    from nats.errors import MaxPayloadError
    from nats.js.errors import NotFoundError
except ImportError:  # the extra is missing: configure() says so in one line
    nats = None  # type: ignore[assignment]

__all__ = [
    "DEFAULT_HOLD",
    "MISSING",
    "BatchNotAckedError",
    "KEEP_MAX",
    "NatsDistribution",
    "headers",
    "stream_subjects",
    "token",
]

DEFAULT_HOLD = 7 * 86400.0


KEEP_MAX = 65_536  # points of failed batches kept to publish again (points mode)


class BatchNotAckedError(RuntimeError):
    """A batch JetStream did not acknowledge in full (the runner counts it and reconnects)."""


_BAD = re.compile(r"[./*>\s]")


def token(text: str) -> str:
    """``text`` as one subject token: ``.``, ``/``, ``*``, ``>`` and white space become ``_`` (empty: ``_``)."""
    return _BAD.sub("_", text) or "_"


def headers(report: dist.ReportItem, site: str = "") -> dict[str, str]:
    """The NATS headers of one report: ``Nats-Msg-Id: NODE:SEQ`` (a site: ``SITE:NODE:SEQ`` and ``Labscope-Site``)."""
    head = {
        "Nats-Msg-Id": f"{site}:{report.node}:{report.seq}" if site else f"{report.node}:{report.seq}",
        "Labscope-Node": report.node,
        "Labscope-Seq": str(report.seq),
        "Labscope-Type": report.type,
        "Labscope-Time": repr(report.time),
        "Labscope-Encoding": report.encoding_name,
        "Labscope-Schema": report.schema,
    }
    if site:
        head["Labscope-Site"] = site
    return head


def stream_subjects(prefix: str, default_subject: bool) -> list[str]:
    """The subjects a new stream takes: ``PREFIX.*.*.>`` for the default subjects (so the sites'
    ``PREFIX.SITE.heartbeat`` and ``.nodes`` stay out of it), ``PREFIX.>`` for a template of one's own."""
    return [f"{prefix}.*.*.>" if default_subject else f"{prefix}.>"]


DEFAULT_MAX_AGE = 7 * 86400.0  # a week: as long as the journal holds what it did not pass on (journal_hold)


def stream_limits(max_age: float, max_bytes: int) -> dict[str, Any]:
    """nats-py ``add_stream`` keywords for a created stream's limits; 0 leaves a limit off (JetStream: -1 / 0)."""
    limits: dict[str, Any] = {}
    if max_age > 0:
        limits["max_age"] = max_age  # nats-py takes seconds
    if max_bytes > 0:
        limits["max_bytes"] = max_bytes
    return limits


class NatsDistribution(dist.Distribution):
    """Points or whole reports into JetStream; reports from the journal, exactly once."""

    feed = dist.JOURNAL_FEED
    options = {
        "url": dist.Option("nats://127.0.0.1:4222", help="the NATS server"),
        "stream": dist.Option("LABSCOPE", help="the JetStream stream (created when absent)"),
        "prefix": dist.Option("labscope", help="the first subject token; the stream takes PREFIX.*.*.>"),
        "subject": dist.Option("", help="subject template ({prefix} {site} {node} {type} {metric})"),
        "timeout": dist.Option(5.0, minimum=0.1, help="seconds for connecting and for each batch's PubAcks"),
        "journal_hold": dist.Option(DEFAULT_HOLD, minimum=0.0, help="seconds the journal keeps unsent reports"),
        "replicas": dist.Option(1, minimum=1, maximum=5, help="copies of the stream it creates (a cluster: 3)"),
        "max_age": dist.Option(
            DEFAULT_MAX_AGE, minimum=0.0, help="seconds a stream it creates keeps a message (0: for ever)"
        ),
        "max_bytes": dist.Option(0, minimum=0, help="bytes a stream it creates may hold, oldest first out (0: any)"),
        "nkeys_seed": dist.Option("", help="the NATS user's NKey seed file (docs/sites.md)"),
        "credentials": dist.Option("", help="or the NATS user's .creds file"),
    }

    def __init__(self, core: dist.DistCore) -> None:
        super().__init__(core)
        self.url = "nats://127.0.0.1:4222"
        self.stream = "LABSCOPE"
        self.prefix = "labscope"
        self.subject = ""
        self.timeout = 5.0
        self.loop: asyncio.AbstractEventLoop | None = None
        self.nc: Any = None
        self.js: Any = None
        self.duplicates = 0  # re-sends JetStream dropped (PubAck.duplicate)
        self.batch: list[tuple[str, bytes, dict[str, str]]] = []  # kept by sendUpdate, published per batch
        self.kept: list[tuple[str, bytes, dict[str, str]]] = []  # points mode: failed batches, published first
        self.lost = 0  # points mode: kept points dropped beyond KEEP_MAX
        self.servers = [self.url]
        self.replicas = 1
        self.limits: dict[str, Any] = {}  # max_age / max_bytes of a stream it creates
        self.own_subject = False
        self.nkeys_seed = ""
        self.credentials = ""

    def configure(self, config: dict[str, Any]) -> None:
        """Take the options; a missing nats-py is a ConfigError naming the pip command."""
        if nats is None:
            raise dist.ConfigError(MISSING)
        self.config = config
        self.url = str(config["url"])
        self.stream = str(config["stream"])
        self.prefix = str(config["prefix"])
        last = "{metric}" if self.core.mode == dist.POINTS else "{type}"
        self.subject = str(config["subject"]) or "{prefix}.{site}.{node}." + last
        self.own_subject = bool(config["subject"])
        self.timeout = float(config["timeout"])
        self.replicas = int(config["replicas"])
        self.limits = stream_limits(float(config["max_age"]), int(config["max_bytes"]))
        self.servers = servers(self.url)
        self.nkeys_seed, self.credentials = str(config["nkeys_seed"]), str(config["credentials"])
        check_auth_files(self.nkeys_seed, self.credentials, "nats distribution")

    # ------------------------------------------------------------ connection

    def _run(self, coro: Any) -> Any:
        if self.loop is None:
            self.loop = new_event_loop()  # this thread's own loop, on the real selector (collector/native.py)
        return self.loop.run_until_complete(asyncio.wait_for(coro, self.timeout))

    def isConnected(self) -> bool:
        """True while the client is connected (after giving its loop a turn)."""
        if self.nc is None or self.loop is None:
            return False
        self.loop.run_until_complete(asyncio.sleep(0))
        return bool(self.nc.is_connected)

    def connect(self) -> bool:
        """Connect, and create the stream (subjects ``PREFIX.*.*.>``) when no stream takes them."""
        self._drop()
        self.servers.append(self.servers.pop(0))  # each attempt starts with the next member of a cluster
        auth = auth_options(self.nkeys_seed, self.credentials)
        self.nc = self._run(nats.connect(self.servers, connect_timeout=self.timeout, allow_reconnect=False, **auth))
        self.js = self.nc.jetstream(timeout=self.timeout)
        self._run(self._ensure_stream())
        return True

    async def _ensure_stream(self) -> None:
        try:
            await self.js.stream_info(self.stream)
        except NotFoundError:
            subjects = stream_subjects(self.prefix, not self.own_subject)
            await self.js.add_stream(name=self.stream, subjects=subjects, num_replicas=self.replicas, **self.limits)
            self.log.info(
                "nats: created stream %s (subjects %s, %d replicas, limits %s)",
                self.stream,
                subjects,
                self.replicas,
                self.limits or "none",
            )

    # ------------------------------------------------------------ delivery

    def subject_of(self, payload: Any) -> str:
        """The subject of one queued payload (a DataPoint or a ReportItem)."""
        site = token(self.core.site or self.core.alias)
        if isinstance(payload, dist.ReportItem):
            return self.subject.format(
                prefix=self.prefix, site=site, node=token(payload.node), type=token(payload.type), metric=""
            )
        metric = payload.code.partition("/")[2] or payload.code
        return self.subject.format(
            prefix=self.prefix, site=site, node=token(payload.node), type="", metric=token(metric)
        )

    def sendUpdate(self, payload: Any) -> bool:
        """Keep one payload for the batch (published in :meth:`updateBatchComplete`); False when not connected.

        A message larger than the server takes (its headers counted) raises ``MaxPayloadError`` here: it could never be
        delivered, so the runner drops it after three tries (counted) instead of stalling the rest.
        """
        if self.js is None:
            return False
        if isinstance(payload, dist.ReportItem):
            data, head = payload.payload, headers(payload, self.core.site)
        else:
            data, head = str(payload.value).encode(), {"Labscope-Time": repr(payload.time)}
        size = wire_size(data, head)  # the headers count too, as the server counts them (nats-py: the body only)
        if size > self.nc.max_payload:
            raise MaxPayloadError(f"{size} bytes with its headers, the server takes at most {self.nc.max_payload}")
        self.batch.append((self.subject_of(payload), data, head))
        return True

    def updateBatchComplete(self) -> None:
        """Publish the kept batch and wait for every PubAck; raises when any is missing (see the module doc)."""
        batch, self.batch, self.kept = self.kept + self.batch, [], []
        if not batch:
            return
        if self.js is None:  # the connection went while the batch was kept
            raise BatchNotAckedError(f"{len(batch)} messages not published: not connected{self._keep(batch)}")
        try:
            acks = self._run(self._publish(batch))
        except Exception as exc:  # timeout, connection lost, an API error: the whole batch counts as failed
            self._drop()
            missing = f"{len(batch)} messages not all acknowledged{self._keep(batch)}"
            raise BatchNotAckedError(f"{missing}: {type(exc).__name__}: {exc}") from exc
        self.duplicates += sum(1 for ack in acks if ack.duplicate)

    def _keep(self, batch: list[tuple[str, bytes, dict[str, str]]]) -> str:
        """Points mode: keep a failed batch (the newest :data:`KEEP_MAX`) to publish first next time; what to say."""
        if self.core.mode != dist.POINTS:
            return ""  # reports: the durable feed reads the batch again from its cursor
        dropped = max(0, len(batch) - KEEP_MAX)
        self.kept, self.lost = batch[dropped:], self.lost + dropped
        said = f"; dropped, oldest first: {dropped}" if dropped else ""
        return f" (kept to publish again: {len(self.kept)}{said})"

    async def _publish(self, batch: list[tuple[str, bytes, dict[str, str]]]) -> list[Any]:
        publish = self.js.publish_async
        pending = [await publish(subject, data, headers=head) for subject, data, head in batch]
        return list(await asyncio.gather(*pending))

    def close(self) -> None:
        """Close the connection and the event loop (the runner has completed the last batch)."""
        if self.kept:
            self.log.warning("nats: %d points of failed batches not published at close: lost", len(self.kept))
            self.lost, self.kept = self.lost + len(self.kept), []
        self._drop()
        if self.loop is not None:
            self.loop.close()
            self.loop = None

    def _drop(self) -> None:
        self.batch = []
        nc, self.nc, self.js = self.nc, None, None
        if nc is not None and self.loop is not None:
            try:
                self._run(nc.close())
            except Exception as exc:  # closing a dead connection: nothing more to do
                self.log.debug("nats close: %s", exc)
