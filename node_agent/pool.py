"""Node requests in a bounded worker pool, answered through the agent's one DEALER.

The agent's main loop owns the socket to the collector; handlers run on
worker threads so that a slow request never delays a report. Between them:

- main loop -> workers: a bounded queue of requests (full: ``ERROR busy``
  at once), and per request a :class:`Credit` the main loop grants into when
  the collector relays a CREDIT.
- workers -> main loop: serialized frames in a queue, plus one byte on a
  socket pair that the main loop polls beside the DEALER, so it wakes at once.

A streaming worker blocks on its :class:`Credit` when it has used it up, so
a stream of any size holds at most ``credit`` chunks in the agent. Worker
threads are daemons: a handler stuck for good cannot keep the agent from
stopping. docs/protocol.md, "Requests to a node" and "Streamed responses
and flow control", is the contract.
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time
from collections.abc import Iterable
from typing import Any

from messages import Envelope, Kind
from messages.codec import envelope, pack_one
from messages.limits import OutOfRangeError, credit_grant, credit_param
from messages.stream import STALL_TIMEOUT, TWO_PART_MIN, CreditAccount, Piece, Take, chunk_stream, digest_param
from node_agent.addons import Handler, NodeRequest, RequestError

__all__ = ["Credit", "Exchange", "RequestPool", "Outgoing", "TwoPart"]

log = logging.getLogger(__name__)

# A one-piece answer must fit well inside the collector's 16 MiB frame limit; larger ones stream.
MAX_RESPONSE = 8 * 1024 * 1024
REQUEST_TIMEOUT = 30.0
WORKERS = 4
QUEUE_LIMIT = 16
INF = float("inf")


class TwoPart(bytes):
    """A CHUNK header frame whose raw bytes leave as a second message part (``bulk``).

    A bytes subclass so that it travels through the agent's answer queue (typed
    ``bytes``) unchanged; node_agent/link.py sends it as ``[header, bulk]``
    without copying the bulk into a protobuf.
    """

    bulk: bytes

    def __new__(cls, header: bytes, bulk: bytes) -> TwoPart:
        frame = super().__new__(cls, header)
        frame.bulk = bulk
        return frame


class Outgoing:
    """Frames from worker threads to the main loop, and the socket that wakes it."""

    def __init__(self) -> None:
        self._frames: queue.SimpleQueue[bytes] = queue.SimpleQueue()
        self.wake, self._writer = socket.socketpair()
        self.wake.setblocking(False)
        self._writer.setblocking(False)

    def put(self, frame: bytes) -> None:
        """Queue a frame (any thread) and wake the main loop."""
        self._frames.put(frame)
        try:
            self._writer.send(b"\0")
        except (BlockingIOError, OSError):
            pass  # a full pair already wakes the loop; a closed one means we are stopping

    def take(self) -> list[bytes]:
        """Every frame queued so far, oldest first (main loop)."""
        frames = []
        while True:
            try:
                frames.append(self._frames.get_nowait())
            except queue.Empty:
                return frames

    def close(self) -> None:
        """Close the socket pair."""
        self.wake.close()
        self._writer.close()


class Credit:
    """How many more CHUNKs one stream may send; the worker waits here, the main loop grants.

    The counting is a :class:`~messages.stream.CreditAccount`; this adds only the threads' Condition.
    """

    def __init__(self, credit: int) -> None:
        self._cond = threading.Condition()
        self._account = CreditAccount(credit)

    @property
    def credit(self) -> int:
        """Chunks that may go before the next CREDIT."""
        return self._account.credit

    @property
    def cancelled(self) -> bool:
        """True once the stream was cancelled."""
        return self._account.cancelled

    def grant(self, count: int) -> None:
        """``count`` more chunks may go (a checked CREDIT), never more than MAX_CREDIT in all; 0 cancels."""
        with self._cond:
            self._account.grant(count)
            self._cond.notify_all()

    def cancel(self) -> None:
        """Stop the stream: a waiting worker wakes up and gives up."""
        with self._cond:
            self._account.cancel()
            self._cond.notify_all()

    def take(self, timeout: float) -> Take:
        """Use one credit: ``ok``, ``cancelled``, or ``stalled`` after ``timeout`` s without any."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._account.ready, timeout):
                return Take.STALLED
            return self._account.try_take()


