"""collector/liveness.py: silence is measured only while ingest has read every frame waiting."""

from __future__ import annotations

from collector.counters import Counters
from collector.liveness import LivenessClock
from collector.registry import NodeRegistry
from messages import NodeInfo

TIMEOUT = 5.0


def clock_with_node(last_seen: float) -> tuple[LivenessClock, NodeRegistry, Counters]:
    registry, counters = NodeRegistry(), Counters()
    registry.hello(b"c1", NodeInfo(node="n1", instance="i"), 1, last_seen)
    return LivenessClock(registry, counters, TIMEOUT, behind_grace=30.0), registry, counters


def test_a_node_silent_past_the_timeout_is_lost_when_ingest_is_not_behind() -> None:
    clock, registry, counters = clock_with_node(last_seen=100.0)
    clock.caught_up(100.0)
    assert clock.expire(behind=False, now=104.0) == []
    assert [r.node for r in clock.expire(behind=False, now=105.5)] == ["n1"]
    assert registry.records["n1"].status == "lost" and counters["nodes-lost"] == 1


def test_while_ingest_is_behind_silence_counts_only_up_to_when_it_last_caught_up() -> None:
    clock, registry, counters = clock_with_node(last_seen=100.0)
    clock.caught_up(103.0)  # then 512-frame passes, frames still waiting: n1's next one may be among them
    assert clock.expire(behind=True, now=112.0) == []
    assert registry.records["n1"].status == "live" and counters["liveness-deferred"] == 1
    clock.caught_up(106.0)  # caught up once more, and n1 said nothing meanwhile: silent for 6 s by then
    assert [r.node for r in clock.expire(behind=True, now=113.0)] == ["n1"]


def test_a_collector_that_never_catches_up_still_finds_its_dead_nodes() -> None:
    clock, registry, _ = clock_with_node(last_seen=100.0)
    clock.caught_up(100.0)
    assert clock.expire(behind=True, now=134.0) == []  # silence measured up to 104 (now - grace)
    assert [r.node for r in clock.expire(behind=True, now=136.0)] == ["n1"]  # up to 106: silent for 6 s


def test_before_any_catch_up_the_clock_measures_up_to_now() -> None:
    clock, _, _ = clock_with_node(last_seen=100.0)
    assert [r.node for r in clock.expire(behind=True, now=106.0)] == ["n1"]
