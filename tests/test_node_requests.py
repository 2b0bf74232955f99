"""Requests to a node through a real collector and a real agent: built-ins, drop-ins, and reports kept flowing.

Also: the agent advertises its request types in its HELLO, and the complete
handler example of docs/files.md loads and answers.
"""

from __future__ import annotations

import csv
import io
import os
import re
import signal
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import msgpack
import pytest
import zmq

from gui.client import Client as StreamClient
from gui.client import RequestFailed
from messages import Envelope, Kind, NodeInfo, SystemStats
from messages.codec import decode_payload, envelope, unpack
from node_agent.handlers import handler_table, load_handler_file
from node_agent.pool import RequestPool
from tests.conftest import FIXTURES, CollectorProcess, ProcessGroup, wait_for
from tests.test_agent_handlers import wait_frames
from tests.test_agent_protocol import FakeCollector
from tests.wire import Client

DOC = Path(__file__).resolve().parent.parent / "docs" / "files.md"
HANDLERS = FIXTURES / "handlers"
FAST_PROBES = FIXTURES / "durability_probes"


@pytest.fixture
def testbed(procs: ProcessGroup, zmq_context: zmq.Context) -> Iterator[tuple[CollectorProcess, Client]]:
    """A collector, agent n1 (drop-in handlers, a 20/s probe) and a client that saw n1 come up."""
    collector = procs.collector("--node-timeout", "2")
    procs.agent(collector.agents, "n1", "--handlers-dir", str(HANDLERS), "--probes-dir", str(FAST_PROBES), interval=0.5)
    client = Client(zmq_context, collector.clients)
    wait_for(lambda: live(client, "n1"), 20, what="node n1 live")
    yield collector, client
    client.close()


def live(client: Client, node: str) -> bool:
    return any(n.node == node and n.status == "live" for n in client.answer("NodeList").nodes)


def last_seq(client: Client, node: str) -> int:
    return next(n.last_seq for n in client.answer("NodeList").nodes if n.node == node)


@pytest.mark.e2e
def test_agent_advertises_its_request_types(procs: ProcessGroup, zmq_context: zmq.Context) -> None:
    router = zmq_context.socket(zmq.ROUTER)
    router.linger = 0
    port = router.bind_to_random_port("tcp://127.0.0.1")
    procs.agent(f"tcp://127.0.0.1:{port}", "n1", "--handlers-dir", str(HANDLERS))
    assert router.poll(20_000), "no HELLO from the agent"
    _, frame = router.recv_multipart()
    (hello,) = unpack(frame)
    info = decode_payload(hello.payload, hello.encoding, hello.schema)
    assert hello.kind == Kind.HELLO and isinstance(info, NodeInfo)
    assert sorted(info.request_types) == ["Echo", "EchoError", "NodeFile", "ProcessList", "RunProbe", "Slow"]


@pytest.mark.e2e
def test_built_in_and_drop_in_requests_through_the_collector(testbed: tuple[CollectorProcess, Client]) -> None:
    _, client = testbed
    processes = client.answer("ProcessList", node="n1")
    assert any("labscope" in p["cmdline"] and "agent" in p["cmdline"] for p in processes)
    probe = client.ask("RunProbe", node="n1", name="SystemStats")
    stats = decode_payload(probe.payload, probe.encoding, probe.schema)
    assert isinstance(stats, SystemStats) and stats.memory.total > 0 and probe.params["reporttype"] == "SystemStats"
    assert client.answer("RunProbe", node="n1", name="probedata")["n"] > 0
    assert client.answer("Echo", node="n1", word="hi") == {"word": "hi"}
    errors = {
        t: client.ask(t, node="n1", **p)
        for t, p in (
            ("EchoError", {"what": "x"}),
            ("Nope", {}),
            ("RunProbe", {"name": "nope"}),
            ("NodeFile", {"path": "/etc/passwd"}),
        )
    }
    assert {t: (e.kind, e.error_code) for t, e in errors.items()} == {
        "EchoError": (Kind.ERROR, "not-found"),
        "Nope": (Kind.ERROR, "unknown-type"),
        "RunProbe": (Kind.ERROR, "not-found"),
        "NodeFile": (Kind.ERROR, "denied"),
    }
    assert "--serve-dir" in errors["NodeFile"].error


@pytest.mark.e2e
def test_streamed_drop_in_answer_is_verified_by_the_client(testbed: tuple[CollectorProcess, Client]) -> None:
    collector, _ = testbed
    with StreamClient(collector.clients) as client:
        data = b"".join(client.stream("Echo", {"node": "n1", "chunks": "50"}, credit=4, timeout=10))
        assert data == b"".join(bytes([i % 256]) * 1000 for i in range(50))
        with pytest.raises(RequestFailed) as caught:
            list(client.stream("NodeFile", {"node": "n1", "path": "x"}, timeout=10))
        assert caught.value.code == "denied"


