"""Two-part CHUNKs ``[header, bytes]``: agent pool and link, the collector's relay, the client library."""

from __future__ import annotations

import hashlib
import os
import select
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import xxhash
import zmq

from gui.client import Client as LibClient
from messages import Envelope, Kind, NodeInfo
from messages.codec import envelope, pack, pack_one, unpack
from messages.stream import TWO_PART_MIN
from node_agent.handlers import NodeFileHandler
from node_agent.link import Link
from node_agent.pool import RequestPool, TwoPart
from node_agent.serve import ServeDirs
from tests.conftest import CollectorProcess, ProcessGroup
from tests.wire import Client, Peer

POLL_MS = 5000


@pytest.fixture
def collector(procs: ProcessGroup) -> CollectorProcess:
    # The agents here are played by hand and send no heartbeats: a node timeout far above any test's
    # length keeps a slow, loaded machine from declaring one lost mid-stream (node-lost, a flaky failure).
    return procs.collector("--node-timeout", "120")


@pytest.fixture
def agent(collector: CollectorProcess, zmq_context: zmq.Context) -> Iterator[Peer]:
    peer = Peer(zmq_context, collector.agents)
    hello(peer)
    yield peer
    peer.close()


def hello(peer: Peer) -> None:
    info = NodeInfo(node="n1", hostname="h", instance="i1", request_types=["NodeFile"])
    peer.send(Kind.HELLO, "NodeInfo", info, node="n1", seq=1)
    peer.expect(lambda e: e.kind == Kind.ACK, what="ACK after HELLO")


def chunk_header(rid: int, seq: int, last: bool = False, **params: str) -> bytes:
    return pack_one(envelope(Kind.CHUNK, "NodeFile", b"", request_id=rid, seq=seq, last=last, params=params))


def recv_parts(sock: zmq.Socket) -> list[bytes]:
    assert sock.poll(POLL_MS, zmq.POLLIN), "nothing arrived in time"
    return sock.recv_multipart()


def start(play: Callable[[], None]) -> threading.Thread:
    """Run a played agent in a thread of its own."""
    thread = threading.Thread(target=play, daemon=True)
    thread.start()
    return thread


def wait_for_played_agent(client: LibClient) -> None:
    deadline = time.monotonic() + 10
    while "n1" not in str(client.request("NodeList").payload):
        assert time.monotonic() < deadline, "the played agent never said hello"


@pytest.mark.e2e
def test_two_part_chunks_are_relayed_with_the_bytes_untouched(
    agent: Peer, collector: CollectorProcess, zmq_context: zmq.Context
) -> None:
    client = Client(zmq_context, collector.clients)
    try:
        client.send(Kind.REQUEST, "NodeFile", request_id=41, params={"node": "n1", "path": "x", "credit": "4"})
        rid = agent.expect(lambda e: e.kind == Kind.REQUEST, what="forwarded REQUEST").request_id
        pieces = [os.urandom(200_000), os.urandom(3)]
        agent.socket.send_multipart([chunk_header(rid, 0), pieces[0]])
        digest = hashlib.sha256(b"".join(pieces)).hexdigest()
        agent.socket.send_multipart([chunk_header(rid, 1, last=True, size="200003", sha256=digest), pieces[1]])
        got = [recv_parts(client.socket) for _ in pieces]
        headers = [unpack(parts[0])[0] for parts in got]
        assert [len(parts) for parts in got] == [2, 2]
        assert [(h.kind, h.request_id, h.seq, h.payload) for h in headers] == [
            (Kind.CHUNK, 41, 0, b""),
            (Kind.CHUNK, 41, 1, b""),
        ]
        assert [parts[1] for parts in got] == pieces and headers[1].last and headers[1].params["sha256"] == digest
        assert client.answer("CollectorStats")["counters"].get("bad-frame", 0) == 0
    finally:
        client.close()


@pytest.mark.e2e
def test_malformed_multipart_messages_are_bad_frames_and_the_collector_keeps_serving(
    agent: Peer, collector: CollectorProcess, zmq_context: zmq.Context
) -> None:
    report = pack([envelope(Kind.REPORT, "SystemStats", b"", node="n1", seq=2)])
    agent.socket.send_multipart([report, b"x", b"y"])  # three parts
    agent.socket.send_multipart([pack_one(envelope(Kind.HEARTBEAT, node="n1")), b"bulk"])  # not a CHUNK
    agent.socket.send_multipart([pack_one(envelope(Kind.CHUNK, "NodeFile", b"p", request_id=1)), b"bulk"])
    agent.socket.send_multipart([chunk_header(1, 0), b"a", b"b"])  # a CHUNK, but three parts
    agent.socket.send_multipart([b"\xff\xfe garbage", b"bulk"])
    client = Client(zmq_context, collector.clients)
    try:
        deadline = time.monotonic() + 5
        while (bad := client.answer("CollectorStats")["counters"].get("bad-frame", 0)) < 5:
            assert time.monotonic() < deadline, f"only {bad} bad frames counted"
            client.socket.poll(20)  # a short pause between polls of the counters
        assert bad == 5
        agent.send(Kind.HEARTBEAT, node="n1")
        agent.expect(lambda e: e.kind == Kind.HEARTBEAT, what="HEARTBEAT answer after the bad frames")
        nodes = client.answer("NodeList")
        assert "n1" in str(nodes)
    finally:
        client.close()


