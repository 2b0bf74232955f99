"""A site's side of the commands down the tree: node requests from the top over NATS (docs/sites.md).

A collector with ``site = NAME`` subscribes to ``PREFIX.NAME.cmd``
(collector/cmd_wire.py). Each command (a REQUEST, a CREDIT or a cancel) comes
with its reply subject; the site

1. checks the top: with CURVE on at the site, the top's public key (header
   ``Labscope-Top-Key``) must be in the site's ``allow_operators`` folder, and
   the top must name the original requester; refused: ``ERROR forbidden``,
   counted as an ``auth-refused`` (reason ``top-not-operator`` or
   ``no-requester``);
2. hands the REQUEST to its own relay (collector/relay.py) as if a client
   named ``nats:REPLY`` had sent it: audited as ``top NAME (FINGERPRINT) for
   REQUESTER``, forwarded to the agent, answered ``not-found`` / ``node-lost``
   / ``timeout`` as for any client;
3. sends the relay's answers for that client to the reply subject: each CHUNK
   as it came from the agent (same size), never more than the top's credit
   ahead, since CREDITs travel the same way down to the agent. A chunk NATS
   refuses (a server whose ``max_payload`` is below a chunk) fails the top's
   request with ``ERROR handler-error`` and cancels it here, so the agent stops
   streaming at once.

Who may publish on ``PREFIX.*.cmd`` at all is the NATS server's business (the
top's NKey user alone, by its permissions): docs/security.md.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, NamedTuple

import zmq

from collector import cmd_wire
from collector.config import CollectorConfig
from collector.counters import Counters
from collector.greenwait import wait_event
from collector.keyring import KeyRing
from collector.nats_auth import auth_options
from collector.nats_thread import NatsThread
from collector.peers import OPERATOR
from collector.refusals import Refusals, safe_fingerprint
from collector.relay import ClientSend, Relay
from collector.site_publisher import site_section
from collector.sites import servers
from messages import Envelope, Kind
from messages.codec import envelope, pack_one
from messages.errors import Code, ProtocolError
from messages.limits import OutOfRangeError, credit_grant, credit_param
from messages.stream import CHUNK_BYTES

__all__ = ["NATS_CLIENT", "SiteResponder"]

log = logging.getLogger(__name__)

NATS_CLIENT = b"nats:"  # the relay's client ident of a top's request: this prefix and the reply subject
MAX_REQUESTS = 64  # the top's requests running at once at this site; beyond: busy
QUEUED = 1024  # messages waiting each way at most (chunks are bounded by credit long before)
IDLE_WAIT = 0.5
MAX_NAME = 200  # characters of a requester's name kept in the audit trail
TOP_NOT_OPERATOR = "top-not-operator"  # refusal reasons (docs/security.md)
NO_REQUESTER = "no-requester"
HEADROOM = 4096  # bytes a chunk's NATS message needs beyond the chunk: headers and protocol


class RefusedChunk(NamedTuple):
    """A chunk of an answer to the top that NATS refused: its reply subject and the top's request id."""

    reply: str
    request_id: int


