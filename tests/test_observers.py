"""Observers: every hooked event reaches them, off the ingest path; failing, slow and lagging ones are counted.

The collector runs embedded in this process (``collector.Collector``: its own thread and hub, real
sockets on random 127.0.0.1 ports); the test plays agent and client with plain DEALERs.
"""

from __future__ import annotations

import gc
import json
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from collector import Collector, CollectorObserver, CollectorTicket, observer_thread
from collector.observer import EVENTS, event_call, load_observers
from collector.observer_thread import ObserverThread
from messages import Kind, NodeInfo, SystemStats
from messages.codec import envelope, pack
from messages.errors import Code, ConfigError
from messages.keys import ClientKeys, generate
from tests.conftest import wait_for
from tests.wire import Client, Peer

pytestmark = pytest.mark.timeout(60)

DOC = Path(__file__).resolve().parent.parent / "docs" / "observers.md"
EXAMPLE = re.compile(r"<!-- example: observer \(([\w.]+)\) -->\s*```python\n(.*?)\n```", re.DOTALL)
NODE = "n1"


class Recorder(CollectorObserver):
    """Records every event as (method, args); thread-safe enough for list.append."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def __getattribute__(self, name: str) -> Any:
        if name in EVENTS:
            return lambda *args: self.calls.append((name, args))
        return super().__getattribute__(name)

    def named(self, method: str) -> list[tuple[Any, ...]]:
        return [args for name, args in self.calls if name == method]


class Failing(CollectorObserver):
    def node_joined(self, node: str) -> None:
        raise RuntimeError("observer bug")


class Blocking(CollectorObserver):
    """Blocks in node_joined until the test releases it, then takes ``extra`` s more."""

    def __init__(self, extra: float = 0.0) -> None:
        self.entered, self.release = threading.Event(), threading.Event()
        self.extra = extra

    def node_joined(self, node: str) -> None:
        self.entered.set()
        self.release.wait(30)
        time.sleep(self.extra)  # slowness is what is tested: longer than the SLOW_CALL the test sets


@pytest.fixture
def context() -> Iterator[zmq.Context[Any]]:
    ctx: zmq.Context[Any] = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[Callable[..., Collector]]:
    """Start embedded collectors on ``tmp_path/data`` with these observers; stopped at teardown."""
    started: list[Collector] = []

    def start(*observers: Any, **options: Any) -> Collector:
        ticket = CollectorTicket(
            listen_agents="tcp://127.0.0.1:*",
            listen_clients="tcp://127.0.0.1:*",
            data_dir=tmp_path / "data",
            node_timeout=30.0,
            observers=list(observers),
            **options,
        )
        started.append(Collector(ticket).start())
        return started[-1]

    yield start
    for running in started:
        assert running.stop(30)
    gc.unfreeze()


def hello(agent: Peer, backlog: int | None = None) -> None:
    params = {} if backlog is None else {"backlog": str(backlog)}
    agent.send(Kind.HELLO, "NodeInfo", NodeInfo(node=NODE, hostname="h"), node=NODE, seq=1, params=params)
    agent.expect(lambda e: e.kind == Kind.ACK, what="ACK after HELLO")


def report(seq: int) -> Any:
    return envelope(Kind.REPORT, "SystemStats", SystemStats(time=1.0, cpu_percent=1.0), node=NODE, seq=seq, time=1.0)


def acked(agent: Peer, seq: int) -> None:
    agent.expect(lambda e: e.kind == Kind.ACK and e.seq == seq, what=f"ACK {seq}")


def test_the_hooked_events_reach_the_observers(embedded, context) -> None:
    recorder = Recorder()
    running = embedded(recorder, backlog_alert=100)
    eps = running.endpoints
    agent, client = Peer(context, eps.agents), Client(context, eps.clients)
    hello(agent, backlog=500)
    agent.socket.send(pack([report(1), report(2)]))
    acked(agent, 2)
    agent.socket.send(pack([report(1), report(2)]))  # resent: duplicates
    acked(agent, 2)
    bad = envelope(Kind.REPORT, "SystemStats", b"\xff\xff", node=NODE, seq=3, time=1.0)
    bad.schema = SystemStats.DESCRIPTOR.full_name
    agent.socket.send(pack([bad]))
    acked(agent, 3)
    agent.socket.send(pack([envelope(Kind.REPORT, "SystemStats", b"", node=NODE, seq=4, time=-1.0)]))  # out of range
    agent.expect(lambda e: e.kind == Kind.ERROR and e.error_code == "out-of-range", what="ERROR out-of-range")
    running.config_changed("lab.toml", "operator-1")
    agent.send(Kind.BYE, node=NODE)
    wait_for(lambda: recorder.named("node_lost"), 10, what="node_lost")
    wait_for(lambda: recorder.named("config_changed"), 10, what="config_changed")
    assert recorder.named("collector_started") == [(running.ticket.alias, eps.agents, eps.clients)]
    assert recorder.named("node_joined") == [(NODE,)]
    assert recorder.named("backlog_high") == [(NODE, 500, 100)]
    rejected = {(reason, node, count) for reason, node, count, _ in recorder.named("reports_rejected")}
    assert rejected == {("duplicate", NODE, 2), ("bad-payload", NODE, 1), ("refused", NODE, 1)}
    assert recorder.named("config_changed") == [("lab.toml", "operator-1")]
    assert recorder.named("node_lost") == [(NODE,)]
    client.close()
    agent.close()
    running.stop()
    assert recorder.calls[-1] == ("collector_stopping", (running.ticket.alias,))


def test_failing_and_slow_observers_do_not_stall_ingest(embedded, context, monkeypatch) -> None:
    monkeypatch.setattr(observer_thread, "SLOW_CALL", 0.05)
    blocking = Blocking(extra=0.1)
    running = embedded(Failing(), blocking)
    agent, client = Peer(context, running.endpoints.agents), Client(context, running.endpoints.clients)
    hello(agent)
    assert blocking.entered.wait(10)
    # The observer thread is stuck in node_joined: ingest, ACKs and answers go on.
    agent.socket.send(pack([report(seq) for seq in range(1, 51)]))
    acked(agent, 50)
    assert client.answer("CollectorStats")["counters"]["reports"] == 50
    blocking.release.set()

    def counted() -> dict[str, int]:
        counters = client.answer("CollectorStats")["counters"]
        return counters if counters["observer-errors"] >= 1 and counters["observer-slow"] >= 1 else {}

    wait_for(counted, 10, what="observer-errors and observer-slow counted")


def test_a_full_queue_drops_counted_and_delivery_goes_on() -> None:
    blocking, recorder = Blocking(), Recorder()
    thread = ObserverThread([blocking, recorder], queue_max=2)
    thread.start()
    thread.post("node_joined", "a")
    assert blocking.entered.wait(10)
    for node in "bcde":
        thread.post("node_lost", node)
    assert thread.dropped == 2
    blocking.release.set()
    assert thread.stop(10)
    assert recorder.calls == [("node_joined", ("a",)), ("node_lost", ("b",)), ("node_lost", ("c",))]


def test_observers_load_from_files_and_modules_and_a_bad_spec_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "watch.py").write_text(
        "from collector.observer import CollectorObserver\nclass W(CollectorObserver):\n    pass\n"
    )
    given = Recorder()
    loaded = load_observers([given, "watch.py:W", "collector.observer:CollectorObserver"], tmp_path)
    assert loaded[0] is given and type(loaded[1]).__name__ == "W" and type(loaded[2]) is CollectorObserver
    for spec, message in [
        ("nocolon", "expected"),
        ("missing.py:W", "no such file"),
        ("watch.py:X", "no class 'X' there"),
        ("no_such_package_xyz:W", "cannot import"),
        ("collections:OrderedDict", "not a collector.observer.CollectorObserver"),
    ]:
        with pytest.raises(ConfigError, match=message):
            load_observers([spec], tmp_path)


def test_the_docs_example_observer_writes_node_events(embedded, context, tmp_path: Path) -> None:
    ((filename, source),) = EXAMPLE.findall(DOC.read_text())
    (tmp_path / filename).write_text(source + "\n")
    (watch,) = load_observers([f"{filename}:NodeWatch"], tmp_path)
    watch.path = tmp_path / "nodes.jsonl"  # type: ignore[attr-defined]
    running = embedded(watch)
    agent = Peer(context, running.endpoints.agents)
    hello(agent)
    agent.send(Kind.BYE, node=NODE)

    def lines() -> list[dict[str, Any]]:
        path = tmp_path / "nodes.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    events = wait_for(lambda: len(lines()) >= 2 and lines(), 10, what="two node events")
    assert [(e["event"], e["node"]) for e in events] == [("joined", NODE), ("lost", NODE)]
    agent.close()


def test_every_observer_method_is_a_documented_no_op() -> None:
    base = CollectorObserver()
    doc = DOC.read_text()
    for name in EVENTS:
        assert getattr(CollectorObserver, name).__doc__, name
        assert f"`{name}(" in doc, f"{name} missing from docs/observers.md"
    assert base.node_joined("x") is None


@pytest.mark.parametrize(
    ("kind", "attrs", "expected"),
    [
        ("module-error", {"module": "m", "hook": "processReport"}, ("module_failed", ("m", "processReport", "msg"))),
        ("distribution-down", {"distribution": "d", "type": "mqtt"}, ("distribution_down", ("d", "mqtt", "msg"))),
        ("distribution-up", {"distribution": "d", "type": "mqtt"}, ("distribution_up", ("d", "mqtt", "msg"))),
        (
            "auth-refused",
            {"reason": "unknown-key", "fingerprint": "ab"},
            ("auth_refused", ("unknown-key", "ab", "msg")),
        ),
        ("bad-report", {"type": "T", "seq": "3"}, ("reports_rejected", ("bad-payload", "n", 1, "msg"))),
        ("some-other-event", {}, None),
    ],
)
def test_the_collectors_events_map_to_observer_methods(kind: str, attrs: dict[str, str], expected: Any) -> None:
    assert event_call(kind, "n", "msg", attrs) == expected


def test_a_refused_key_reaches_the_observers(embedded, context, tmp_path: Path) -> None:
    secrets, allowed = tmp_path / "secrets", tmp_path / "allow-agents"
    allowed.mkdir()
    server = generate(secrets, "collector")
    agent_cert = generate(secrets, "n1")
    shutil.copy(secrets / "n1.key", allowed)
    assert agent_cert.secret is not None
    recorder = Recorder()
    running = embedded(recorder, curve_secret=secrets / "collector.key_secret", allow_agents=allowed)
    keys = ClientKeys(server.public, agent_cert.public, agent_cert.secret, "n1")
    agent = Peer(context, running.endpoints.agents, keys)
    agent.send(Kind.HELLO, "NodeInfo", NodeInfo(node="n3", hostname="h"), node="n3", seq=1)  # not n1's node id
    agent.expect(lambda e: e.kind == Kind.ERROR and e.error_code == Code.FORBIDDEN, what="ERROR forbidden")
    (refused,) = wait_for(lambda: recorder.named("auth_refused"), 10, what="auth_refused")
    reason, fingerprint, detail = refused
    assert reason == "wrong-node" and fingerprint.startswith("SHA256:") and "n3" in detail
    agent.close()


BROKEN = """\
from collector.addons import Aggregator


