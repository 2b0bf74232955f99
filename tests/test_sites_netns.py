"""Sites into a top collector across real network boundaries: Linux network namespaces (docs/sites.md).

Three namespaces joined by veth pairs to a bridge in the first (tests/netns.py): ``core`` holds the
three-server NATS cluster (the stream replicated three ways) and the top collector; ``a`` and ``b``
each hold a site collector and its agents (real ``labscope agent`` processes, and in ``a`` also a
``labscope simulate`` load), which reach NATS only through their own link. One run, one topology:

1. every report reaches the top;
2. site ``a``'s link is cut (every packet dropped both ways) for 60 s while its agents report: the
   site keeps answering its clients and acknowledging its agents, its distribution backlog grows
   in its journal while its queue stays within its bound, the top shows its nodes lost and keeps
   ingesting site ``b``;
3. the link is healed, and the top is killed (kill -9) twice while it catches up, restarted each time;
4. one NATS server is killed;

and at the end the top's ``counter`` fixture module holds every (site, node, seq) exactly once and
in order per node: each real agent's seqs 1..last (read from its outbox), each simulated node's
seqs as its site applied them.
"""

from __future__ import annotations

import signal
import subprocess
import time
import uuid
from typing import Any

import pytest
import zmq

import tests.test_sites_e2e
from gui.client import Client
from tests.conftest import ProcessGroup, labscope_cmd, wait_for
from tests.nats_cluster import NatsCluster, needed_module
from tests.netns import Namespace, Netns, netns
from tests.test_reliability import FAST_PROBES, agent_last_seq

__all__ = ["netns"]  # the fixture, imported for pytest

needed_module("nats")

pytestmark = pytest.mark.e2e

PARTITION = 60.0  # seconds site a is cut off
SIMULATED, SIM_RATE = 10, 10.0  # site a's simulated nodes and their reports/s each: a backlog to catch up
SITE_TIMEOUT = 3  # the top's --ingest-site-timeout


def namespace_context(ns: Namespace) -> zmq.Context[Any]:
    """A ZeroMQ context whose I/O threads live in ``ns``: sockets made on it from any thread connect there.

    libzmq opens TCP connections in its I/O threads, which start with the context's first socket
    and inherit the network namespace of the thread that made it.
    """

    def make() -> zmq.Context[Any]:
        context: zmq.Context[Any] = zmq.Context()
        context.socket(zmq.DEALER).close(linger=0)  # starts the I/O threads here
        return context

    return ns.call(make)


class Tier(tests.test_sites_e2e.Tier):
    """A collector inside a namespace, on fixed ports and its own data dir, so it can be killed and started again."""

    def __init__(self, procs: ProcessGroup, ns: Namespace, name: str, *extra: str) -> None:
        self.ns = ns
        self.context = namespace_context(ns)
        super().__init__(procs, name, *extra)

    def where(self) -> dict[str, Any]:
        """Started inside the tier's namespace, with more time (the cluster is three servers away)."""
        return {"timeout": 60, "inside": self.ns}

    def client(self) -> Client:
        """A client whose ZeroMQ I/O threads live in the tier's namespace."""
        return Client(self.clients, context=self.context)

    def seqs(self) -> dict[str, list[int]]:
        """The ``counter`` module's seqs per node."""
        stats = self.ask("CounterStats")
        return {node: entry["seqs"] for node, entry in stats.items()} if isinstance(stats, dict) else {}

    def total(self, prefix: str = "") -> int:
        """How many reports the ``counter`` module was given (of nodes starting with ``prefix``)."""
        return sum(len(seqs) for node, seqs in self.seqs().items() if node.startswith(prefix))

    def nodes(self) -> dict[str, tuple[str, str, int]]:
        """NodeList as {node: (site, status, backlog)}."""
        answer = self.ask("NodeList")
        return {n.node: (n.site, n.status, n.backlog) for n in answer.nodes} if answer is not None else {}

    def distribution(self, name: str = "js") -> dict[str, Any]:
        """The ``Distributions`` answer for distribution ``name``."""
        answer = self.ask("Distributions")
        return answer.get(name, {}) if isinstance(answer, dict) else {}

    def close(self) -> None:
        """Close the tier's ZeroMQ context."""
        self.context.destroy(linger=0)


