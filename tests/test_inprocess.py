"""The collector inside the test process: report path, journal commit, relay and store, without subprocesses.

A real ``Collector(config).start()`` runs on gevent in this process, with its real sockets on
random 127.0.0.1 ports and its real SQLite file. The test's agent and client are plain DEALERs on
a ``zmq.green`` context, so every wait of theirs lets the collector's greenlets run. Only the
collector's public parts are used: ``Collector``, its sockets (through ``collector.json``) and the
store file.
"""

from __future__ import annotations

import gc
import json
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq.green
from gevent import sleep as green_sleep

from collector import fast_drain
from collector.agent_link import BUSY_SHARE, BUSY_WINDOW, DRAIN_LIMIT, SATURATION_HOLD
from collector.config import CollectorConfig, DistSection
from collector.segments import SegmentReader, segment_folder
from collector.server import Collector
from collector.store import BATCH_COLUMNS, SQLiteStore, row_batch
from collector.zmq_context import ZERO_COPY_RECV
from messages import Batch, Envelope, Kind, NodeInfo, Samples, SystemStats
from messages.codec import decode_payload, envelope, pack
from messages.errors import Code
from messages.keys import ClientKeys, generate
from modules.systemstats import POINT_NAMES
from tests.test_fast_drain import c_drain_or_skip
from tests.wire import Client, Peer

STORE = "collector.sqlite3"
NODE = "n1"


@pytest.fixture
def green() -> Iterator[zmq.green.Context]:
    """A zmq.green context for the test's peers: their polls yield to the collector's greenlets."""
    context = zmq.green.Context()
    yield context
    context.destroy(linger=0)


@pytest.fixture
def start_collector(tmp_path: Path) -> Iterator[Callable[..., Collector]]:
    """Start collectors on ``tmp_path/data`` in this process; each is stopped at teardown."""
    started: list[Collector] = []

    def start(**settings: Any) -> Collector:
        config = CollectorConfig(
            listen_agents="tcp://127.0.0.1:*",
            listen_clients="tcp://127.0.0.1:*",
            data_dir=tmp_path / "data",
            alias="in-process",
            node_timeout=30.0,
            **settings,
        )
        collector = Collector(config)
        started.append(collector)
        collector.start()
        return collector

    yield start
    for collector in started:
        stop(collector)
    gc.unfreeze()  # Collector.start() froze everything alive: give this test process its collections back


def stop(collector: Collector) -> None:
    """What SIGTERM does to a collector process."""
    if collector.stopped.is_set():
        return
    collector.stop()
    collector.shutdown()


def endpoints(collector: Collector) -> dict[str, str]:
    """The endpoints the collector bound, as it writes them for everyone else."""
    return dict(json.loads((collector.config.data_dir / "collector.json").read_text()))


def hello(agent: Peer, seq: int = 1) -> Envelope:
    """Say HELLO as node n1 resuming at ``seq``; returns the collector's ACK."""
    info = NodeInfo(node=NODE, hostname="h", instance="i1", request_types=["Echo"])
    agent.send(Kind.HELLO, "NodeInfo", info, node=NODE, seq=seq)
    agent.expect(lambda e: e.kind == Kind.HELLO and e.type == "CollectorInfo", what="HELLO back")
    return agent.expect(lambda e: e.kind == Kind.ACK, what="ACK after HELLO")


def stats_report(seq: int) -> Envelope:
    stats = SystemStats(time=1000.0 + seq, cpu_percent=float(seq), load1=0.5)
    return envelope(Kind.REPORT, "SystemStats", stats, node=NODE, seq=seq, time=1000.0 + seq)


def send_reports(agent: Peer, reports: list[Envelope], per_frame: int = 4) -> None:
    for start in range(0, len(reports), per_frame):
        agent.socket.send(pack(reports[start : start + per_frame]))


