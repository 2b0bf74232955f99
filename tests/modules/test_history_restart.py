"""SystemStatsHistory's tiers across collector restarts: real collector processes on one data dir.

A stop (SIGTERM) writes the open buckets; a kill (SIGKILL) loses them and the restarted collector
replays its journal into ``systemstats``. Either way every bucket afterwards holds each sample
exactly once, as a plain computation of the buckets says, on the SQLite and PostgreSQL stores.
"""

from __future__ import annotations

import math
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from messages import Kind, NodeInfo, SystemStats, SystemStatsHistory
from tests.conftest import CollectorProcess, ProcessGroup
from tests.stores.conftest import PG_DSN, drop_schema, need_postgresql
from tests.wire import Client, Peer

from . import sample

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

T0 = math.floor(time.time() / 60) * 60 - 20 * 60  # twenty minutes ago, a whole minute
TIMES = [T0 + 7.0 * i for i in range(120)]  # 14 minutes, buckets cut by the restart
CPUS = [float((i * 5) % 17) for i in range(len(TIMES))]


def play(agent: Peer, first: int, last: int) -> None:
    """HELLO, then reports ``first``..``last`` (1-based, seq = index), acknowledged."""
    info = NodeInfo(node="n1", hostname="h1", instance="i-1")
    agent.send(Kind.HELLO, "NodeInfo", info, node="n1", seq=0)
    agent.expect(lambda e: e.kind == Kind.HELLO, what="HELLO answer")
    for seq in range(first, last + 1):
        stats = sample(TIMES[seq - 1], cpu=CPUS[seq - 1])
        agent.send(Kind.REPORT, "SystemStats", stats, node="n1", seq=seq, time=stats.time)
    agent.expect(lambda e: e.kind == Kind.ACK and e.seq == last, what=f"ACK {last}")


def buckets(width: float, count: int) -> list[float]:
    found: dict[float, list[float]] = {}
    for t, v in zip(TIMES[:count], CPUS[:count], strict=True):
        found.setdefault(t - t % width, []).append(v)
    return [x for s, vs in sorted(found.items()) for x in (s, min(vs), sum(vs) / len(vs), max(vs), len(vs))]


def cpu_rows(answer: SystemStatsHistory) -> list[float]:
    (cpu,) = [s for s in answer.series if s.name == "cpu_percent"]
    return [x for row in zip(cpu.time, cpu.min, cpu.avg, cpu.max, cpu.count, strict=True) for x in row]


def run(
    procs: ProcessGroup, ctx: zmq.Context, data_dir: Path, store: list[str], first: int, last: int
) -> tuple[Client, CollectorProcess]:
    collector = procs.collector(*store, data_dir=data_dir)
    agent = Peer(ctx, collector.agents)
    try:
        play(agent, first, last)
    finally:
        agent.close()
    return Client(ctx, collector.clients), collector


def check(client: Client, count: int) -> None:
    minute = client.answer("SystemStatsHistory", node="n1", resolution="1m", since=str(T0 - 1))
    assert minute.resolution == "1m"
    assert cpu_rows(minute) == pytest.approx(buckets(60.0, count))
    hour = client.answer("SystemStatsHistory", node="n1", resolution="1h")
    assert cpu_rows(hour) == pytest.approx(buckets(3600.0, count))
    raw = client.answer("SystemStatsHistory", node="n1", resolution="raw", since=str(T0 - 1))
    assert [s.time for s in raw.samples] == TIMES[:count]
    assert isinstance(raw.samples[0], SystemStats)


def restart_and_check(
    procs: ProcessGroup, ctx: zmq.Context, data_dir: Path, store: list[str], stop: signal.Signals
) -> None:
    client, collector = run(procs, ctx, data_dir, store, 1, 70)
    check(client, 70)
    client.close()
    collector.stop(stop)
    client, collector = run(procs, ctx, data_dir, store, 71, len(TIMES))
    try:
        check(client, len(TIMES))
    finally:
        client.close()
    assert collector.stop() == 0, collector.log()


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL], ids=["stop", "kill"])
def test_sqlite_tiers_survive_a_restart(
    procs: ProcessGroup, zmq_context: zmq.Context, tmp_path: Path, stop: signal.Signals
) -> None:
    restart_and_check(procs, zmq_context, tmp_path / "data", [], stop)


@pytest.fixture
def schema() -> Iterator[str]:
    """A fresh schema on the test PostgreSQL, dropped afterwards (skips, or fails under CI=true, without it)."""
    need_postgresql()
    name = f"labscope_test_{uuid.uuid4().hex[:12]}"
    yield name
    drop_schema(name)


def test_postgresql_tiers_survive_a_restart(
    procs: ProcessGroup, zmq_context: zmq.Context, tmp_path: Path, schema: str
) -> None:
    store = ["--store", "postgresql", "--store-arg", f"dsn={PG_DSN}", "--store-arg", f"schema={schema}"]
    restart_and_check(procs, zmq_context, tmp_path / "data", store, signal.SIGKILL)