class Topology:
    """The namespaces, the NATS cluster in ``core``, two sites and the top."""

    def __init__(self, net: Netns, procs: ProcessGroup) -> None:
        self.net, self.procs = net, procs
        self.core, core_address = net.hub("core")
        self.ns = {name: net.add(name) for name in ("a", "b")}
        self.links = {name: net.attach(ns, self.core) for name, ns in self.ns.items()}
        self.cluster = NatsCluster(procs.tmp_path, netns=self.core).start()
        self.site_url = self.cluster.url_at(core_address)  # the sites reach NATS through their links
        self.stream, self.prefix = f"S{uuid.uuid4().hex[:8].upper()}", "lab"
        self.tiers: list[Tier] = []

    def site(self, name: str) -> Tier:
        """Site collector ``name`` in namespace ``name``, publishing into the stream (three copies)."""
        config = self.procs.tmp_path / f"{name}.toml"
        config.write_text(
            f'[collector]\nsite = "{name}"\nsite_heartbeat = 0.5\n\n'
            f'[distributions.js]\ntype = "nats"\nmode = "reports"\nurl = "{self.site_url}"\n'
            f'stream = "{self.stream}"\nprefix = "{self.prefix}"\nreplicas = 3\n'
        )
        return self._tier(self.ns[name], name, "--config", str(config))

    def top(self) -> Tier:
        """The top collector in ``core``, ingesting the stream from the local cluster."""
        config = self.procs.tmp_path / "top.toml"
        config.write_text(f'[collector]\ningest_prefix = "{self.prefix}"\ningest_durable = "top"\n')
        ingest = ("--ingest-nats", self.cluster.url, "--ingest-stream", self.stream)
        return self._tier(
            self.core, "top", "--config", str(config), *ingest, "--ingest-site-timeout", str(SITE_TIMEOUT)
        )

    def acknowledged(self) -> int:
        """The top's consumer's ack floor (0 while it cannot be read)."""

        async def floor(js: Any) -> int:
            return int((await js.consumer_info(self.stream, "top")).ack_floor.stream_seq)

        try:
            return int(self.cluster.run(floor))
        except Exception:  # a leader election after the server was killed
            return 0

    def _tier(self, ns: Namespace, name: str, *extra: str) -> Tier:
        tier = Tier(self.procs, ns, name, *extra)
        self.tiers.append(tier)
        return tier

    def agent(self, site: Tier, node: str, *extra: str) -> subprocess.Popen[bytes]:
        """``labscope agent`` for ``node`` inside ``site``'s namespace, its outbox in a folder of its own."""
        data_dir = self.procs.tmp_path / f"agent-{site.name}-{node}"
        args = labscope_cmd("agent", "--collector", site.agents, "--node-id", node, "--interval", "0.5")
        return self.procs._spawn([*args, "--data-dir", str(data_dir), *extra], data_dir.name, site.ns)[0]

    def simulate(self, site: Tier) -> subprocess.Popen[bytes]:
        """``labscope simulate`` inside ``site``'s namespace: nodes sim-0001 ... reporting SystemStats."""
        args = labscope_cmd("simulate", "--collector", site.agents, "--agents", str(SIMULATED))
        extra = ("--rate", str(SIM_RATE), "--prefix", "sim", "--log-level", "warning")
        return self.procs._spawn([*args, *extra], f"simulate-{site.name}", site.ns)[0]

    def close(self) -> None:
        """Stop the processes, then the cluster (a collector stopping with no server left waits out its
        last flush), and close the tiers' contexts."""
        self.procs.stop_all()
        self.cluster.stop()
        for tier in self.tiers:
            tier.close()