def journal(data_dir: Path) -> list[tuple[int, int, list[Envelope]]]:
    """The journal rows in the store file, read by a connection of our own: (first, last seq, reports)."""
    reader = SegmentReader(segment_folder(data_dir / STORE))
    with sqlite3.connect(data_dir / STORE, timeout=5) as db:
        rows = db.execute(
            f"SELECT first_seq, last_seq, {BATCH_COLUMNS} FROM journal WHERE node = ? ORDER BY id", (NODE,)
        ).fetchall()
    try:
        return [
            (first, last, list(Batch.FromString(row_batch(reader, *where) or b"").envelopes))
            for first, last, *where in rows
        ]
    finally:
        reader.close()


def serialized(envs: list[Envelope]) -> list[bytes]:
    return [env.SerializeToString() for env in envs]


def acked(agent: Peer, seq: int) -> Envelope:
    return agent.expect(lambda e: e.kind == Kind.ACK and e.seq == seq, what=f"ACK {seq}")


@pytest.fixture(params=["c", "python"])
def drain_kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Each ingest drain in turn (collector/fast_drain.py): the C loop, then the Python one."""
    if request.param == "c":
        c_drain_or_skip()
    else:
        monkeypatch.setenv(fast_drain.DRAIN_ENV, "python")
    fast_drain.c_drain_problem.cache_clear()
    yield request.param
    fast_drain.c_drain_problem.cache_clear()


def test_reports_are_journaled_before_their_ack_and_applied_once(start_collector, green, drain_kind) -> None:
    collector = start_collector()
    assert collector.agents.drain_kind == drain_kind
    eps = endpoints(collector)
    agent, client = Peer(green, eps["agents"]), Client(green, eps["clients"])
    assert hello(agent).seq == 0
    reports = [stats_report(seq) for seq in range(1, 11)]
    send_reports(agent, reports)
    acked(agent, 10)
    # The ACK follows the commit: the rows are in the file the moment the ACK arrives, each report once.
    rows = journal(collector.config.data_dir)
    assert serialized([env for _, _, envs in rows for env in envs]) == serialized(reports)
    assert all((first, last) == (envs[0].seq, envs[-1].seq) for first, last, envs in rows)
    assert client.node(NODE).last_seq == 10
    latest = client.answer("SystemStats", node=NODE)
    assert isinstance(latest, SystemStats) and latest.cpu_percent == 10.0

    send_reports(agent, reports[:3])  # a resend after a lost ACK: acknowledged again, applied never
    assert acked(agent, 10).node == NODE
    assert len(journal(collector.config.data_dir)) == len(rows)
    assert client.answer("CollectorStats")["counters"]["duplicates"] == 3


def test_a_restarted_collector_resumes_from_its_store(start_collector, green) -> None:
    collector = start_collector()
    eps = endpoints(collector)
    agent = Peer(green, eps["agents"])
    hello(agent)
    reports = [stats_report(seq) for seq in range(1, 6)]
    send_reports(agent, reports)
    acked(agent, 5)
    agent.close()
    stop(collector)

    store = SQLiteStore(collector.config.data_dir / STORE)
    try:
        assert serialized([env for _, env in store.replay(0)]) == serialized(reports)
        assert [(r.node, r.last_seq, r.status) for r in store.load_nodes()] == [(NODE, 5, "lost")]
    finally:
        store.close()

    again = start_collector()
    eps = endpoints(again)
    agent, client = Peer(green, eps["agents"]), Client(green, eps["clients"])
    assert hello(agent, seq=6).seq == 5  # resume after what was acknowledged
    latest = client.answer("SystemStats", node=NODE)  # rebuilt from the journal
    assert isinstance(latest, SystemStats) and latest.cpu_percent == 5.0
    send_reports(agent, [stats_report(6)])
    acked(agent, 6)
    assert client.node(NODE).status == "live"


def test_node_requests_are_relayed_both_ways(start_collector, green) -> None:
    collector = start_collector()
    eps = endpoints(collector)
    agent, client = Peer(green, eps["agents"]), Client(green, eps["clients"])
    hello(agent)
    client.send(Kind.REQUEST, "Echo", request_id=41, params={"node": NODE, "word": "hi"})
    forwarded = agent.expect(lambda e: e.kind == Kind.REQUEST, what="forwarded REQUEST")
    assert (forwarded.type, forwarded.params["word"]) == ("Echo", "hi")
    agent.send(Kind.RESPONSE, "Echo", {"echo": "hi"}, request_id=forwarded.request_id)
    answer = client.expect(lambda e: e.request_id == 41, what="relayed RESPONSE")
    assert answer.kind == Kind.RESPONSE
    assert decode_payload(answer.payload, answer.encoding, answer.schema) == {"echo": "hi"}

    unknown = client.ask("Echo", node="nobody")
    assert (unknown.kind, unknown.error_code) == (Kind.ERROR, "not-found")
    client.send(Kind.REQUEST, "Echo", request_id=42, params={"node": NODE})
    agent.expect(lambda e: e.kind == Kind.REQUEST, what="second forwarded REQUEST")
    agent.send(Kind.BYE, node=NODE)  # the node leaves instead of answering: the request fails now, not in 30 s
    lost = client.expect(lambda e: e.request_id == 42, what="the failed request")
    assert (lost.kind, lost.error_code) == (Kind.ERROR, "node-lost")


def test_history_counts_what_it_left_out_of_the_buckets(start_collector, green) -> None:
    """A sample older than its series' open bucket is counted in CollectorStats (history-late), never silently."""
    collector = start_collector()
    eps = endpoints(collector)
    agent, client = Peer(green, eps["agents"]), Client(green, eps["clients"])
    hello(agent)
    times = (1001.0, 1130.0, 1005.0)  # the third belongs to a minute the second already closed
    reports = [
        envelope(Kind.REPORT, "SystemStats", SystemStats(time=t, cpu_percent=1.0), node=NODE, seq=seq, time=t)
        for seq, t in enumerate(times, start=1)
    ]
    send_reports(agent, reports, per_frame=1)
    acked(agent, 3)
    assert collector.store.history.flush(5.0)
    counters = client.answer("CollectorStats")["counters"]
    assert counters["history-late"] == len(POINT_NAMES) and "history-dropped" not in counters  # once per series


