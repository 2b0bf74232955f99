"""The durable outbox end to end: real collector, real agents, kill -9, a tiny outbox bound.

The collector loads ``tests/fixtures/modules`` (``counter``: every ProbeData and
SystemStats seq per node, in the order applied) and
``tests/fixtures/durability_modules`` (``gaprecorder``: the Event reports agents
send). The agent runs ``tests/fixtures/durability_probes`` (a ProbeData report
every 0.05 s). What the outbox committed is read straight from its SQLite file.
"""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest
import zmq

from node_agent.store import DB_NAME
from tests.conftest import FIXTURES, CollectorProcess, ProcessGroup, wait_for
from tests.wire import Client

pytestmark = pytest.mark.e2e

pytest.importorskip("collector.cli")

FAST_PROBES = str(FIXTURES / "durability_probes")
# Only counter is needed from the shared fixtures folder; the others would only add noise (or clash).
MODULES = (
    "--modules-dir",
    str(FIXTURES / "modules"),
    "--modules-dir",
    str(FIXTURES / "durability_modules"),
    "--disable-module",
    "classic_fileprocessor",
    "--disable-module",
    "raising",
)


def outbox_state(data_dir: Path) -> tuple[int, list[int]]:
    """(next_seq, seqs held) as committed in the agent's outbox file."""
    with sqlite3.connect(data_dir / DB_NAME, timeout=5) as db:
        next_seq = int(db.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()[0])
        held = [seq for (seq,) in db.execute("SELECT seq FROM outbox ORDER BY seq")]
    return next_seq, held


def made(data_dir: Path) -> int:
    """next_seq of the outbox, or 0 while the agent has not created it yet."""
    if not (data_dir / DB_NAME).exists():
        return 0  # connecting would create the file under the agent's feet
    try:
        return outbox_state(data_dir)[0]
    except sqlite3.Error:  # the file is there, its tables not yet
        return 0


def applied(client: Client, node: str = "n1") -> list[int]:
    """The seqs the counter module applied for ``node``, in order."""
    stats: dict[str, Any] = client.answer("CounterStats", node=node)
    return list(stats.get(node, {}).get("seqs", []))


def wait_applied(client: Client, count: int, timeout: float = 20) -> None:
    """Wait until the counter module has applied ``count`` reports of n1."""
    wait_for(lambda: len(applied(client)) >= count, timeout, what=f"{count} reports applied")


def agent_events(client: Client, node: str = "n1") -> list[dict[str, Any]]:
    return list(client.answer("AgentEvents", node=node))


def start_agent(procs: ProcessGroup, endpoint: str, *extra: str, interval: float = 0.2) -> subprocess.Popen:
    return procs.agent(endpoint, "n1", "--probes-dir", FAST_PROBES, "--log-level", "debug", *extra, interval=interval)


def free_port(ctx: zmq.Context) -> int:
    sock = ctx.socket(zmq.ROUTER)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    sock.close(linger=0)
    return port


def check_exactly_once(seqs: list[int]) -> None:
    assert seqs == list(range(1, len(seqs) + 1)), f"not 1..N once each, in order: {seqs[:50]}"


@pytest.mark.timeout(90)
def test_agent_killed_three_times_loses_nothing_and_applies_nothing_twice(procs, zmq_context, tmp_path):
    seed = random.randrange(1 << 30)
    print(f"random seed {seed}")
    rng = random.Random(seed)
    collector = procs.collector(*MODULES)
    client = Client(zmq_context, collector.clients)
    data_dir = tmp_path / "agent-n1"
    agent = start_agent(procs, collector.agents)
    last_next_seq = 1
    try:
        for _ in range(3):
            target = len(applied(client)) + rng.randint(5, 40)  # 0.25-2 s of reports: a random moment
            wait_applied(client, target)
            agent.send_signal(signal.SIGKILL)
            agent.wait(5)
            next_seq, held = outbox_state(data_dir)
            assert next_seq >= last_next_seq, "the sequence went backwards"
            last_next_seq = next_seq
            # A report leaves only once committed: the collector never holds a number the file does not.
            assert max(applied(client)) < next_seq
            agent = start_agent(procs, collector.agents)
            # Everything committed before the kill arrives, once, in order, whatever was acknowledged,
            # and the restarted agent numbers on from there (5 new reports of its own).
            wait_applied(client, next_seq + 4)
            check_exactly_once(applied(client))
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(10) == 0
        next_seq, held = outbox_state(data_dir)
        assert next_seq >= last_next_seq
        seqs = applied(client)
        check_exactly_once(seqs)
        # Each committed report is applied, or still held for the next start (the stop flushes for 1 s at most).
        assert set(seqs) | set(held) == set(range(1, next_seq))
        assert len(seqs) >= 30  # three rounds of at least 5 + 5 reports each
    finally:
        client.close()


@pytest.mark.timeout(60)
def test_tiny_outbox_bound_sends_a_gap_event_naming_exactly_the_lost_seqs(procs, zmq_context, tmp_path):
    endpoint = f"tcp://127.0.0.1:{free_port(zmq_context)}"
    data_dir = tmp_path / "agent-n1"
    # No collector yet: reports pile up in a 2 KB outbox (about 17 ProbeData reports) and the oldest go.
    agent = start_agent(procs, endpoint, "--outbox-max-mb", "0.002", interval=3600)
    wait_for(lambda: made(data_dir) > 60, 20, what="60 reports made")
    # Stop it before the collector comes, and bring it back with the default bound. A 2 KB outbox with a
    # collector there drops reports that are sent but not yet acknowledged whenever an ACK takes longer
    # than 17 reports do (0.85 s, a loaded machine): those still arrive, and a gap event cannot know it
    # (docs/agent-outbox.md). Lost here are only reports that were never sent: the events name exactly those.
    agent.send_signal(signal.SIGTERM)
    assert agent.wait(10) == 0
    collector: CollectorProcess = procs.collector("--listen-agents", endpoint, *MODULES)
    agent = start_agent(procs, endpoint, interval=3600)  # the same data dir: the outbox and its gap events
    client = Client(zmq_context, collector.clients)
    try:
        wait_for(
            lambda: agent_events(client) and len(applied(client)) > 20,
            20,
            what="a gap event and fresh reports at the collector",
        )
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(10) == 0
        events = agent_events(client)
        seen = set(applied(client)) | {e["seq"] for e in events}
        missing = set(range(1, max(seen) + 1)) - seen
        lost: set[int] = set()
        for event in events:
            attrs = event["attrs"]
            first, last, count = int(attrs["first"]), int(attrs["last"]), int(attrs["count"])
            assert event["kind"] == "gap" and count == last - first + 1
            assert event["message"] == f"outbox full: {count} reports lost (seq {first}-{last})"
            lost |= set(range(first, last + 1))
        assert min(missing) == 1 and len(missing) > 20
        assert lost == missing
    finally:
        client.close()
    logs = "".join(path.read_text(errors="replace") for path in tmp_path.glob("agent-n1-*.log"))
    assert "outbox bound reached" in logs and "Traceback" not in logs
