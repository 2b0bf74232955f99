"""``mqtt``: data points to an MQTT broker (paho-mqtt, the ``mqtt`` extra), one message a point.

Each point is published, QoS 1 by default, to the ``topic`` template
(default ``labscope/{code}``, so ``labscope/n1/cpu_percent``) with its value
as UTF-8 text (``str(value)``). The template may use ``{code}``, ``{node}``,
``{metric}`` (the code after the node) and ``{alias}`` (the collector's).

A ``NODE/up`` point also publishes the retained ``labscope/NODE/status``:
``live`` (1) or ``lost`` (0). The collector's own status is the retained
``labscope/collector/ALIAS/status``: ``online`` on every (re)connect, and
``offline`` when the distribution closes, or from the broker as the
connection's last will when the collector dies or its connection is lost.

Delivery: a point counts as delivered once the broker acknowledged it
(PUBACK; with QoS 0, once it is written to the socket). A publish the broker
has not acknowledged within ``timeout`` seconds is not delivered:
``sendUpdate`` returns False, the runner keeps the point and offers it again
after reconnecting, and the same message (paho keeps it and re-sends it on
the new connection) is then waited for again, not published twice. While the
client is not connected ``sendUpdate`` returns False at once. paho's network
thread reconnects by itself (``loop_start``); ``connect()`` waits for it at
most ``timeout`` seconds.

Sample config block::

    [distributions.mq]
    type = "mqtt"
    # url = "mqtt://127.0.0.1:1883"
    # topic = "labscope/{code}"                    # also {node}, {metric}, {alias}
    # qos = 1                                      # 0, 1 or 2
    # client_id = ""                               # default labscope-ALIAS-NAME
    # keepalive = 30                               # seconds
    # timeout = 5.0                                # seconds to wait for connecting or an acknowledgement
    # status_topic = "labscope/{node}/status"      # retained live/lost from NODE/up
    # will_topic = "labscope/collector/{alias}/status"  # retained online/offline, and the last will
    # codes = ["*"]
"""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import urlsplit

from collector import dist

__all__ = ["MqttDistribution", "parse_url"]

PIP = "pip install 'labscope[mqtt]'"
SCHEMES = {"mqtt": 1883, "tcp": 1883}