class Broken(Aggregator):
    reporttype = "Broken"

    def processReport(self, msg):
        raise ValueError("broken on purpose")
"""


def test_a_failing_module_reaches_the_observers(embedded, context, tmp_path: Path) -> None:
    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / "broken.py").write_text(BROKEN)
    recorder = Recorder()
    running = embedded(recorder, modules_dirs=[tmp_path / "mods"])
    agent = Peer(context, running.endpoints.agents)
    hello(agent)
    agent.socket.send(pack([envelope(Kind.REPORT, "Broken", b"x", node=NODE, seq=1, time=1.0)]))
    acked(agent, 1)
    (failed,) = wait_for(lambda: recorder.named("module_failed"), 10, what="module_failed")
    assert failed[:2] == ("broken", "processReport") and "broken on purpose" in failed[2]
    agent.close()


def test_a_config_edit_in_the_web_page_reaches_the_observers(embedded, tmp_path: Path) -> None:
    import urllib.request

    pytest.importorskip("falcon", reason="the web page needs the 'web' extra (falcon)")
    lab = tmp_path / "lab.toml"
    lab.write_text("[lab]\nruns = 1\n")
    token = tmp_path / "token"
    token.write_text("a-token-of-at-least-16-chars\n")
    recorder = Recorder()
    running = embedded(recorder, web=True, web_listen="127.0.0.1:0", web_token_file=token, extra_config_files=[lab])
    assert running.server is not None and running.server.web is not None
    request = urllib.request.Request(
        f"{running.server.web.url}/api/config/lab.toml",
        data=b"[lab]\nruns = 2\n",
        method="PUT",
        headers={"Authorization": "Bearer a-token-of-at-least-16-chars"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200
    wait_for(lambda: recorder.named("config_changed"), 10, what="config_changed from the web page")
    assert recorder.named("config_changed") == [("lab.toml", "web:127.0.0.1")]
    assert lab.read_text() == "[lab]\nruns = 2\n"