def test_a_burst_of_frames_is_handled_in_the_order_it_came(start_collector, green, drain_kind) -> None:
    """Frames of one envelope are parsed together; what they hold still happens in the order it was sent.

    The burst is sent before the collector's loop runs again, so it is read in one pass: the HELLO
    comes first (no hello-required), a malformed frame and an oversized one are dropped alone, and
    the frames of several envelopes and the two-part CHUNK between them keep their places, and a
    report naming another node than the connection's is refused alone.
    """
    collector = start_collector(max_frame_bytes=2048)
    eps = endpoints(collector)
    agent, client = Peer(green, eps["agents"]), Client(green, eps["clients"])
    info = NodeInfo(node=NODE, hostname="h", instance="i1")
    reports = [stats_report(seq) for seq in range(1, 8)]
    big = SystemStats(time=1006.0, cpu_percent_per_cpu=[0.5] * 400)  # 3.2 KB: one envelope, over the limit
    padded = envelope(Kind.REPORT, "SystemStats", big, node=NODE, seq=6)
    inner = reports[0].SerializeToString()
    garbage = pack([reports[0]])[: -len(inner)] + b"\xff" * len(inner)  # one envelope's head, then no protobuf
    burst = [
        pack([envelope(Kind.HELLO, "NodeInfo", info, node=NODE, seq=1)]),
        pack([reports[0]]),
        garbage,
        pack([reports[1]]),
        pack(reports[2:4]),
        pack([reports[4]]),
        pack([envelope(Kind.REPORT, "SystemStats", SystemStats(), node="n2", seq=1)]),  # not this connection's node
        pack([padded]),  # over max_frame_bytes: dropped, so seq 6 is a gap
        pack([reports[6]]),
    ]
    chunk = [pack([envelope(Kind.CHUNK, request_id=99)]), b"bulk"]  # an answer nobody waits for: stale-answer
    for frame in burst[:5]:
        agent.socket.send(frame)
    agent.socket.send_multipart(chunk)
    for frame in burst[5:]:
        agent.socket.send(frame)
    acked(agent, 7)
    rows = journal(collector.config.data_dir)
    assert [env.seq for _, _, envs in rows for env in envs] == [1, 2, 3, 4, 5, 7]
    counters = client.answer("CollectorStats")["counters"]
    assert (counters["bad-frame"], counters["oversized"], counters["gap-reports"]) == (1, 1, 1)
    assert counters["stale-answer"] == 1 and counters["hello-required"] == 1  # the report for n2
    assert counters["envelopes"] == 9  # the HELLO, seven reports, the CHUNK; not the two dropped frames
    latest = client.answer("SystemStats", node=NODE)
    assert isinstance(latest, SystemStats) and latest.cpu_percent == 7.0