def parse_url(url: str) -> tuple[str, int]:
    """``mqtt://HOST[:PORT]`` (or ``tcp://``) as (host, port); ConfigError for anything else."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise dist.ConfigError(f"url {url!r}: {exc}") from None
    if parts.scheme not in SCHEMES or not parts.hostname or parts.path not in ("", "/"):
        raise dist.ConfigError(f"url {url!r}: expected mqtt://HOST[:PORT]")
    return parts.hostname, port or SCHEMES[parts.scheme]


def _check_template(key: str, template: str, **fields: str) -> None:
    try:
        template.format(**fields)
    except (KeyError, IndexError, ValueError) as exc:
        raise dist.ConfigError(f"{key} {template!r}: {exc!r}; it may use {{{'}, {'.join(fields)}}}") from None


class MqttDistribution(dist.Distribution):
    """Data points as MQTT messages, value as UTF-8 text; node and collector status retained."""

    modes = ("points",)
    options = {
        "url": dist.Option("mqtt://127.0.0.1:1883", help="the broker: mqtt://HOST[:PORT]"),
        "topic": dist.Option("labscope/{code}", help="topic template: {code}, {node}, {metric}, {alias}"),
        "qos": dist.Option(1, choices=(0, 1, 2), help="QoS of the data messages"),
        "client_id": dist.Option("", help="MQTT client id (default labscope-ALIAS-NAME)"),
        "keepalive": dist.Option(30, minimum=5, maximum=65535, help="MQTT keepalive, seconds"),
        "timeout": dist.Option(5.0, minimum=0.1, help="seconds to wait for connecting or an acknowledgement"),
        "status_topic": dist.Option("labscope/{node}/status", help="retained live/lost from NODE/up points"),
        "will_topic": dist.Option(
            "labscope/collector/{alias}/status", help="retained online/offline of the collector, its last will"
        ),
    }

    def __init__(self, core: dist.DistCore) -> None:
        super().__init__(core)
        self.host, self.port = "127.0.0.1", 1883
        self.topic = "labscope/{code}"
        self.status_topic = "labscope/{node}/status"
        self.will_topic = f"labscope/collector/{core.alias}/status"
        self.qos = 1
        self.client_id = ""
        self.keepalive = 30
        self.timeout = 5.0
        self.client: Any = None  # paho.mqtt.client.Client, made on the first connect()
        self.connected = threading.Event()  # set by paho's thread on CONNACK, cleared on disconnect
        self.pending: tuple[Any, list[Any]] | None = None  # (payload, its MQTTMessageInfos) not acknowledged yet

    def configure(self, config: dict[str, Any]) -> None:
        """Check paho-mqtt is installed, the url and the topic templates."""
        self.config = config
        try:
            import paho.mqtt.client  # noqa: F401
        except ImportError:
            raise dist.ConfigError(f"type mqtt needs paho-mqtt; install it with: {PIP}") from None
        self.host, self.port = parse_url(str(config["url"]))
        self.topic = str(config["topic"])
        _check_template("topic", self.topic, code="n/m", node="n", metric="m", alias="a")
        self.status_topic = str(config["status_topic"])
        _check_template("status_topic", self.status_topic, node="n", alias="a")
        self.will_topic = str(config["will_topic"]).format(alias=self.core.alias or "collector")
        self.qos = int(config["qos"])
        self.client_id = str(config["client_id"]) or f"labscope-{self.core.alias or 'collector'}-{self.name}"
        self.keepalive = int(config["keepalive"])
        self.timeout = float(config["timeout"])

    def isConnected(self) -> bool:
        """True while paho's connection to the broker is up."""
        return self.client is not None and bool(self.client.is_connected())

    def connect(self) -> bool:
        """Start the client (last will set, paho's network thread) once; wait at most ``timeout`` s for it."""
        if self.client is None:
            self.client = self._make_client()
            self.client.connect_async(self.host, self.port, self.keepalive)
            self.client.loop_start()  # its thread connects, and reconnects by itself after a loss
        self.connected.wait(self.timeout)
        if self.pending is not None:  # the message waited for may have been acknowledged meanwhile
            self._acknowledged(self.pending[1], self.timeout)
        return self.isConnected()

    def sendUpdate(self, payload: Any) -> bool:
        """Publish one point (and a node's status for ``NODE/up``); True once the broker acknowledged it."""
        if not self.isConnected():
            return False
        if self.pending is not None and self.pending[0] is payload and self._alive(self.pending[1]):
            infos = self.pending[1]  # paho still holds it and re-sends it: wait for it, do not publish twice
        else:
            infos = self._publish(payload)
        if self._acknowledged(infos, self.timeout):
            self.pending = None
            return True
        self.pending = (payload, infos)
        return False

    def close(self) -> None:
        """Publish ``offline`` (retained), disconnect and stop paho's thread."""
        client, self.client = self.client, None
        if client is None:
            return
        try:
            if client.is_connected():
                info = client.publish(self.will_topic, b"offline", qos=1, retain=True)
                self._acknowledged([info], min(self.timeout, 2.0))
            client.disconnect()
        finally:
            client.loop_stop()

    def _make_client(self) -> Any:
        from paho.mqtt import client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id)
        client.will_set(self.will_topic, b"offline", qos=1, retain=True)
        client.reconnect_delay_set(1, 5)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        return client

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        """paho's thread: announce the collector (retained ``online``) on every connection."""
        if reason.is_failure:
            self.log.warning("mqtt %s:%s refused the connection: %s", self.host, self.port, reason)
            return
        client.publish(self.will_topic, b"online", qos=1, retain=True)
        self.connected.set()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        """paho's thread: the connection is gone (paho reconnects by itself)."""
        self.connected.clear()
        self.log.debug("mqtt %s:%s disconnected: %s", self.host, self.port, reason)

    def _publish(self, point: Any) -> list[Any]:
        code, node = str(point.code), str(point.node)
        metric = code[len(node) + 1 :] if code.startswith(node + "/") else code.partition("/")[2]
        topic = self.topic.format(code=code, node=node, metric=metric, alias=self.core.alias)
        infos = [self.client.publish(topic, str(point.value).encode("utf-8"), qos=self.qos)]
        if metric == "up" and node != "collector":
            status = b"live" if _truthy(point.value) else b"lost"
            topic = self.status_topic.format(node=node, alias=self.core.alias)
            infos.append(self.client.publish(topic, status, qos=1, retain=True))
        return infos

    @staticmethod
    def _alive(infos: list[Any]) -> bool:
        """True when none of the messages failed to queue (paho holds them all)."""
        return all(info.rc == 0 for info in infos)

    def _acknowledged(self, infos: list[Any], timeout: float) -> bool:
        """Wait (together at most ``timeout`` s) until every message is acknowledged; False when not."""
        try:
            for info in infos:
                info.wait_for_publish(timeout)
                if not info.is_published():
                    return False
        except (ValueError, RuntimeError) as exc:  # not queued, or the publish failed
            self.log.debug("mqtt publish failed: %s", exc)
            return False
        return True


def _truthy(value: Any) -> bool:
    try:
        return float(value) != 0.0
    except (TypeError, ValueError):
        return bool(value)
