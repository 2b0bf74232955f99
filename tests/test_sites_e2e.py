"""Sites into a top collector through a real three-server NATS JetStream cluster (docs/sites.md).

Two site collectors (``site = "a"``, ``"b"``), each with its own real agents, publish through the
``nats`` distribution into a stream replicated three ways; a top collector ingests it
(``--ingest-nats``). The top's ``counter`` fixture module records every (node, seq) it is given, so
the test checks that each agent's reports reached the top exactly once and in order, through two
kill -9 of the top during its catch-up and the loss of one NATS server. Both sites use the same
node ids: at the top they are ``a:n1`` and ``b:n1``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import zmq

from gui.client import Client
from messages import Kind, NodeInfo
from messages.errors import LabscopeError, RequestFailed
from tests.conftest import CollectorProcess, ProcessGroup, labscope_cmd, wait_for
from tests.nats_cluster import NatsCluster, needed_module
from tests.test_reliability import FAST_PROBES, MODULES, agent_last_seq, free_port
from tests.wire import Peer

needed_module("nats")

pytestmark = pytest.mark.e2e


class Tier:
    """A collector on fixed ports and its own data dir, so it can be killed and started again."""

    def __init__(self, procs: ProcessGroup, name: str, *extra: str) -> None:
        self.procs = procs
        self.name = name
        self.agents = f"tcp://127.0.0.1:{free_port()}"
        self.clients = f"tcp://127.0.0.1:{free_port()}"
        self.data_dir = procs.tmp_path / f"{name}-data"
        self.extra = extra
        self.collector: CollectorProcess = self.start()

    def start(self) -> CollectorProcess:
        """Start the collector on the tier's ports and data dir."""
        ports = ("--listen-agents", self.agents, "--listen-clients", self.clients)
        self.collector = self.procs.collector(*ports, *MODULES, *self.extra, data_dir=self.data_dir, **self.where())
        return self.collector

    def where(self) -> dict[str, Any]:
        """How the collector is started: the seconds it may take (a namespaced tier adds its namespace)."""
        return {"timeout": 40}

    def client(self) -> Client:
        """A client of the tier's collector (a namespaced tier's connects from inside its namespace)."""
        return Client(self.clients)

    def kill(self) -> None:
        """kill -9 the collector."""
        self.collector.popen.send_signal(signal.SIGKILL)
        self.collector.popen.wait(10)

    def ask(self, type: str, **params: str) -> Any:
        """One request's payload; None while the collector does not answer."""
        try:
            with self.client() as client:
                return client.request(type, params, timeout=5).payload
        except LabscopeError:
            return None


def agent(procs: ProcessGroup, site: Tier, node: str, *extra: str, interval: float = 0.5) -> subprocess.Popen:
    """``labscope agent`` for ``node`` of ``site``, its outbox in a folder of its own."""
    args = labscope_cmd(
        "agent",
        "--collector",
        site.agents,
        "--node-id",
        node,
        "--interval",
        str(interval),
        "--data-dir",
        str(procs.tmp_path / f"agent-{site.name}-{node}"),
        *extra,
    )
    return procs._spawn(args, f"agent-{site.name}-{node}")[0]


class Sites:
    """The cluster, a unique stream and prefix, two sites and their config files."""

    def __init__(self, procs: ProcessGroup, cluster: NatsCluster) -> None:
        tag = uuid.uuid4().hex[:8]
        self.procs, self.cluster = procs, cluster
        self.stream, self.prefix = f"S{tag.upper()}", f"t{tag}"

    def site(self, name: str, heartbeat: float = 0.5) -> Tier:
        config = self.procs.tmp_path / f"{name}.toml"
        config.write_text(
            f'[collector]\nsite = "{name}"\nsite_heartbeat = {heartbeat}\n\n'
            f'[distributions.js]\ntype = "nats"\nmode = "reports"\nurl = "{self.cluster.url}"\n'
            f'stream = "{self.stream}"\nprefix = "{self.prefix}"\nreplicas = 3\n'
        )
        return Tier(self.procs, name, "--config", str(config))

    def top(self, *extra: str) -> Tier:
        config = self.procs.tmp_path / "top.toml"
        config.write_text(f'[collector]\ningest_prefix = "{self.prefix}"\ningest_durable = "top"\n')
        return Tier(
            self.procs,
            "top",
            "--config",
            str(config),
            "--ingest-nats",
            self.cluster.url,
            "--ingest-stream",
            self.stream,
            *extra,
        )

    def acknowledged(self) -> int:
        """The top's consumer's ack floor (0 while it cannot be read)."""

        async def floor(js: Any) -> int:
            return int((await js.consumer_info(self.stream, "top")).ack_floor.stream_seq)

        try:
            return int(self.cluster.run(floor))
        except Exception:  # a leader election after the server was killed
            return 0

    def stream_count(self) -> int:
        try:
            return int(self.cluster.stream_info(self.stream).state.messages)
        except Exception:  # not created yet, or a leader election
            return 0