@pytest.mark.e2e
def test_slow_handler_does_not_delay_reports(testbed: tuple[CollectorProcess, Client]) -> None:
    _, client = testbed
    client.send(Kind.REQUEST, "Slow", request_id=9001, params={"node": "n1", "seconds": "3"})
    client.send(Kind.REQUEST, "Slow", request_id=9002, params={"node": "n1", "seconds": "3"})
    started = time.monotonic()
    samples: list[tuple[float, int]] = []
    while time.monotonic() - started < 2.8:
        samples.append((time.monotonic() - started, last_seq(client, "n1")))
        time.sleep(0.2)  # pacing the samples, not waiting for a condition
    for request_id in (9001, 9002):
        answer = client.expect(partial(answers, request_id), timeout=10, what="the slow answer")
        assert answer.kind == Kind.RESPONSE and msgpack.unpackb(answer.payload) == {"slept": 3.0}
    assert time.monotonic() - started >= 2.9, "the slow handler really took its time"
    # The fast probe makes 20 reports a second: while both slow requests ran, reports kept arriving.
    gained = samples[-1][1] - samples[0][1]
    assert gained >= 30, f"only {gained} reports in {samples[-1][0] - samples[0][0]:.1f} s: {samples}"
    assert longest_flat(samples) < 1.0, f"reports stopped during the slow requests: {samples}"


def answers(request_id: int, env: Envelope) -> bool:
    return env.request_id == request_id


def longest_flat(samples: list[tuple[float, int]]) -> float:
    """The longest time (s) over which the sampled value did not grow."""
    longest, since = 0.0, samples[0]
    for when, value in samples[1:]:
        if value > since[1]:
            since = (when, value)
        longest = max(longest, when - since[0])
    return longest


# ----------------------------------------------------------------------------- the docs example


def doc_example(tmp_path: Path) -> Path:
    match = re.search(r"<!-- example: handler \(([\w.]+)\) -->\s*```python\n(.*?)\n```", DOC.read_text(), re.DOTALL)
    assert match, f"no handler example in {DOC}"
    path = tmp_path / match.group(1)
    path.write_text(match.group(2) + "\n")
    return path


def test_docs_handler_example_loads_and_answers(tmp_path: Path) -> None:
    handler = load_handler_file(doc_example(tmp_path))
    pool = RequestPool("n1", handler_table([handler]))
    try:
        pool.submit(envelope(Kind.REQUEST, "ListeningPorts", request_id=1, params={"family": "4"}))
        pool.submit(envelope(Kind.REQUEST, "ListeningPorts", request_id=2, params={"family": "ipx"}))
        pool.submit(envelope(Kind.REQUEST, "ProcessCSV", request_id=3, params={"credit": "4"}))
        answers = wait_frames(pool, 3)

        def streamed() -> bool:
            return any(a.request_id == 3 and a.last for a in answers)

        # ListeningPorts (psutil.net_connections) may answer after the whole CSV stream: wait for all three.
        while not streamed() or not {1, 2} <= {a.request_id for a in answers if a.kind != Kind.CHUNK}:
            if not streamed():  # as a client does: one more chunk allowed for each one consumed
                pool.credit(envelope(Kind.CREDIT, request_id=3, seq=1))
            answers += wait_frames(pool, 1)
    finally:
        pool.close()
    by_id = {a.request_id: a for a in answers if a.kind != Kind.CHUNK}
    ports = msgpack.unpackb(by_id[1].payload)
    assert isinstance(ports, list) and all({"address", "port", "pid"} == set(p) for p in ports)
    assert by_id[2].error_code == "bad-request"
    text = b"".join(a.payload for a in answers if a.request_id == 3).decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows and any(int(r["pid"]) > 0 and int(r["rss"]) > 0 for r in rows)


# ----------------------------------------------------------------------------- against a hand-played collector


@pytest.mark.e2e
def test_new_handshake_cancels_a_running_stream(procs: ProcessGroup, zmq_context: zmq.Context, tmp_path: Path) -> None:
    serve = tmp_path / "serve"
    serve.mkdir()
    (serve / "big.bin").write_bytes(os.urandom(4 * 1024 * 1024))
    fake = FakeCollector(zmq_context)
    try:
        procs.agent(fake.endpoint, "n1", "--serve-dir", str(serve))
        ident, hello = fake.expect(Kind.HELLO, timeout=20)
        fake.welcome(ident, hello)
        fake.send(ident, envelope(Kind.REQUEST, "NodeFile", request_id=5, params={"path": "big.bin", "credit": "1"}))
        _, first = fake.expect(Kind.CHUNK, on_frame=fake.acker())
        assert (first.request_id, first.seq, first.params["size"]) == (5, 0, str(4 * 1024 * 1024))
        fake.send(ident, envelope(Kind.ERROR, error_code="hello-required", error="restarted"))
        ident, hello = fake.expect(Kind.HELLO, on_frame=fake.acker())
        fake.welcome(ident, hello)
        fake.send(ident, envelope(Kind.CREDIT, request_id=5, seq=10))
        # heartbeats keep coming; a chunk of the cancelled stream must not
        for _ in range(3):
            fake.expect(Kind.HEARTBEAT, on_frame=fake.acker())
        assert not [e for e in fake.seen if e.kind == Kind.CHUNK and e.seq > 0]
    finally:
        fake.close()


@pytest.mark.e2e
def test_agent_stops_promptly_while_a_handler_is_stuck(procs: ProcessGroup, zmq_context: zmq.Context) -> None:
    fake = FakeCollector(zmq_context)
    try:
        agent = procs.agent(fake.endpoint, "n1", "--handlers-dir", str(HANDLERS))
        ident, hello = fake.expect(Kind.HELLO, timeout=20)
        fake.welcome(ident, hello)
        fake.send(ident, envelope(Kind.REQUEST, "Slow", request_id=1, params={"seconds": "60"}))
        fake.expect(Kind.HEARTBEAT, on_frame=fake.acker())
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(5) == 0, "a stuck handler must not keep the agent from stopping"
        assert any(e.kind == Kind.BYE for e in fake.seen) or fake.expect(Kind.BYE, timeout=2)
    finally:
        fake.close()
