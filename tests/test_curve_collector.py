"""A CURVE collector with allow folders, as a real process; agents and clients played by hand on CURVE DEALERs.

Who gets in (listed keys only), which node ids an agent key may claim, what a
viewer may not do, what happens when the folders change, and the plain
collector's warning (docs/security.md).
"""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from messages import Envelope, Kind, NodeInfo
from messages.errors import Code
from messages.keys import ClientKeys, generate
from tests.conftest import CollectorProcess, ProcessGroup, wait_for
from tests.wire import Client, Peer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

REFUSED_QUIET = 1.5  # seconds a refused peer is listened to, to show it gets nothing back


class Keys:
    """The collector's key pair and its three allow folders; peers' secrets stay in ``secrets``."""

    def __init__(self, root: Path) -> None:
        self.secrets = root / "secrets"
        self.agents, self.viewers, self.operators = (root / f"allow-{r}" for r in ("agents", "viewers", "operators"))
        for folder in (self.agents, self.viewers, self.operators):
            folder.mkdir(parents=True)
        self.server = generate(self.secrets, "collector")

    def make(self, name: str, folder: Path | None, nodes: tuple[str, ...] = ()) -> ClientKeys:
        """A new key pair; its public ``.key`` goes into ``folder`` (None: into no allow folder)."""
        cert = generate(self.secrets, name, nodes)
        assert cert.secret is not None
        if folder is not None:
            shutil.copy(self.secrets / f"{name}.key", folder)
        return ClientKeys(self.server.public, cert.public, cert.secret, name)

    def args(self) -> tuple[str, ...]:
        return (
            "--curve-secret",
            str(self.secrets / "collector.key_secret"),
            "--allow-agents",
            str(self.agents),
            "--allow-viewers",
            str(self.viewers),
            "--allow-operators",
            str(self.operators),
        )


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return Keys(tmp_path / "keys")


@pytest.fixture
def peers(zmq_context: zmq.Context) -> Iterator[list[Peer]]:
    """Every hand-played peer a test opens, closed at teardown."""
    opened: list[Peer] = []
    yield opened
    for peer in opened:
        peer.close()


def open_peer(peers: list[Peer], cls: type[Peer], ctx: zmq.Context, endpoint: str, curve: ClientKeys | None, **kw):
    peer = cls(ctx, endpoint, curve, **kw)
    peers.append(peer)
    return peer


def say_hello(agent: Peer, node: str, timeout: float = 10.0) -> Envelope | None:
    """Send HELLO for ``node``; the ACK or ERROR answering it, or None when nothing comes within ``timeout``."""
    agent.send(Kind.HELLO, "NodeInfo", NodeInfo(node=node, hostname=f"host-{node}", instance="i1"), node=node, seq=1)
    return agent.poll_for(lambda e: e.kind in (Kind.ACK, Kind.ERROR), timeout)


def counters(client: Client) -> dict[str, int]:
    return client.answer("CollectorStats")["counters"]


def node_ids(client: Client) -> set[str]:
    return {n.node for n in client.answer("NodeList").nodes}


def start(procs: ProcessGroup, keys: Keys) -> CollectorProcess:
    return procs.collector(*keys.args())