@pytest.fixture
def topology(netns: Netns, procs: ProcessGroup) -> Any:
    """The topology; its processes stop before the namespaces go (``procs`` is torn down first)."""
    made = Topology(netns, procs)
    yield made
    made.close()


def _sample_site_during_partition(site: Tier) -> dict[str, Any]:
    """What site a shows its own clients while it is cut off: its counter, distribution and nodes."""
    answer = site.ask("CollectorStats")
    assert answer is not None, "site a stopped answering its clients during the partition"
    js = site.distribution()
    return {"applied": site.total(), "sent": js["sent"], "queued": js["queued"], "queue_max": js["queue_max"]}


def partition_site_a(rig: Topology, site_a: Tier, top: Tier) -> list[dict[str, Any]]:
    """Cut site a's link for PARTITION s; returns what the site showed every few seconds meanwhile."""
    cut_at = time.monotonic()
    samples = [_sample_site_during_partition(site_a)]
    b_before = top.total("b:")
    rig.net.cut(rig.links["a"])
    lost = {f"a:{n}" for n in ("n1", "n2")}
    wait_for(
        lambda: all(top.nodes().get(n, ("", "", 0))[1] == "lost" for n in lost),
        timeout=SITE_TIMEOUT + 15,
        what="site a's nodes lost at the top",
    )
    assert {status for node, (_, status, _) in top.nodes().items() if node.startswith("b:")} == {"live"}
    while time.monotonic() - cut_at < PARTITION:
        time.sleep(min(5.0, max(0.0, PARTITION - (time.monotonic() - cut_at))))
        samples.append(_sample_site_during_partition(site_a))
    assert top.total("b:") > b_before + 100, "the top stopped ingesting site b while site a was cut off"
    agents_backlog = {node: backlog for node, (_, _, backlog) in site_a.nodes().items()}
    rig.net.heal(rig.links["a"])
    print("site a during the partition:", samples, "its agents' backlogs:", agents_backlog)
    assert max(agents_backlog.values()) < 100, "site a stopped acknowledging its agents"
    return samples


def check_backlog(samples: list[dict[str, Any]]) -> int:
    """Site a applied reports all along and passed none on; the backlog waits in its journal, not in memory."""
    first, last = samples[0], samples[-1]
    backlog = (last["applied"] - last["sent"]) - (first["applied"] - first["sent"])
    expected = (PARTITION - 10) * SIMULATED * SIM_RATE
    assert backlog >= expected, f"site a's distribution backlog grew by {backlog} only"
    assert last["sent"] - first["sent"] < 1000, "reports left site a while it was cut off"
    queued = max(s["queued"] for s in samples)
    assert queued <= last["queue_max"] and queued < backlog / 4, f"{queued} reports of the backlog held in memory"
    applied = [s["applied"] for s in samples]
    assert applied == sorted(applied) and applied[-1] > applied[0] + expected
    return backlog


def kill_top_during_catch_up(top: Tier, site_a: Tier) -> list[tuple[int, int]]:
    """kill -9 the top twice while it is behind site a, restarting it each time; (top, site) totals at each kill."""
    kills = []
    for _ in range(2):
        start = top.total("a:")

        def progressed_and_behind(start: int = start) -> tuple[int, int] | None:
            at_top, at_site = top.total("a:"), site_a.total()
            return (at_top, at_site) if at_top >= start + 200 and at_top < at_site - 1000 else None

        kills.append(wait_for(progressed_and_behind, timeout=60, interval=0.02, what="the top catching up"))
        top.kill()
        top.start()
    return kills


