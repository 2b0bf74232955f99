"""gui.client.Client against a real ROUTER socket the test binds (a fake collector served from a thread)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
import zmq

from gui.client import Client, ClientTimeout, RequestFailed, SubscriptionRefused, Update
from messages import CollectorInfo, ConfigError, Encoding, Envelope, Kind, NodeList, NodeStatus
from messages.codec import envelope
from tests.fakes import Answer, FakeCollector, Handler


def info(subscription_lease: float = 10.0) -> CollectorInfo:
    """A CollectorInfo with test defaults."""
    return CollectorInfo(
        alias="fake",
        version="0.0",
        subscription_lease=subscription_lease,
        heartbeat_interval=1.0,
        update_types=["NodeList"],
        request_types=["Echo"],
    )


def standard(env: Envelope, lease: float = 10.0) -> list[Answer]:
    """Answer HELLO with CollectorInfo, HEARTBEAT with HEARTBEAT, REQUEST Echo with its params."""
    if env.kind == Kind.HELLO:
        return [envelope(Kind.HELLO, "CollectorInfo", info(subscription_lease=lease))]
    if env.kind == Kind.HEARTBEAT:
        return [envelope(Kind.HEARTBEAT)]
    if env.kind == Kind.REQUEST and env.type == "Echo":
        return [envelope(Kind.RESPONSE, env.type, dict(env.params), request_id=env.request_id)]
    return []


@pytest.fixture
def fake(fake_collector: Callable[..., FakeCollector]) -> Callable[[Handler], FakeCollector]:
    """Start fake collectors that a thread serves with ``handler``; all are closed at teardown."""
    return lambda handler=standard: fake_collector(handler).start()


@pytest.fixture
def client_for(zmq_context: zmq.Context) -> Iterator[Callable[[str], Client]]:
    """Make clients on the test's context; all are closed at teardown."""
    made: list[Client] = []

    def make(endpoint: str) -> Client:
        client = Client(endpoint, context=zmq_context)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def test_hello_returns_collector_info(fake, client_for):
    server = fake(standard)
    client = client_for(server.endpoint)
    got = client.hello(timeout=5)
    assert got.alias == "fake"
    assert list(got.request_types) == ["Echo"]
    assert client.info == got
    assert len(server.kinds(Kind.HELLO)) == 1


def test_request_response_decodes_msgpack(fake, client_for):
    client = client_for(fake(standard).endpoint)
    response = client.request("Echo", {"node": "n1", "x": "2"}, timeout=5)
    assert response.type == "Echo"
    assert response.payload == {"node": "n1", "x": "2"}
    assert response.encoding == Encoding.MSGPACK
    assert response.data  # the raw msgpack bytes are kept


def test_request_response_decodes_protobuf(fake, client_for):
    nodes = NodeList(nodes=[NodeStatus(node="n1", status="live", last_seq=7)])

    def handler(env: Envelope) -> list[Answer]:
        return [envelope(Kind.RESPONSE, env.type, nodes, request_id=env.request_id)]

    response = client_for(fake(handler).endpoint).request("NodeList", timeout=5)
    assert isinstance(response.payload, NodeList)
    assert response.payload == nodes
    assert response.schema == "labscope.NodeList"
    assert response.data == nodes.SerializeToString()


def test_error_raises_request_failed(fake, client_for):
    def handler(env: Envelope) -> list[Answer]:
        return [
            envelope(
                Kind.ERROR,
                env.type,
                request_id=env.request_id,
                error_code="unknown-type",
                error="no module answers Nope",
            )
        ]

    client = client_for(fake(handler).endpoint)
    with pytest.raises(RequestFailed) as caught:
        client.request("Nope", timeout=5)
    assert caught.value.code == "unknown-type"
    assert caught.value.reason == "no module answers Nope"
    assert str(caught.value) == "unknown-type: no module answers Nope"


def test_stale_responses_are_ignored(fake, client_for):
    held: list[Envelope] = []

    def handler(env: Envelope) -> list[Answer]:
        if env.kind != Kind.REQUEST:
            return []
        if not held:  # sit on the first request until the second one arrives
            held.append(env)
            return []
        late = envelope(Kind.RESPONSE, held[0].type, "late answer", request_id=held[0].request_id)
        bogus = envelope(Kind.RESPONSE, env.type, "wrong id", request_id=env.request_id + 1000)
        right = envelope(Kind.RESPONSE, env.type, "right answer", request_id=env.request_id)
        return [late, bogus, right]

    client = client_for(fake(handler).endpoint)
    with pytest.raises(ClientTimeout):
        client.request("First", timeout=0.3)
    response = client.request("Second", timeout=5)
    assert response.type == "Second"
    assert response.payload == "right answer"


