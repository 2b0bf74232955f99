"""``prometheus``: a ``/metrics`` endpoint for Prometheus to scrape, served by prometheus-client.

Points mode only. ``sendUpdate`` keeps the latest value of every series in
memory (:class:`MetricState`); a custom prometheus-client collector builds the
metric families from that state at each scrape, so a series that no longer
exists is simply not yielded: no stale values, no ``.remove()`` bookkeeping.
Sample timestamps are not exported (Prometheus stamps the scrape), as exporters
should.

What is exported (``NODE/METRIC`` codes as the built-in modules publish them):

- ``labscope_node_up{node}``: 1 while the node is live, 0 once it is lost
  (``NODE/up``). **A lost node keeps only this series**: its other series
  (system figures, samples) disappear at once, and points for it are ignored
  until it is up again. Keeping ``up 0`` lets an alert tell "lost" from
  "never seen".
- ``labscope_node_cpu_percent``, ``labscope_node_memory_percent``,
  ``labscope_node_load1``, ``labscope_node_network_receive_bytes_per_second``,
  ``labscope_node_network_transmit_bytes_per_second``,
  ``labscope_node_disk_read_bytes_per_second``,
  ``labscope_node_disk_write_bytes_per_second`` (``{node}``, module
  ``systemstats``).
- ``labscope_sample{node,name}``: every other numeric ``NODE/NAME`` (module
  ``samples``, or any module's ``publish``); values that are not numbers are
  skipped.
- The collector's own (``collector/METRIC`` points, every second):
  ``labscope_collector_reports_total``, ``labscope_collector_bad_reports_total``,
  ``labscope_collector_module_errors_total``,
  ``labscope_collector_uptime_seconds``, ``labscope_collector_nodes{status}``
  (``live``, ``lost``).
- Every distribution's queue, read at scrape time from the runners
  (``DistCore.distributions``): ``labscope_distribution_queue_length{distribution}``,
  ``labscope_distribution_dropped_total{distribution,reason}``,
  ``labscope_distribution_sent_total{distribution}``,
  ``labscope_distribution_connected{distribution}``.

The HTTP server (prometheus-client's WSGI app on a private registry, served
by wsgiref from one daemon thread: see :func:`serve`) is started in ``connect``: a ``listen``
address that cannot be bound (port in use) is a connect failure, logged,
counted, raised as the ``distribution-down`` Event and retried with the
runner's backoff until the port is free.

Sample config block::

    [distributions.prom]
    type = "prometheus"
    # listen = "127.0.0.1:9464"   # HOST:PORT of /metrics ("0.0.0.0:9464": every interface; "[::1]:9464")
    # codes = ["*"]
    # on_full = "collapse"        # only the newest value of a series matters here
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from collector import dist

try:
    from prometheus_client import make_wsgi_app
    from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily, Metric
except ImportError:  # the extra is not installed: configure() says so in one line
    make_wsgi_app = None  # type: ignore[assignment]

__all__ = [
    "COLLECTOR_METRICS",
    "DEFAULT_LISTEN",
    "NODE_METRICS",
    "MetricState",
    "PrometheusDistribution",
    "parse_listen",
]

DEFAULT_LISTEN = "127.0.0.1:9464"
COLLECTOR = "collector"  # the node of the collector's own points

# NAME of a node's NODE/NAME point -> (metric, help): one gauge labelled {node} each.
NODE_METRICS: dict[str, tuple[str, str]] = {
    "cpu_percent": ("labscope_node_cpu_percent", "CPU busy, percent of all cores"),
    "mem_percent": ("labscope_node_memory_percent", "memory used, percent"),
    "load1": ("labscope_node_load1", "load average over 1 minute"),
    "net_recv_rate": ("labscope_node_network_receive_bytes_per_second", "bytes received per second, all interfaces"),
    "net_send_rate": ("labscope_node_network_transmit_bytes_per_second", "bytes sent per second, all interfaces"),
    "disk_read_rate": ("labscope_node_disk_read_bytes_per_second", "bytes read per second, all disks"),
    "disk_write_rate": ("labscope_node_disk_write_bytes_per_second", "bytes written per second, all disks"),
}

# NAME of a collector/NAME point -> (metric, kind, help); nodes_total/nodes_live make labscope_collector_nodes.
COLLECTOR_METRICS: dict[str, tuple[str, str, str]] = {
    "reports_total": ("labscope_collector_reports", "counter", "reports the collector applied"),
    "bad_reports_total": ("labscope_collector_bad_reports", "counter", "reports dropped: payload did not decode"),
    "module_errors_total": ("labscope_collector_module_errors", "counter", "exceptions raised by modules"),
    "uptime": ("labscope_collector_uptime_seconds", "gauge", "seconds since the collector started"),
}
NODE_COUNTS = ("nodes_total", "nodes_live")
# Published by the collector but exported per distribution instead (labscope_distribution_dropped_total).
COLLECTOR_SKIPPED = ("dist_dropped_total",)

DistStats = Callable[[], dict[str, dict[str, Any]]]


def parse_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too) as ``(host, port)``; ConfigError when it is not that."""
    host, sep, port = listen.rpartition(":")
    host = host.strip("[]") if host.startswith("[") else host
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise dist.ConfigError(f"listen {listen!r}: expected HOST:PORT, like {DEFAULT_LISTEN}")
    return host, int(port)


