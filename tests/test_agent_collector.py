"""The agent with the real collector: reports land, a collector restart loses nothing, BYE marks it lost.

Observed from the outside, as a client sees it: the ``NodeList`` request on the
collector's clients endpoint.
"""

from __future__ import annotations

import signal

import pytest

from tests.conftest import wait_for
from tests.wire import Client

pytest.importorskip("collector.cli")
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]


def test_reports_survive_a_collector_restart_and_bye_marks_lost(procs, zmq_context, tmp_path):
    first = procs.collector()
    agent = procs.agent(first.agents, "n1", interval=0.1)
    client = Client(zmq_context, first.clients)
    status = wait_for(
        lambda: (s := client.node("n1")) is not None and s.last_seq >= 5 and s,
        20,
        what="n1 reporting to the first collector",
    )
    assert status.status == "live" and status.gaps == 0

    first.stop(signal.SIGKILL)  # a crash: no goodbyes
    # Same port: the agent's socket reconnects by itself and is told to say HELLO again.
    second = procs.collector("--listen-agents", first.agents, data_dir=tmp_path / "second")
    client = Client(zmq_context, second.clients)
    status = wait_for(
        lambda: (s := client.node("n1")) is not None and s.last_seq >= 10 and s,
        20,
        what="n1 reporting to the restarted collector",
    )
    assert status.status == "live" and status.gaps == 0

    agent.send_signal(signal.SIGTERM)
    assert agent.wait(10) == 0
    lost = wait_for(
        lambda: (s := client.node("n1")) is not None and s.status == "lost" and s,
        4,
        what="n1 marked lost after its BYE",
    )
    assert lost.last_seq >= 10