def test_updates_during_a_request_are_buffered(fake, client_for):
    def handler(env: Envelope) -> list[Answer]:
        if env.kind != Kind.REQUEST:
            return []
        first = envelope(Kind.UPDATE, "NodeList", NodeList(nodes=[NodeStatus(node="a")]), time=100.0)
        second = envelope(Kind.UPDATE, "Custom", {"n": 2}, time=101.0)
        answer = envelope(Kind.RESPONSE, env.type, {"ok": True}, request_id=env.request_id)
        return [first, [second, answer]]  # the second update shares a batch with the answer

    client = client_for(fake(handler).endpoint)
    assert client.request("Anything", timeout=5).payload == {"ok": True}
    one, two = client.next_update(0), client.next_update(0)
    assert isinstance(one, Update) and isinstance(two, Update)
    assert (one.type, one.time, one.payload.nodes[0].node) == ("NodeList", 100.0, "a")
    assert (two.type, two.payload, two.encoding) == ("Custom", {"n": 2}, Encoding.MSGPACK)
    assert client.next_update(0) is None


def test_subscribe_sends_types_and_first_update_arrives(fake, client_for):
    def handler(env: Envelope) -> list[Answer]:
        if env.kind == Kind.SUBSCRIBE:
            return [envelope(Kind.UPDATE, "NodeList", NodeList(nodes=[NodeStatus(node="n9")]))]
        return standard(env)

    server = fake(handler)
    client = client_for(server.endpoint)
    client.subscribe(["NodeList", "SystemStatsSummary", "NodeList"])
    update = client.next_update(timeout=5)
    assert update is not None and update.type == "NodeList"
    assert update.payload.nodes[0].node == "n9"
    assert server.kinds(Kind.SUBSCRIBE)[0].params["types"] == "NodeList,SystemStatsSummary"
    assert client.subscriptions == ("NodeList", "SystemStatsSummary")


def test_subscription_is_renewed_every_third_of_the_lease(fake, client_for):
    server = fake(lambda env: standard(env, lease=0.6))
    client = client_for(server.endpoint)
    assert client.hello(timeout=5).subscription_lease == pytest.approx(0.6)
    client.subscribe(["NodeList"])
    deadline = time.monotonic() + 5
    while len(server.kinds(Kind.SUBSCRIBE)) < 4 and time.monotonic() < deadline:
        client.next_update(timeout=0.1)
    subscribes = server.kinds(Kind.SUBSCRIBE)
    assert len(subscribes) >= 4, f"only {len(subscribes)} SUBSCRIBEs in 5 s with a 0.6 s lease"
    assert all(env.params["types"] == "NodeList" for env in subscribes)


def test_subscribe_learns_the_lease_without_hello(fake, client_for):
    server = fake(lambda env: standard(env, lease=0.3))
    client = client_for(server.endpoint)
    client.subscribe(["NodeList"])
    deadline = time.monotonic() + 5
    while client.info is None and time.monotonic() < deadline:  # the answer is picked up while waiting
        assert client.next_update(timeout=0.1) is None
    assert client.info is not None and client.info.subscription_lease == pytest.approx(0.3)


def test_timeout_raises_client_timeout_within_bound(fake, client_for):
    server = fake(lambda env: [])  # hears everything, answers nothing
    client = client_for(server.endpoint)
    start = time.monotonic()
    with pytest.raises(ClientTimeout) as caught:
        client.request("CollectorStats", timeout=0.5)
    elapsed = time.monotonic() - start
    assert 0.45 <= elapsed < 2.0
    assert str(caught.value) == f"no answer from {server.endpoint} after 0.5 s (is the collector running?)"


def test_timeout_when_nobody_listens(zmq_context, client_for):
    probe = zmq_context.socket(zmq.ROUTER)
    port = probe.bind_to_random_port("tcp://127.0.0.1")
    probe.close(linger=0)  # the port is now (very likely) free: nobody answers
    client = client_for(f"tcp://127.0.0.1:{port}")
    start = time.monotonic()
    with pytest.raises(ClientTimeout):
        client.hello(timeout=0.3)
    assert time.monotonic() - start < 2.0
    assert not client.connected()