def test_only_listed_agents_get_in_and_only_for_their_node_ids(
    procs: ProcessGroup, keys: Keys, zmq_context: zmq.Context, peers: list[Peer]
) -> None:
    n1 = keys.make("n1", keys.agents)
    multi = keys.make("rack7", keys.agents, nodes=("n3", "n4"))
    outsider = keys.make("n9", None)
    operator = keys.make("alice", keys.operators)
    collector = start(procs, keys)
    client = open_peer(peers, Client, zmq_context, collector.clients, operator)

    agent = open_peer(peers, Peer, zmq_context, collector.agents, n1, routing_id=b"agent-n1")
    answer = say_hello(agent, "n1")
    assert answer is not None and answer.kind == Kind.ACK, answer
    rack = open_peer(peers, Peer, zmq_context, collector.agents, multi)
    for node in ("n3", "n4"):  # the metadata's node ids; its own name "rack7" would do too
        answer = say_hello(rack, node)
        assert answer is not None and answer.kind == Kind.ACK, (node, answer)
    assert {"n1", "n3", "n4"} <= node_ids(client)

    # An unlisted key: refused in the handshake, so nothing it sends arrives and nothing comes back.
    stranger = open_peer(peers, Peer, zmq_context, collector.agents, outsider)
    assert say_hello(stranger, "n9", REFUSED_QUIET) is None
    wait_for(lambda: counters(client).get("auth-refused:unknown-key", 0) >= 1, 10, what="unknown-key counted")
    assert "n9" not in node_ids(client)

    # A listed key claiming a node id it may not: ERROR forbidden, no session.
    impostor = open_peer(peers, Peer, zmq_context, collector.agents, n1)
    answer = say_hello(impostor, "n3")
    assert answer is not None and answer.kind == Kind.ERROR and answer.error_code == Code.FORBIDDEN, answer
    assert "n3" in answer.error and "'n1'" in answer.error
    counted = counters(client)
    assert counted["auth-refused:wrong-node"] == 1 and counted["auth-refused"] >= 2
    events = [e for e in client.answer("Events", node="n3") if e["kind"] == "auth-refused"]
    assert [e["attrs"]["reason"] for e in events] == ["wrong-node"]
    assert events[0]["attrs"]["fingerprint"].startswith("SHA256:")
    assert "auth-refused" in collector.log() or "refused key" in collector.log()

    # Routing ids are the peer's choice: another listed key reusing n1's connection id is refused.
    agent.close()

    def mismatch_refused() -> bool:
        # A fresh connection each try: the ROUTER ignores a duplicate id until it has seen n1's socket go.
        spoof = open_peer(peers, Peer, zmq_context, collector.agents, multi, routing_id=b"agent-n1")
        spoof.send(Kind.HEARTBEAT, node="n1")
        env = spoof.poll_for(lambda e: e.kind == Kind.ERROR, 0.5)
        spoof.close()
        return env is not None and env.error_code == Code.FORBIDDEN

    wait_for(mismatch_refused, 10, what="key-mismatch refused")
    assert counters(client)["auth-refused:key-mismatch"] >= 1


def test_a_viewer_may_query_but_only_an_operator_commands_a_node(
    procs: ProcessGroup, keys: Keys, zmq_context: zmq.Context, peers: list[Peer]
) -> None:
    n1 = keys.make("n1", keys.agents)
    viewer_keys = keys.make("victor", keys.viewers)
    operator_keys = keys.make("olga", keys.operators)
    stranger_keys = keys.make("mallory", None)
    collector = start(procs, keys)
    agent = open_peer(peers, Peer, zmq_context, collector.agents, n1)
    assert (say_hello(agent, "n1") or Envelope()).kind == Kind.ACK
    viewer = open_peer(peers, Client, zmq_context, collector.clients, viewer_keys)
    operator = open_peer(peers, Client, zmq_context, collector.clients, operator_keys)

    assert "n1" in node_ids(viewer)
    for type, params in (("NodeFile", {"node": "n1", "path": "x"}), ("ProcessList", {"node": "n1"}), ("Audit", {})):
        refused = viewer.ask(type, **params)
        assert (refused.kind, refused.error_code) == (Kind.ERROR, Code.FORBIDDEN), (type, refused)
        assert "operator" in refused.error and "victor" in refused.error
    assert agent.poll_for(lambda e: e.kind == Kind.REQUEST, 0.5) is None, "a viewer's request reached the node"

    request_id = operator.send_request("ProcessList", node="n1")
    forwarded = agent.expect(lambda e: e.kind == Kind.REQUEST, what="the operator's request at the node")
    assert forwarded.type == "ProcessList"
    agent.send(Kind.RESPONSE, "ProcessList", [{"pid": 1}], request_id=forwarded.request_id)
    answer = operator.expect(lambda e: e.request_id == request_id and e.kind == Kind.RESPONSE, what="the answer")
    assert answer.type == "ProcessList"

    stranger = open_peer(peers, Client, zmq_context, collector.clients, stranger_keys)
    stranger.send_request("NodeList")
    assert stranger.poll_for(lambda e: True, REFUSED_QUIET) is None
    wait_for(lambda: counters(operator).get("auth-refused:unknown-key", 0) >= 1, 10, what="client unknown-key")
    assert counters(operator)["auth-refused:operator-only"] == 3
    assert collector.stop() == 0, collector.log()
    assert "Traceback" not in collector.log()