def expected_seqs(rig: Topology, sites: dict[str, Tier], nodes: list[tuple[str, str]]) -> dict[str, list[int]]:
    """Every real agent's seqs 1..last (its outbox), every simulated node's seqs as site a applied them."""
    tmp = rig.procs.tmp_path
    expected = {f"{s}:{n}": list(range(1, agent_last_seq(tmp / f"agent-{s}-{n}") + 1)) for s, n in nodes}
    simulated = {node: seqs for node, seqs in sites["a"].seqs().items() if node.startswith("sim-")}
    assert len(simulated) == SIMULATED
    assert all(seqs == sorted(set(seqs)) for seqs in simulated.values())
    expected.update({f"a:{node}": seqs for node, seqs in simulated.items()})
    return expected


@pytest.mark.timeout(480)
def test_two_sites_in_namespaces_reach_the_top_exactly_once_through_a_partition_kill_9s_and_a_lost_server(
    topology: Topology,
) -> None:
    rig = topology
    sites = {name: rig.site(name) for name in ("a", "b")}
    nodes = [(s, n) for s in sites for n in ("n1", "n2")]
    agents = [rig.agent(sites[s], n, *(FAST_PROBES if n == "n1" else ())) for s, n in nodes]
    agents.append(rig.simulate(sites["a"]))
    top = rig.top()
    everyone = {f"{s}:{n}" for s, n in nodes} | {f"a:sim-{i:04d}" for i in range(1, SIMULATED + 1)}
    wait_for(lambda: everyone <= set(top.seqs()), timeout=90, what="every node of both sites at the top")
    live = {f"{s}:{n}": (s, "live") for s, n in nodes}
    wait_for(lambda: live.items() <= {k: v[:2] for k, v in top.nodes().items()}.items(), timeout=30, what="all live")

    samples = partition_site_a(rig, sites["a"], top)
    healed, backlog = time.monotonic(), check_backlog(samples)
    kills = kill_top_during_catch_up(top, sites["a"])
    wait_for(
        lambda: live.items() <= {k: v[:2] for k, v in top.nodes().items()}.items(),
        timeout=60,
        what="site a's nodes live again at the top",
    )
    at_heal = samples[-1]["applied"]
    wait_for(lambda: top.total("a:") >= at_heal, timeout=120, interval=0.2, what="the top caught up with site a")
    caught_up = time.monotonic() - healed
    published = sites["a"].distribution()["sent"] - samples[-1]["sent"]  # the backlog and what came meanwhile

    rig.cluster.kill(0)  # the first server of every client's list
    grown = top.total() + 1000
    wait_for(lambda: top.total() >= grown, timeout=60, interval=0.3, what="reports at the top after a server died")
    for popen in agents:
        popen.send_signal(signal.SIGTERM)
    for popen in agents:
        popen.wait(20)
    assert all(popen.returncode == 0 for popen in agents[:-1])
    expected = expected_seqs(rig, sites, nodes)

    def complete() -> dict[str, list[int]] | None:
        got = top.seqs()
        return got if all(got.get(node, [0])[-1:] == seqs[-1:] for node, seqs in expected.items()) else None

    wait_for(complete, timeout=120, interval=0.5, what="every report at the top")
    time.sleep(1.0)  # a late duplicate would show up now
    got = top.seqs()
    for node, seqs in expected.items():
        assert got[node] == seqs, f"{node}: not exactly once and in order at the top"
    info = rig.cluster.stream_info(rig.stream)
    assert info.config.num_replicas == 3
    wait_for(lambda: rig.acknowledged() == info.state.last_seq, timeout=20, what="the top acknowledging everything")
    counters = top.ask("CollectorStats")["counters"]
    print(
        f"{len(expected)} nodes, {sum(map(len, expected.values()))} reports; site a's backlog grew by {backlog}",
        f"in {PARTITION:.0f} s; top killed at (top, site a) = {kills}; caught up {caught_up:.1f} s after the heal",
        f"(site a published {published / caught_up:.0f} reports/s meanwhile);",
        {k: v for k, v in counters.items() if k.startswith(("ingest", "sites"))},
    )
