"""The built-in ``mqtt`` distribution against a real Mosquitto this test starts on a free port.

Our own broker (Debian's /usr/sbin/mosquitto), not the shared one on 1883, so that freezing it with
SIGSTOP disturbs nobody else. Without the binary the tests skip with one line; under ``CI=true`` they fail.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from collector.dist import DataPoint, DistCore
from messages import Kind, NodeList
from tests.conftest import ProcessGroup, wait_for
from tests.wire import Client

paho = pytest.importorskip("paho.mqtt.client", reason="paho-mqtt missing: pip install 'labscope[mqtt]'")
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from collector.distributions.dist_mqtt import MqttDistribution, parse_url  # noqa: E402

MOSQUITTO = "/usr/sbin/mosquitto"

pytestmark = [pytest.mark.timeout(150), pytest.mark.e2e]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Broker:
    """A Mosquitto of our own on 127.0.0.1:port."""

    def __init__(self, tmp_path: Path) -> None:
        self.port = free_port()
        conf = tmp_path / "mosquitto.conf"
        conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        self.log = tmp_path / "mosquitto.log"
        with open(self.log, "wb") as out:
            self.popen = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT)
        wait_for(self._listening, 10, what="mosquitto listening")

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def _listening(self) -> bool:
        assert self.popen.poll() is None, self.log.read_text()
        try:
            socket.create_connection(("127.0.0.1", self.port), 0.5).close()
        except OSError:
            return False
        return True

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGCONT)  # a frozen broker cannot act on SIGTERM
            self.popen.terminate()
        try:
            self.popen.wait(10)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(5)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """Our own Mosquitto; skips in one line without the binary, fails instead under CI=true."""
    if not (os.path.exists(MOSQUITTO) and os.access(MOSQUITTO, os.X_OK)) and not shutil.which("mosquitto"):
        if os.environ.get("CI") == "true":
            pytest.fail(f"{MOSQUITTO} missing (apt-get install mosquitto); CI=true does not skip")
        pytest.skip(f"{MOSQUITTO} missing (apt-get install mosquitto)")
    broker = Broker(tmp_path)
    yield broker
    broker.stop()


class Subscriber:
    """A paho client subscribed to ``labscope/#``: the messages received, newest value per topic."""

    def __init__(self, port: int) -> None:
        self.lock = threading.Lock()
        self.messages: list[tuple[str, str, bool, float]] = []  # (topic, text, retained, when received)
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"test-sub-{port}")
        self.subscribed = threading.Event()
        self.client.on_connect = lambda c, *_: c.subscribe("labscope/#", qos=1)
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=60)
        self.client.loop_start()
        # Publishing before the broker holds the subscription loses the non-retained messages.
        assert self.subscribed.wait(10), "the test subscriber's SUBSCRIBE was not acknowledged within 10 s"

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        with self.lock:
            self.messages.append((message.topic, message.payload.decode(), bool(message.retain), time.monotonic()))

    def values(self, topic: str, since: float = 0.0) -> list[str]:
        with self.lock:
            return [text for t, text, _, at in self.messages if t == topic and at >= since]

    def topics(self) -> set[str]:
        with self.lock:
            return {t for t, *_ in self.messages}

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def retained(port: int, topic: str, timeout: float = 5.0) -> str | None:
    """The retained message on ``topic`` as a fresh subscriber sees it (None: none)."""
    got: list[str] = []
    client = paho.Client(CallbackAPIVersion.VERSION2)
    client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
    client.on_message = lambda c, u, m: m.retain and got.append(m.payload.decode())
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        deadline = time.monotonic() + timeout
        while not got and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        client.disconnect()
        client.loop_stop()
    return got[-1] if got else None


def mqtt_dist(url: str, **config: Any) -> MqttDistribution:
    dist = MqttDistribution(DistCore("mq", "mqtt", "points", "lab1"))
    options = {key: option.default for key, option in MqttDistribution.options.items()}
    dist.configure({**options, "url": url, **config})
    return dist


def test_parse_url() -> None:
    assert parse_url("mqtt://broker.lab") == ("broker.lab", 1883)
    assert parse_url("tcp://127.0.0.1:1884") == ("127.0.0.1", 1884)
    for bad in ("http://x", "mqtt://", "mqtt://h:99999", "mqtt://h/path"):
        with pytest.raises(Exception, match="url"):
            parse_url(bad)


def test_publishes_points_status_and_online_offline(broker: Broker) -> None:
    sub = Subscriber(broker.port)
    dist = mqtt_dist(broker.url)
    try:
        assert dist.connect() and dist.isConnected()
        assert dist.sendUpdate(DataPoint("n1/cpu_percent", 12.5, 1.0, "n1"))
        assert dist.sendUpdate(DataPoint("n1/up", 1, 1.0, "n1"))
        assert dist.sendUpdate(DataPoint("n1/label", "héllo", 1.0, "n1"))
        wait_for(lambda: sub.values("labscope/n1/label"), 10, what="the points")
        assert sub.values("labscope/n1/cpu_percent") == ["12.5"]
        assert sub.values("labscope/n1/up") == ["1"] and sub.values("labscope/n1/status") == ["live"]
        assert sub.values("labscope/n1/label") == ["héllo"]
        assert retained(broker.port, "labscope/collector/lab1/status") == "online"
        assert dist.sendUpdate(DataPoint("n1/up", 0, 2.0, "n1"))
        wait_for(lambda: retained(broker.port, "labscope/n1/status", 1) == "lost", 10, what="n1 lost")
    finally:
        dist.close()
        sub.close()
    assert not dist.isConnected()
    assert retained(broker.port, "labscope/collector/lab1/status") == "offline"


