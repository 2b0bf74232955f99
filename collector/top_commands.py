"""A top collector's node requests to its sites over NATS request/reply (docs/sites.md, "Commands down the tree").

The relay (collector/relay.py) hands every envelope for a site's node to
:meth:`TopCommands.send`: the REQUEST (its ``node`` param rewritten to the id
the site knows, with headers naming the top's CURVE key and the original
requester), later CREDITs and a cancel. Each goes on ``PREFIX.SITE.cmd`` with
the reply subject ``INBOX.RID`` (RID: the relay's own request id), so the
site's answers — RESPONSE, ERROR or CHUNKs — come back to one wildcard
subscription and are relayed to the client with :meth:`Relay.from_agent`, as
an agent's are. Timeouts and lost sites are the relay's, as for a local node.
"""

from __future__ import annotations

import logging
from typing import Any

from collector import cmd_wire, sites
from collector.addons import NodeRecord
from collector.config import CollectorConfig
from collector.counters import Counters
from collector.greenwait import wait_event
from collector.nats_auth import auth_options
from collector.nats_thread import NatsThread
from collector.relay import Relay
from messages import Envelope, Kind
from messages.codec import pack_one
from messages.errors import ProtocolError

__all__ = ["TopCommands"]

log = logging.getLogger(__name__)

QUEUED = 1024  # messages waiting for the NATS thread, each way; beyond that a request is left to time out
IDLE_WAIT = 0.5


class TopCommands(NatsThread):
    """Sends the relay's envelopes for site nodes to their sites and relays the answers back."""

    name = "labscope-top-commands"

    def __init__(self, config: CollectorConfig, relay: Relay, counters: Counters, top_key: str = "") -> None:
        super().__init__(
            sites.servers(config.ingest_nats), auth_options(config.nats_nkey_seed, config.nats_credentials), QUEUED
        )
        self.prefix = config.ingest_prefix
        self.relay = relay
        self.counters = counters
        self.top_key = top_key  # this top's CURVE public key (Z85), "" without CURVE
        self.max_bytes = config.max_frame_bytes
        self.reply_prefix = ""  # this connection's inbox, set once connected
        self.bad_answers = 0  # written by the thread only
        self.dropped = 0  # answers dropped: the hand-off to the loop was full (written by the thread only)

    # ------------------------------------------------------------ the gevent side

    def send(self, record: NodeRecord, env: Envelope, who: str = "", fingerprint: str = "") -> None:
        """Queue an envelope for ``record``'s site (relay.to_site); a full queue or NATS away leaves it to time out."""
        if not self.reply_prefix or self.full():
            self.counters["site-cmd-unsent"] += 1
            return
        headers = {cmd_wire.TOP_KEY: self.top_key}  # on every command: a site checks CREDITs and cancels too
        if env.kind == Kind.REQUEST:
            env.params["node"] = record.node.partition(":")[2]
            headers.update({cmd_wire.REQUESTER: who, cmd_wire.REQUESTER_FP: fingerprint})
            self.counters["site-cmd-requests"] += 1
        subject = cmd_wire.cmd_subject(self.prefix, record.site)
        self.post(subject, pack_one(env), headers, f"{self.reply_prefix}.{env.request_id}")

    def run(self) -> None:
        """Relay the sites' answers as they arrive; runs in its own greenlet."""
        while self.running:
            wait_event(self.wake, IDLE_WAIT)
            self.wake.clear()
            while self.inbox:
                rid, env, bulk = self.inbox.popleft()
                env.request_id = rid
                if not self.relay.from_agent(env, bulk):
                    self.counters["site-cmd-stale"] += 1
            self.counters["site-cmd-publish-failed"] = self.publish_failed
            self.counters["site-cmd-bad-answer"] = self.bad_answers
            self.counters["site-cmd-dropped"] = self.dropped

    # ------------------------------------------------------------ the NATS thread

    async def on_connect(self, nc: Any) -> None:
        """Subscribe to this connection's answers: ``INBOX.*``."""
        inbox = nc.new_inbox()
        await nc.subscribe(f"{inbox}.*", cb=self._on_answer)
        self.reply_prefix = inbox
        log.info("top: node requests to the sites on %s.SITE.cmd", self.prefix)

    async def _on_answer(self, msg: Any) -> None:
        rid = cmd_wire.reply_rid(msg.subject)
        try:
            env, bulk = cmd_wire.decode_answer(msg.data, msg.headers, self.max_bytes)
        except ProtocolError:
            env = None
        if rid is None or env is None:
            self.bad_answers += 1
            return
        if len(self.inbox) >= self.limit:  # never with credit flow control: the loop is stuck; the request times out
            self.dropped += 1
            return
        self.hand_back((rid, env, bulk))