class Exchange:
    """One node request in progress: the :class:`~node_agent.addons.Responder` its handler gets."""

    def __init__(
        self,
        env: Envelope,
        node: str,
        outgoing: Outgoing,
        timeout: float,
        stall_timeout: float = STALL_TIMEOUT,
        two_part: bool = False,
    ) -> None:
        self.request_id = env.request_id
        self.type = env.type
        self.params = dict(env.params)
        self.node = node
        self.credit = Credit(credit_param(self.params))  # RequestPool.submit refused it if out of range
        self.deadline = time.monotonic() + timeout
        self.stall_timeout = stall_timeout
        self.two_part = two_part  # large CHUNKs as [header, bytes] (docs/protocol.md)
        self.answered = False  # one of the respond* calls (or the main loop's timeout) has claimed it
        self._closed = False
        self._lock = threading.Lock()
        self._outgoing = outgoing

    @property
    def cancelled(self) -> bool:
        """True once the requester cancelled, the request timed out or the agent lost its collector."""
        return self.credit.cancelled

    # -------------------------------------------------------------- responder

    def respond(self, data: Any, params: dict[str, str] | None = None) -> None:
        """Answer with one RESPONSE (``params`` ride along, e.g. a report type)."""
        try:
            env = self._envelope(Kind.RESPONSE, data, params=params or {})
        except (TypeError, ValueError) as exc:
            self.respond_error("handler-error", f"{self.type}: cannot send the answer: {exc}")
            return
        if len(env.payload) > MAX_RESPONSE:
            self.respond_error(
                "handler-error",
                f"{self.type}: an answer of {len(env.payload)} bytes is too large "
                f"for one RESPONSE (at most {MAX_RESPONSE}); stream it",
            )
            return
        if self._claim():
            self._put(env)

    def respond_error(self, code: str, reason: str) -> None:
        """Answer with an ERROR."""
        if self._claim():
            self._put(self._error(code, reason))

    def respond_streamed(self, chunks: Iterable[bytes], size: int | None = None) -> bool:
        """Send ``chunks`` as CHUNKs under the requester's credit; see Responder.respond_streamed."""
        if not self._claim():
            return False
        try:
            for piece in chunk_stream(chunks, size, digest=digest_param(self.params)):
                if not self._chunk(piece):
                    return False
        except Exception as exc:
            log.error(
                "%s request %d failed while streaming: %s: %s",
                self.type,
                self.request_id,
                type(exc).__name__,
                exc,
                exc_info=log.isEnabledFor(logging.DEBUG),
            )
            self._put(self._error("handler-error", f"{self.type} failed while streaming: {type(exc).__name__}: {exc}"))
            return False
        return True

    # --------------------------------------------------------------- internals

    def _chunk(self, piece: Piece) -> bool:
        state = self.credit.take(self.stall_timeout)
        if state is Take.STALLED:
            self._put(self._error("timeout", f"the requester granted no credit for {self.stall_timeout:g} s"))
        if state is not Take.OK:
            return False
        seq, data, last, params = piece
        if not self.two_part or len(data) < TWO_PART_MIN:
            return self._put(self._envelope(Kind.CHUNK, data, seq=seq, last=last, params=params))
        # The bytes ride as a second part: no copy into the envelope, none out of it at the collector.
        header = pack_one(self._envelope(Kind.CHUNK, b"", seq=seq, last=last, params=params))
        return self._put_frame(TwoPart(header, data))

    def _envelope(self, kind: int, data: Any, **fields: Any) -> Envelope:
        return envelope(kind, self.type, data, node=self.node, request_id=self.request_id, **fields)

    def _error(self, code: str, reason: str) -> Envelope:
        return envelope(
            Kind.ERROR, self.type, node=self.node, request_id=self.request_id, error_code=code, error=reason
        )

    def _claim(self) -> bool:
        with self._lock:
            if self.answered or self._closed:
                return False
            self.answered = True
            return True

    def _put(self, env: Envelope) -> bool:
        return self._put_frame(pack_one(env))

    def _put_frame(self, frame: bytes) -> bool:
        with self._lock:
            if self._closed:
                return False
            self._outgoing.put(frame)
            return True

    def expire(self) -> bool:
        """Answer ``timeout`` if the handler has not answered yet (main loop); True when it did."""
        if not self._claim():
            return False
        self._put(self._error("timeout", f"the {self.type} handler did not answer in time"))
        self.credit.cancel()
        return True

    def close(self) -> None:
        """Nothing more leaves for this request (the collector that asked is gone)."""
        with self._lock:
            self._closed = True
        self.credit.cancel()


