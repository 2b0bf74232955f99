"""collector/registry.py: sessions by connection, one per node, kept without scanning every session."""

from __future__ import annotations

from collector.registry import NodeRegistry
from messages import NodeInfo


def info(node: str, instance: str = "i1") -> NodeInfo:
    return NodeInfo(node=node, hostname=f"host-{node}", instance=instance)


def nodes_by_ident(registry: NodeRegistry) -> dict[bytes, str]:
    return {ident: session.record.node for ident, session in registry.sessions.items()}


def test_a_node_saying_hello_on_a_new_connection_leaves_its_old_session_only() -> None:
    registry = NodeRegistry()
    for n in range(3):
        registry.hello(f"c{n}".encode(), info(f"n{n}"), 1, 10.0)
    record, joined = registry.hello(b"c1-new", info("n1"), 5, 11.0)
    assert not joined and record.reconnects == 1
    assert nodes_by_ident(registry) == {b"c0": "n0", b"c2": "n2", b"c1-new": "n1"}
    assert registry.ident_of("n1") == b"c1-new" and registry.session(b"c1") is None


def test_a_connection_that_said_hello_for_another_node_keeps_it() -> None:
    registry = NodeRegistry()
    registry.hello(b"c", info("a"), 1, 10.0)
    registry.hello(b"c", info("b"), 1, 10.0)  # the same connection now speaks for b
    registry.hello(b"d", info("a"), 1, 11.0)  # a comes back elsewhere: b's session on c stays
    assert nodes_by_ident(registry) == {b"c": "b", b"d": "a"}


def test_a_live_node_is_claimed_elsewhere_only_by_another_instance_on_another_connection() -> None:
    registry = NodeRegistry()
    registry.hello(b"c", info("a"), 1, 10.0)
    assert registry.claimed_elsewhere(b"d", info("a", instance="i2"))
    assert not registry.claimed_elsewhere(b"d", info("a"))  # the same agent, restarted
    assert not registry.claimed_elsewhere(b"c", info("a", instance="i2"))  # its own connection
    assert not registry.claimed_elsewhere(b"d", info("z", instance="i2"))  # an unknown node
    registry.leave(registry.records["a"])
    assert not registry.claimed_elsewhere(b"d", info("a", instance="i2"))  # lost: anyone may take it over


def test_thousands_of_nodes_keep_one_session_each() -> None:
    registry = NodeRegistry()
    for round_ in range(2):  # every node says hello twice, the second time on a new connection
        for n in range(5000):
            registry.hello(f"c{round_}-{n}".encode(), info(f"n{n}"), 1, 10.0 + round_)
    assert len(registry.sessions) == 5000 and set(nodes_by_ident(registry)) == {f"c1-{n}".encode() for n in range(5000)}
