"""The ingest drain's receive loop: the C one (collector/_drain.c) reads what the Python one reads.

Both drain real ROUTER sockets on 127.0.0.1 that a DEALER filled; the same messages go to two
pairs, one drained by each loop, and every step's answer must be the same: the one-envelope
frames collected, the first other message handed back whole, the limit kept.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import zmq
import zmq.auth
from hypothesis import given
from hypothesis import strategies as st
from zmq.auth.thread import ThreadAuthenticator

from collector import fast_drain
from collector.fast_drain import python_drain, python_drain_curve
from messages import Kind
from messages.codec import SINGLE_HEADS, SINGLE_LIMIT, envelope, pack
from tests.fuzz.strategies import FEW


def c_drain_or_skip() -> None:
    """Skip in one line when the C drain cannot run here (a failure under CI=true, where it is built)."""
    problem = fast_drain.c_drain_problem()
    if problem is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"the C drain is not usable: {problem} (CI=true: a skip is a failure)")
    pytest.skip(f"the C drain is not usable: {problem}")


class Pair:
    """A ROUTER and a DEALER connected to it (on a random loopback port, or ``inproc``)."""

    def __init__(self, context: zmq.Context[Any], inproc: str = "") -> None:
        self.router = context.socket(zmq.ROUTER)
        self.router.linger = 0
        self.dealer = context.socket(zmq.DEALER)
        self.dealer.linger = 0
        if inproc:
            self.router.bind(f"inproc://{inproc}")
            self.dealer.connect(f"inproc://{inproc}")
        else:
            port = self.router.bind_to_random_port("tcp://127.0.0.1")
            self.dealer.connect(f"tcp://127.0.0.1:{port}")

    def send(self, messages: list[list[bytes]]) -> None:
        """Send ``messages``, then a two-part marker the drains stop at."""
        for parts in messages:
            self.dealer.send_multipart(parts)
        self.dealer.send_multipart([b"end", b"marker"])

    def drain_all(self, drain: Any, limit: int, sent: int, check: Any = None) -> list[tuple[Any, ...]]:
        """Drain until the marker, ``limit`` at a time: what came, in order, as ("single", body, False),
        ("odd", first part, more parts) and ("rest", part, False) for an odd message's other parts.

        With ``check`` the drain is a CURVE one: each single also carries its key, each odd message its
        key and refusal. Each call keeps to ``limit``, reads what it reports, and all came from the one
        DEALER; ``sent`` messages and the marker read, and no marker, fails at once (a drain out of
        step with the parts).
        """
        events: list[tuple[Any, ...]] = []
        senders: set[bytes] = set()
        total = 0
        while True:
            assert total <= sent, f"{total} messages read of {sent} sent, and no marker"
            assert self.router.poll(5000), "the messages did not arrive"
            idents: list[bytes] = []
            bodies: list[bytes] = []
            keys: list[str] = []
            extra = (keys, check) if check is not None else ()
            read, odd = drain(limit, SINGLE_LIMIT, SINGLE_HEADS, idents, bodies, *extra)
            assert 0 < read <= limit and read == len(bodies) + (odd is not None) and len(idents) == len(bodies)
            total += read
            senders.update(idents)
            for at, body in enumerate(bodies):
                events.append(("single", body, False) if check is None else ("single", body, False, keys[at]))
            if odd is None:
                continue
            senders.add(odd[0])
            events.append(("odd", *odd[1:]))
            more = odd[2]
            while more:
                events.append(("rest", self.router.recv(), False))
                more = bool(self.router.get(zmq.RCVMORE))
            if events[-2:-1] and events[-2][:3] == ("odd", b"end", True) and events[-1] == ("rest", b"marker", False):
                assert len(senders) == 1
                return events[:-2]

    def close(self) -> None:
        self.router.close()
        self.dealer.close()


class CurvePair(Pair):
    """A CURVE server ROUTER and a CURVE client DEALER on a random loopback port (ZAP: the context's)."""

    def __init__(self, context: zmq.Context[Any], server: tuple[bytes, bytes], client: tuple[bytes, bytes]) -> None:
        self.router = context.socket(zmq.ROUTER)
        self.router.linger = 0
        self.router.curve_server = True
        self.router.curve_publickey, self.router.curve_secretkey = server
        port = self.router.bind_to_random_port("tcp://127.0.0.1")
        self.dealer = context.socket(zmq.DEALER)
        self.dealer.linger = 0
        self.dealer.curve_serverkey = server[0]
        self.dealer.curve_publickey, self.dealer.curve_secretkey = client
        self.dealer.connect(f"tcp://127.0.0.1:{port}")


@pytest.fixture
def pairs() -> Iterator[tuple[Pair, Pair]]:
    context: zmq.Context[Any] = zmq.Context()
    made = (Pair(context), Pair(context))
    yield made
    for pair in made:
        pair.close()
    context.term()


def c_loop(sock: zmq.Socket[Any]) -> Any:
    """The C loop on ``sock``, as the collector chooses it (call :func:`c_drain_or_skip` first)."""
    drains = fast_drain.choose(sock)
    assert drains.kind == "c" and drains.plain is drains.curve  # one loop; CURVE gives it two more arguments
    return drains.plain


def single(n: int, size: int = 0) -> bytes:
    return pack([envelope(Kind.REPORT, "Probe", b"x" * size, node="n1", seq=n, time=1000.0)])


PARTS = st.lists(st.binary(max_size=9), min_size=1, max_size=3)  # parts after a first one
MIXED = [
    [single(1)],
    [single(2, 300)],
    [pack([envelope(Kind.REPORT, "Probe", b"a", node="n1", seq=3), envelope(Kind.REPORT, "Probe", node="n1", seq=4)])],
    [single(5)],
    [b""],  # an empty frame
    [b"\xff garbage"],
    [single(6), single(7)],  # two parts
    [single(8, SINGLE_LIMIT)],  # too long to be checked as one envelope
    [single(9)],
]


def compare(pairs: tuple[Pair, Pair], messages: list[list[bytes]], limit: int) -> list[tuple[str, bytes, bool]]:
    """Both loops over the same messages; what the C loop read, asserted equal to what the Python loop read."""
    c_pair, python_pair = pairs
    c_pair.send(messages)
    python_pair.send(messages)
    sent = len(messages)
    c_read = c_pair.drain_all(c_loop(c_pair.router), limit, sent)
    python_read = python_pair.drain_all(lambda *args: python_drain(python_pair.router, *args), limit, sent)
    assert c_read == python_read
    return c_read


def test_the_c_drain_reads_what_the_python_drain_reads(pairs: tuple[Pair, Pair]) -> None:
    c_drain_or_skip()
    assert compare(pairs, MIXED, limit=512) == [
        ("single", single(1), False),
        ("single", single(2, 300), False),
        ("odd", MIXED[2][0], False),  # two envelopes: not parsed with the others
        ("single", single(5), False),
        ("odd", b"", False),
        ("odd", b"\xff garbage", False),
        ("odd", single(6), True),
        ("rest", single(7), False),
        ("odd", single(8, SINGLE_LIMIT), False),
        ("single", single(9), False),
    ]


def test_the_c_drain_keeps_its_limit_and_says_when_the_socket_is_empty() -> None:
    c_drain_or_skip()
    context: zmq.Context[Any] = zmq.Context()
    pair = Pair(context, inproc="limit")  # every message is in the pipe once sent
    try:
        pair.dealer.send(single(0))  # connected once this one is read
        assert pair.router.poll(5000)
        router = pair.router
        drain = c_loop(router)
        assert drain(3, SINGLE_LIMIT, SINGLE_HEADS, [], []) == (1, None)
        for n in range(1, 11):
            pair.dealer.send(single(n))
        calls: list[tuple[int, object, int]] = []
        while not calls or calls[-1][0]:
            bodies: list[bytes] = []
            calls.append(drain(3, SINGLE_LIMIT, SINGLE_HEADS, [], bodies) + (len(bodies),))
        assert calls == [(3, None, 3), (3, None, 3), (3, None, 3), (1, None, 1), (0, None, 0)]
        router.close()
        with pytest.raises(zmq.ZMQError) as closed:  # never the freed handle
            drain(3, SINGLE_LIMIT, SINGLE_HEADS, [], [])
        assert closed.value.errno == zmq.ENOTSOCK
    finally:
        pair.close()
        context.term()


@FEW
@given(
    st.lists(
        st.one_of(
            st.builds(lambda n, size: [single(n, size)], st.integers(1, 2**40), st.integers(0, 5000)),
            st.builds(lambda n, rest: [single(n), *rest], st.integers(1, 99), PARTS),
            st.lists(st.binary(max_size=64), min_size=1, max_size=3),
        ),
        max_size=12,
    ),
    st.integers(1, 6),
)
def test_any_messages_are_read_alike_by_both_loops(messages: list[list[bytes]], limit: int) -> None:
    c_drain_or_skip()
    context: zmq.Context[Any] = zmq.Context()
    made = (Pair(context), Pair(context))
    try:
        compare(made, messages, limit)
    finally:
        for pair in made:
            pair.close()
        context.term()


def test_the_collector_chooses_the_c_drain_unless_told_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    c_drain_or_skip()
    context: zmq.Context[Any] = zmq.Context()
    sock = context.socket(zmq.ROUTER)
    try:
        assert fast_drain.choose(sock).kind == "c"
        monkeypatch.setenv(fast_drain.DRAIN_ENV, "python")
        fast_drain.c_drain_problem.cache_clear()
        assert fast_drain.c_drain_problem() == "LABSCOPE_DRAIN=python"
        assert fast_drain.choose(sock).kind == "python"
    finally:
        fast_drain.c_drain_problem.cache_clear()
        sock.close()
        context.term()


@pytest.mark.parametrize("refused", [False, True], ids=["allowed", "refused"])
def test_with_curve_the_c_drain_reads_keys_and_refusals_as_the_python_drain(refused: bool) -> None:
    """Each frame's key is its connection's ZAP User-Id; ``check`` says whether it may pass."""
    c_drain_or_skip()
    context: zmq.Context[Any] = zmq.Context()
    authenticator = ThreadAuthenticator(context)
    authenticator.start()
    authenticator.configure_curve(domain="*", location=zmq.auth.CURVE_ALLOW_ANY)
    server, client = zmq.curve_keypair(), zmq.curve_keypair()
    asked: list[str] = []

    def check(ident: bytes, key: str) -> str:
        asked.append(key)
        return "key-removed" if refused else ""

    made = (CurvePair(context, server, client), CurvePair(context, server, client))
    try:
        for pair in made:
            pair.send(MIXED)
        c_router, python_router = made[0].router, made[1].router
        c_read = made[0].drain_all(c_loop(c_router), 512, len(MIXED), check)
        python_read = made[1].drain_all(lambda *args: python_drain_curve(python_router, *args), 512, len(MIXED), check)
    finally:
        for pair in made:
            pair.close()
        authenticator.stop()
        context.term()
    assert c_read == python_read
    key = client[0].decode()
    assert set(asked) == {key}
    if refused:  # every message handed back, with its key and refusal
        assert [event[3:] for event in c_read if event[0] == "odd"] == [(key, "key-removed")] * len(MIXED)
    else:
        assert [event for event in c_read if event[0] == "single"][0] == ("single", single(1), False, key)
        assert {event[3:] for event in c_read if event[0] == "odd"} == {(key, "")}