class RequestPool:
    """Node requests by the collector's request id, run on a few daemon worker threads.

    ``two_part``: CHUNKs of TWO_PART_MIN bytes or more leave as ``[header, bytes]``
    (:class:`TwoPart` frames; docs/protocol.md), which the collector relays without copying.
    """

    def __init__(
        self,
        node: str,
        handlers: dict[str, Handler],
        workers: int = WORKERS,
        queue_limit: int = QUEUE_LIMIT,
        timeout: float = REQUEST_TIMEOUT,
        two_part: bool = False,
    ) -> None:
        self.node = node
        self.two_part = two_part
        self.handlers = handlers
        self.timeout = timeout
        self.outgoing = Outgoing()
        self.counters = {
            "requests": 0,
            "busy": 0,
            "unknown-type": 0,
            "handler-errors": 0,
            "timeouts": 0,
            "out-of-range": 0,
        }
        self._active: dict[int, Exchange] = {}
        self._lock = threading.Lock()
        self._queue: queue.Queue[Exchange | None] = queue.Queue(maxsize=queue_limit)
        self._threads = [
            threading.Thread(target=self._work, name=f"labscope-request-{i}", daemon=True) for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def types(self) -> list[str]:
        """The request types this agent answers, for NodeInfo.request_types."""
        return sorted(self.handlers)

    @property
    def wake(self) -> socket.socket:
        """Readable when a worker queued a frame: poll it beside the DEALER."""
        return self.outgoing.wake

    def submit(self, env: Envelope) -> Envelope | None:
        """Hand a REQUEST to the workers; returns an ERROR to send at once when it cannot be taken."""
        self.counters["requests"] += 1
        if env.type not in self.handlers:
            self.counters["unknown-type"] += 1
            return self._refusal(env, "unknown-type", f"agent {self.node} answers no {env.type!r} request")
        try:
            credit_param(env.params)
        except OutOfRangeError as exc:  # the collector checks it too; a hostile one must not crash us
            self.counters["out-of-range"] += 1
            return self._refusal(env, exc.code, f"agent {self.node}: {exc}")
        exchange = Exchange(env, self.node, self.outgoing, self.timeout, two_part=self.two_part)
        with self._lock:
            self._active[env.request_id] = exchange
        try:
            self._queue.put_nowait(exchange)
        except queue.Full:
            self._forget(exchange)
            self.counters["busy"] += 1
            return self._refusal(
                env,
                "busy",
                f"agent {self.node} is busy: {len(self._threads)} requests run and "
                f"{self._queue.maxsize} wait; try again",
            )
        return None

    def _refusal(self, env: Envelope, code: str, reason: str) -> Envelope:
        return envelope(Kind.ERROR, env.type, node=self.node, request_id=env.request_id, error_code=code, error=reason)

    def credit(self, env: Envelope) -> None:
        """A CREDIT relayed from the requester: 1..MAX_CREDIT more chunks, or ``cancel=1``; others are dropped."""
        try:
            granted = credit_grant(env.seq, env.params)
        except OutOfRangeError as exc:
            self.counters["out-of-range"] += 1
            level = logging.WARNING if self.counters["out-of-range"] == 1 else logging.DEBUG  # no log floods
            log.log(level, "dropping a CREDIT for request %d: %s", env.request_id, exc)
            return
        with self._lock:
            exchange = self._active.get(env.request_id)
        if exchange is None:
            log.debug("CREDIT for request %d, which is not running", env.request_id)
        else:
            exchange.credit.grant(granted)  # 0 cancels

    def frames(self) -> list[bytes]:
        """Answers the workers queued, oldest first (main loop)."""
        return self.outgoing.take()

    def expire(self, now: float) -> float:
        """Answer ``timeout`` for handlers silent past the timeout; returns the next deadline."""
        with self._lock:
            waiting = [x for x in self._active.values() if not x.answered]
        deadline = INF
        for exchange in waiting:
            if exchange.deadline > now:
                deadline = min(deadline, exchange.deadline)
            elif exchange.expire():
                self.counters["timeouts"] += 1
        return deadline

    def cancel_all(self) -> None:
        """Drop every running request and queued answer: the collector that asked is gone."""
        with self._lock:
            running, self._active = list(self._active.values()), {}
        for exchange in running:
            exchange.close()
        dropped = len(self.outgoing.take())
        if running or dropped:
            log.info(
                "cancelled %d node requests (%d answers unsent): the collector connection was replaced",
                len(running),
                dropped,
            )

    def close(self) -> None:
        """Cancel everything and let the workers end (they are daemons: a stuck one is left behind)."""
        self.cancel_all()
        for _ in self._threads:
            try:
                self._queue.put_nowait(None)
            except queue.Full:
                break
        self.outgoing.close()

    # ------------------------------------------------------------------ workers

    def _work(self) -> None:
        while (exchange := self._queue.get()) is not None:
            try:
                self._run(exchange)
            finally:
                self._forget(exchange)

    def _run(self, exchange: Exchange) -> None:
        if exchange.cancelled:
            return
        handler = self.handlers[exchange.type]
        request = NodeRequest(exchange.type, exchange.params, exchange.request_id)
        try:
            result = handler.handle(request, exchange)
        except RequestError as exc:
            exchange.respond_error(exc.code, exc.reason)
        except Exception as exc:
            self.counters["handler-errors"] += 1
            name = handler.name or type(handler).__name__
            handler.log.error(
                "handler %s failed on %s: %s: %s",
                name,
                exchange.type,
                type(exc).__name__,
                exc,
                exc_info=log.isEnabledFor(logging.DEBUG),
            )
            exchange.respond_error("handler-error", f"handler {name} failed: {type(exc).__name__}: {exc}")
        else:
            if not exchange.answered:
                exchange.respond(result)

    def _forget(self, exchange: Exchange) -> None:
        # Only this very exchange: after a reconnect a new request may reuse its id.
        with self._lock:
            if self._active.get(exchange.request_id) is exchange:
                del self._active[exchange.request_id]
