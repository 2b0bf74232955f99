"""The agent process against a hand-written collector: a real ROUTER bound by the test.

The test speaks the collector's side of docs/protocol.md "Agent conversation"
by hand, so each step of the handshake, acknowledgement, re-handshake and
goodbye can be checked and provoked.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import msgpack
import psutil
import pytest
import zmq

import messages
from messages import CollectorInfo, Envelope, Kind, NodeInfo, SystemStats
from messages.codec import decode_payload, envelope
from node_agent.addons import Probe
from node_agent.agent import Agent, AgentConfig
from node_agent.link import Link
from node_agent.runner import ScheduledProbe
from node_agent.store import DB_NAME
from node_agent.sysprobe import SystemStatsProbe
from tests.conftest import FIXTURES, REPO, labscope_cmd, wait_for
from tests.fakes import FakeCollector

HEARTBEAT = 0.2


def fake_info() -> CollectorInfo:
    """What the fake collector tells agents in its HELLO: heartbeats every HEARTBEAT s."""
    return CollectorInfo(alias="fake", heartbeat_interval=HEARTBEAT)


@pytest.fixture
def collector(fake_collector) -> FakeCollector:
    """A fake collector the test services by hand."""
    return fake_collector(info=fake_info())


@pytest.fixture
def start_agent(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen]]:
    """Start ``labscope agent`` as a real process; each is stopped (and its log shown) at teardown."""
    started: list[tuple[subprocess.Popen, Path]] = []

    def start(endpoint: str, *extra: str, node: str = "n1", interval: float = 0.1) -> subprocess.Popen:
        log_path = tmp_path / f"agent-{len(started)}.log"
        args = labscope_cmd(
            "agent",
            "--collector",
            endpoint,
            "--node-id",
            node,
            "--interval",
            str(interval),
            "--data-dir",
            str(tmp_path / "data"),
            "--log-level",
            "debug",
            *extra,
        )
        with open(log_path, "wb") as log:
            popen = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        started.append((popen, log_path))
        return popen

    start.logs = lambda: "".join(p.read_text(errors="replace") for _, p in started)  # type: ignore[attr-defined]
    yield start
    for popen, log_path in started:
        if popen.poll() is None:
            popen.kill()
        popen.wait(5)
        print(log_path.read_text(errors="replace")[-4000:])


def collect_reports(fake: FakeCollector, count: int, timeout: float = 10.0, type: str = "SystemStats") -> None:
    deadline = time.monotonic() + timeout
    acker = fake.acker()
    while len(fake.reports(type)) < count:
        left = deadline - time.monotonic()
        assert left > 0, f"only {len(fake.reports(type))} {type} reports within {timeout} s"
        got = fake.recv(left)
        if got is not None:
            acker(*got)


def seqs(envs: list[Envelope]) -> list[int]:
    return [e.seq for e in envs]


@pytest.mark.e2e
def test_hello_carries_node_info_then_reports_in_order(collector, start_agent):
    agent = start_agent(collector.endpoint)
    ident, hello = collector.expect(Kind.HELLO)
    assert (hello.node, hello.seq, hello.type, hello.schema) == ("n1", 1, "NodeInfo", "labscope.NodeInfo")
    info = decode_payload(hello.payload, hello.encoding, hello.schema)
    assert isinstance(info, NodeInfo)
    assert info.node == "n1" and info.pid == agent.pid
    assert info.memory_total == psutil.virtual_memory().total and info.cpu_count == psutil.cpu_count()
    assert info.agent_version == messages.__version__ and len(info.instance) == 32
    collector.welcome(ident, hello)
    collect_reports(collector, 6)
    reports = collector.reports()
    assert seqs(reports) == list(range(1, len(reports) + 1))
    stats = decode_payload(reports[-1].payload, reports[-1].encoding, reports[-1].schema)
    assert isinstance(stats, SystemStats) and stats.memory.total == info.memory_total
    assert all(r.node == "n1" and r.schema == "labscope.SystemStats" for r in reports)


@pytest.mark.e2e
def test_request_is_refused_with_unknown_type(collector, start_agent):
    start_agent(collector.endpoint)
    ident, hello = collector.expect(Kind.HELLO)
    collector.welcome(ident, hello)
    collector.send(ident, envelope(Kind.REQUEST, "Files", request_id=42, params={"x": "1"}))
    _, error = collector.expect(Kind.ERROR, on_frame=collector.acker())
    assert (error.request_id, error.error_code, error.type, error.node) == (42, "unknown-type", "Files", "n1")


@pytest.mark.e2e
def test_idle_agent_sends_heartbeats_and_does_not_spin(collector, start_agent):
    agent = start_agent(collector.endpoint, interval=30.0)
    ident, hello = collector.expect(Kind.HELLO)
    collector.welcome(ident, hello)
    collector.expect(Kind.HEARTBEAT, on_frame=collector.acker())
    cpu_before = sum(psutil.Process(agent.pid).cpu_times()[:2])
    started = time.monotonic()
    for _ in range(5):
        collector.expect(Kind.HEARTBEAT, timeout=3 * HEARTBEAT, on_frame=collector.acker())
    elapsed = time.monotonic() - started
    used = sum(psutil.Process(agent.pid).cpu_times()[:2]) - cpu_before
    # A busy loop would burn the whole elapsed time; an idle agent uses a tiny fraction.
    assert used < 0.25 * elapsed, f"agent used {used:.2f} s CPU in {elapsed:.2f} s while idle"
    assert agent.poll() is None


@pytest.mark.e2e
def test_unacked_reports_are_resent_after_collector_restart(fake_collector, start_agent):
    first = fake_collector(info=fake_info())
    start_agent(first.endpoint)
    ident, hello = first.expect(Kind.HELLO)
    first.welcome(ident, hello)
    collect_reports(first, 3)
    acked = max(seqs(first.reports()))
    # Go silent: read but never answer, so reports pile up unacknowledged.
    _, second_hello = first.expect(Kind.HELLO, timeout=10)  # the agent gave up on us and said HELLO again
    assert second_hello.seq == acked + 1  # first seq it will resend
    held_by_first = {e.seq: e for e in first.reports()}
    assert max(held_by_first) > acked, "some reports went out unacknowledged"
    port = first.port
    first.close()

    second = fake_collector(port=port, info=fake_info())
    ident, hello = second.expect(Kind.HELLO, timeout=10)
    assert hello.seq == acked + 1
    second.welcome(ident, hello, ack=acked)  # the restarted collector holds what it acknowledged
    collect_reports(second, max(held_by_first) - acked + 3)
    resent = second.reports()
    assert seqs(resent) == list(range(acked + 1, acked + 1 + len(resent)))  # oldest first, no gap
    for env in resent:
        if env.seq in held_by_first:  # the same report, not a new one under an old number
            assert env.SerializeToString() == held_by_first[env.seq].SerializeToString()
    assert max(seqs(resent)) > max(held_by_first)


@pytest.mark.e2e
def test_hello_required_error_triggers_new_hello_and_resend(collector, start_agent):
    start_agent(collector.endpoint)
    ident, hello = collector.expect(Kind.HELLO)
    collector.welcome(ident, hello)
    collect_reports(collector, 2)
    acked = max(seqs(collector.reports()))
    # Refuse the next report as a restarted collector would.
    _, refused = collector.expect(Kind.REPORT)
    collector.send(ident, envelope(Kind.ERROR, error_code="hello-required", error="say HELLO first"))
    ident2, hello2 = collector.expect(Kind.HELLO, timeout=3)
    assert ident2 == ident  # at once, on the same connection
    assert hello2.seq == acked + 1
    before = len(collector.seen)
    collector.welcome(ident2, hello2, ack=acked)
    _, again = collector.expect(Kind.REPORT, timeout=3)
    assert again.seq == acked + 1 and again.SerializeToString() == refused.SerializeToString()
    assert len([e for e in collector.seen[before:] if e.kind == Kind.HELLO]) == 0


@pytest.mark.e2e
def test_bye_on_sigterm_after_flushing(collector, start_agent):
    agent = start_agent(collector.endpoint)
    ident, hello = collector.expect(Kind.HELLO)
    collector.welcome(ident, hello)
    collect_reports(collector, 2)
    agent.send_signal(signal.SIGTERM)
    _, bye = collector.expect(Kind.BYE, timeout=5, on_frame=collector.acker())
    assert bye.node == "n1"
    assert agent.wait(5) == 0
    assert collector.seen[-1].kind == Kind.BYE  # nothing after the goodbye


@pytest.mark.e2e
def test_sigint_without_collector_exits_zero(tmp_path, start_agent, zmq_context):
    probe = zmq_context.socket(zmq.ROUTER)
    port = probe.bind_to_random_port("tcp://127.0.0.1")
    probe.close(linger=0)  # a port nobody listens on
    agent = start_agent(f"tcp://127.0.0.1:{port}")
    wait_for(lambda: "saying HELLO again" in start_agent.logs(), 10, what="a HELLO retry")
    agent.send_signal(signal.SIGINT)
    assert agent.wait(5) == 0
    assert "Traceback" not in start_agent.logs()


@pytest.mark.e2e
def test_drop_in_probes_report_and_bad_files_are_skipped(collector, start_agent):
    agent = start_agent(collector.endpoint, "--probes-dir", str(FIXTURES / "probes"), interval=0.5)
    ident, hello = collector.expect(Kind.HELLO)
    collector.welcome(ident, hello)
    collect_reports(collector, 3, type="Counter")
    collect_reports(collector, 1, type="TypedReport")
    counts = [msgpack.unpackb(e.payload)["n"] for e in collector.reports("Counter")]
    assert counts == list(range(1, len(counts) + 1))
    typed = collector.reports("TypedReport")[0]
    assert typed.payload == b"raw" and typed.encoding == messages.Encoding.RAW
    everything = [e for e in collector.seen if e.kind == Kind.REPORT]
    assert seqs(everything) == list(range(1, len(everything) + 1))  # one numbering for all probes
    assert agent.poll() is None
    logs = start_agent.logs()
    for bad in ("broken_import.py", "no_probe.py", "bad_interval.py"):
        assert bad in logs
    assert "_private.py" not in logs
    assert "probe failing failed" in logs and "probe failure on purpose" in logs


class CountingLink(Link):
    """A real Link that counts how often the agent's loop wakes up."""

    polls = 0

    def poll(self, timeout: float) -> bool:
        self.polls += 1
        return super().poll(timeout)


