"""The agent with the real collector: reports land, a collector restart loses nothing, BYE marks it lost.

Observed from the outside, as a client sees it: the ``NodeList`` request on the
collector's clients endpoint.
"""

from __future__ import annotations

import itertools
import signal
import time

import pytest
import zmq

from messages import Kind, NodeList, NodeStatus
from messages.codec import decode_payload, envelope, pack_one, unpack
from tests.conftest import wait_for

pytest.importorskip("collector.cli")
pytestmark = pytest.mark.timeout(90)

_ids = itertools.count(1)


class Client:
    """A minimal client: one DEALER on the clients endpoint."""

    def __init__(self, ctx: zmq.Context, endpoint: str) -> None:
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.linger = 0
        self.sock.connect(endpoint)

    def node(self, node: str, timeout: float = 3.0) -> NodeStatus | None:
        """The collector's NodeStatus of ``node`` (None when unknown or no answer in time)."""
        request_id = next(_ids)
        self.sock.send(pack_one(envelope(Kind.REQUEST, "NodeList", request_id=request_id, params={"node": node})))
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if not self.sock.poll(int(left * 1000)):
                return None
            for env in unpack(self.sock.recv()):
                if env.request_id != request_id:
                    continue
                if env.kind != Kind.RESPONSE:
                    return None
                nodes = decode_payload(env.payload, env.encoding, env.schema)
                assert isinstance(nodes, NodeList)
                return nodes.nodes[0] if nodes.nodes else None
        return None


def test_reports_survive_a_collector_restart_and_bye_marks_lost(procs, zmq_context, tmp_path):
    first = procs.collector()
    agent = procs.agent(first.agents, "n1", interval=0.1)
    client = Client(zmq_context, first.clients)
    status = wait_for(lambda: (s := client.node("n1")) is not None and s.last_seq >= 5 and s, 20,
                      what="n1 reporting to the first collector")
    assert status.status == "live" and status.gaps == 0

    first.stop(signal.SIGKILL)  # a crash: no goodbyes
    # Same port: the agent's socket reconnects by itself and is told to say HELLO again.
    second = procs.collector("--listen-agents", first.agents, data_dir=tmp_path / "second")
    client = Client(zmq_context, second.clients)
    status = wait_for(lambda: (s := client.node("n1")) is not None and s.last_seq >= 10 and s, 20,
                      what="n1 reporting to the restarted collector")
    assert status.status == "live" and status.gaps == 0

    agent.send_signal(signal.SIGTERM)
    assert agent.wait(10) == 0
    lost = wait_for(lambda: (s := client.node("n1")) is not None and s.status == "lost" and s, 4,
                    what="n1 marked lost after its BYE")
    assert lost.last_seq >= 10