def test_one_bad_payload_among_a_pass_of_reports_is_the_only_bad_report(start_collector, green, drain_kind) -> None:
    """A pass's payloads are checked together; when one is bad, only that report is dropped (bad-report)."""
    collector = start_collector()
    eps = endpoints(collector)
    agent, client = Peer(green, eps["agents"]), Client(green, eps["clients"])
    hello(agent)
    reports = [stats_report(seq) for seq in range(1, 9)]
    reports[4].payload = b"\xff\xff\xff"  # seq 5: declares SystemStats, is not one
    samples = envelope(Kind.REPORT, "Samples", Samples(time=1009.0, values=[1.0, 2.0]), node=NODE, seq=9, time=1009.0)
    send_reports(agent, [*reports, samples], per_frame=1)  # two schemas in one pass: checked apart
    acked(agent, 9)
    counters = client.answer("CollectorStats")["counters"]
    assert counters["bad-report"] == 1 and counters["bad-report:SystemStats"] == 1
    assert client.node(NODE).bad_reports == 1
    latest = client.answer("SystemStats", node=NODE)
    assert isinstance(latest, SystemStats) and latest.cpu_percent == 8.0
    raw = client.answer("SystemStatsHistory", node=NODE, since="1000", resolution="raw")
    assert [stats.cpu_percent for stats in raw.samples] == [1.0, 2.0, 3.0, 4.0, 6.0, 7.0, 8.0]
    assert "bad-report:Samples" not in counters and counters["reports"] == 9


def test_with_curve_each_hello_of_a_pass_is_checked_against_its_own_key(start_collector, green, tmp_path) -> None:
    """Two agents' HELLOs parsed together: each may claim only its own node, by the key it came with."""
    secrets, allow = tmp_path / "secrets", tmp_path / "allow-agents"
    allow.mkdir()
    server = generate(secrets, "collector")
    peers = {}
    for node in ("a1", "b2"):
        cert = generate(secrets, node, (node,))
        assert cert.secret is not None
        shutil.copy(secrets / f"{node}.key", allow)
        peers[node] = ClientKeys(server.public, cert.public, cert.secret, node)
    collector = start_collector(curve_secret=secrets / "collector.key_secret", allow_agents=allow)
    eps = endpoints(collector)
    a, b = (Peer(green, eps["agents"], peers[node]) for node in ("a1", "b2"))
    for peer in (a, b):  # CURVE handshakes first: then the frames below come in one burst
        peer.send(Kind.HEARTBEAT, node="x")
        peer.expect(lambda e: e.kind == Kind.ERROR, what="hello-required")
    for peer, node in ((a, "a1"), (b, "b2")):
        peer.socket.send(pack([envelope(Kind.HELLO, "NodeInfo", NodeInfo(node=node, hostname="h"), node=node, seq=1)]))
    for seq in (1, 2):
        for peer, node in ((a, "a1"), (b, "b2")):
            peer.socket.send(pack([envelope(Kind.REPORT, "Probe", b"x", node=node, seq=seq)]))
    for peer in (a, b):
        assert peer.expect(lambda e: e.kind == Kind.ACK and e.seq == 2, what="ACK 2").kind == Kind.ACK
    assert not [e for e in a.seen + b.seen if e.error_code == Code.FORBIDDEN]


