"""The ingest drain's receive loop: in C (collector/_drain.c) when it was built, else in Python.

Reading a frame from the agents' ROUTER costs the Python drain two pyzmq calls, a ``Frame`` and
its bytes: ~1.1-1.5 us of the ~5 us the collector's loop spends on an unbatched report (profiled
in BENCHMARKS.md, "Issue 14: round nine"). The C loop reads the same messages with libzmq's own
``zmq_msg_recv`` and makes the two bytes objects, ~0.35 us a message, and hands back exactly what
:func:`python_drain` does. Both take up to ``limit`` messages ``[identity, body...]`` without
blocking: a body of one part that is one envelope (``messages.codec.is_single``) goes to
``idents``/``bodies``; the first message that is not stops the drain and comes back as ``odd``:
``(identity, first body part, more parts follow)``.

The C module links against no libzmq: :func:`choose` gives it the addresses of the functions of
the libzmq pyzmq itself loaded (found in ``/proc/self/maps``, its version checked), and tries it
on a ROUTER of its own before any collector socket meets it. Anything amiss (no build, another
platform, another libzmq, ``LABSCOPE_DRAIN=python`` in the environment) leaves the Python drain,
with one log line saying why. docs/architecture.md, "The ingest drain", says more.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import zmq

from messages import Kind
from messages.codec import SINGLE_HEADS, SINGLE_LIMIT, envelope, pack

log = logging.getLogger(__name__)

__all__ = [
    "DRAIN_ENV",
    "CurveDrain",
    "CurveResult",
    "Drain",
    "DrainResult",
    "Drains",
    "c_drain_problem",
    "choose",
    "python_drain",
    "python_drain_curve",
]

DRAIN_ENV = "LABSCOPE_DRAIN"  # "python" keeps the Python drain (to compare, or to rule the C one out)
NOBLOCK = zmq.NOBLOCK
LIBZMQ_FUNCTIONS = (
    "zmq_msg_init",
    "zmq_msg_recv",
    "zmq_msg_close",
    "zmq_msg_data",
    "zmq_msg_size",
    "zmq_msg_more",
    "zmq_errno",
    "zmq_msg_gets",
)

Odd = tuple[bytes, bytes, bool]
DrainResult = tuple[int, Odd | None]
# drain(limit, single_limit, heads, idents, bodies) -> (messages read, odd message or None)
Drain = Callable[[int, int, list[bytes], list[bytes], list[bytes]], DrainResult]
# With CURVE the odd message also carries its key and refusal: (identity, body, more, key, refusal).
CurveOdd = tuple[bytes, bytes, bool, str, str]
CurveResult = tuple[int, CurveOdd | None]
Check = Callable[[bytes, str], str]  # (identity, key) -> refusal reason, or "" (collector.agent_keys)
# drain(limit, single_limit, heads, idents, bodies, senders, check) -> (messages read, odd or None)
CurveDrain = Callable[[int, int, list[bytes], list[bytes], list[bytes], list[str], Check], CurveResult]


class Drains(NamedTuple):
    """The receive loops for one socket: plain and CURVE, and which they are (``"c"`` or ``"python"``)."""

    plain: Drain
    curve: CurveDrain
    kind: str


def python_drain(
    sock: zmq.Socket[Any], limit: int, single_limit: int, heads: list[bytes], idents: list[bytes], bodies: list[bytes]
) -> DrainResult:
    """Read up to ``limit`` messages from ``sock`` without blocking (see the module's docstring)."""
    # Two plain recv() calls cost half of recv_multipart(), whose per-part getsockopt goes through
    # Python enums; the body comes as a Frame whose ``more`` says whether a part follows.
    recv = sock.recv
    handled = 0
    while handled < limit:
        try:
            ident = recv(NOBLOCK)
        except zmq.Again:
            break
        handled += 1
        frame = recv(NOBLOCK, copy=False)  # a message is atomic: a ROUTER's identity part is never alone
        body = frame.bytes
        size = len(body)
        if size < single_limit and not frame.more and body.startswith(heads[size]):
            idents.append(ident)
            bodies.append(body)
        else:
            return handled, (ident, body, frame.more)
    return handled, None


def python_drain_curve(
    sock: zmq.Socket[Any],
    limit: int,
    single_limit: int,
    heads: list[bytes],
    idents: list[bytes],
    bodies: list[bytes],
    senders: list[str],
    check: Check,
) -> CurveResult:
    """:func:`python_drain` for CURVE: each message's key (its "User-Id") is read and ``check``-ed as it
    comes; a passing one-envelope frame adds its key to ``senders``, any other message is odd."""
    recv = sock.recv
    handled = 0
    while handled < limit:
        try:
            frame = recv(NOBLOCK, copy=False)  # uncopied: its properties hold the key that sent it
        except zmq.Again:
            break
        handled += 1
        ident, key = frame.bytes, _user_id(frame)
        part = recv(NOBLOCK, copy=False)
        refusal = check(ident, key)
        body = part.bytes
        size = len(body)
        if not refusal and size < single_limit and not part.more and body.startswith(heads[size]):
            idents.append(ident)
            bodies.append(body)
            senders.append(key)
        else:
            return handled, (ident, body, part.more, key, refusal)
    return handled, None


def _user_id(frame: zmq.Frame) -> str:
    """The key the ZAP handler named for the connection a frame came on; "" without one."""
    try:
        return str(frame.get("User-Id"))
    except zmq.ZMQError:
        return ""


def choose(sock: zmq.Socket[Any]) -> Drains:
    """The drains for ``sock`` (a plain pyzmq ROUTER): C when it can run here, else Python."""
    problem = c_drain_problem()
    if problem is None:
        from collector import _drain

        log.info("ingest drain: C (collector/_drain.c)")
        c_loop = functools.partial(_c_drain, _drain.drain, sock)
        return Drains(c_loop, c_loop, "c")
    log.info("ingest drain: Python (%s)", problem)
    return Drains(functools.partial(python_drain, sock), functools.partial(python_drain_curve, sock), "python")


@functools.cache
def c_drain_problem() -> str | None:
    """Why the C drain cannot be used in this process, or None when it can (checked once)."""
    if os.environ.get(DRAIN_ENV, "").strip().lower() == "python":
        return f"{DRAIN_ENV}=python"
    try:
        from collector import _drain  # built from collector/_drain.c
    except ImportError as exc:
        return f"collector/_drain.c is not built ({exc}); reinstall labscope with a C compiler"
    path = _libzmq_path()
    if path is None:
        return "pyzmq's libzmq is not found in /proc/self/maps"
    try:
        lib = ctypes.CDLL(path)  # the library already loaded: the same copy pyzmq calls
        problem = _version_problem(lib)
        if problem is not None:
            return problem
        _drain.bind(*(ctypes.cast(getattr(lib, name), ctypes.c_void_p).value or 0 for name in LIBZMQ_FUNCTIONS))
        return _self_test(_drain.drain)
    except (OSError, AttributeError, ValueError, zmq.ZMQError) as exc:
        return f"libzmq at {path} did not bind: {exc}"


def _c_drain(drain: Callable[..., Any], sock: zmq.Socket[Any], *args: Any) -> Any:
    """The C loop ``drain`` (``collector._drain.drain``) on ``sock``, with :func:`python_drain`'s arguments
    after the socket (or, with CURVE, :func:`python_drain_curve`'s); libzmq's errors but EAGAIN as
    ``zmq.ZMQError``, as pyzmq raises them."""
    try:
        return drain(_handle(sock), *args)
    except OSError as exc:
        raise zmq.ZMQError(exc.errno) from None


def _handle(sock: zmq.Socket[Any]) -> int:
    """libzmq's handle of ``sock``; ``ENOTSOCK`` once it is closed (the C loop must never see a freed one)."""
    if sock.closed:
        raise zmq.ZMQError(zmq.ENOTSOCK)
    return int(sock.underlying)


def _libzmq_path() -> str | None:
    """The file of the libzmq mapped into this process (pyzmq's), or None."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    for line in maps.splitlines():
        path = line.rpartition(" ")[2]
        if path.startswith("/") and os.path.basename(path).startswith("libzmq"):
            return path
    return None


def _version_problem(lib: ctypes.CDLL) -> str | None:
    """None when ``lib`` is the libzmq version pyzmq reports, else what differs."""
    parts = [ctypes.c_int() for _ in range(3)]
    lib.zmq_version(*(ctypes.byref(part) for part in parts))
    found = tuple(part.value for part in parts)
    if found != zmq.zmq_version_info():
        return f"the mapped libzmq is {found}, pyzmq's is {zmq.zmq_version_info()}"
    return None


def _self_test(drain: Callable[..., Any]) -> str | None:
    """Drain two messages through a ROUTER of our own with the C loop; None when it read them right.

    Nothing here blocks: a loop that read too much leaves the last part missing (``zmq.Again``).
    """
    single = pack([envelope(Kind.HEARTBEAT, node="self-test")])
    context = zmq.Context()
    try:
        router, dealer = context.socket(zmq.ROUTER), context.socket(zmq.DEALER)
        router.bind("inproc://drain-self-test")
        dealer.connect("inproc://drain-self-test")
        dealer.send(single)
        dealer.send_multipart([b"odd", b"parts"])
        router.poll(5000)
        idents: list[bytes] = []
        bodies: list[bytes] = []
        read, odd = _c_drain(drain, router, 8, SINGLE_LIMIT, SINGLE_HEADS, idents, bodies)
        rest = router.recv(zmq.NOBLOCK)  # the odd message's second part
    finally:
        context.destroy(linger=0)  # closes the sockets too, whatever was raised
    if read == 2 and bodies == [single] and odd == (idents[0], b"odd", True) and rest == b"parts":
        return None
    return f"its self-test read {read} messages, {bodies!r} and {odd!r}"