class TickProbe(Probe):
    """A probe whose report is its call time (msgpack)."""

    reporttype = "Tick"

    def getReport(self, now: float) -> dict[str, float]:
        return {"at": now}


def run_agent(agent: Agent) -> threading.Thread:
    """Run ``agent``'s loop in a thread (stop it with agent.stop())."""
    thread = threading.Thread(target=agent.run, kwargs={"handle_signals": False}, daemon=True)
    thread.start()
    return thread


def test_loop_wakes_only_when_something_is_due(collector):
    # Samples 1.5 heartbeats apart and a long batch delay: heartbeat deadlines pass while a flush waits
    # (for a second probe that falls due within the batch delay of the first).
    config = AgentConfig(
        collector=collector.endpoint, node_id="inproc", interval=1.5 * HEARTBEAT, batch_delay=HEARTBEAT / 2
    )
    second = ScheduledProbe("Tick", TickProbe(), config.interval, start=time.monotonic() + HEARTBEAT / 3)
    agent = Agent(config, [ScheduledProbe("SystemStats", SystemStatsProbe(), config.interval), second])
    link = agent._link = CountingLink(agent._ctx, config.collector)
    thread = threading.Thread(target=agent.run, kwargs={"handle_signals": False}, daemon=True)
    thread.start()
    try:
        ident, hello = collector.expect(Kind.HELLO)
        collector.welcome(ident, hello)
        collect_reports(collector, 2)
        polls, started = link.polls, time.monotonic()
        collect_reports(collector, 8)
        per_report = (link.polls - polls) / 6
    finally:
        agent.stop()
        thread.join(5)
    # A sample, its flush, its ACK, maybe a heartbeat and its answer: a handful per report, not a spin.
    assert per_report <= 8, f"{per_report:.1f} loop wake-ups per report"
    assert not thread.is_alive()
    assert agent.outbox.stats.added >= 8 and time.monotonic() > started