@pytest.fixture
def cluster(tmp_path: Path, procs: ProcessGroup) -> Any:
    """A three-server cluster; the test's processes stop first (a collector stopping with no server
    left waits out its last flush)."""
    made = NatsCluster(tmp_path).start()
    yield made
    procs.stop_all()
    made.stop()


def counts(top: Tier) -> dict[str, Any]:
    stats = top.ask("CounterStats")
    return stats if isinstance(stats, dict) else {}


def ingested(top: Tier) -> int:
    stats = top.ask("CollectorStats")
    return int(stats["counters"].get("ingest-reports", 0)) if isinstance(stats, dict) else 0


def node_list(top: Tier) -> dict[str, tuple[str, str]]:
    """The top's NodeList as {node: (site, status)}."""
    answer = top.ask("NodeList")
    return {n.node: (n.site, n.status) for n in answer.nodes} if answer is not None else {}


def simulate(procs: ProcessGroup, site: Tier, agents: int, rate: float) -> subprocess.Popen:
    """``labscope simulate``: many agents in one process (nodes sim-0001 ...), SystemStats at ``rate``/s each."""
    args = labscope_cmd("simulate", "--collector", site.agents, "--agents", str(agents), "--rate", str(rate))
    return procs._spawn([*args, "--prefix", "sim", "--log-level", "warning"], f"simulate-{site.name}")[0]


def seqs_of(tier: Tier) -> dict[str, list[int]]:
    return {node: entry["seqs"] for node, entry in counts(tier).items()}


@pytest.mark.timeout(300)
def test_two_sites_reach_the_top_exactly_once_through_kill_9_and_a_lost_nats_server(
    procs: ProcessGroup, cluster: NatsCluster
) -> None:
    rig = Sites(procs, cluster)
    sites = {name: rig.site(name) for name in ("a", "b")}
    nodes = {(name, node) for name in sites for node in ("n1", "n2")}
    agents = [agent(procs, sites[s], n, *(FAST_PROBES if n == "n1" else ()), interval=0.5) for s, n in sorted(nodes)]
    agents.append(simulate(procs, sites["b"], agents=20, rate=25))  # 500 reports/s more: a real backlog to catch up
    top = rig.top()
    wait_for(lambda: {"a:n1", "b:n1", "b:sim-0020"} <= set(counts(top)), timeout=60, what="both sites at the top")
    wait_for(
        lambda: {f"{s}:{n}": (s, "live") for s, n in nodes}.items() <= node_list(top).items(),
        timeout=30,
        what="every node of every site live at the top",
    )
    for _ in range(2):  # kill -9 the top during its catch-up, twice
        top.kill()
        backlog = rig.stream_count() + 3000
        wait_for(lambda backlog=backlog: rig.stream_count() >= backlog, timeout=90, what="a backlog in the stream")
        top.start()
        wait_for(lambda: ingested(top) > 300, timeout=60, interval=0.01, what="the top catching up")
        print("killed the top after", ingested(top), "reports of a backlog over 3000")
    top.kill()
    top.start()
    cluster.kill(0)  # the first server of every client's list
    grown = rig.stream_count() + 500
    wait_for(lambda: rig.stream_count() >= grown, timeout=60, interval=0.3, what="reports after a NATS server died")
    for popen in agents:
        popen.send_signal(signal.SIGTERM)
    for popen in agents:
        popen.wait(20)
    assert all(popen.returncode == 0 for popen in agents[:-1])
    expected = {f"{s}:{n}": list(range(1, agent_last_seq(procs.tmp_path / f"agent-{s}-{n}") + 1)) for s, n in nodes}
    at_site_b = wait_for(lambda: {k: v for k, v in seqs_of(sites["b"]).items() if k.startswith("sim-")}, 10, 0.3)
    expected.update({f"b:{node}": seqs for node, seqs in at_site_b.items()})  # what site b applied, in order

    def complete() -> dict[str, list[int]] | None:
        got = seqs_of(top)
        done = all(got.get(node, [0])[-1:] == seqs[-1:] for node, seqs in expected.items())
        return got if done else None

    wait_for(complete, timeout=120, interval=0.5, what="every report at the top")
    time.sleep(1.0)  # a duplicate would show up now
    got = seqs_of(top)
    for node, seqs in expected.items():
        assert got[node] == seqs, f"{node}: not exactly once and in order"
    assert all(seqs == sorted(set(seqs)) for seqs in at_site_b.values())
    info = cluster.stream_info(rig.stream)
    assert info.config.num_replicas == 3
    wait_for(lambda: rig.acknowledged() == info.state.last_seq, timeout=20, what="the top acknowledging everything")
    stats = top.ask("CollectorStats")["counters"]
    print(
        len(expected),
        "nodes;",
        sum(map(len, expected.values())),
        "reports;",
        {k: v for k, v in stats.items() if k.startswith("ingest")},
    )