class SiteResponder(NatsThread):
    """Takes the top's commands, checks and audits them, and streams the answers back."""

    name = "labscope-site-commands"

    def __init__(
        self,
        config: CollectorConfig,
        relay: Relay,
        counters: Counters,
        keyring: KeyRing | None = None,
        refusals: Refusals | None = None,
    ) -> None:
        section = site_section(config).values
        auth = auth_options(config.nats_nkey_seed, config.nats_credentials)
        super().__init__(servers(str(section.get("url", "nats://127.0.0.1:4222"))), auth, QUEUED)
        self.subject = cmd_wire.cmd_subject(str(section.get("prefix", "labscope")), config.site)
        self.relay = relay
        self.counters = counters
        self.keyring = keyring
        self.refusals = refusals
        self.max_bytes = config.max_frame_bytes
        self.clients: ClientSend = relay.to_client
        self.dropped = 0  # commands dropped by the thread (queue full); written by the thread only
        self._handlers: dict[int, Callable[[bytes, Envelope, tuple[str, str]], None]] = {
            Kind.REQUEST: self._request,
            Kind.CREDIT: self._credit,
        }

    def route(self, ident: bytes, env: Envelope, bulk: zmq.Frame | bytes | None = None) -> None:
        """The relay's ``to_client``: a top's request answers on NATS, any other client's as before."""
        if not ident.startswith(NATS_CLIENT):
            self.clients(ident, env, bulk)
            return
        data, headers = cmd_wire.encode_answer(env, bulk)
        self.post(ident[len(NATS_CLIENT) :].decode(), data, headers)

    # ------------------------------------------------------------ the gevent side

    def run(self) -> None:
        """Handle the top's commands as they arrive; runs in its own greenlet."""
        while self.running:
            wait_event(self.wake, IDLE_WAIT)
            self.wake.clear()
            while self.inbox:
                item = self.inbox.popleft()
                if isinstance(item, RefusedChunk):
                    self.cancel(item)
                else:
                    self.handle(*item)
            self.counters["site-cmd-dropped"] = self.dropped
            self.counters["site-cmd-publish-failed"] = self.publish_failed

    def handle(self, reply: str, headers: dict[str, str], data: bytes) -> None:
        """One command from the top: checked, then relayed (or answered with why not)."""
        try:
            env = cmd_wire.decode_command(data, self.max_bytes)
        except ProtocolError as exc:
            self.counters["site-cmd-bad"] += 1
            self._answer(reply, envelope(Kind.ERROR, error_code=Code.BAD_FRAME, error=str(exc)))
            return
        ident = NATS_CLIENT + reply.encode()
        checked = self._check_top(reply, env, headers)
        if checked is not None:
            self._handlers[env.kind](ident, env, checked)

    def cancel(self, refused: RefusedChunk) -> None:
        """Cancel the request whose chunk NATS refused, as a client's cancel would: the agent stops streaming now."""
        ident = NATS_CLIENT + refused.reply.encode()
        self.relay.credit(ident, envelope(Kind.CREDIT, request_id=refused.request_id, params={"cancel": "1"}))

    def _check_top(self, reply: str, env: Envelope, headers: dict[str, str]) -> tuple[str, str] | None:
        """``(who, fingerprint)`` for the audit when the top may command nodes here; else refused and None."""
        key = headers.get(cmd_wire.TOP_KEY, "")
        requester = _printable(headers.get(cmd_wire.REQUESTER, ""))
        requester_fp = _printable(headers.get(cmd_wire.REQUESTER_FP, ""))
        if self.keyring is None:
            top = f"top {safe_fingerprint(key)}" if key else "top (no CURVE key)"
            top_fp = ""
        else:
            entry = self.keyring.client(key) if key else None
            if entry is None or entry.role != OPERATOR:
                words = f"the top's key {safe_fingerprint(key)} is not in this site's allow_operators folder"
                self._refuse(reply, env, TOP_NOT_OPERATOR, safe_fingerprint(key), words)
                return None
            top, top_fp = f"top {entry.name} ({entry.fingerprint})", entry.fingerprint
        if env.kind == Kind.REQUEST and not requester:
            self._refuse(reply, env, NO_REQUESTER, top_fp, "the top did not name who asked; refused")
            return None
        asked = f"{requester} ({requester_fp})" if requester_fp else requester
        return f"{top} for {asked}", top_fp

    def _refuse(self, reply: str, env: Envelope, reason: str, fingerprint: str, words: str) -> None:
        if self.refusals is not None:
            self.refusals.refuse(reason, fingerprint, f"a command from the top on {self.subject}: {words}")
        if env.kind == Kind.REQUEST:
            self._answer(reply, _error(env, Code.FORBIDDEN, words))

    def _request(self, ident: bytes, env: Envelope, checked: tuple[str, str]) -> None:
        try:
            credit_param(env.params)
        except OutOfRangeError as exc:
            self._answer(ident[len(NATS_CLIENT) :].decode(), _error(env, exc.code, str(exc)))
            return
        running = sum(p.client.startswith(NATS_CLIENT) for p in self.relay.pending.values())
        if running >= MAX_REQUESTS or self.full():
            words = f"site {self.subject.split('.')[-2]} already runs {running} requests of the top; try again"
            self._answer(ident[len(NATS_CLIENT) :].decode(), _error(env, Code.BUSY, words))
            return
        self.counters["site-cmd-requests"] += 1
        self.relay.forward(ident, env, *checked)

    def _credit(self, ident: bytes, env: Envelope, checked: tuple[str, str]) -> None:
        try:
            credit_grant(env.seq, env.params)
        except OutOfRangeError:
            self.counters["site-cmd-bad"] += 1
            return
        if not self.relay.credit(ident, env):
            self.counters["site-cmd-stale-credit"] += 1

    def _answer(self, reply: str, env: Envelope) -> None:
        self.post(reply, pack_one(env))

    # ------------------------------------------------------------ the NATS thread

    async def on_connect(self, nc: Any) -> None:
        """Subscribe to the top's commands; warn when a chunk would not fit the server's max_payload."""
        await nc.subscribe(self.subject, cb=self._on_command)
        if nc.max_payload < CHUNK_BYTES + HEADROOM:
            log.warning(
                "site: the NATS server's max_payload is %d bytes, below a 1 MiB chunk: streamed answers to the top "
                "will fail; set max_payload: 2MB in nats-server's config (docs/sites.md)",
                nc.max_payload,
            )
        log.info("site: node requests from the top on %s", self.subject)

    async def _on_command(self, msg: Any) -> None:
        if not msg.reply or len(self.inbox) >= self.limit:
            self.dropped += 1
            return
        self.hand_back((msg.reply, dict(msg.headers or {}), msg.data))

    async def on_publish_failed(self, subject: str, headers: dict[str, str], exc: Exception) -> None:
        """A chunk that NATS refused (too large): tell the top, so its client does not wait for the timeout,
        and cancel the request here, so the agent stops streaming instead of waiting 60 s for credit."""
        await super().on_publish_failed(subject, headers, exc)
        if cmd_wire.CHUNK_HEAD not in headers:
            return
        try:
            head, _ = cmd_wire.decode_answer(b"", headers, self.max_bytes)
        except ProtocolError:  # without the request id there is nothing to cancel
            return
        self.hand_back(RefusedChunk(subject, head.request_id))  # the agent's stream stops at the site too
        if self.nc is not None:
            words = f"the site could not send a chunk over NATS: {type(exc).__name__}: {exc}"
            failed = envelope(Kind.ERROR, error_code=Code.HANDLER_ERROR, error=words)
            try:
                await self.nc.publish(subject, pack_one(failed))
            except Exception:  # NATS is away: the top times the request out
                pass


def _error(env: Envelope, code: str, words: str) -> Envelope:
    return envelope(Kind.ERROR, type=env.type, request_id=env.request_id, error_code=code, error=words)


def _printable(text: str) -> str:
    """A name off the wire as the audit keeps it: printable characters only, at most MAX_NAME."""
    return "".join(ch for ch in text if ch.isprintable())[:MAX_NAME]