def number(value: Any) -> float | None:
    """``value`` as a float when it is a number (bools as 0/1), else None."""
    if isinstance(value, (int, float)):
        return float(value)
    return None


@dataclass
class MetricState:
    """The latest value of every series; written by the distribution's thread, read at each scrape.

    Every method takes the lock: the scrape runs in the HTTP server's thread.
    """

    up: dict[str, float] = field(default_factory=dict)  # node -> 1/0, nodes that published NODE/up
    system: dict[str, dict[str, float]] = field(default_factory=dict)  # node -> NODE_METRICS name -> value
    samples: dict[str, dict[str, float]] = field(default_factory=dict)  # node -> sample name -> value
    collector: dict[str, float] = field(default_factory=dict)  # collector/NAME -> value
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def apply(self, point: dist.DataPoint) -> bool:
        """Keep one point's value; False when it is not exported (not a number, a lost node's, ...)."""
        value = number(point.value)
        if value is None:
            return False
        node = point.node
        name = point.code[len(node) + 1 :] if point.code.startswith(f"{node}/") else point.code.partition("/")[2]
        with self.lock:
            if node == COLLECTOR:
                if name in COLLECTOR_SKIPPED:
                    return False
                self.collector[name] = value
                return True
            if name == "up":
                self._set_up(node, value)
                return True
            if self.up.get(node, 1.0) == 0.0:
                return False  # a late point of a lost node would bring a stale series back
            table = self.system if name in NODE_METRICS else self.samples
            table.setdefault(node, {})[name] = value
            return True

    def _set_up(self, node: str, value: float) -> None:
        self.up[node] = value
        if value == 0.0:
            self.system.pop(node, None)
            self.samples.pop(node, None)

    def families(self, distributions: DistStats | None = None) -> list[Metric]:
        """Every metric family as of now (the scrape's answer)."""
        with self.lock:
            found = self._node_families() + self._collector_families()
        if distributions is not None:
            found += distribution_families(distributions)
        return found

    def _node_families(self) -> list[Metric]:
        up = GaugeMetricFamily("labscope_node_up", "1 while the node is live, 0 once it is lost", labels=["node"])
        for node, value in sorted(self.up.items()):
            up.add_metric([node], value)
        found: list[Metric] = [up]
        for name, (metric, text) in NODE_METRICS.items():
            family = GaugeMetricFamily(metric, text, labels=["node"])
            for node, values in sorted(self.system.items()):
                if name in values:
                    family.add_metric([node], values[name])
            found.append(family)
        sample = GaugeMetricFamily("labscope_sample", "the latest value of a named sample", labels=["node", "name"])
        for node, values in sorted(self.samples.items()):
            for name, value in sorted(values.items()):
                sample.add_metric([node, name], value)
        found.append(sample)
        return found

    def _collector_families(self) -> list[Metric]:
        found: list[Metric] = []
        for name, (metric, kind, text) in COLLECTOR_METRICS.items():
            if name in self.collector:
                kind_class = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
                found.append(kind_class(metric, text, value=self.collector[name]))
        if all(name in self.collector for name in NODE_COUNTS):
            nodes = GaugeMetricFamily("labscope_collector_nodes", "nodes known, by status", labels=["status"])
            live = self.collector["nodes_live"]
            nodes.add_metric(["live"], live)
            nodes.add_metric(["lost"], self.collector["nodes_total"] - live)
            found.append(nodes)
        for name, value in sorted(self.collector.items()):
            if name not in COLLECTOR_METRICS and name not in NODE_COUNTS:
                found.append(
                    GaugeMetricFamily(
                        f"labscope_collector_{_metric_name(name)}", f"the collector's {name}", value=value
                    )
                )
        return found


def _metric_name(name: str) -> str:
    """A published name as a Prometheus metric name part (anything not ``[a-zA-Z0-9_]`` becomes ``_``)."""
    return "".join(c if c.isascii() and (c.isalnum() or c == "_") else "_" for c in name)