@pytest.fixture
def quiet_collector(fake_collector) -> FakeCollector:
    """A fake collector that asks for heartbeats every 10 s: no heartbeat pulls a flush forward."""
    return fake_collector(info=CollectorInfo(alias="fake", heartbeat_interval=10.0))


def test_a_lone_probes_report_leaves_without_waiting_for_the_batch_delay(quiet_collector):
    # Nothing else could join its frame, so waiting the (long) batch delay would only delay it.
    collector = quiet_collector
    config = AgentConfig(collector=collector.endpoint, node_id="inproc", interval=2.0, batch_delay=1.5)
    agent = Agent(config, [ScheduledProbe("Tick", TickProbe(), config.interval)])
    thread = run_agent(agent)
    try:
        ident, hello = collector.expect(Kind.HELLO)
        collector.welcome(ident, hello)
        collect_reports(collector, 2, type="Tick")  # the first was made before the welcome, and sent on it
        waited = time.time() - msgpack.unpackb(collector.reports("Tick")[1].payload)["at"]
    finally:
        agent.stop()
        thread.join(5)
    assert waited < 0.75, f"the report left {waited:.2f} s after it was made (batch delay 1.5 s)"


def test_reports_due_within_the_batch_delay_share_one_frame(quiet_collector):
    collector = quiet_collector
    config = AgentConfig(collector=collector.endpoint, node_id="inproc", interval=1.0, batch_delay=0.5)
    start = time.monotonic() + 0.3
    probes = [ScheduledProbe(name, TickProbe(), config.interval, start=start + offset) for name, offset in _TWO]
    agent = Agent(config, probes)
    thread = run_agent(agent)
    try:
        ident, hello = collector.expect(Kind.HELLO)
        collector.welcome(ident, hello)
        frame = wait_for(lambda: _frame_with_reports(collector), timeout=10, what="a frame with reports")
    finally:
        agent.stop()
        thread.join(5)
    assert len(frame) == 2, f"the reports made 0.1 s apart left in frames of their own: {frame}"