@pytest.mark.timeout(180)
def test_a_silent_site_shows_its_nodes_lost_at_the_top(procs: ProcessGroup, cluster: NatsCluster) -> None:
    rig = Sites(procs, cluster)
    sites = {name: rig.site(name, heartbeat=0.3) for name in ("a", "b")}
    for name, site in sites.items():
        agent(procs, site, "n1", interval=0.3)
    top = rig.top("--ingest-site-timeout", "2")
    live = {"a:n1": ("a", "live"), "b:n1": ("b", "live")}
    wait_for(lambda: node_list(top) == live, timeout=60, what="both sites' nodes live at the top")
    sites["a"].kill()  # its heartbeat stops; its agent keeps trying
    wait_for(
        lambda: node_list(top) == {"a:n1": ("a", "lost"), "b:n1": ("b", "live")},
        timeout=20,
        what="site a's node lost at the top, site b's still live",
    )
    sites["a"].start()
    wait_for(lambda: node_list(top) == live, timeout=40, what="site a's node live again at the top")
    events = top.ask("Events")
    assert events is not None


def test_a_top_refuses_a_local_agent_that_takes_a_site_nodes_id(
    procs: ProcessGroup, cluster: NatsCluster, zmq_context: zmq.Context
) -> None:
    top = Sites(procs, cluster).top()
    agent = Peer(zmq_context, top.agents)
    try:
        for node, answer in (("a:n1", Kind.ERROR), ("n1", Kind.ACK)):
            agent.send(Kind.HELLO, "NodeInfo", NodeInfo(node=node, instance="x"), node=node, seq=1)
            reply = agent.expect(lambda e: e.kind in (Kind.ACK, Kind.ERROR), what=f"the answer to {node}'s HELLO")
            assert (reply.kind, reply.node) == (answer, node)
            if answer == Kind.ERROR:
                assert reply.error_code == "bad-hello" and "SITE:NODE" in reply.error and "--node-id" in reply.error
    finally:
        agent.close()
    assert set(node_list(top)) == {"n1"}
    stats = top.ask("CollectorStats")
    assert stats is not None and stats["counters"].get("bad-hello") == 1


@pytest.mark.parametrize(
    "server_config",
    ["max_payload: 512KB\n", ""],  # a body above max_payload; NATS's default 1 MB, which only the headers pass
    ids=["512KB", "default-1MB"],
)
def test_a_chunk_nats_refuses_fails_the_tops_request_and_the_site_cancels_the_agents_stream(
    procs: ProcessGroup, tmp_path: Path, server_config: str
) -> None:
    (tmp_path / "small").mkdir()
    small = NatsCluster(tmp_path / "small", size=1, extra=server_config).start()  # below a 1 MiB chunk
    try:
        refused_chunk_is_cancelled(procs, small)
    finally:
        procs.stop_all()
        small.stop()


def refused_chunk_is_cancelled(procs: ProcessGroup, cluster: NatsCluster) -> None:
    """A NodeFile from a site's node through the top, on a NATS server that refuses every chunk."""
    rig = Sites(procs, cluster)
    site = rig.site("a")
    serve = procs.tmp_path / "serve-a"
    serve.mkdir()
    (serve / "big.bin").write_bytes(os.urandom(40 * 2**20))  # more than the 32 chunks of credit
    agent(procs, site, "n1", "--serve-dir", str(serve))
    top = rig.top()
    wait_for(lambda: node_list(top).get("a:n1") == ("a", "live"), timeout=60, what="a:n1 live at the top")
    with top.client() as client, pytest.raises(RequestFailed, match="could not send a chunk over NATS"):
        for _ in client.stream_views("NodeFile", {"node": "a:n1", "path": "big.bin"}, timeout=30):
            pass

    def outcome() -> str:
        """The site's audited outcome of the NodeFile request; empty while it has none (still running)."""
        rows = site.ask("Audit", node="n1") or []
        return next((row["outcome"] or "" for row in reversed(rows) if row["type"] == "NodeFile"), "")

    # The site's own relay cancels the request at once: not a timeout at the site, nor 60 s of an agent
    # waiting for credit that never comes.
    assert wait_for(outcome, timeout=10, what="the site's audited outcome") == "cancelled"
