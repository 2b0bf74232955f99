"""The configured store with real collector processes: PostgreSQL across a restart on an empty data dir,
the default SQLite store across a restart, and a bad store name (one line, exit status 2)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import zmq

from messages import Event, Kind, NodeInfo
from messages.codec import envelope, pack
from tests.conftest import ProcessGroup, labscope_cmd, wait_for
from tests.stores.conftest import PG_DSN
from tests.wire import Client, Peer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]


def report_event(agent: Peer, node: str, message: str) -> None:
    """HELLO as ``node``, then one Event report; returns once it is acknowledged."""
    agent.send(Kind.HELLO, "NodeInfo", NodeInfo(node=node, hostname=f"host-{node}", instance="i1"), node=node, seq=1)
    agent.expect(lambda e: e.kind == Kind.ACK and e.node == node, what=f"ACK after HELLO of {node}")
    agent.socket.send(pack([envelope(Kind.REPORT, "Event", Event(kind="note", message=message), node=node, seq=2)]))
    agent.expect(lambda e: e.kind == Kind.ACK and e.seq == 2, what="ACK of the event")


def events_of(client: Client, node: str) -> list[tuple[str, str]]:
    return [(e["kind"], e["message"]) for e in client.answer("Events", node=node)]


def run_once(procs: ProcessGroup, ctx: zmq.Context, data_dir: Path, store: list[str], node: str) -> None:
    collector = procs.collector(*store, data_dir=data_dir)
    agent, client = Peer(ctx, collector.agents), Client(ctx, collector.clients)
    try:
        report_event(agent, node, f"before the restart ({node})")
        wait_for(lambda: ("note", f"before the restart ({node})") in events_of(client, node), 10, what="the event")
    finally:
        agent.close()
        client.close()
    assert collector.stop() == 0, collector.log()


def check_after_restart(procs: ProcessGroup, ctx: zmq.Context, data_dir: Path, store: list[str], node: str) -> None:
    collector = procs.collector(*store, data_dir=data_dir)
    client = Client(ctx, collector.clients)
    try:
        events = events_of(client, node)
        assert ("note", f"before the restart ({node})") in events
        assert ("joined", f"node {node} joined") in events  # the collector's own event: never journaled
        assert events.count(("note", f"before the restart ({node})")) == 1  # not replayed twice
        assert client.answer("CollectorStats")["nodes"]["total"] == 1  # the node registry came back too
    finally:
        client.close()
    assert collector.stop() == 0, collector.log()


def test_postgresql_store_answers_events_on_an_empty_data_dir(
    procs: ProcessGroup, zmq_context: zmq.Context, tmp_path: Path, pg_schema: str
) -> None:
    store = ["--store", "postgresql", "--store-arg", f"dsn={PG_DSN}", "--store-arg", f"schema={pg_schema}"]
    run_once(procs, zmq_context, tmp_path / "first", store, "pg-node")
    empty = tmp_path / "second"
    assert not empty.exists()
    check_after_restart(procs, zmq_context, empty, store, "pg-node")


def test_default_sqlite_store_keeps_events_across_a_restart(
    procs: ProcessGroup, zmq_context: zmq.Context, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    run_once(procs, zmq_context, data_dir, [], "lite-node")
    check_after_restart(procs, zmq_context, data_dir, [], "lite-node")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--store", "mongo"], "store 'mongo': not a backend name"),
        (["--store", "no_such_pkg.mod:Store"], "cannot import no_such_pkg.mod"),
        (["--store", "memory", "--store-arg", "colour=red"], "bad store_args"),
        (["--store-arg", "history_1m=soon"], "store_args history_1m='soon': must be a positive number of seconds"),
    ],
)
def test_a_bad_store_is_one_line_and_exit_2(tmp_path: Path, flags: list[str], message: str) -> None:
    args = labscope_cmd("collector", "--listen-agents", "tcp://127.0.0.1:*", "--listen-clients", "tcp://127.0.0.1:*")
    done = subprocess.run(
        [*args, "--data-dir", str(tmp_path), *flags], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if "error" in line]
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in done.stderr


def test_an_unreachable_postgresql_is_one_line_and_exit_1(tmp_path: Path) -> None:
    args = labscope_cmd("collector", "--listen-agents", "tcp://127.0.0.1:*", "--listen-clients", "tcp://127.0.0.1:*")
    store = ["--store", "postgresql", "--store-arg", "dsn=host=127.0.0.1 port=1 dbname=test connect_timeout=2"]
    done = subprocess.run(
        [*args, "--data-dir", str(tmp_path), *store], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 1, done.stderr
    (line,) = [line for line in done.stderr.splitlines() if "error" in line]
    assert "cannot connect" in line and "Traceback" not in done.stderr