def test_allow_folders_reload_on_change_and_on_sighup(
    procs: ProcessGroup, keys: Keys, zmq_context: zmq.Context, peers: list[Peer]
) -> None:
    operator_keys = keys.make("olga", keys.operators)
    viewer_keys = keys.make("victor", keys.viewers)
    collector = start(procs, keys)
    operator = open_peer(peers, Client, zmq_context, collector.clients, operator_keys)
    viewer = open_peer(peers, Client, zmq_context, collector.clients, viewer_keys)
    assert viewer.answer("NodeList") is not None

    # A new agent key file: the agent gets in without a restart (the folder is polled about once a second).
    newcomer = keys.make("n5", None)
    shutil.copy(keys.secrets / "n5.key", keys.agents)

    def admitted(node: str, keys_: ClientKeys) -> bool:
        agent = open_peer(peers, Peer, zmq_context, collector.agents, keys_)
        answer = say_hello(agent, node, 0.5)
        return answer is not None and answer.kind == Kind.ACK

    wait_for(lambda: admitted("n5", newcomer), 10, what="n5 admitted after its key file appeared")
    assert "n5" in node_ids(operator)

    # A removed key: the connected viewer is refused from its next frame on.
    (keys.viewers / "victor.key").unlink()

    def viewer_refused() -> bool:
        env = viewer.ask("NodeList")
        return env.kind == Kind.ERROR and env.error_code == Code.FORBIDDEN

    wait_for(viewer_refused, 10, what="the removed viewer refused")
    assert counters(operator)["auth-refused:key-removed"] >= 1

    # A change the poll cannot see (same size, same mtime, same folder listing): SIGHUP re-reads the folders.
    swapped = keys.make("wendy", None)
    target = keys.operators / "olga2.key"
    reloads = collector.log().count("allowed keys:")
    shutil.copy(keys.secrets / "olga.key", target)  # a second copy of olga's key, to be swapped for wendy's
    wait_for(lambda: collector.log().count("allowed keys:") > reloads, 10, what="the poll's reload for olga2.key")
    stat = target.stat()
    text = (keys.secrets / "wendy.key").read_text().replace("wendy", "olga2")
    assert len(text.encode()) == stat.st_size
    target.write_text(text)
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert not admitted_client(swapped, peers, zmq_context, collector)
    collector.popen.send_signal(signal.SIGHUP)
    wait_for(lambda: admitted_client(swapped, peers, zmq_context, collector), 10, what="wendy admitted after SIGHUP")
    assert collector.popen.poll() is None


def admitted_client(keys_: ClientKeys, peers: list[Peer], ctx: zmq.Context, collector: CollectorProcess) -> bool:
    """Whether a client with ``keys_`` gets an answer within a second."""
    client = open_peer(peers, Client, ctx, collector.clients, keys_)
    client.send_request("NodeList")
    return client.poll_for(lambda e: True, 1.0) is not None


def test_a_plain_collector_beyond_loopback_warns_once_and_on_loopback_not(procs: ProcessGroup) -> None:
    exposed = procs.collector("--listen-agents", "tcp://0.0.0.0:*")
    local = procs.collector()
    for proc in (exposed, local):
        assert proc.stop() == 0
    assert exposed.log().count("CURVE is off") == 1, exposed.log()
    assert "anyone who can reach these ports" in exposed.log()
    assert "CURVE is off" not in local.log()
