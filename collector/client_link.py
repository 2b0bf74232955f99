"""The clients' side of the collector: handshakes, requests, subscriptions and update pushes.

Traffic here is light next to ingest, so this ROUTER is a ``zmq.green``
socket that several greenlets may use. Requests run in a bounded pool so a
slow module answer never stalls ingest or other clients. Updates are ROUTER
pushes to each subscribed client: a client that does not read fills its own
queue and loses its own updates; nobody waits for it. A client over its
request rate or stream limit (collector/throttle.py) is answered ``busy`` at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import gevent
import gevent.event
import gevent.pool
import zmq

from collector.addons import RequestError
from collector.core import Core
from collector.counters import Counters, ThrottledLog
from collector.host import type_name
from collector.keyring import KeyRing
from collector.peers import Peer, needs_operator, plain_peer
from collector.refusals import KEY_REMOVED, OPERATOR_ONLY, Refusals, safe_fingerprint
from collector.relay import Relay
from collector.throttle import ClientLimits
from messages import Envelope, Kind
from messages.codec import envelope, envelope_frame, kind_name, pack_one, unpack
from messages.errors import Code, ProtocolError
from messages.limits import OutOfRangeError, credit_grant, credit_param
from messages.stream import STALL_TIMEOUT, CreditAccount, Piece, Take, chunk_stream, digest_param

log = logging.getLogger(__name__)

REQUEST_WORKERS = 32


class ClientSender:
    """Sends to clients over the clients' ROUTER (a green socket: any greenlet may send).

    A vanished or saturated client loses that message only: counted, logged at
    most once a second, never waited for.
    """

    def __init__(self, sock: Any, counters: Counters) -> None:
        self.sock = sock
        self.counters = counters
        self.throttled = ThrottledLog(log)

    def send(self, ident: bytes, env: Envelope, bulk: zmq.Frame | bytes | None = None) -> None:
        """Send one envelope to a client; ``bulk`` (a CHUNK's bytes) rides as a second part, uncopied."""
        if bulk is None:
            self.send_frame(ident, pack_one(env))
            return
        # copy=False: an agent's chunk leaves as the zmq message it arrived in.
        self._send((ident, pack_one(env), bulk), copy=False)

    def send_frame(self, ident: bytes, frame: bytes) -> None:
        """Send one already serialized frame to a client (a large one without copying it: pyzmq copies the small)."""
        self._send((ident, frame), copy=False)

    def _send(self, parts: tuple[Any, ...], copy: bool = True) -> None:
        try:
            self.sock.send_multipart(parts, zmq.NOBLOCK, copy=copy)
        except zmq.ZMQError as exc:
            self.counters["client-send-failed"] += 1
            self.throttled.warning("client-send-failed", "could not send to a client: %s", exc)


class ClientLink:
    """Owns the clients' ROUTER socket (through ``sender``); one instance per collector.

    ``relay`` forwards node requests to agents; ``builtin`` maps the request
    types the collector answers itself to the functions that answer them (given the params).
    With CURVE, ``keyring`` says who sent each frame (a viewer or an operator)
    and ``refusals`` records what a viewer may not do; without it every client
    is an operator known by its address.
    """

    def __init__(
        self,
        sender: ClientSender,
        core: Core,
        relay: Relay,
        builtin: dict[str, Callable[[dict[str, str]], Any]],
        keyring: KeyRing | None = None,
        refusals: Refusals | None = None,
    ) -> None:
        self.sender = sender
        self.keyring = keyring
        self.refusals = refusals
        self.sock = sender.sock
        self.host = core.host
        self.counters = core.counters
        self.config = core.config
        self.info = core.info
        self.relay = relay
        self.builtin = builtin
        self.throttled = ThrottledLog(log)
        self.pool = gevent.pool.Pool(REQUEST_WORKERS)
        self.subscriptions: dict[bytes, tuple[frozenset[str], float]] = {}
        self.latest: dict[str, bytes] = {}
        self._handlers: dict[int, Callable[[bytes, Envelope, Peer], None]] = {
            Kind.HELLO: self._on_hello,
            Kind.REQUEST: self._on_request,
            Kind.SUBSCRIBE: self._on_subscribe,
            Kind.HEARTBEAT: self._on_heartbeat,
            Kind.BYE: self._on_bye,
            Kind.CREDIT: self._on_credit,
        }
        self.streams: dict[tuple[bytes, int], Stream] = {}
        config = self.config
        self.limits = ClientLimits(config.client_request_rate, config.client_request_burst, config.client_max_streams)
        self.send = self._send = sender.send
        self._send_frame = sender.send_frame

    def run(self) -> None:
        """Serve clients forever; runs in its own greenlet."""
        while True:
            frames = self.sock.recv_multipart(copy=False)  # uncopied: the identity part carries the sender's key
            self.counters["client-frames"] += 1
            ident = frames[0].bytes
            if len(frames) != 2:
                self._bad("client-bad-frame", "client sent a message of %d parts; expected 1", len(frames) - 1)
                self._send(
                    ident,
                    envelope(
                        Kind.ERROR,
                        error_code="bad-frame",
                        error=f"a message of {len(frames) - 1} parts; clients send one",
                    ),
                )
                continue
            peer = self._peer(frames[0])
            if peer.role:
                self._on_frame(ident, frames[1].bytes, peer)
            else:
                self._refuse_frame(ident, frames[1].bytes, peer)

    def _peer(self, frame: zmq.Frame) -> Peer:
        """Who sent ``frame``: its key's entry with CURVE (no role when the key left the folders)."""
        address = _address(frame)
        if self.keyring is None:
            return plain_peer(address)
        key = str(frame.get("User-Id"))
        entry = self.keyring.client(key)
        if entry is None:
            return Peer("", safe_fingerprint(key), "", address)
        return Peer(entry.name, entry.fingerprint, entry.role, address)

    def _refuse_frame(self, ident: bytes, body: bytes, peer: Peer) -> None:
        """A frame from a key removed from the allow folders while connected: ERROR forbidden for each envelope."""
        words = "this client's key is no longer in the collector's viewers or operators allow folder"
        try:
            envelopes = unpack(body, self.config.max_frame_bytes)
        except ProtocolError:
            envelopes = [Envelope()]
        self._forbid(ident, envelopes[0], KEY_REMOVED, peer.fingerprint, words, peer.address)
        for env in envelopes[1:]:
            self._send(ident, _forbidden(env, words))

    def _forbid(self, ident: bytes, env: Envelope, reason: str, fingerprint: str, words: str, address: str) -> None:
        """Refuse an envelope for the sender's role or key: record the refusal, answer ERROR forbidden."""
        if self.refusals is not None:
            self.refusals.refuse(reason, fingerprint, f"client at {address}: {words}", address=address)
        self._send(ident, _forbidden(env, words))

    def _on_frame(self, ident: bytes, body: bytes, peer: Peer) -> None:
        try:
            envelopes = unpack(body, self.config.max_frame_bytes)
        except ProtocolError as exc:
            self._bad(f"client-{exc.code}", "dropped a frame from a client: %s", exc)
            self._send(ident, envelope(Kind.ERROR, error_code="bad-frame", error=str(exc)))
            return
        self.counters["client-envelopes"] += len(envelopes)
        for env in envelopes:
            handler = self._handlers.get(env.kind)
            if handler is None:
                self._bad("client-unknown-kind", "dropped an envelope of kind %s from a client", kind_name(env.kind))
                continue
            handler(ident, env, peer)

    def _bad(self, code: str, fmt: str, *args: Any) -> None:
        self.counters[code] += 1
        self.throttled.warning(code, fmt, *args)

    def _refuse(self, ident: bytes, env: Envelope, exc: OutOfRangeError) -> None:
        """Count, log and answer an envelope refused for a number out of its bounds."""
        self._bad("client-out-of-range", "refused a %s from a client: %s", kind_name(env.kind), exc)
        self._send(
            ident, envelope(Kind.ERROR, type=env.type, request_id=env.request_id, error_code=exc.code, error=str(exc))
        )

    # ------------------------------------------------------------ handlers

    def _on_hello(self, ident: bytes, env: Envelope, peer: Peer) -> None:
        self._send(ident, envelope(Kind.HELLO, type="CollectorInfo", payload=self.info()))

    def _on_heartbeat(self, ident: bytes, env: Envelope, peer: Peer) -> None:
        self._send(ident, envelope(Kind.HEARTBEAT))

    def _on_bye(self, ident: bytes, env: Envelope, peer: Peer) -> None:
        self.subscriptions.pop(ident, None)

    def _on_request(self, ident: bytes, env: Envelope, peer: Peer) -> None:
        self.counters["client-requests"] += 1
        try:
            credit_param(env.params)  # checked once here, for the collector's streams and the agents' alike
        except OutOfRangeError as exc:
            self._refuse(ident, env, exc)
            return
        for_a_node = self._for_a_node(env)
        if needs_operator(env.type, for_a_node) and not peer.operator:
            what = f"a request to node {env.params.get('node')}" if for_a_node else f"{env.type}"
            words = f"{what} needs an operator's key; {peer.name} is a {peer.role}"
            self._forbid(ident, env, OPERATOR_ONLY, peer.fingerprint, words, peer.address)
            return
        if not self._within_limits(ident, env, peer):
            return
        if for_a_node:
            self.counters["client-node-requests"] += 1
            self.relay.forward(ident, env, peer.name, peer.fingerprint)
            return
        self.pool.spawn(self._serve, ident, env.request_id, env.type, dict(env.params))

    def _within_limits(self, ident: bytes, env: Envelope, peer: Peer) -> bool:
        """Take a request token and, for a stream (a REQUEST with a credit), a stream slot; else answer busy."""
        limits = self.limits
        if not limits.admit(peer.fingerprint or ident):  # with CURVE one bucket per key, else per connection
            reason = f"this client is over its request rate of {limits.rate:g}/s (burst {limits.burst}); slow down"
            self._bad("client-throttled", "refused a %s request: %s", env.type, reason)
            self._busy(ident, env, reason)
            return False
        if "credit" in env.params and not limits.streams_left(self._open_streams(ident)):
            reason = f"this client already has {limits.max_streams} streams running; wait for one to end"
            self._bad("client-streams-refused", "refused a %s request: %s", env.type, reason)
            self._busy(ident, env, reason)
            return False
        return True

    def _open_streams(self, ident: bytes) -> int:
        own = sum(key[0] == ident for key in self.streams)
        return own + self.relay.open_streams(ident)

    def _busy(self, ident: bytes, env: Envelope, reason: str) -> None:
        """Answer ``ERROR busy`` at once: no work is queued for the request."""
        self._send(
            ident, envelope(Kind.ERROR, type=env.type, request_id=env.request_id, error_code=Code.BUSY, error=reason)
        )

    def _for_a_node(self, env: Envelope) -> bool:
        """True for a request no module or the collector answers, naming a node: the agent answers it."""
        claimed = env.type in self.builtin or env.type in self.host.request_routes
        return not claimed and bool(env.params.get("node"))

    def _on_credit(self, ident: bytes, env: Envelope, peer: Peer) -> None:
        try:
            granted = credit_grant(env.seq, env.params)
        except OutOfRangeError as exc:
            self._refuse(ident, env, exc)
            return
        stream = self.streams.get((ident, env.request_id))
        if stream is not None:
            stream.grant(granted)
        elif not self.relay.credit(ident, env):
            self.counters["client-stale-credit"] += 1

    def _serve(self, ident: bytes, request_id: int, type: str, params: dict[str, str]) -> None:
        try:
            value = self._answer(type, params, request_id)
            if isinstance(value, Iterator):
                self._stream(ident, request_id, type, value, params)
                return
            # written straight as a frame: an answer of megabytes (a week of history) is copied once
            frame = envelope_frame(Kind.RESPONSE, type=type, payload=value, request_id=request_id)
        except RequestError as exc:
            frame = pack_one(
                envelope(Kind.ERROR, type=type, request_id=request_id, error_code=exc.code, error=exc.reason)
            )
        except (TypeError, ValueError, OverflowError) as exc:  # the module returned something that cannot travel
            words = f"answer to {type} cannot be sent: {exc}"
            frame = pack_one(
                envelope(Kind.ERROR, type=type, request_id=request_id, error_code="module-error", error=words)
            )
        self._send_frame(ident, frame)

    def _stream(
        self, ident: bytes, request_id: int, type: str, chunks: Iterator[bytes], params: dict[str, str]
    ) -> None:
        """Send a module's answer as CHUNKs (messages/stream.py), never more than the client's credit ahead.

        The last piece itself carries ``last`` (as agents do): a small streamed answer is one CHUNK.
        """
        stream = Stream(credit_param(params))
        self.streams[(ident, request_id)] = stream
        try:
            for piece in chunk_stream(chunks, digest=digest_param(params)):
                if not self._chunk(ident, stream, type, request_id, piece):
                    return
        except Exception as exc:  # the module's iterator failed halfway: tell the client, keep serving
            self._send(
                ident,
                envelope(
                    Kind.ERROR,
                    type=type,
                    request_id=request_id,
                    error_code="module-error",
                    error=f"streaming {type} failed: {type_name(exc)}: {exc}",
                ),
            )
        finally:
            if self.streams.get((ident, request_id)) is stream:  # a reused request id may own the key by now
                del self.streams[(ident, request_id)]
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    def _chunk(self, ident: bytes, stream: Stream, type: str, request_id: int, piece: Piece) -> bool:
        """Send ``piece`` as a CHUNK once credit allows; False when the client cancelled or stopped granting credit."""
        if not stream.take():
            return False
        self._send(
            ident,
            envelope(
                Kind.CHUNK,
                type=type,
                payload=piece.data,
                request_id=request_id,
                seq=piece.seq,
                last=piece.last,
                params=piece.params,
            ),
        )
        return True

    def _answer(self, type: str, params: dict[str, str], request_id: int) -> Any:
        builtin = self.builtin.get(type)
        if builtin is not None:
            return builtin(params)
        return self.host.answer(type, params, request_id)

    def _on_subscribe(self, ident: bytes, env: Envelope, peer: Peer) -> None:
        """Take or renew a lease and acknowledge it; an invalid SUBSCRIBE gets ERROR and changes nothing."""
        asked = list(dict.fromkeys(t.strip() for t in env.params.get("types", "").split(",") if t.strip()))
        refusal = self._subscribe_refusal(env, asked)
        if refusal is not None:
            self.counters["client-subscribe-refused"] += 1
            self._send(ident, refusal)
            return
        types = frozenset(asked)
        fresh = ident not in self.subscriptions or self.subscriptions[ident][0] != types
        lease = self.config.subscription_lease
        self.subscriptions[ident] = (types, time.monotonic() + lease)
        self._send(
            ident,
            envelope(
                Kind.SUBSCRIBE, request_id=env.request_id, params={"types": ",".join(asked), "lease": f"{lease:g}"}
            ),
        )
        if fresh:
            for type_name, frame in list(self.latest.items()):
                if _wants(types, type_name):
                    self._send_frame(ident, frame)

    def _subscribe_refusal(self, env: Envelope, asked: list[str]) -> Envelope | None:
        """The ERROR answering an invalid SUBSCRIBE (no types, or a type no module pushes), or None."""
        if not asked:
            return _subscribe_error(
                env,
                "bad-request",
                'SUBSCRIBE needs params["types"]: update types separated by commas, or "*" for every type',
            )
        known = self.host.update_types()
        unknown = [t for t in asked if t != "*" and t not in known]
        if not unknown:
            return None
        types = f"type{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}"
        return _subscribe_error(
            env,
            "unknown-type",
            f"no module pushes update {types} (known: {', '.join(known) or 'none'}; '*' for every type)",
            unknown=",".join(unknown),
        )

    # ------------------------------------------------------------ updates

    def publish(self, type_name: str, payload: Any) -> None:
        """Push one update to every client subscribed to ``type_name`` and remember it for newcomers."""
        frame = pack_one(envelope(Kind.UPDATE, type=type_name, payload=payload))
        self.latest[type_name] = frame
        now = time.monotonic()
        for ident, (types, expiry) in list(self.subscriptions.items()):
            if expiry < now:
                del self.subscriptions[ident]
            elif _wants(types, type_name):
                self._send_frame(ident, frame)
        self.counters["updates"] += 1


class Stream:
    """Credit of one streamed answer (a :class:`~messages.stream.CreditAccount`) and the Event its greenlet waits on."""

    def __init__(self, credit: int, stall_timeout: float = STALL_TIMEOUT) -> None:
        self.account = CreditAccount(credit)
        self.stall_timeout = stall_timeout
        self.event = gevent.event.Event()

    def grant(self, count: int) -> None:
        """Take a checked CREDIT: ``count`` more chunks (never beyond MAX_CREDIT in all), or 0 to cancel."""
        self.account.grant(count)
        self.event.set()

    def take(self) -> bool:
        """Use one credit, waiting up to ``stall_timeout`` for it; False when cancelled or stalled."""
        while (taken := self.account.try_take()) is Take.WAIT:
            self.event.clear()  # greenlets switch only in wait(): no grant can slip in between
            if not self.event.wait(self.stall_timeout):
                return False
        return taken is Take.OK


def _subscribe_error(env: Envelope, code: str, reason: str, **params: str) -> Envelope:
    """ERROR answering a SUBSCRIBE: its request_id and the types it asked for come back."""
    return envelope(
        Kind.ERROR,
        request_id=env.request_id,
        error_code=code,
        error=reason,
        params={"types": env.params.get("types", ""), **params},
    )


def _forbidden(env: Envelope, words: str) -> Envelope:
    """ERROR forbidden answering ``env`` (its type and request id come back)."""
    return envelope(Kind.ERROR, type=env.type, request_id=env.request_id, error_code=Code.FORBIDDEN, error=words)


def _address(frame: zmq.Frame) -> str:
    """The sending client's address (``Peer-Address``), or "" where the transport has none."""
    try:
        return str(frame.get("Peer-Address"))
    except zmq.ZMQError:
        return ""


def _wants(types: frozenset[str], type_name: str) -> bool:
    return type_name in types or "*" in types