def test_not_connected_means_not_delivered_and_a_bad_config_is_one_line(tmp_path: Path) -> None:
    dist = mqtt_dist(f"mqtt://127.0.0.1:{free_port()}", timeout=0.3)
    try:
        assert not dist.sendUpdate(DataPoint("n1/x", 1, 1.0, "n1"))  # before connect
        assert not dist.connect()  # nobody listens: bounded
        assert not dist.sendUpdate(DataPoint("n1/x", 1, 1.0, "n1"))
    finally:
        dist.close()
    with pytest.raises(Exception, match="topic"):
        mqtt_dist("mqtt://h", topic="labscope/{nope}")


def start(procs: ProcessGroup, tmp_path: Path, config: str, interval: float) -> Any:
    path = tmp_path / "collector.toml"
    path.write_text(config)
    collector = procs.collector("--config", str(path), "--alias", "lab1", "--update-interval", "0.5")
    procs.agent(collector.agents, "n1", interval=interval)
    return collector


def last_seq(client: Client) -> int:
    nodes = NodeList.FromString(client.ask("NodeList").payload).nodes
    return nodes[0].last_seq if nodes else 0


def test_a_real_collector_publishes_node_codes_and_its_last_will(
    procs: ProcessGroup, broker: Broker, tmp_path: Path
) -> None:
    sub = Subscriber(broker.port)
    try:
        collector = start(procs, tmp_path, f'[distributions.mq]\ntype = "mqtt"\nurl = "{broker.url}"\n', 0.2)
        wait_for(lambda: sub.values("labscope/n1/cpu_percent"), 30, what="n1/cpu_percent over MQTT")
        wait_for(lambda: sub.values("labscope/n1/status"), 10, what="n1's status")
        wait_for(lambda: "labscope/collector/nodes_live" in sub.topics(), 10, what="the collector's own codes")
        # Each point is its own MQTT message: mem_percent may land just after cpu_percent, so wait for it.
        wanted = {"labscope/n1/mem_percent", "labscope/n1/up"}
        wait_for(lambda: wanted <= sub.topics(), 10, what="n1/mem_percent and n1/up")
        assert retained(broker.port, "labscope/n1/status") == "live"
        assert retained(broker.port, "labscope/collector/lab1/status") == "online"
        float(sub.values("labscope/n1/cpu_percent")[-1])  # text of a number
        collector.popen.kill()  # kill -9: no close(), the broker sends the last will
        collector.popen.wait(10)
        wait_for(lambda: "offline" in sub.values("labscope/collector/lab1/status"), 30, what="the last will")
    finally:
        sub.close()


def test_a_frozen_broker_harms_nothing_else_and_delivery_resumes(
    procs: ProcessGroup, broker: Broker, zmq_context: Any, tmp_path: Path
) -> None:
    archive = tmp_path / "archive.jsonl"
    collector = start(
        procs,
        tmp_path,
        f"""
[distributions.mq]
type = "mqtt"
url = "{broker.url}"
queue_max = 50
timeout = 1.0
keepalive = 5
[distributions.archive]
type = "jsonl"
path = "{archive}"
""",
        0.05,
    )
    sub = Subscriber(broker.port)
    client = Client(zmq_context, collector.clients)
    try:
        wait_for(lambda: sub.values("labscope/n1/cpu_percent"), 30, what="points over MQTT")
        start_seq, t0 = last_seq(client), time.monotonic()
        wait_for(lambda: last_seq(client) >= start_seq + 40, 20, what="reports before the outage")
        rate_before = (last_seq(client) - start_seq) / (time.monotonic() - t0)

        client.send(Kind.SUBSCRIBE, params={"types": "NodeList"})  # client updates must keep coming too
        broker.popen.send_signal(signal.SIGSTOP)
        frozen_at, frozen_wall = time.monotonic(), time.time()
        seq0, lines0 = last_seq(client), archive.stat().st_size
        mq = wait_for(
            lambda: (d := client.answer("Distributions")["mq"])["dropped"]["queue-full"] > 0 and d,
            40,
            what="mqtt drops while the broker is frozen",
        )
        while time.monotonic() < frozen_at + 20:  # the outage goes on; ingest, jsonl and updates must not mind
            client.send(Kind.SUBSCRIBE, params={"types": "NodeList"})  # renew the lease
            dists = client.answer("Distributions")
            assert dists["mq"]["queued"] <= 50 + 7  # the queue, and the payloads of the one sample being sent
            time.sleep(0.5)
        rate_during = (last_seq(client) - seq0) / (time.monotonic() - frozen_at)
        assert rate_during > rate_before * 0.5, (rate_before, rate_during)
        assert archive.stat().st_size > lines0  # the other distribution kept writing
        client.expect(
            lambda e: e.kind == Kind.UPDATE and e.type == "NodeList" and e.time > frozen_wall + 10,
            timeout=10,
            what="a NodeList update pushed well into the outage",
        )
        stats = client.answer("CollectorStats")
        assert stats["counters"]["dist-dropped:mq"] >= mq["dropped"]["queue-full"]
        assert dists["archive"]["dropped"]["queue-full"] == 0 and dists["archive"]["errors"] == 0

        broker.popen.send_signal(signal.SIGCONT)
        resumed = time.monotonic()
        wait_for(lambda: sub.values("labscope/n1/cpu_percent", since=resumed), 60, what="delivery after SIGCONT")
        latest = json.loads(archive.read_text().splitlines()[-1])
        assert latest["time"] > 0
    finally:
        client.close()
        sub.close()
    assert collector.stop() == 0
    assert "Traceback" not in collector.log()
