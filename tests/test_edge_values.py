"""Values at the edge of their type, from hostile agents and clients, against a real collector process.

Every number the collector takes off the wire has documented bounds (docs/protocol.md, "Bounds"):
an envelope carrying a value outside them is refused with an ERROR of the documented code and
counted, and nothing may crash the collector or leave state that breaks a later request. Hypothesis
drives extreme and random values through one collector shared by the module; after every example
the collector must still be alive and answer ``NodeList`` and ``CollectorStats`` with well-formed,
decoded answers. The expected outcome of each example comes from the bounds as documented, written
out here again on purpose rather than imported from messages/limits.py.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import zmq
from hypothesis import event, given, settings
from hypothesis import strategies as st

from messages import (
    CollectorInfo,
    Envelope,
    File,
    Files,
    Kind,
    NodeInfo,
    NodeList,
    NodeStatus,
    SystemStats,
    SystemStatsHistory,
)
from messages.codec import envelope
from node_agent.agent import Agent, AgentConfig
from node_agent.handlers import handler_table
from node_agent.pool import Credit, RequestPool
from node_agent.runner import ScheduledProbe
from node_agent.sysprobe import SystemStatsProbe
from tests.conftest import CollectorProcess, ProcessGroup
from tests.test_agent_handlers import Streamer, assert_quiet, request, wait_frames
from tests.test_agent_protocol import FakeCollector
from tests.wire import Client, Peer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

MAX_SEQ = 2**63 - 1
MAX_UINT64 = 2**64 - 1
MAX_TIME = 32503680000.0  # 3000-01-01T00:00:00Z
MAX_FILE = 1 << 36
PLAIN = re.compile(r"[0-9]+")

EXAMPLES = settings(max_examples=50, deadline=None, database=None)
NODE_IDS = itertools.count(1)

UINT64 = st.one_of(
    st.integers(0, MAX_UINT64),
    st.sampled_from([0, 1, 2, MAX_SEQ - 1, MAX_SEQ, MAX_SEQ + 1, MAX_UINT64 - 1, MAX_UINT64]),
)
TIMES = st.one_of(
    st.floats(),
    st.floats(0.0, MAX_TIME),
    st.sampled_from(
        [
            0.0,
            -0.0,
            -1e-300,
            -1.0,
            1.7e9,
            MAX_TIME,
            math.nextafter(MAX_TIME, math.inf),
            1e300,
            math.inf,
            -math.inf,
            math.nan,
        ]
    ),
)
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)  # protobuf strings are UTF-8
NUMBER_TEXTS = st.sampled_from(
    [
        "",
        "0",
        "1",
        "8",
        "64",
        "65",
        "064",
        "-1",
        "+1",
        "1.5",
        " 7",
        "7 ",
        "0x10",
        "1e3",
        "\u00b2",
        "\u0663",
        "9" * 19,
        "9" * 40,
        "9" * 5000,
        str(MAX_SEQ),
        str(MAX_SEQ + 1),
        "0" * 18 + "1",
        "0" * 19 + "1",
    ]
)
BACKLOGS = st.one_of(st.none(), st.integers(0, 2**70).map(str), NUMBER_TEXTS, TEXT)
CREDITS = st.one_of(st.none(), st.integers(-3, 2**70).map(str), st.integers(0, 70).map(str), NUMBER_TEXTS, TEXT)
GRANTS = st.one_of(st.integers(0, 70), UINT64)


# ------------------------------------------------------------ the documented bounds, as oracles


def report_ok(seq: int, when: float) -> bool:
    return 1 <= seq <= MAX_SEQ and 0.0 <= when <= MAX_TIME


def decimal_ok(text: str | None, low: int, high: int) -> bool:
    return text is None or (
        len(text) <= len(str(high)) and PLAIN.fullmatch(text) is not None and low <= int(text) <= high
    )


def grant_ok(seq: int, cancel: bool) -> bool:
    return cancel or 1 <= seq <= 64


def piece_ok(offset: int, length: int, size: int, received: int, modtime: float) -> bool:
    within = offset == 0 if size == 0 else offset + length <= size
    return size <= MAX_FILE and within and offset <= received and 0.0 <= modtime <= MAX_TIME


# ------------------------------------------------------------ one collector for the module


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CollectorProcess]:
    group = ProcessGroup(tmp_path_factory.mktemp("edges"))
    # One client asks flat out for every generated example: these tests are about values, not rate limits.
    config = group.tmp_path / "unthrottled.toml"
    config.write_text("[collector]\nclient_request_rate = 1000000\nclient_request_burst = 1000000\n")
    yield group.collector("--node-timeout", "60", "--config", str(config))
    group.stop_all()


@pytest.fixture(scope="module")
def context() -> Iterator[zmq.Context]:
    ctx = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


@pytest.fixture(scope="module")
def client(collector: CollectorProcess, context: zmq.Context) -> Iterator[Client]:
    watcher = Client(context, collector.clients)
    yield watcher
    watcher.close()


@contextmanager
def peer(context: zmq.Context, endpoint: str, kind: type[Peer] = Peer) -> Iterator[Any]:
    sock = kind(context, endpoint)
    try:
        yield sock
    finally:
        sock.close()


def fresh_node() -> str:
    return f"edge-{next(NODE_IDS)}"


def hello(agent: Peer, node: str, seq: int = 1, **fields: Any) -> Envelope:
    info = NodeInfo(node=node, hostname="edge-host", instance=f"instance-{node}", request_types=["NodeFile"])
    agent.send(Kind.HELLO, "NodeInfo", info, node=node, seq=seq, **fields)
    return agent.expect(lambda e: e.kind in (Kind.ACK, Kind.ERROR), what=f"answer to the HELLO of {node}")


def healthy(collector: CollectorProcess, client: Client) -> dict[str, int]:
    """Assert the collector lives and answers NodeList and CollectorStats, well-formed; returns the counters."""
    assert collector.popen.poll() is None, f"collector died:\n{collector.log()[-3000:]}"
    nodes = client.answer("NodeList")
    assert isinstance(nodes, NodeList)
    for status in nodes.nodes:
        assert status.status in ("live", "lost")
        assert max(status.last_seq, status.backlog, status.gaps, status.reconnects) <= MAX_SEQ
    stats = client.answer("CollectorStats")
    assert isinstance(stats, dict) and math.isfinite(stats["uptime"])
    assert stats["nodes"]["total"] == len(nodes.nodes) and "nodes" in stats["modules"]
    counters = stats["counters"]
    assert all(isinstance(v, int) and 0 <= v <= MAX_UINT64 for v in counters.values())
    return counters


def status_of(client: Client, node: str) -> NodeStatus | None:
    answer = client.ask("NodeList", node=node)
    if answer.kind == Kind.ERROR:
        assert answer.error_code == "not-found"
        return None
    (status,) = NodeList.FromString(answer.payload).nodes
    return status


def grew(before: dict[str, int], after: dict[str, int], name: str) -> int:
    return after.get(name, 0) - before.get(name, 0)


def refusal(sock: Peer, code: str, **fields: Any) -> Envelope:
    error = sock.expect(lambda e: e.kind == Kind.ERROR, what=f"ERROR {code}")
    assert error.error_code == code, (error.error_code, error.error)
    for name, value in fields.items():
        assert getattr(error, name) == value, (name, getattr(error, name), value)
    return error


# ------------------------------------------------------------ agents' numbers


@EXAMPLES
@given(seq=UINT64, when=TIMES)
def test_report_seq_and_time(
    collector: CollectorProcess, context: zmq.Context, client: Client, seq: int, when: float
) -> None:
    before, node = healthy(collector, client), fresh_node()
    with peer(context, collector.agents) as agent:
        assert hello(agent, node).seq == 0
        agent.send(Kind.REPORT, "SystemStats", SystemStats(cpu_percent=1.0), node=node, seq=seq, time=when)
        if report_ok(seq, when):
            agent.expect(lambda e: e.kind == Kind.ACK and e.seq == seq, what=f"ACK {seq}")
        else:
            refusal(agent, "out-of-range", node=node, seq=seq)
    after = healthy(collector, client)
    accepted = report_ok(seq, when)
    event(f"REPORT accepted: {accepted}")
    assert grew(before, after, "out-of-range") == (not accepted)
    status = status_of(client, node)
    assert status is not None and (status.last_seq, status.gaps) == ((seq, seq - 1) if accepted else (0, 0))
    history = client.ask("SystemStatsHistory", node=node)
    if accepted:  # the edge times that pass reach the module and come back unchanged
        assert [s.time for s in SystemStatsHistory.FromString(history.payload).samples] == [when]
    else:
        assert (history.kind, history.error_code) == (Kind.ERROR, "not-found")


@EXAMPLES
@given(seq=UINT64, backlog=BACKLOGS, later=BACKLOGS)
def test_hello_seq_and_backlogs(
    collector: CollectorProcess, context: zmq.Context, client: Client, seq: int, backlog: str | None, later: str | None
) -> None:
    before, node = healthy(collector, client), fresh_node()
    hello_ok = seq <= MAX_SEQ and decimal_ok(backlog, 0, MAX_SEQ)
    beat_ok = decimal_ok(later, 0, MAX_SEQ)
    event(f"HELLO accepted: {hello_ok}, HEARTBEAT accepted: {beat_ok}")
    with peer(context, collector.agents) as agent:
        answer = hello(agent, node, seq, params={} if backlog is None else {"backlog": backlog})
        if not hello_ok:
            assert (answer.kind, answer.error_code, answer.seq) == (Kind.ERROR, "out-of-range", seq)
            assert status_of(client, node) is None, "a refused HELLO must not register its node"
            assert grew(before, healthy(collector, client), "out-of-range") == 1
            return
        assert answer.seq == max(0, seq - 1)
        agent.send(Kind.HEARTBEAT, node=node, params={} if later is None else {"backlog": later})
        if beat_ok:
            agent.expect(lambda e: e.kind == Kind.HEARTBEAT, what="HEARTBEAT answer")
        else:
            refusal(agent, "out-of-range", node=node)
    after = healthy(collector, client)
    assert grew(before, after, "out-of-range") == (not beat_ok)
    status = status_of(client, node)
    expected = later if beat_ok and later is not None else backlog
    assert status is not None and status.last_seq == max(0, seq - 1)
    assert status.backlog == (int(expected) if expected is not None else 0)


def test_hello_whose_node_ids_differ_is_refused(
    collector: CollectorProcess, context: zmq.Context, client: Client
) -> None:
    before, node, other = healthy(collector, client), fresh_node(), fresh_node()
    with peer(context, collector.agents) as agent:
        agent.send(Kind.HELLO, "NodeInfo", NodeInfo(node=other, instance="x"), node=node, seq=1)
        error = refusal(agent, "bad-hello", node=node)
        assert node in error.error and other in error.error
        hello(agent, node)  # the same connection may still say a proper HELLO
    after = healthy(collector, client)
    assert grew(before, after, "bad-hello") == 1
    assert status_of(client, other) is None and status_of(client, node) is not None


@pytest.mark.parametrize("seq", [2**63, 2**64 - 1])
def test_reported_crash_report_seq_beyond_sqlite(
    collector: CollectorProcess, context: zmq.Context, client: Client, seq: int
) -> None:
    before, node = healthy(collector, client), fresh_node()
    with peer(context, collector.agents) as agent:
        hello(agent, node)
        agent.send(Kind.REPORT, "SystemStats", SystemStats(), node=node, seq=seq)
        error = refusal(agent, "out-of-range", node=node, seq=seq, type="SystemStats")
        assert "2^63-1" in error.error
        agent.send(Kind.REPORT, "SystemStats", SystemStats(), node=node, seq=1)  # the node carries on
        agent.expect(lambda e: e.kind == Kind.ACK and e.seq == 1, what="ACK 1")
    after = healthy(collector, client)
    assert grew(before, after, "out-of-range") == 1 and grew(before, after, "reports") == 1
    assert status_of(client, node).last_seq == 1  # type: ignore[union-attr]


def test_reported_crash_backlog_of_forty_nines(
    collector: CollectorProcess, context: zmq.Context, client: Client
) -> None:
    before, node = healthy(collector, client), fresh_node()
    with peer(context, collector.agents) as agent:
        hello(agent, node, params={"backlog": "5"})
        agent.send(Kind.HEARTBEAT, node=node, params={"backlog": "9" * 40})
        refusal(agent, "out-of-range", node=node)
        refused = hello(agent, fresh_node(), params={"backlog": "9" * 40})
        assert (refused.kind, refused.error_code) == (Kind.ERROR, "out-of-range")
    after = healthy(collector, client)
    assert grew(before, after, "out-of-range") == 2
    assert status_of(client, node).backlog == 5  # type: ignore[union-attr]
    client.send(Kind.SUBSCRIBE, params={"types": "NodeList"})  # the pushed NodeList is built fine too
    client.expect(
        lambda e: (
            e.kind == Kind.UPDATE
            and e.type == "NodeList"
            and node in [s.node for s in NodeList.FromString(e.payload).nodes]
        ),
        what="NodeList update",
    )
    client.send(Kind.SUBSCRIBE, params={"types": ""})


# ------------------------------------------------------------ clients' numbers


@EXAMPLES
@given(request_id=UINT64, credit=CREDITS)
def test_request_ids_and_credit_params(
    collector: CollectorProcess, context: zmq.Context, client: Client, request_id: int, credit: str | None
) -> None:
    before = healthy(collector, client)
    with peer(context, collector.clients, Client) as asker:
        asker.send(Kind.REQUEST, "NodeList", request_id=request_id, params={} if credit is None else {"credit": credit})
        answer = asker.expect(lambda e: e.request_id == request_id, what=f"answer to request {request_id}")
    accepted = decimal_ok(credit, 1, 64)
    event(f"credit accepted: {accepted}")
    if accepted:
        assert answer.kind == Kind.RESPONSE and isinstance(NodeList.FromString(answer.payload), NodeList)
    else:
        assert (answer.kind, answer.error_code, answer.type) == (Kind.ERROR, "bad-request", "NodeList")
    assert grew(before, healthy(collector, client), "client-out-of-range") == (not accepted)


@EXAMPLES
@given(request_id=UINT64, seq=GRANTS, cancel=st.booleans())
def test_credit_envelopes_nobody_waits_for(
    collector: CollectorProcess, context: zmq.Context, client: Client, request_id: int, seq: int, cancel: bool
) -> None:
    before = healthy(collector, client)
    with peer(context, collector.clients, Client) as granter:
        granter.send(Kind.CREDIT, request_id=request_id, seq=seq, params={"cancel": "1"} if cancel else {})
        granter.answer("CollectorStats")  # handled after the CREDIT: any answer to it came first
        errors = [e for e in granter.seen if e.kind == Kind.ERROR]
    after = healthy(collector, client)
    event(f"CREDIT accepted: {grant_ok(seq, cancel)}")
    if grant_ok(seq, cancel):
        assert errors == [] and grew(before, after, "client-stale-credit") == 1
    else:
        assert [(e.error_code, e.request_id) for e in errors] == [("bad-request", request_id)]
        assert grew(before, after, "client-out-of-range") == 1 and grew(before, after, "client-stale-credit") == 0


@EXAMPLES
@given(credit=CREDITS, seq=GRANTS, cancel=st.booleans())
def test_credit_through_a_node_request(
    collector: CollectorProcess, context: zmq.Context, client: Client, credit: str | None, seq: int, cancel: bool
) -> None:
    node = fresh_node()
    event(f"credit accepted: {decimal_ok(credit, 1, 64)}, CREDIT accepted: {grant_ok(seq, cancel)}")
    with peer(context, collector.agents) as agent, peer(context, collector.clients, Client) as asker:
        hello(agent, node)
        params = {"node": node, "path": "x"} | ({} if credit is None else {"credit": credit})
        asker.send(Kind.REQUEST, "NodeFile", request_id=1, params=params)
        if not decimal_ok(credit, 1, 64):
            refusal(asker, "bad-request", request_id=1)
            asker.send(Kind.REQUEST, "NodeFile", request_id=2, params={"node": node, "path": "y"})
            forwarded = agent.expect(lambda e: e.kind == Kind.REQUEST, what="forwarded REQUEST")
            assert forwarded.params["path"] == "y", "the refused request must not reach the agent"
            agent.send(Kind.ERROR, "NodeFile", request_id=forwarded.request_id, error_code="not-found")
            refusal(asker, "not-found", request_id=2)
            return
        forwarded = agent.expect(lambda e: e.kind == Kind.REQUEST, what="forwarded REQUEST")
        assert forwarded.params.get("credit") == credit
        _relay_credit(agent, asker, forwarded.request_id, seq, cancel)
    healthy(collector, client)


def _relay_credit(agent: Peer, asker: Client, rid: int, seq: int, cancel: bool) -> None:
    agent.send(Kind.CHUNK, "NodeFile", b"first", request_id=rid, seq=0)
    asker.expect(lambda e: e.kind == Kind.CHUNK and e.seq == 0, what="chunk 0")
    asker.send(Kind.CREDIT, request_id=1, seq=seq, params={"cancel": "1"} if cancel else {})
    if not grant_ok(seq, cancel):
        refusal(asker, "bad-request", request_id=1)
        asker.send(Kind.CREDIT, request_id=1, seq=1)  # the first CREDIT the agent sees must be this one
        seq = 1
    relayed = agent.expect(lambda e: e.kind == Kind.CREDIT, what="relayed CREDIT")
    if cancel:
        assert relayed.params["cancel"] == "1"
        return
    assert relayed.seq == seq
    digest = hashlib.sha256(b"first").hexdigest()
    agent.send(Kind.CHUNK, "NodeFile", b"", request_id=rid, seq=1, last=True, params={"size": "5", "sha256": digest})
    asker.expect(lambda e: e.kind == Kind.CHUNK and e.last, what="last chunk")


def test_a_bad_credit_leaves_a_module_stream_running(
    collector: CollectorProcess, context: zmq.Context, client: Client
) -> None:
    node, blob = fresh_node(), bytes(range(256)) * 10_000  # 2.56 MB: streamed in three chunks
    with peer(context, collector.agents) as agent, peer(context, collector.clients, Client) as asker:
        hello(agent, node)
        for seq, start in enumerate(range(0, len(blob), 1 << 20), 1):
            piece = File(
                name="big.bin",
                modtime=1.0,
                data=blob[start : start + (1 << 20)],
                offset=start,
                size=len(blob),
                last=start + (1 << 20) >= len(blob),
            )
            agent.send(Kind.REPORT, "FileOutput", Files(files=[piece]), node=node, seq=seq)
        agent.expect(lambda e: e.kind == Kind.ACK and e.seq == 3, what="ACK 3")
        asker.send(Kind.REQUEST, "File", request_id=7, params={"node": node, "filename": "big.bin", "credit": "0"})
        refusal(asker, "bad-request", request_id=7)
        asker.send(Kind.REQUEST, "File", request_id=8, params={"node": node, "filename": "big.bin", "credit": "1"})
        chunks = [asker.expect(lambda e: e.kind == Kind.CHUNK and e.seq == 0, what="chunk 0")]
        for bad in (0, 65, MAX_UINT64):
            asker.send(Kind.CREDIT, request_id=8, seq=bad)
            refusal(asker, "bad-request", request_id=8)
        assert not [e for e in asker.seen if e.kind == Kind.CHUNK], "a refused CREDIT must grant nothing"
        asker.send(Kind.CREDIT, request_id=8, seq=64)
        # Three 1 MiB-or-less pieces; the last piece itself carries last=true (docs/protocol.md, CHUNK).
        chunks += [asker.expect(lambda e, s=s: e.kind == Kind.CHUNK and e.seq == s, what=f"chunk {s}") for s in (1, 2)]
    assert chunks[-1].last and b"".join(c.payload for c in chunks) == blob
    assert chunks[-1].params["sha256"] == hashlib.sha256(blob).hexdigest()
    healthy(collector, client)


# ------------------------------------------------------------ files' numbers


@EXAMPLES
@given(
    first=st.integers(0, 64),
    size=st.one_of(st.integers(0, 200), UINT64),
    offset=st.one_of(st.integers(0, 64), st.integers(0, 200), UINT64),
    length=st.integers(0, 64),
    modtime=TIMES,
    last=st.booleans(),
)
def test_file_offsets_sizes_and_modtimes(
    collector: CollectorProcess,
    context: zmq.Context,
    client: Client,
    first: int,
    size: int,
    offset: int,
    length: int,
    modtime: float,
    last: bool,
) -> None:
    before, node = client.answer("FileStats"), fresh_node()
    opening = File(name="f.bin", modtime=1.0, data=b"a" * first, size=size)
    piece = File(name="f.bin", modtime=modtime, data=b"b" * length, offset=offset, size=size, last=last)
    with peer(context, collector.agents) as agent:
        hello(agent, node)
        for seq, sent in enumerate((opening, piece), 1):
            agent.send(Kind.REPORT, "FileOutput", Files(files=[sent]), node=node, seq=seq)
        agent.expect(lambda e: e.kind == Kind.ACK and e.seq == 2, what="ACK 2")
    opened = piece_ok(0, first, size, 0, 1.0)
    received = first if opened and size else 0  # a size-0 opening is a whole file: nothing stays partial
    written = piece_ok(offset, length, size, received, modtime)
    event(f"opening written: {opened}, piece written: {written}")
    after = client.answer("FileStats")
    assert after["refused"] - before["refused"] == (not opened) + (not written)
    listed = {f["name"]: f["size"] for f in client.answer("FileList", node=node)}
    if written and (last or size == 0):
        assert listed == {"f.bin": length if offset == 0 else max(received, offset + length)}
    elif size == 0:  # the opening piece was a whole file of its own
        assert listed == {"f.bin": first}
    else:
        assert listed == {}
    _assert_no_large_file(collector.data_dir / "modules")
    healthy(collector, client)


def _assert_no_large_file(folder: Path) -> None:
    """Nothing this test sends adds up to 3 MB; a larger file (sparse or not) is a bomb that went off."""
    sizes = {p: p.stat().st_size for p in folder.rglob("*") if p.is_file()}
    assert all(size <= 3_000_000 for size in sizes.values()), max(sizes.items(), key=lambda item: item[1])


# ------------------------------------------------------------ a restart with the largest numbers


def test_the_largest_seq_survives_a_restart(procs: ProcessGroup, zmq_context: zmq.Context) -> None:
    first = procs.collector()
    with peer(zmq_context, first.agents) as agent:
        hello(agent, "big")
        agent.send(Kind.REPORT, "SystemStats", SystemStats(), node="big", seq=MAX_SEQ)
        agent.expect(lambda e: e.kind == Kind.ACK and e.seq == MAX_SEQ, what="ACK 2^63-1")
    assert first.stop() == 0, first.log()[-3000:]
    second = procs.collector(data_dir=first.data_dir)
    with peer(zmq_context, second.agents) as agent, peer(zmq_context, second.clients, Client) as asker:
        assert hello(agent, "big").seq == MAX_SEQ  # the same instance: the collector holds 2^63-1
        status = status_of(asker, "big")
        assert status is not None and (status.last_seq, status.gaps) == (MAX_SEQ, MAX_SEQ - 1)
        agent.send(Kind.REPORT, "SystemStats", SystemStats(), node="big", seq=MAX_SEQ)
        agent.expect(lambda e: e.kind == Kind.ACK and e.seq == MAX_SEQ, what="ACK of the duplicate")
        healthy(second, asker)


# ------------------------------------------------------------ the agent's side: a hostile collector


def test_agent_pool_refuses_credits_out_of_range() -> None:
    pool = RequestPool("n1", handler_table([Streamer()]))
    try:
        for index, credit in enumerate(["0", "65", "1000", "-1", "", "\u00b2", "9" * 5000], 1):
            refused = pool.submit(request("Stream", MAX_UINT64 - index, n="5", credit=credit))
            assert refused is not None and (refused.error_code, refused.request_id) == (
                "bad-request",
                MAX_UINT64 - index,
            )
        assert pool.submit(request("Stream", MAX_UINT64, n="5", credit="2")) is None
        assert [c.seq for c in wait_frames(pool, 2)] == [0, 1]
        for seq in (0, 65, MAX_UINT64):
            pool.credit(envelope(Kind.CREDIT, request_id=MAX_UINT64, seq=seq))
        assert_quiet(pool, 0.2)  # refused CREDITs grant nothing
        assert pool.counters["out-of-range"] == 10
        pool.credit(envelope(Kind.CREDIT, request_id=MAX_UINT64, seq=64))
        assert wait_frames(pool, 3)[-1].last
    finally:
        pool.close()


def test_credit_never_adds_up_beyond_the_maximum() -> None:
    credit = Credit(8)
    for _ in range(100):
        credit.grant(64)
    assert credit.credit == 64


@pytest.mark.parametrize("interval", [math.inf, math.nan, 1e-300])
def test_agent_survives_a_hostile_collector(zmq_context: zmq.Context, interval: float) -> None:
    fake = FakeCollector(zmq_context)
    config = AgentConfig(collector=fake.endpoint, node_id="edge-agent", interval=0.1, heartbeat_interval=0.2)
    agent = Agent(config, [ScheduledProbe("SystemStats", SystemStatsProbe(), config.interval)])
    status: list[int] = []
    thread = threading.Thread(target=lambda: status.append(agent.run(handle_signals=False)), daemon=True)
    thread.start()
    try:
        ident, hello = fake.expect(Kind.HELLO)
        fake.send(
            ident,
            envelope(Kind.HELLO, "CollectorInfo", CollectorInfo(heartbeat_interval=interval)),
            envelope(Kind.ACK, node=hello.node, seq=MAX_UINT64),
            envelope(Kind.REQUEST, "ProcessList", request_id=MAX_UINT64, params={"credit": "9" * 5000}),
            envelope(Kind.CREDIT, request_id=3, seq=MAX_UINT64),
        )
        _, error = fake.expect(Kind.ERROR)
        assert (error.error_code, error.request_id) == ("bad-request", MAX_UINT64)
        _, first = fake.expect(Kind.REPORT)
        assert first.seq == 1, "an ACK beyond 2^63-1 must be ignored"
        _assert_heartbeats_at_the_agents_own_pace(fake)
        fake.send(ident, envelope(Kind.ACK, node=hello.node, seq=MAX_SEQ))  # in range, but uses every number up
        _assert_heartbeats_at_the_agents_own_pace(fake)
        assert agent.outbox.stats.discarded > 0, "reports past 2^63-1 are discarded, not a crash"
    finally:
        agent.stop()
        thread.join(10)
        fake.close()
    assert status == [0] and agent.stats.out_of_range == 2
    assert agent.heartbeat_interval == 0.2


def _assert_heartbeats_at_the_agents_own_pace(fake: FakeCollector) -> None:
    """For a second, answer as a collector would and count heartbeats: about 0.2 s apart, not never
    (an infinite interval) and not on every turn of the loop (a tiny one)."""
    beats, started, acker = 0, time.monotonic(), fake.acker()
    while time.monotonic() - started < 1.0:
        got = fake.recv(0.1)
        if got is not None:
            acker(*got)
            beats += sum(e.kind == Kind.HEARTBEAT for e in got[1])
    assert 2 <= beats <= 25, f"{beats} heartbeats in 1 s at a 0.2 s interval"
