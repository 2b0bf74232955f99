"""The client library against a real CURVE server (tests/curve.py): accepted, refused, plain, mismatched.

Every refusal must end the wait at once with AuthRefused and its one line, well within the
timeout, never a hang (the test's time limit) and never a ClientTimeout.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import zmq

from gui.client import Client
from messages import Kind
from messages.errors import AuthRefused
from messages.keys import NOT_CURVE, REFUSED_KEY, REQUIRES_CURVE, WRONG_SERVER_KEY, ClientKeys, client_keys, generate
from tests.curve import CurveServer, curve_server

REFUSAL_LIMIT = 10.0  # seconds a refused client may take at most (issue 12)


def keys_for(server: CurveServer, secret: Path) -> ClientKeys:
    keys = client_keys(str(server.public_file), str(secret))
    assert keys is not None
    return keys


def test_an_allowed_key_gets_answers_and_the_server_sees_it(zmq_context: zmq.Context, tmp_path: Path) -> None:
    with curve_server(zmq_context, tmp_path / "srv") as server:
        mine = generate(tmp_path / "me", "viewer")
        server.allow(mine)
        with Client(server.endpoint, context=zmq_context, keys=keys_for(server, mine.path)) as client:
            assert client.hello(timeout=5).alias == "curve"
            assert client.request("Anything", timeout=5).payload == {"ok": True}
            assert client.refusal is None
        assert set(server.user_ids) == {mine.public.decode()}


def refused(client: Client, call: str) -> AuthRefused:
    started = time.monotonic()
    with pytest.raises(AuthRefused) as info:
        if call == "hello":
            client.hello(timeout=30)
        elif call == "request":
            client.request("NodeList", timeout=30)
        elif call == "stream":
            list(client.stream("NodeFile", {"node": "n1", "path": "x"}, timeout=30))
        else:
            client.subscribe(["NodeList"])
            client.next_update(timeout=30)
    assert time.monotonic() - started < REFUSAL_LIMIT
    assert info.value.endpoint == client.endpoint
    assert str(info.value) == f"{client.endpoint}: {info.value.reason}"
    return info.value


@pytest.mark.parametrize("call", ["hello", "request", "stream", "next_update"])
def test_an_unknown_key_is_refused_at_once(zmq_context: zmq.Context, tmp_path: Path, call: str) -> None:
    with curve_server(zmq_context, tmp_path / "srv") as server:
        stranger = generate(tmp_path / "me", "stranger")
        with Client(server.endpoint, context=zmq_context, keys=keys_for(server, stranger.path)) as client:
            assert refused(client, call).reason == REFUSED_KEY
            assert refused(client, "request").reason == REFUSED_KEY  # and stays refused
        assert server.seen == []


@pytest.mark.parametrize("call", ["hello", "next_update"])
def test_a_plain_client_is_told_the_collector_requires_curve(
    zmq_context: zmq.Context, tmp_path: Path, call: str
) -> None:
    with curve_server(zmq_context, tmp_path / "srv") as server:
        with Client(server.endpoint, context=zmq_context) as client:
            assert refused(client, call).reason == REQUIRES_CURVE
        assert server.seen == []


@pytest.mark.parametrize("call", ["hello", "request"])
def test_a_plain_client_in_another_context_is_told_the_collector_requires_curve(tmp_path: Path, call: str) -> None:
    # Its own context (own I/O thread), as a `labscope query` process is: the collector often hangs up
    # before the client reads the mechanism it asks for, and the client sees only HANDSHAKE_FAILED_NO_DETAIL.
    server_context, client_context = zmq.Context(), zmq.Context()
    try:
        with curve_server(server_context, tmp_path / "srv") as server:
            with Client(server.endpoint, context=client_context) as client:
                assert refused(client, call).reason == REQUIRES_CURVE
    finally:
        client_context.term()
        server_context.term()


def test_a_curve_client_of_a_plain_collector_is_told_to_drop_the_keys(zmq_context: zmq.Context, tmp_path: Path) -> None:
    with curve_server(zmq_context, tmp_path / "srv", curve=False) as server:
        mine = generate(tmp_path / "me", "viewer")
        with Client(server.endpoint, context=zmq_context, keys=keys_for(server, mine.path)) as client:
            assert refused(client, "hello").reason == NOT_CURVE


def test_the_wrong_collector_key_is_said(zmq_context: zmq.Context, tmp_path: Path) -> None:
    with curve_server(zmq_context, tmp_path / "srv") as server:
        mine, impostor = generate(tmp_path / "me", "viewer"), generate(tmp_path / "other", "collector")
        server.allow(mine)
        keys = client_keys(str(tmp_path / "other" / "collector.key"), str(mine.path))
        with Client(server.endpoint, context=zmq_context, keys=keys) as client:
            assert refused(client, "hello").reason == WRONG_SERVER_KEY
        assert impostor.public != server.cert.public


def test_a_plain_client_of_a_plain_collector_watches_quietly(zmq_context: zmq.Context, tmp_path: Path) -> None:
    with curve_server(zmq_context, tmp_path / "srv", curve=False) as server:
        with Client(server.endpoint, context=zmq_context) as client:
            assert client.hello(timeout=5).alias == "curve"
            for _ in range(3):
                assert client.request("X", timeout=5).payload == {"ok": True}
            assert client.next_update(timeout=0.1) is None
            assert client.refusal is None


def test_the_bench_ingest_sender_speaks_curve(zmq_context: zmq.Context, tmp_path: Path) -> None:
    from labscope import benchkit

    with curve_server(zmq_context, tmp_path / "srv") as server:
        sender = generate(tmp_path / "agents", benchkit.INGEST_NODE)
        server.allow(sender)
        result = benchkit.ingest(server.endpoint, 50, str(server.public_file), str(sender.path))
        assert result["count"] == 50
        assert sum(1 for e in server.seen if e.kind == Kind.REPORT) == 50
        assert set(server.user_ids) == {sender.public.decode()}
