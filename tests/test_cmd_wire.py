"""Commands down the tree without NATS: the wire helpers, the top's relay to a site, the site's checks.

The NATS hops themselves are tested with real processes in tests/test_sites_commands.py; here the
relay (collector/relay.py), the site's responder (collector/site_responder.py) and the encoding
(collector/cmd_wire.py) run on their own, with a real audit table and real key folders.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from collector import cmd_wire
from collector.addons import NodeRecord
from collector.audit import AuditTrail
from collector.audit_table import MemoryAuditTable
from collector.config import CollectorConfig, DistSection
from collector.counters import Counters
from collector.keyring import KeyRing
from collector.refusals import Refusals
from collector.registry import NodeRegistry
from collector.relay import Relay
from collector.site_responder import NATS_CLIENT, SiteResponder
from messages import Envelope, Kind, NodeInfo
from messages.codec import envelope, pack_one, unpack
from messages.errors import ProtocolError
from messages.keys import generate


def test_a_chunk_travels_as_its_header_and_its_bytes() -> None:
    chunk = envelope(Kind.CHUNK, type="NodeFile", request_id=3, seq=4, last=True, params={"size": "5"})
    data, headers = cmd_wire.encode_answer(chunk, b"hello")
    assert data == b"hello" and set(headers) == {cmd_wire.CHUNK_HEAD}
    env, bulk = cmd_wire.decode_answer(data, headers, 1 << 20)
    assert (env.kind, env.seq, env.last, env.params["size"], env.payload, bulk) == (
        Kind.CHUNK,
        4,
        True,
        "5",
        b"",
        b"hello",
    )


def test_a_one_part_chunk_and_a_response_decode_as_sent() -> None:
    data, headers = cmd_wire.encode_answer(envelope(Kind.CHUNK, type="T", payload=b"abc", seq=0), None)
    assert cmd_wire.decode_answer(data, headers, 1 << 20)[1] == b"abc"
    response = envelope(Kind.RESPONSE, type="ProcessList", payload=[1, 2])
    data, headers = cmd_wire.encode_answer(response, None)
    env, bulk = cmd_wire.decode_answer(data, headers, 1 << 20)
    assert headers == {} and env.kind == Kind.RESPONSE and bulk is None


@pytest.mark.parametrize(
    "data, headers",
    [
        (pack_one(envelope(Kind.REQUEST, type="X")), None),  # not an answer
        (b"x", {cmd_wire.CHUNK_HEAD: "not base64!"}),
        (b"x", {cmd_wire.CHUNK_HEAD: "AAAA"}),  # base64 of no envelope
    ],
    ids=["a-request", "not-base64", "no-envelope"],
)
def test_what_is_no_answer_is_refused(data: bytes, headers: dict[str, str] | None) -> None:
    with pytest.raises(ProtocolError):
        cmd_wire.decode_answer(data, headers, 1 << 20)


def test_commands_are_one_request_or_credit() -> None:
    assert cmd_wire.decode_command(pack_one(envelope(Kind.CREDIT, seq=2)), 1 << 20).seq == 2
    with pytest.raises(ProtocolError):
        cmd_wire.decode_command(pack_one(envelope(Kind.RESPONSE)), 1 << 20)
    assert (cmd_wire.reply_rid("_INBOX.abc.17"), cmd_wire.reply_rid("_INBOX.abc.x")) == (17, None)
    assert cmd_wire.cmd_subject("labscope", "a") == "labscope.a.cmd"


# ------------------------------------------------------------ the top's relay


class Wires:
    """What the relay sent: to the site (record, envelope, who, fingerprint) and to clients."""

    def __init__(self) -> None:
        self.site: list[tuple[str, Envelope, str, str]] = []
        self.clients: list[tuple[bytes, Envelope, Any]] = []
        self.agents: list[tuple[bytes, Envelope]] = []

    def to_site(self, record: NodeRecord, env: Envelope, who: str = "", fingerprint: str = "") -> None:
        self.site.append((record.node, env, who, fingerprint))

    def to_client(self, ident: bytes, env: Envelope, bulk: Any = None) -> None:
        self.clients.append((ident, env, bulk))

    def to_agent(self, ident: bytes, env: Envelope) -> None:
        self.agents.append((ident, env))


def top_relay(timeout: float = 5.0) -> tuple[Relay, Wires, AuditTrail]:
    registry, wires = NodeRegistry(), Wires()
    registry.records["a:n1"] = NodeRecord(node="a:n1", status="live", site="a")
    audit = AuditTrail(MemoryAuditTable(), 3600, Counters())
    relay = Relay(registry, timeout, wires.to_agent, wires.to_client, audit)
    relay.to_site = wires.to_site
    return relay, wires, audit


def test_a_site_nodes_request_goes_to_its_site_and_the_answer_to_the_client() -> None:
    relay, wires, audit = top_relay()
    request = envelope(Kind.REQUEST, type="NodeFile", request_id=9, params={"node": "a:n1", "credit": "2"})
    relay.forward(b"c1", request, "op", "SHA256:1")
    ((node, sent, who, fingerprint),) = wires.site
    assert (node, sent.kind, who, fingerprint) == ("a:n1", Kind.REQUEST, "op", "SHA256:1")
    assert sent.request_id != 9 and not wires.agents
    relay.credit(b"c1", envelope(Kind.CREDIT, request_id=9, seq=1))
    assert (wires.site[-1][1].kind, wires.site[-1][1].request_id, wires.site[-1][1].seq) == (
        Kind.CREDIT,
        sent.request_id,
        1,
    )
    chunk = envelope(Kind.CHUNK, type="NodeFile", request_id=sent.request_id, seq=0, last=True)
    assert relay.from_agent(chunk, b"data")
    ((client, relayed, bulk),) = wires.clients
    assert (client, relayed.request_id, bulk) == (b"c1", 9, b"data")
    (row,) = audit.answer({})
    assert (row["who"], row["node"], row["outcome"], row["bytes"]) == ("op", "a:n1", "ok", 4)


def test_a_silent_site_times_out_and_is_told_to_cancel() -> None:
    relay, wires, _ = top_relay(timeout=0.01)
    relay.forward(b"c1", envelope(Kind.REQUEST, type="ProcessList", request_id=4, params={"node": "a:n1"}))
    time.sleep(0.02)
    relay.expire()
    (_, error, _) = wires.clients[-1]
    assert (error.kind, error.error_code, error.request_id) == (Kind.ERROR, "timeout", 4)
    cancel = wires.site[-1][1]
    assert cancel.kind == Kind.CREDIT and cancel.params["cancel"] == "1"


def test_a_lost_site_fails_its_requests_with_node_lost_and_refuses_new_ones() -> None:
    relay, wires, _ = top_relay()
    relay.forward(b"c1", envelope(Kind.REQUEST, type="ProcessList", request_id=4, params={"node": "a:n1"}))
    relay.registry.records["a:n1"].status = "lost"
    relay.node_lost("a:n1")
    assert wires.clients[-1][1].error_code == "node-lost"
    relay.forward(b"c1", envelope(Kind.REQUEST, type="ProcessList", request_id=5, params={"node": "a:n1"}))
    assert wires.clients[-1][1].error_code == "node-lost" and len(wires.site) == 1


def test_a_node_of_an_unknown_site_is_not_found_at_the_top() -> None:
    relay, wires, _ = top_relay()
    relay.forward(b"c1", envelope(Kind.REQUEST, type="ProcessList", request_id=4, params={"node": "zz:n1"}))
    assert wires.clients[-1][1].error_code == "not-found" and not wires.site


# ------------------------------------------------------------ the site's responder


def site_responder(tmp_path: Path, curve: bool) -> tuple[SiteResponder, Relay, Wires, AuditTrail, Counters]:
    config = CollectorConfig(site="a")
    config.distributions = [DistSection("js", "nats", mode="reports", values={"url": "nats://127.0.0.1:1"})]
    registry, wires, counters = NodeRegistry(), Wires(), Counters()
    registry.hello(b"agent-1", NodeInfo(node="n1", instance="i"), 1, time.time())
    audit = AuditTrail(MemoryAuditTable(), 3600, counters)
    relay = Relay(registry, 5.0, wires.to_agent, wires.to_client, audit)
    keyring = None
    if curve:
        operators, viewers = tmp_path / "operators", tmp_path / "viewers"
        generate(operators, "top")
        generate(viewers, "viewer")
        keyring = KeyRing(None, viewers, operators)
    responder = SiteResponder(config, relay, counters, keyring, Refusals(counters, lambda *args, **kw: None))
    relay.to_client = responder.route
    return responder, relay, wires, audit, counters


def command(env: Envelope) -> bytes:
    return pack_one(env)


def answers(responder: SiteResponder) -> list[Envelope]:
    return [unpack(data)[0] for _, data, _, _ in responder.outbox]


def public(folder: Path, name: str) -> str:
    from messages.keys import load

    return load(folder / f"{name}.key").public.decode()


def test_the_site_forwards_an_operator_tops_request_and_audits_the_original_requester(tmp_path: Path) -> None:
    responder, relay, wires, audit, _ = site_responder(tmp_path, curve=True)
    request = envelope(Kind.REQUEST, type="ProcessList", request_id=12, params={"node": "n1"})
    key = public(tmp_path / "operators", "top")
    heads = {cmd_wire.TOP_KEY: key, cmd_wire.REQUESTER: "op\x1b[2J", cmd_wire.REQUESTER_FP: "SHA256:ab"}
    responder.handle("_INBOX.x.12", heads, command(request))
    ((agent, forwarded),) = wires.agents
    assert agent == b"agent-1" and forwarded.params["node"] == "n1"
    (row,) = audit.answer({})
    assert row["who"].startswith("top top (SHA256:") and row["who"].endswith(" for op[2J (SHA256:ab)")
    responder.handle("_INBOX.x.12", {cmd_wire.TOP_KEY: key}, command(envelope(Kind.CREDIT, request_id=12, seq=3)))
    assert wires.agents[-1][1].kind == Kind.CREDIT and wires.agents[-1][1].seq == 3
    relay.from_agent(envelope(Kind.RESPONSE, type="ProcessList", request_id=forwarded.request_id, payload=[1]))
    subject, data, headers, _ = responder.outbox[-1]
    assert subject == "_INBOX.x.12" and unpack(data)[0].kind == Kind.RESPONSE and not wires.clients


@pytest.mark.parametrize("who", ["viewer", "nobody", ""])
def test_a_top_whose_key_is_no_operator_here_is_forbidden(tmp_path: Path, who: str) -> None:
    responder, _, wires, audit, counters = site_responder(tmp_path, curve=True)
    key = {"viewer": public(tmp_path / "viewers", "viewer"), "nobody": "x" * 40, "": ""}[who]
    request = envelope(Kind.REQUEST, type="ProcessList", request_id=1, params={"node": "n1"})
    responder.handle("_INBOX.x.1", {cmd_wire.TOP_KEY: key, cmd_wire.REQUESTER: "op"}, command(request))
    (error,) = answers(responder)
    assert error.error_code == "forbidden" and "allow_operators" in error.error
    assert not wires.agents and not audit.answer({}) and counters["auth-refused:top-not-operator"] == 1


def test_a_request_that_names_no_requester_is_refused(tmp_path: Path) -> None:
    responder, _, wires, _, counters = site_responder(tmp_path, curve=False)
    request = envelope(Kind.REQUEST, type="ProcessList", request_id=1, params={"node": "n1"})
    responder.handle("_INBOX.x.1", {}, command(request))
    assert answers(responder)[0].error_code == "forbidden" and counters["auth-refused:no-requester"] == 1
    responder.handle("_INBOX.x.2", {cmd_wire.REQUESTER: "10.0.0.9"}, command(request))
    assert wires.agents and NATS_CLIENT + b"_INBOX.x.2" in {p.client for p in responder.relay.pending.values()}


def test_garbage_and_an_unknown_node_are_answered_not_forwarded(tmp_path: Path) -> None:
    responder, _, wires, _, counters = site_responder(tmp_path, curve=False)
    responder.handle("_INBOX.x.1", {}, b"\xff garbage")
    request = envelope(Kind.REQUEST, type="ProcessList", request_id=2, params={"node": "n9"})
    responder.handle("_INBOX.x.2", {cmd_wire.REQUESTER: "op"}, command(request))
    assert [e.error_code for e in answers(responder)] == ["bad-frame", "not-found"]
    assert counters["site-cmd-bad"] == 1 and not wires.agents