_TWO = (("first", 0.0), ("second", 0.1))


def _frame_with_reports(collector: FakeCollector) -> list[Envelope] | None:
    got = collector.recv(0.1)
    if got is None:
        return None
    reports = [env for env in got[1] if env.kind == Kind.REPORT]
    return reports or None


# ------------------------------------------------------------ durable outbox


FAST_PROBES = str(FIXTURES / "durability_probes")


def outbox_rows(tmp_path: Path) -> list[int]:
    """The seqs held in the agent's outbox file (tmp_path/data), read by a connection of our own."""
    path = tmp_path / "data" / DB_NAME
    if not path.exists():
        return []
    with sqlite3.connect(path, timeout=5) as db:
        return [seq for (seq,) in db.execute("SELECT seq FROM outbox ORDER BY seq")]


def node_instance(hello: Envelope) -> str:
    info = decode_payload(hello.payload, hello.encoding, hello.schema)
    assert isinstance(info, NodeInfo)
    return info.instance


@pytest.mark.e2e
def test_heartbeats_keep_coming_while_busy_and_carry_the_backlog(collector, start_agent):
    start_agent(collector.endpoint, "--probes-dir", FAST_PROBES)
    ident, hello = collector.expect(Kind.HELLO)
    assert hello.params["backlog"].isdigit()
    collector.welcome(ident, hello)
    collect_reports(collector, 5, type="ProbeData")
    start, beats = time.monotonic(), list[float]()
    acker = collector.acker()
    while time.monotonic() - start < 1.5:
        got = collector.recv(0.5)
        if got is not None:
            acker(*got)
            beats.extend(time.monotonic() for e in got[1] if e.kind == Kind.HEARTBEAT)
    reports = len(collector.reports("ProbeData"))
    assert reports >= 20, "the agent was not busy"
    # Every 0.2 s although reports leave every 0.05 s: about 7 in 1.5 s.
    assert len(beats) >= 5, f"only {len(beats)} heartbeats in 1.5 s while busy"
    assert max(b - a for a, b in zip(beats, beats[1:], strict=False)) < 3 * HEARTBEAT
    backlogs = [int(e.params["backlog"]) for e in collector.seen if e.kind == Kind.HEARTBEAT]
    assert backlogs and max(backlogs) < 10  # acknowledged at once, so little is held