def test_bad_frames_are_dropped_not_fatal(fake, client_for):
    server = fake(standard)
    server.raw.append(b"\xff\xff not a batch")
    client = client_for(server.endpoint)
    assert client.request("Echo", {"a": "b"}, timeout=5).payload == {"a": "b"}


def test_heartbeat_marks_the_client_connected(fake, client_for):
    server = fake(standard)
    client = client_for(server.endpoint)
    assert not client.connected() and client.last_heard is None
    client.heartbeat()
    deadline = time.monotonic() + 5
    while not client.connected() and time.monotonic() < deadline:
        client.next_update(timeout=0.05)
    assert client.connected()
    assert client.last_heard is not None and abs(client.last_heard - time.time()) < 5
    assert server.kinds(Kind.HEARTBEAT)
    assert client.next_update(timeout=0.2) is None  # a quiet spell, shorter than a heartbeat
    assert not client.connected(within=0.1)


def test_malformed_endpoint_raises_config_error():
    with pytest.raises(ConfigError):
        Client("tcp://127.0.0.1")


def test_context_manager_closes_the_socket(fake, zmq_context):
    with Client(fake(standard).endpoint, context=zmq_context) as client:
        assert not client.closed
    assert client.closed
    client.close()  # a second close is harmless


def subscribing(env: Envelope, lease: float = 0.6) -> list[Envelope | list[Envelope]]:
    """The collector's SUBSCRIBE rules: acknowledge known types (NodeList, Custom), refuse others."""
    if env.kind != Kind.SUBSCRIBE:
        return standard(env, lease)
    asked = env.params["types"].split(",")
    unknown = [t for t in asked if t not in ("NodeList", "Custom")]
    if unknown:
        return [
            envelope(
                Kind.ERROR,
                request_id=env.request_id,
                error_code="unknown-type",
                error=f"no module pushes update type {unknown[0]!r} (known: Custom, NodeList)",
                params={"types": env.params["types"], "unknown": ",".join(unknown)},
            )
        ]
    return [envelope(Kind.SUBSCRIBE, request_id=env.request_id, params={"types": env.params["types"], "lease": "0.6"})]


def test_a_refused_subscribe_raises_once_and_the_accepted_set_is_renewed(fake, client_for):
    server = fake(subscribing)
    client = client_for(server.endpoint)
    client.subscribe(["NodeList"])
    assert client.next_update(timeout=0.3) is None
    assert client.accepted == ("NodeList",)
    client.subscribe(["NodeList", "Nope"])
    with pytest.raises(SubscriptionRefused) as caught:
        client.next_update(timeout=5)
    refused = caught.value
    assert (refused.code, refused.types, refused.unknown) == ("unknown-type", ("NodeList", "Nope"), ("Nope",))
    assert str(refused) == "unknown-type: no module pushes update type 'Nope' (known: Custom, NodeList)"
    assert client.subscriptions == client.accepted == ("NodeList",)
    sent_before = len(server.kinds(Kind.SUBSCRIBE))
    deadline = time.monotonic() + 5
    while len(server.kinds(Kind.SUBSCRIBE)) < sent_before + 2 and time.monotonic() < deadline:
        assert client.next_update(timeout=0.1) is None  # raised once, never again
    renewals = server.kinds(Kind.SUBSCRIBE)[sent_before:]
    assert len(renewals) >= 2 and {env.params["types"] for env in renewals} == {"NodeList"}
    ids = {env.request_id for env in server.kinds(Kind.SUBSCRIBE)}
    assert 0 not in ids and len(ids) == 2, "one request id per set, echoed by the collector"


def test_subscribing_to_nothing_says_bye(fake, client_for):
    server = fake(subscribing)
    client = client_for(server.endpoint)
    client.subscribe(["Custom"])
    client.next_update(timeout=0.2)
    client.subscribe([])
    deadline = time.monotonic() + 5
    while not server.kinds(Kind.BYE) and time.monotonic() < deadline:
        client.next_update(timeout=0.05)
    assert server.kinds(Kind.BYE) and client.subscriptions == () and client.accepted == ()