def distribution_families(distributions: DistStats) -> list[Metric]:
    """``labscope_distribution_*`` from the runners' figures (the ``Distributions`` answer)."""
    try:
        stats = distributions()
    except RuntimeError:  # a counter dict resized by its thread during the copy: the next scrape has it
        return []
    queued = GaugeMetricFamily("labscope_distribution_queue_length", "entries queued", labels=["distribution"])
    dropped = CounterMetricFamily(
        "labscope_distribution_dropped", "entries dropped, by reason", labels=["distribution", "reason"]
    )
    sent = CounterMetricFamily("labscope_distribution_sent", "payloads delivered", labels=["distribution"])
    connected = GaugeMetricFamily(
        "labscope_distribution_connected", "1 while the destination is reachable", labels=["distribution"]
    )
    for name, figures in sorted(stats.items()):
        queued.add_metric([name], figures.get("queued", 0))
        for reason, count in sorted(figures.get("dropped", {}).items()):
            dropped.add_metric([name, reason], count)
        sent.add_metric([name], figures.get("sent", 0))
        connected.add_metric([name], 1.0 if figures.get("connected") else 0.0)
    return [queued, dropped, sent, connected]


class _ScrapeCollector:
    """The prometheus-client collector: families built fresh from the state at each scrape."""

    def __init__(self, state: MetricState, distributions: DistStats | None) -> None:
        self.state = state
        self.distributions = distributions

    def collect(self) -> Iterator[Metric]:
        """Every family, as of now."""
        yield from self.state.families(self.distributions)


class _QuietHandler(WSGIRequestHandler):
    """One request; logged at DEBUG, not on stderr; a client silent for 10 s is dropped."""

    timeout = 10.0

    def log_message(self, format: str, *args: Any) -> None:
        """Each request at DEBUG."""
        _log.debug("prometheus: " + format, *args)


_log = logging.getLogger(__name__)


def serve(host: str, port: int, registry: CollectorRegistry) -> tuple[WSGIServer, threading.Thread]:
    """Serve ``registry`` on ``host:port`` from one daemon thread that accepts *and* answers each scrape.

    Why not prometheus-client's ``start_http_server``: it answers each
    request in a new thread, and under the collector's gevent patching a
    socket accepted in one thread cannot wait in another ("Cannot switch to a
    different thread"). Scrapes are few and quick, so one thread is plenty.
    """
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
    server_class = type("MetricsServer", (WSGIServer,), {"address_family": family, "allow_reuse_address": True})
    server = server_class((host, port), _QuietHandler)
    server.set_app(make_wsgi_app(registry))
    thread = threading.Thread(target=server.serve_forever, name="labscope-prometheus", daemon=True)
    thread.start()
    return server, thread


class PrometheusDistribution(dist.Distribution):
    """Data points as Prometheus gauges and counters on a ``/metrics`` endpoint."""

    modes = (dist.POINTS,)
    options = {
        "listen": dist.Option(DEFAULT_LISTEN, help="HOST:PORT the /metrics endpoint listens on"),
    }

    def __init__(self, core: dist.DistCore) -> None:
        super().__init__(core)
        self.state = MetricState()
        self.address = parse_listen(DEFAULT_LISTEN)
        self.server: WSGIServer | None = None
        self.thread: threading.Thread | None = None

    def configure(self, config: dict[str, Any]) -> None:
        """Check ``listen`` and that prometheus-client is installed (no network here)."""
        if make_wsgi_app is None:
            raise dist.ConfigError("prometheus-client is not installed: pip install 'labscope[prometheus]'")
        self.config = config
        self.address = parse_listen(str(config.get("listen", DEFAULT_LISTEN)))

    def isConnected(self) -> bool:
        """True while the HTTP server runs."""
        return self.server is not None

    def connect(self) -> bool:
        """Start the /metrics server on ``listen`` (an address in use raises OSError: counted and retried)."""
        self.close()
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_ScrapeCollector(self.state, self.core.distributions))
        host, port = self.address
        self.server, self.thread = serve(host, port, registry)
        self.log.info("prometheus: /metrics on http://%s:%d/metrics", *self._bound())
        return True

    def sendUpdate(self, payload: dist.DataPoint) -> bool:
        """Keep the point's value for the next scrape."""
        self.state.apply(payload)
        return True

    def close(self) -> None:
        """Stop the HTTP server and free its port."""
        server, self.server = self.server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def _bound(self) -> tuple[str, int]:
        """The address actually bound (port 0 in ``listen`` picks a free one)."""
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return str(host), int(port)
