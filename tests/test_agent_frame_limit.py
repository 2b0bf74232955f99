"""The agent's side of the frame size limit: a frame from the collector over it is dropped unparsed and counted."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from messages import CollectorInfo, Kind
from messages.codec import DEFAULT_MAX_FRAME_BYTES, envelope
from node_agent.agent import Agent, AgentConfig
from tests.conftest import wait_for
from tests.fakes import FakeCollector


@pytest.mark.e2e  # the agent runs in a thread of its own, as in tests/test_agent_protocol.py
def test_an_oversized_frame_is_dropped_counted_and_the_agent_keeps_serving(fake_collector, tmp_path: Path) -> None:
    collector: FakeCollector = fake_collector(info=CollectorInfo(alias="fake", heartbeat_interval=0.2))
    config = AgentConfig(collector=collector.endpoint, node_id="n1", interval=5.0, data_dir=tmp_path / "agent")
    agent = Agent(config, [])
    thread = threading.Thread(target=agent.run, kwargs={"handle_signals": False}, daemon=True)
    thread.start()
    try:
        ident, hello = collector.expect(Kind.HELLO)
        collector.welcome(ident, hello)
        # Not a Batch at all: parsing it would fail too, but its length alone must refuse it.
        collector.socket.send_multipart([ident, b"\xff" * (DEFAULT_MAX_FRAME_BYTES + 1)])
        collector.send(ident, envelope(Kind.REQUEST, "Nope", request_id=7))
        _, error = collector.expect(Kind.ERROR, timeout=10, on_frame=collector.acker())
        assert (error.request_id, error.error_code) == (7, "unknown-type")
        wait_for(lambda: agent.stats.oversized == 1, 5, what="the oversized frame counted")
        assert agent.stats.bad_frames == 1 and agent.session.ready
    finally:
        agent.stop()
        thread.join(10)
    assert not thread.is_alive()