@pytest.mark.e2e
def test_backlog_grows_while_nothing_is_acknowledged(collector, start_agent):
    start_agent(collector.endpoint, "--probes-dir", FAST_PROBES)
    ident, hello = collector.expect(Kind.HELLO)
    collector.welcome(ident, hello)
    reported: list[tuple[int, int]] = []  # (reports received so far, backlog the heartbeat tells)
    deadline = time.monotonic() + 10
    while len(reported) < 6 and time.monotonic() < deadline:
        got = collector.recv(1.0)
        if got is None:
            continue
        for env in got[1]:
            if env.kind == Kind.HEARTBEAT:
                collector.send(ident, envelope(Kind.HEARTBEAT))  # alive, but never an ACK
                reported.append((sum(e.kind == Kind.REPORT for e in collector.seen), int(env.params["backlog"])))
    assert len(reported) == 6
    for received, backlog in reported:
        assert backlog >= received  # nothing was acknowledged: everything received is still held
    assert reported[-1][1] > reported[0][1] + 10


@pytest.mark.e2e
def test_restart_on_the_same_data_dir_resends_unacked_with_the_same_instance(collector, start_agent, tmp_path):
    first = start_agent(collector.endpoint, "--probes-dir", FAST_PROBES)
    ident, hello = collector.expect(Kind.HELLO)
    instance = node_instance(hello)
    collector.welcome(ident, hello)
    collector.expect(Kind.REPORT)
    collector.send(ident, envelope(Kind.ACK, node="n1", seq=2))
    deadline = time.monotonic() + 10
    while len([e for e in collector.seen if e.kind == Kind.REPORT]) < 10 and time.monotonic() < deadline:
        collector.recv(0.5)  # read, never acknowledge
    first.kill()
    first.wait(5)
    before = {e.seq: e.SerializeToString() for e in collector.seen if e.kind == Kind.REPORT}
    assert len(before) >= 10
    on_disk = outbox_rows(tmp_path)
    assert set(before) - {1, 2} <= set(on_disk), "a report left before it was committed"

    start_agent(collector.endpoint, "--probes-dir", FAST_PROBES)
    ident, hello = collector.expect(Kind.HELLO)
    assert node_instance(hello) == instance
    assert hello.seq == on_disk[0] and hello.seq <= 3
    assert int(hello.params["backlog"]) == len(on_disk)
    collector.seen.clear()
    collector.welcome(ident, hello, ack=2)
    collect_reports(collector, max(on_disk) + 5, type="ProbeData")
    resent = [e for e in collector.seen if e.kind == Kind.REPORT]
    assert seqs(resent) == list(range(3, 3 + len(resent)))  # oldest first, nothing skipped, no number reused
    for env in resent:
        if env.seq in before:
            assert env.SerializeToString() == before[env.seq]


@pytest.mark.e2e
def test_duplicate_node_refusal_exits_1_and_leaves_the_outbox(collector, start_agent, tmp_path):
    agent = start_agent(collector.endpoint, "--probes-dir", FAST_PROBES)
    ident, hello = collector.expect(Kind.HELLO)
    held = wait_for(lambda: outbox_rows(tmp_path), 10, what="reports committed to the outbox")
    collector.send(
        ident, envelope(Kind.ERROR, error_code="duplicate-node", error="node n1 is live from another agent (pid 4242)")
    )
    assert agent.wait(10) == 1
    logs = start_agent.logs()
    assert (
        "collector refused node id n1: node n1 is live from another agent (pid 4242); "
        "another agent with this node id is live"
    ) in logs
    assert "Traceback" not in logs
    while collector.recv(0.2) is not None:
        pass
    assert not [e for e in collector.seen if e.kind in (Kind.BYE, Kind.REPORT)]
    assert set(held) <= set(outbox_rows(tmp_path))  # nothing deleted
