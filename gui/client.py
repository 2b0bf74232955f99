"""The labscope client library: one DEALER conversation with a collector.

:class:`Client` speaks the "Client conversation" of docs/protocol.md over
plain (non-gevent) pyzmq, so the Qt GUI can run it in a worker thread and the
terminal commands can call it directly::

    with Client("tcp://collector:5556") as client:
        info = client.hello(timeout=5)
        nodes = client.request("NodeList").payload
        client.subscribe(["NodeList", "SystemStatsSummary"])
        while (update := client.next_update(timeout=1.0)) is not None:
            ...

A Client is synchronous and not thread-safe: one thread owns it. Updates that
arrive while a request waits are buffered (oldest dropped beyond
``MAX_BUFFERED_UPDATES``) and handed out by :meth:`Client.next_update`; the
subscription lease is renewed and heartbeats are sent while the client waits.

With ``keys`` (:func:`messages.keys.client_keys`) the client speaks CURVE. Either
way it watches its handshake (:class:`messages.handshake.HandshakeWatch`) while it
waits for an answer: a collector that refuses the key, wants CURVE from a plain
client or does not speak it to a CURVE one makes the wait raise
:class:`~messages.errors.AuthRefused` at once instead of timing out.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import zmq

from messages import CollectorInfo, Envelope, Kind
from messages.codec import decode_payload, envelope, kind_name, pack_one, unpack
from messages.errors import CHECKSUM, AuthRefused, ClientTimeout, ProtocolError, RequestFailed, SubscriptionRefused
from messages.handshake import HandshakeWatch
from messages.keys import ClientKeys
from messages.options import check_endpoint
from messages.stream import SHA256, Digest, UnknownDigestError, request_digest, two_part_header

__all__ = ["AuthRefused", "Client", "ClientTimeout", "RequestFailed", "Response", "SubscriptionRefused", "Update"]

log = logging.getLogger(__name__)

DEFAULT_LEASE = 10.0  # seconds; used until the collector's HELLO tells us its own
DEFAULT_HEARTBEAT = 1.0
MAX_BUFFERED_UPDATES = 10_000
# Chunks a stream may have in flight (the protocol's default is 8, its most 64): at most 32 MiB per
# stream in each process, and a pipeline deep enough that the agent, the collector and the client
# rarely wait for each other on two shared cores (8 -> 32: stream_ratio 0.46 -> 0.52, BENCHMARKS.md).
STREAM_CREDIT = 32
# A stream's consumed chunks are granted back in this many CREDITs per window (32 -> one CREDIT per 8
# chunks): each CREDIT crosses the collector to the agent, so fewer of them leave more CPU to the bytes.
CREDIT_GRANTS = 4
# Bounded so that a flood of updates cannot starve the check for a response.
_MAX_FRAMES_PER_DRAIN = 1000


@dataclass(frozen=True, slots=True)
class Response:
    """A RESPONSE: ``payload`` decoded, ``data`` the payload bytes as sent."""

    type: str
    payload: Any
    data: bytes
    encoding: int
    schema: str

    @classmethod
    def from_envelope(cls, env: Envelope) -> Response:
        """Decode a RESPONSE envelope; raises ProtocolError when the payload does not decode."""
        data = env.payload  # each read of a bytes field is a copy: a week of history is megabytes
        return cls(env.type, decode_payload(data, env.encoding, env.schema), data, env.encoding, env.schema)


@dataclass(frozen=True, slots=True)
class Update:
    """An UPDATE pushed by the collector; ``time`` is the collector's clock (epoch s)."""

    type: str
    time: float
    payload: Any
    data: bytes
    encoding: int
    schema: str

    @classmethod
    def from_envelope(cls, env: Envelope) -> Update:
        """Decode an UPDATE envelope; raises ProtocolError when the payload does not decode."""
        data = env.payload  # read once: each read of a bytes field is a copy
        return cls(env.type, env.time, decode_payload(data, env.encoding, env.schema), data, env.encoding, env.schema)