def test_a_full_pass_marks_ingest_saturated_for_a_moment(start_collector, green) -> None:
    """A pass that reads all a pass may (DRAIN_LIMIT frames) marks ingest saturated for SATURATION_HOLD s.

    The distributions' threads are handed ``agents.saturated`` as their pressure: while it is True they
    keep to their ``cpu_limit``. A burst smaller than a pass leaves it alone.
    """
    collector = start_collector(distributions=[DistSection("seedlike", "custom")])
    agents = collector.agents
    assert [runner.pressure for runner in collector.dists.runners] == [agents.saturated]
    agent = Peer(green, endpoints(collector)["agents"])
    hello(agent)
    before = agents.saturated_at
    send_reports(agent, [stats_report(seq) for seq in range(1, 11)], per_frame=1)
    acked(agent, 10)
    assert agents.saturated_at == before and not agents.saturated()
    # A full pass needs DRAIN_LIMIT frames waiting when it starts; libzmq's I/O thread delivers them
    # while the test sends, so a burst may trickle in over several short passes on a busy machine.
    # Bursts of twice a pass, a few times at most: a collector that never marks saturation fails.
    seq = 10
    for _ in range(5):
        send_reports(agent, [stats_report(s) for s in range(seq + 1, seq + 1 + 2 * DRAIN_LIMIT)], per_frame=1)
        seq += 2 * DRAIN_LIMIT
        acked(agent, seq)
        if agents.saturated_at > before:
            break
    assert agents.saturated_at > before
    agents.saturated_at = time.monotonic()
    assert agents.saturated()
    agents.saturated_at = time.monotonic() - SATURATION_HOLD - 0.01
    assert not agents.saturated()


def test_a_window_the_loop_hardly_parked_in_marks_ingest_saturated(start_collector, green) -> None:
    """A loop that keeps up with a flood empties the socket each pass, so no pass is full; a window of
    BUSY_WINDOW s in which it parked less than 1 - BUSY_SHARE of the time marks saturation all the same."""
    collector = start_collector()
    agents = collector.agents
    agents.saturated_at = -SATURATION_HOLD
    now = time.monotonic()
    agents._window, agents._parked = now - 2 * BUSY_WINDOW, 2 * BUSY_WINDOW * (1 - BUSY_SHARE) * 2
    agents._note_load(False)  # parked a fifth of the window: not saturated; a new window begins
    assert not agents.saturated() and agents._window >= now and agents._parked == 0.0
    agents._window = time.monotonic() - BUSY_WINDOW / 2
    agents._note_load(False)  # the window is not over yet: nothing is decided
    assert not agents.saturated()
    agents._window = time.monotonic() - 2 * BUSY_WINDOW
    agents._parked = 2 * BUSY_WINDOW * (1 - BUSY_SHARE) / 2
    agents._note_load(False)  # busy 95 % of the window
    assert agents.saturated()
    # An idle collector parks: an agent's few reports never make it saturated.
    agents.saturated_at = -SATURATION_HOLD
    agent = Peer(green, endpoints(collector)["agents"])
    hello(agent)
    deadline = time.monotonic() + 3 * BUSY_WINDOW
    seq = 0
    while time.monotonic() < deadline:
        seq += 1
        send_reports(agent, [stats_report(seq)], per_frame=1)
        acked(agent, seq)
        green_sleep(0.01)
    assert seq > 3 and not agents.saturated()


def test_the_collectors_sockets_copy_what_they_receive(start_collector) -> None:
    """libzmq's zero-copy receive is off: a backlog in thousands of pipes pins no 8 KB decoder buffers."""
    collector = start_collector()
    assert collector.context.get(ZERO_COPY_RECV) == 0
    with zmq.green.Context() as plain:
        assert plain.get(ZERO_COPY_RECV) == 1  # libzmq's default, which the collector turns off
