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
stream, with the subjects ``{prefix}.>``, when no stream takes them yet.

nats-py is asyncio: the distribution runs its own event loop in its own thread
(the runner's), driven one call at a time with ``run_until_complete``; it never
touches the collector's gevent loop. ``isConnected()`` gives the loop a turn,
so the client answers the server's pings while the distribution is idle.

Sample config block::

    [distributions.jetstream]
    type = "nats"
    mode = "reports"             # durable, exactly once; or "points"
    # url = "nats://127.0.0.1:4222"
    # stream = "LABSCOPE"        # created (subjects PREFIX.>) when no stream takes the subjects
    # prefix = "labscope"
    # subject = ""               # a template; default PREFIX.{site}.{node}.{type} (points: .{metric})
    # timeout = 5.0              # seconds for connecting and for each PubAck
    # journal_hold = 604800.0    # reports mode: seconds the journal keeps what was not passed on yet
    # codes = ["*"]
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from collector import dist

MISSING = "type nats needs nats-py: pip install 'labscope[nats]'"
try:
    import nats
    from nats.errors import MaxPayloadError
    from nats.js.errors import NotFoundError
except ImportError:  # the extra is missing: configure() says so in one line
    nats = None  # type: ignore[assignment]

__all__ = ["DEFAULT_HOLD", "MISSING", "NatsDistribution", "headers", "token"]

DEFAULT_HOLD = 7 * 86400.0
_BAD = re.compile(r"[./*>\s]")


def token(text: str) -> str:
    """``text`` as one subject token: ``.``, ``/``, ``*``, ``>`` and white space become ``_`` (empty: ``_``)."""
    return _BAD.sub("_", text) or "_"


def headers(report: dist.ReportItem) -> dict[str, str]:
    """The NATS headers of one report, ``Nats-Msg-Id: NODE:SEQ`` included."""
    return {
        "Nats-Msg-Id": f"{report.node}:{report.seq}",
        "Labscope-Node": report.node,
        "Labscope-Seq": str(report.seq),
        "Labscope-Type": report.type,
        "Labscope-Time": repr(report.time),
        "Labscope-Encoding": report.encoding_name,
        "Labscope-Schema": report.schema,
    }


class NatsDistribution(dist.Distribution):
    """Points or whole reports into JetStream; reports from the journal, exactly once."""

    feed = dist.JOURNAL_FEED
    options = {
        "url": dist.Option("nats://127.0.0.1:4222", help="the NATS server"),
        "stream": dist.Option("LABSCOPE", help="the JetStream stream (created when absent)"),
        "prefix": dist.Option("labscope", help="the first subject token; the stream takes PREFIX.>"),
        "subject": dist.Option("", help="subject template ({prefix} {site} {node} {type} {metric})"),
        "timeout": dist.Option(5.0, minimum=0.1, help="seconds for connecting and for each PubAck"),
        "journal_hold": dist.Option(DEFAULT_HOLD, minimum=0.0, help="seconds the journal keeps unsent reports"),
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
        self.timeout = float(config["timeout"])

    # ------------------------------------------------------------ connection

    def _run(self, coro: Any) -> Any:
        if self.loop is None:
            self.loop = asyncio.new_event_loop()  # this thread's own loop (a gevent hub of its own, if patched)
        return self.loop.run_until_complete(asyncio.wait_for(coro, self.timeout))

    def isConnected(self) -> bool:
        """True while the client is connected (after giving its loop a turn)."""
        if self.nc is None or self.loop is None:
            return False
        self.loop.run_until_complete(asyncio.sleep(0))
        return bool(self.nc.is_connected)

    def connect(self) -> bool:
        """Connect, and create the stream (subjects ``PREFIX.>``) when no stream takes them."""
        self._drop()
        self.nc = self._run(nats.connect(self.url, connect_timeout=self.timeout, allow_reconnect=False))
        self.js = self.nc.jetstream(timeout=self.timeout)
        self._run(self._ensure_stream())
        return True

    async def _ensure_stream(self) -> None:
        try:
            await self.js.stream_info(self.stream)
        except NotFoundError:
            await self.js.add_stream(name=self.stream, subjects=[f"{self.prefix}.>"])
            self.log.info("nats: created stream %s (subjects %s.>)", self.stream, self.prefix)

    # ------------------------------------------------------------ delivery

    def subject_of(self, payload: Any) -> str:
        """The subject of one queued payload (a DataPoint or a ReportItem)."""
        site = token(self.core.alias)
        if isinstance(payload, dist.ReportItem):
            return self.subject.format(
                prefix=self.prefix, site=site, node=token(payload.node), type=token(payload.type), metric=""
            )
        metric = payload.code.partition("/")[2] or payload.code
        return self.subject.format(
            prefix=self.prefix, site=site, node=token(payload.node), type="", metric=token(metric)
        )

    def sendUpdate(self, payload: Any) -> bool:
        """Publish one payload and wait for its PubAck: True only once JetStream has it."""
        if self.js is None:
            return False
        if isinstance(payload, dist.ReportItem):
            data, head = payload.payload, headers(payload)
        else:
            data, head = str(payload.value).encode(), {"Labscope-Time": repr(payload.time)}
        try:
            ack = self._run(self.js.publish(self.subject_of(payload), data, headers=head))
        except MaxPayloadError:
            raise  # never fits: the runner drops it after three tries (counted) instead of stalling the rest
        except Exception as exc:  # timeout, connection lost: not delivered, the runner retries after connect()
            self.log.debug("nats publish failed: %s: %s", type(exc).__name__, exc)
            self._drop()
            return False
        if ack.duplicate:
            self.duplicates += 1
        return True

    def close(self) -> None:
        """Close the connection and the event loop."""
        self._drop()
        if self.loop is not None:
            self.loop.close()
            self.loop = None

    def _drop(self) -> None:
        nc, self.nc, self.js = self.nc, None, None
        if nc is not None and self.loop is not None:
            try:
                self._run(nc.close())
            except Exception as exc:  # closing a dead connection: nothing more to do
                self.log.debug("nats close: %s", exc)