class Client:
    """One connection to a collector's clients endpoint (a DEALER, linger 0).

    ``context`` defaults to the process-wide ``zmq.Context.instance()``; the
    client never terminates a context, only closes its socket. ``keys`` makes
    it a CURVE client (applied before it connects).
    Raises ConfigError for a malformed endpoint.
    """

    def __init__(
        self,
        endpoint: str,
        *,
        context: zmq.Context[zmq.Socket[bytes]] | None = None,
        keys: ClientKeys | None = None,
    ) -> None:
        self.endpoint = check_endpoint(endpoint)
        self.info: CollectorInfo | None = None
        self.last_heard: float | None = None  # epoch seconds of the last frame received
        self._socket = (context or zmq.Context.instance()).socket(zmq.DEALER)
        self._socket.setsockopt(zmq.LINGER, 0)
        if keys is not None:
            keys.apply(self._socket)
        self._handshake = HandshakeWatch(self._socket, curve=keys is not None)
        self._poller = zmq.Poller()
        self._poller.register(self._socket, zmq.POLLIN)
        if self._handshake.monitor is not None:
            self._poller.register(self._handshake.monitor, zmq.POLLIN)
        self._socket.connect(endpoint)
        self._ids = itertools.count(1)
        self._updates: deque[Update] = deque(maxlen=MAX_BUFFERED_UPDATES)
        self._replies: deque[tuple[Envelope, memoryview | None]] = deque()  # with a two-part CHUNK's bytes
        self._types: tuple[str, ...] = ()
        self._subscription_id = 0  # request_id of the SUBSCRIBEs for _types; answers echo it
        self._accepted: tuple[tuple[str, ...], int] = ((), 0)  # last set the collector acknowledged, and its id
        self._refused: SubscriptionRefused | None = None
        self._ack_lease: float | None = None
        self._subscribed_at = 0.0
        self._heard_at: float | None = None  # monotonic twin of last_heard
        self._heartbeat_at = time.monotonic()  # first heartbeat only after a quiet interval

    # ------------------------------------------------------------ public API

    def hello(self, timeout: float = 5.0) -> CollectorInfo:
        """Say HELLO and return the collector's CollectorInfo; raises ClientTimeout."""
        self._send(envelope(Kind.HELLO))
        if self._wait(lambda env: env.kind == Kind.HELLO, timeout) is None:
            raise ClientTimeout(self.endpoint, timeout)
        if self.info is None:
            raise ProtocolError("bad-payload", f"{self.endpoint} answered HELLO without a CollectorInfo")
        return self.info

    def request(self, type: str, params: dict[str, str] | None = None, timeout: float = 10.0) -> Response:
        """Send REQUEST ``type`` with ``params`` and wait for its answer.

        Raises RequestFailed when the collector answers ERROR, ClientTimeout
        when nothing answers within ``timeout`` s, ProtocolError when the
        payload does not decode.
        """
        request_id = next(self._ids)
        self._send(envelope(Kind.REQUEST, type, request_id=request_id, params=params or {}))
        reply = self._wait(lambda env: _answers(env, request_id), timeout)
        if reply is None:
            raise ClientTimeout(self.endpoint, timeout)
        answer = reply[0]
        if answer.kind == Kind.ERROR:
            raise RequestFailed(answer.error_code or "error", answer.error or "(no reason given)", type)
        return Response.from_envelope(answer)

    def stream(
        self, type: str, params: dict[str, str] | None = None, credit: int = STREAM_CREDIT, timeout: float = 30.0
    ) -> Iterator[bytes]:
        """Send REQUEST ``type`` and yield the answer's bytes as they arrive.

        A streamed answer (CHUNKs) is yielded chunk by chunk, granting the
        chunks consumed back in CREDITs of ``credit // 4`` (of 1 below a credit
        of 8), and checked against the size and digest of
        its final chunk (the REQUEST asks for XXH3-128 when xxhash is
        installed; a sender without it answers with SHA-256, and the first
        chunk says which); a one-piece RESPONSE is yielded whole. Raises
        RequestFailed (ERROR answer, or ``checksum`` when the bytes do not
        match) and ClientTimeout (nothing for ``timeout`` s). Closing the
        generator early cancels the stream.
        """
        views = self.stream_views(type, params, credit, timeout)
        with contextlib.closing(views):
            for piece in views:
                yield piece if isinstance(piece, bytes) else bytes(piece)

    def stream_views(
        self, type: str, params: dict[str, str] | None = None, credit: int = STREAM_CREDIT, timeout: float = 30.0
    ) -> Generator[bytes | memoryview, None, None]:
        """Like :meth:`stream`, without copying: a two-part chunk comes as a memoryview of the message.

        For consumers that only write or hash the bytes (a file, a socket): on
        a 2-core machine the saved copy is about a tenth of a stream's CPU.
        """
        request_id = next(self._ids)
        asked = {**_digest_wanted(), **(params or {}), "credit": str(credit)}
        self._send(envelope(Kind.REQUEST, type, request_id=request_id, params=asked))
        receipt = _Receipt(type)
        try:
            yield from self._chunks(request_id, receipt, timeout, max(1, credit // CREDIT_GRANTS))
        finally:
            if not receipt.finished:
                self._send(envelope(Kind.CREDIT, request_id=request_id, params={"cancel": "1"}))

    def _chunks(
        self, request_id: int, receipt: _Receipt, timeout: float, grant: int = 1
    ) -> Iterator[bytes | memoryview]:
        """The stream's pieces; one CREDIT for every ``grant`` chunks consumed (none after the final one)."""
        owed = 0
        while not receipt.finished:
            reply = self._wait(lambda e: e.request_id == request_id and e.kind in _STREAM_KINDS, timeout)
            if reply is None:
                raise ClientTimeout(self.endpoint, timeout)
            env, bulk = reply
            data = receipt.take(env, bulk)
            if data:
                yield data
            if not receipt.finished and env.kind == Kind.CHUNK:
                owed += 1
                if owed >= grant:
                    self._send(envelope(Kind.CREDIT, request_id=request_id, seq=owed))
                    owed = 0

    def subscribe(self, types: Iterable[str]) -> None:
        """Take a lease on update ``types`` (``*`` = all), replacing the previous set.

        The lease is renewed every third of it while :meth:`next_update` (or a
        request) waits; an empty ``types`` unsubscribes (a BYE ends the lease at
        once). When the collector refuses the set (a type no module pushes),
        :meth:`next_update` raises :class:`SubscriptionRefused` once and the
        client goes back to renewing the last set the collector accepted.
        """
        wanted = tuple(dict.fromkeys(t.strip() for t in types if t.strip()))
        if not wanted:
            if self._types:
                self._send(envelope(Kind.BYE))
            self._types, self._accepted = (), ((), 0)
            return
        if wanted != self._types:
            self._types, self._subscription_id = wanted, next(self._ids)
        if self.info is None:
            # Learn the collector's lease without blocking; its answer is picked up while waiting.
            self._send(envelope(Kind.HELLO))
        self._renew()

    def next_update(self, timeout: float) -> Update | None:
        """The next buffered or arriving UPDATE, or None after ``timeout`` s (0 = only check).

        Raises SubscriptionRefused (once) when the collector refused the latest :meth:`subscribe`.
        """
        deadline = time.monotonic() + timeout
        while True:
            self._raise_refusal()
            self._maintain()
            if self._updates:
                return self._updates.popleft()
            remaining = deadline - time.monotonic()
            self._drain(max(0.0, min(remaining, self._slice())))
            self._discard_replies()
            self._raise_refusal()
            if self._updates:
                return self._updates.popleft()
            if remaining <= 0:
                return None

    def heartbeat(self) -> None:
        """Send a HEARTBEAT; the collector's answer refreshes :attr:`last_heard` while waiting."""
        self._heartbeat_at = time.monotonic()
        self._send(envelope(Kind.HEARTBEAT))

    def connected(self, within: float | None = None) -> bool:
        """Whether the collector was heard from in the last ``within`` s (default: 3 heartbeats)."""
        if self._heard_at is None:
            return False
        limit = 3 * self._heartbeat_interval() if within is None else within
        return time.monotonic() - self._heard_at <= limit

    @property
    def subscriptions(self) -> tuple[str, ...]:
        """The update types currently subscribed to."""
        return self._types

    @property
    def accepted(self) -> tuple[str, ...]:
        """The update types the collector last acknowledged (empty before its first acknowledgement)."""
        return self._accepted[0]

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return bool(self._socket.closed)

    @property
    def refusal(self) -> str | None:
        """Why the collector refused this client's handshake (as last seen while waiting), or None."""
        return self._handshake.refusal

    def close(self) -> None:
        """Close the socket at once (linger 0); safe to call twice."""
        self._handshake.close()
        if not self._socket.closed:
            self._socket.close(linger=0)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ------------------------------------------------------------- internals

    def _send(self, env: Envelope) -> None:
        try:
            self._socket.send(pack_one(env), zmq.NOBLOCK)
        except zmq.Again:
            # The queue to the collector is full (it is gone or stuck): the caller's wait times out.
            log.debug("send queue to %s is full; dropped a %s", self.endpoint, kind_name(env.kind))

    def _wait(self, match: Callable[[Envelope], bool], timeout: float) -> tuple[Envelope, memoryview | None] | None:
        deadline = time.monotonic() + timeout
        while True:
            found = self._take_reply(match)
            if found is not None:
                return found
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self._maintain()
            self._drain(min(remaining, self._slice()))

    def _take_reply(self, match: Callable[[Envelope], bool]) -> tuple[Envelope, memoryview | None] | None:
        while self._replies:
            reply = self._replies.popleft()
            env = reply[0]
            if match(env):
                return reply
            log.debug("ignored a stale %s (request %s) from %s", kind_name(env.kind), env.request_id, self.endpoint)
        return None

    def _discard_replies(self) -> None:
        # No request is in flight while waiting for updates: any answer is a late one.
        while self._replies:
            env = self._replies.popleft()[0]
            log.debug("ignored a late %s (request %s)", kind_name(env.kind), env.request_id)

    def _drain(self, timeout: float) -> None:
        if not self._poll(timeout):
            return
        for _ in range(_MAX_FRAMES_PER_DRAIN):
            try:
                frame = self._socket.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            if self._socket.get(zmq.RCVMORE):
                self._accept_parts(frame)
            else:
                self._accept(frame)

    def _poll(self, timeout: float) -> bool:
        """Wait for a frame; raises AuthRefused as soon as the handshake is refused.

        Until the first handshake succeeds the monitor is polled beside the
        socket (a refusal ends the wait at once); afterwards only the socket,
        with a look at the monitor when a poll ends empty: an accepted client
        costs what a plain one did.
        """
        if self._handshake.succeeded:
            if self._socket.poll(int(timeout * 1000), zmq.POLLIN):
                return True
            ready = False
        else:
            ready = self._socket in dict(self._poller.poll(int(timeout * 1000)))
        refusal = self._handshake.check()
        if refusal is not None and not ready:  # frames already here are read first
            raise AuthRefused(self.endpoint, refusal)
        return ready

    def _accept_parts(self, frame: bytes) -> None:
        """A two-part message: one CHUNK header, then the chunk's bytes (docs/protocol.md)."""
        bulk = self._socket.recv(zmq.NOBLOCK, copy=False).buffer  # the rest of an atomic message is already here
        if self._socket.get(zmq.RCVMORE):
            parts = 2
            while self._socket.get(zmq.RCVMORE):
                self._socket.recv(zmq.NOBLOCK)
                parts += 1
            log.warning("dropped a message of %d parts from %s", parts + 1, self.endpoint)
            return
        header = two_part_header(frame)
        if header is None:
            log.warning("dropped a two-part message from %s that is not one CHUNK header", self.endpoint)
            return
        self._heard()
        self._replies.append((header, bulk))

    def _accept(self, frame: bytes) -> None:
        try:
            envelopes = unpack(frame)
        except ProtocolError as exc:
            log.warning("dropped a bad frame from %s: %s", self.endpoint, exc)
            return
        self._heard()
        for env in envelopes:
            self._route(env)

    def _heard(self) -> None:
        self._heard_at = time.monotonic()
        self.last_heard = time.time()

    def _route(self, env: Envelope) -> None:
        if env.request_id and env.request_id == self._subscription_id and env.kind in (Kind.SUBSCRIBE, Kind.ERROR):
            self._subscription_answer(env)
        elif env.kind == Kind.UPDATE:
            self._buffer_update(env)
        elif env.kind == Kind.HELLO:
            self._learn(env)
            self._replies.append((env, None))
        elif env.kind in (Kind.RESPONSE, Kind.ERROR, Kind.CHUNK):
            self._replies.append((env, None))
        elif env.kind != Kind.HEARTBEAT:
            log.debug("ignored a %s from %s", kind_name(env.kind), self.endpoint)

    def _subscription_answer(self, env: Envelope) -> None:
        """The collector's acknowledgement of our SUBSCRIBE, or its ERROR (then renew the last accepted set)."""
        if env.kind == Kind.SUBSCRIBE:
            self._accepted = (self._types, self._subscription_id)
            with contextlib.suppress(ValueError):
                self._ack_lease = float(env.params.get("lease", ""))
            return
        unknown = tuple(t for t in env.params.get("unknown", "").split(",") if t)
        self._refused = SubscriptionRefused(
            env.error_code or "error", env.error or "(no reason given)", self._types, unknown
        )
        self._types, self._subscription_id = self._accepted
        log.debug("%s refused the subscription: %s", self.endpoint, self._refused)

    def _raise_refusal(self) -> None:
        refused, self._refused = self._refused, None
        if refused is not None:
            raise refused

    def _buffer_update(self, env: Envelope) -> None:
        try:
            update = Update.from_envelope(env)
        except ProtocolError as exc:
            log.warning("dropped an update of type %s from %s: %s", env.type, self.endpoint, exc)
            return
        if len(self._updates) == self._updates.maxlen:
            log.debug("update buffer full; dropped the oldest update")
        self._updates.append(update)

    def _learn(self, env: Envelope) -> None:
        try:
            info = decode_payload(env.payload, env.encoding, env.schema)
        except ProtocolError as exc:
            log.warning("bad CollectorInfo from %s: %s", self.endpoint, exc)
            return
        if isinstance(info, CollectorInfo):
            self.info = info

    def _maintain(self) -> None:
        now = time.monotonic()
        if self._types and now - self._subscribed_at >= self._lease() / 3:
            self._renew()
        interval = self._heartbeat_interval()
        quiet = self._heard_at is None or now - self._heard_at >= interval
        if quiet and now - self._heartbeat_at >= interval:
            self.heartbeat()

    def _renew(self) -> None:
        self._subscribed_at = time.monotonic()
        self._send(envelope(Kind.SUBSCRIBE, request_id=self._subscription_id, params={"types": ",".join(self._types)}))

    def _slice(self) -> float:
        """How long one poll may block before a renewal or heartbeat could be due."""
        step = self._heartbeat_interval()
        if self._types:
            step = min(step, self._subscribed_at + self._lease() / 3 - time.monotonic())
        return max(0.005, step)

    def _lease(self) -> float:
        if self.info is not None and self.info.subscription_lease > 0:
            return float(self.info.subscription_lease)
        return self._ack_lease if self._ack_lease and self._ack_lease > 0 else DEFAULT_LEASE

    def _heartbeat_interval(self) -> float:
        if self.info is not None and self.info.heartbeat_interval > 0:
            return float(self.info.heartbeat_interval)
        return DEFAULT_HEARTBEAT


_STREAM_KINDS = (Kind.RESPONSE, Kind.ERROR, Kind.CHUNK)


def _digest_wanted() -> dict[str, str]:
    """A stream REQUEST's ``digest`` param: the fastest this client checks (none needed for SHA-256, the default)."""
    name = request_digest()
    return {} if name == SHA256 else {"digest": name}


class _Receipt:
    """What a stream delivered so far: size and digest (a :class:`~messages.stream.Digest`), whether it is complete."""

    def __init__(self, type: str) -> None:
        self.type = type
        self.digest = Digest()  # replaced by the one the first chunk announces
        self.finished = False

    def take(self, env: Envelope, bulk: memoryview | None = None) -> bytes | memoryview:
        """The envelope's bytes (``bulk``: a two-part CHUNK's); raises RequestFailed on ERROR or a bad end."""
        if env.kind == Kind.ERROR:
            self.finished = True
            raise RequestFailed(env.error_code or "error", env.error or "(no reason given)", self.type)
        if env.kind == Kind.RESPONSE:
            self.finished = True
            return bytes(env.payload)
        if env.seq == 0:
            self.digest = self._announced(env)
        # Read the payload once: each access to a bytes field makes a new copy.
        data: bytes | memoryview = env.payload if bulk is None else bulk
        self.digest.update(data)
        if env.last:
            self.finished = True
            failure = self.digest.check(env.params)
            if failure is not None:
                raise RequestFailed(CHECKSUM, failure, self.type)
        return data

    def _announced(self, env: Envelope) -> Digest:
        """The digest the first chunk names; RequestFailed ``checksum`` when this process cannot compute it."""
        try:
            return Digest.announced(env.params)
        except UnknownDigestError as exc:
            raise RequestFailed(CHECKSUM, str(exc), self.type) from None


def _answers(env: Envelope, request_id: int) -> bool:
    return env.request_id == request_id and env.kind in (Kind.RESPONSE, Kind.ERROR)