@pytest.mark.e2e
def test_client_library_streams_two_part_chunks_and_checks_them(
    collector: CollectorProcess, zmq_context: zmq.Context
) -> None:
    data = os.urandom(3 * 100_000 + 7)
    pieces = [data[i : i + 100_000] for i in range(0, len(data), 100_000)]
    ready = threading.Event()
    failures: list[BaseException] = []

    def play_agent() -> None:
        peer = Peer(zmq_context, collector.agents)
        try:
            hello(peer)
            ready.set()
            rid = peer.expect(lambda e: e.kind == Kind.REQUEST, what="forwarded REQUEST").request_id
            for seq, piece in enumerate(pieces):
                last = seq == len(pieces) - 1
                params = {"size": str(len(data)), "sha256": hashlib.sha256(data).hexdigest()} if last else {}
                if seq >= 2:  # the client asked for credit 2: the third chunk waits for a CREDIT
                    peer.expect(lambda e: e.kind == Kind.CREDIT, what="CREDIT")
                peer.socket.send_multipart([chunk_header(rid, seq, last, **params), piece])
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)
        finally:
            peer.close(linger_ms=10_000)  # linger 0 would drop the last chunks still queued (a flaky timeout)

    thread = start(play_agent)
    assert ready.wait(10)
    with LibClient(collector.clients, context=zmq_context) as client:
        views = list(client.stream_views("NodeFile", {"node": "n1", "path": "x"}, credit=2, timeout=10))
    thread.join(10)
    assert not failures
    assert all(isinstance(v, memoryview) for v in views) and b"".join(views) == data


@pytest.mark.e2e
def test_client_library_refuses_a_two_part_chunk_that_does_not_match(
    collector: CollectorProcess, zmq_context: zmq.Context
) -> None:
    def play_agent() -> None:
        peer = Peer(zmq_context, collector.agents)
        try:
            hello(peer)
            rid = peer.expect(lambda e: e.kind == Kind.REQUEST, what="forwarded REQUEST").request_id
            wrong = hashlib.sha256(b"other bytes").hexdigest()
            peer.socket.send_multipart([chunk_header(rid, 0, True, size="5", sha256=wrong), b"hello"])
        finally:
            peer.close(linger_ms=10_000)  # linger 0 would drop the last chunks still queued (a flaky timeout)

    thread = start(play_agent)
    with LibClient(collector.clients, context=zmq_context) as client:
        wait_for_played_agent(client)
        with pytest.raises(Exception, match="checksum"):
            list(client.stream("NodeFile", {"node": "n1", "path": "x"}, timeout=10))
    thread.join(10)


FAST = xxhash.xxh3_128(b"hello").hexdigest()


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("first", "trailer", "failure"),
    [
        ({"digest": "xxh3_128"}, {"xxh3_128": FAST}, None),
        ({"digest": "xxh3_128"}, {"xxh3_128": xxhash.xxh3_128(b"jello").hexdigest()}, "XXH3-128 digest of the"),
        ({"digest": "xxh3_128"}, {"sha256": hashlib.sha256(b"hello").hexdigest()}, "carries no xxh3_128"),
        ({"digest": "crc-1"}, {"crc-1": "0"}, "'crc-1', which this process cannot compute"),
    ],
)
def test_client_library_asks_for_the_fast_digest_and_checks_the_one_announced(
    collector: CollectorProcess, zmq_context: zmq.Context, first: dict[str, str], trailer: dict[str, str], failure: str
) -> None:
    asked: list[dict[str, str]] = []

    def play_agent() -> None:
        peer = Peer(zmq_context, collector.agents)
        try:
            hello(peer)
            request = peer.expect(lambda e: e.kind == Kind.REQUEST, what="forwarded REQUEST")
            asked.append(dict(request.params))
            params = {**first, **trailer, "size": "5"}
            peer.socket.send_multipart([chunk_header(request.request_id, 0, True, **params), b"hello"])
        finally:
            peer.close(linger_ms=10_000)

    thread = start(play_agent)
    with LibClient(collector.clients, context=zmq_context) as client:
        wait_for_played_agent(client)
        stream = client.stream("NodeFile", {"node": "n1", "path": "x"}, timeout=10)
        if failure is None:
            assert b"".join(stream) == b"hello"
        else:
            with pytest.raises(Exception, match=failure) as raised:
                list(stream)
            assert getattr(raised.value, "code", "") == "checksum"
    thread.join(10)
    assert asked and asked[0]["digest"] == "xxh3_128" and asked[0]["credit"] == "32"


@pytest.mark.e2e
def test_client_library_grants_credit_a_quarter_window_at_a_time(
    collector: CollectorProcess, zmq_context: zmq.Context
) -> None:
    pieces = [bytes([n]) * 70_000 for n in range(10)]
    grants: list[int] = []
    failures: list[BaseException] = []

    def is_credit(env: Envelope) -> bool:
        return env.kind == Kind.CREDIT

    def play_agent() -> None:
        peer = Peer(zmq_context, collector.agents)
        try:
            hello(peer)
            rid = peer.expect(lambda e: e.kind == Kind.REQUEST, what="forwarded REQUEST").request_id
            credit = 8
            for seq, piece in enumerate(pieces):
                while credit == 0:
                    grants.append(peer.expect(is_credit, what="CREDIT").seq)
                    credit += grants[-1]
                last = seq == len(pieces) - 1
                params = {"size": "700000", "sha256": hashlib.sha256(b"".join(pieces)).hexdigest()} if last else {}
                peer.socket.send_multipart([chunk_header(rid, seq, last, **params), piece])
                credit -= 1
            while (late := peer.poll_for(is_credit, 0.5)) is not None:  # sent before the final chunk arrived
                grants.append(late.seq)
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)
        finally:
            peer.close(linger_ms=10_000)

    thread = start(play_agent)
    with LibClient(collector.clients, context=zmq_context) as client:
        wait_for_played_agent(client)
        views = list(client.stream_views("NodeFile", {"node": "n1", "path": "x"}, credit=8, timeout=10))
        thread.join(10)  # with the client open: its last CREDITs still reach the agent
    assert not failures and b"".join(views) == b"".join(pieces)
    # CREDITs of 2 (8 // 4), not one per chunk. The agent needed one to send its last two chunks; later
    # ones may reach the collector after it relayed the final chunk, which ends the stream there.
    assert grants and set(grants) == {2}


def pool_frames(pool: RequestPool, count: int) -> list[bytes]:
    frames: list[bytes] = []
    deadline = time.monotonic() + 5
    while len(frames) < count:
        left = deadline - time.monotonic()
        assert left > 0, f"only {len(frames)} of {count} frames"
        if select.select([pool.wake], [], [], left)[0]:
            try:
                pool.wake.recv(4096)
            except BlockingIOError:
                pass
        frames.extend(pool.frames())
    return frames


def test_pool_sends_large_chunks_as_two_parts(tmp_path: Path) -> None:
    (tmp_path / "f.bin").write_bytes(data := os.urandom(2 * TWO_PART_MIN + 10))
    pool = RequestPool("n1", {"NodeFile": NodeFileHandler(ServeDirs([tmp_path]), chunk=TWO_PART_MIN)}, two_part=True)
    try:
        pool.submit(envelope(Kind.REQUEST, "NodeFile", request_id=9, params={"path": "f.bin"}))
        frames = pool_frames(pool, 3)
    finally:
        pool.close()
    headers = [unpack(f)[0] for f in frames]
    assert [isinstance(f, TwoPart) for f in frames] == [True, True, False]  # the 10-byte tail stays one part
    assert [h.payload for h in headers[:2]] == [b"", b""]
    assert b"".join([f.bulk for f in frames[:2] if isinstance(f, TwoPart)] + [headers[2].payload]) == data
    assert headers[2].last and headers[2].params["sha256"] == hashlib.sha256(data).hexdigest()


def test_pool_checks_with_the_digest_the_request_asks_for(tmp_path: Path) -> None:
    (tmp_path / "f.bin").write_bytes(data := os.urandom(TWO_PART_MIN + 10))
    pool = RequestPool("n1", {"NodeFile": NodeFileHandler(ServeDirs([tmp_path]), chunk=TWO_PART_MIN)}, two_part=True)
    try:
        pool.submit(envelope(Kind.REQUEST, "NodeFile", request_id=9, params={"path": "f.bin", "digest": "xxh3_128"}))
        frames = pool_frames(pool, 2)
    finally:
        pool.close()
    headers = [unpack(f)[0] for f in frames]
    assert headers[0].params["digest"] == "xxh3_128" and "digest" not in headers[1].params
    assert headers[1].last and headers[1].params["xxh3_128"] == xxhash.xxh3_128(data).hexdigest()
    assert "sha256" not in headers[1].params


def test_link_sends_a_two_part_frame_as_two_parts(zmq_context: zmq.Context) -> None:
    router = zmq_context.socket(zmq.ROUTER)
    router.linger = 0
    port = router.bind_to_random_port("tcp://127.0.0.1")
    link = Link(zmq_context, f"tcp://127.0.0.1:{port}")
    link.open()
    try:
        header = chunk_header(3, 0)
        assert link.send(TwoPart(header, b"B" * 100_000)) and link.send(b"plain")
        first, second = recv_parts(router), recv_parts(router)
        assert first[1:] == [header, b"B" * 100_000] and second[1:] == [b"plain"]
    finally:
        link.close()
        router.close()
