"""The built-in ``prometheus`` distribution: the metric mapping without sockets, then scraped for real."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from collector import dist
from collector.dist import DataPoint, DistCore
from collector.distributions import dist_prometheus
from collector.distributions.dist_prometheus import MetricState, PrometheusDistribution, parse_listen
from messages import Kind, NodeInfo, SystemStats
from tests.conftest import ProcessGroup, labscope_cmd, wait_for
from tests.test_collector_cli import error_line
from tests.wire import Peer

pytestmark = pytest.mark.timeout(60)

Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def series(families: Any) -> Series:
    """Every sample as ``{(name, sorted labels): value}``."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples}


def node_series(found: Series, node: str) -> Series:
    return {key: value for key, value in found.items() if ("node", node) in key[1]}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scrape(port: int) -> Series:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        return series(text_string_to_metric_families(answer.read().decode()))


def scrape_once_up(port: int) -> Series:
    """:func:`scrape`, or no series while nothing listens yet (the distribution binds in its own thread)."""
    try:
        return scrape(port)
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, ConnectionRefusedError):
            return {}
        raise


def slow_scrape(port: int) -> bytes:
    """A scrape whose request arrives in two parts, so the server must wait on the socket (as for Prometheus)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\n")
        time.sleep(0.3)  # deliberate: the server's read must block (this broke under gevent, see dist_prometheus.serve)
        sock.sendall(b"Host: 127.0.0.1\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def points(state: MetricState, node: str, at: float = 1.0, **values: Any) -> None:
    for name, value in values.items():
        state.apply(DataPoint(f"{node}/{name}", value, at, node))


SYSTEM = {
    "cpu_percent": 12.5,
    "mem_percent": 40.0,
    "load1": 0.5,
    "net_recv_rate": 100.0,
    "net_send_rate": 200.0,
    "disk_read_rate": 300.0,
    "disk_write_rate": 400.0,
}


# ---------------------------------------------------------------- the mapping, no sockets


def test_node_figures_samples_and_the_collectors_own_map_to_their_metrics() -> None:
    state = MetricState()
    points(state, "n1", up=1, **SYSTEM)
    points(state, "n1", temp=21.5, label="not a number")
    points(state, "collector", reports_total=42, nodes_total=3, nodes_live=2, uptime=9.5, dist_dropped_total=7)
    found = series(state.families())
    assert node_series(found, "n1") == {
        ("labscope_node_up", (("node", "n1"),)): 1.0,
        ("labscope_node_cpu_percent", (("node", "n1"),)): 12.5,
        ("labscope_node_memory_percent", (("node", "n1"),)): 40.0,
        ("labscope_node_load1", (("node", "n1"),)): 0.5,
        ("labscope_node_network_receive_bytes_per_second", (("node", "n1"),)): 100.0,
        ("labscope_node_network_transmit_bytes_per_second", (("node", "n1"),)): 200.0,
        ("labscope_node_disk_read_bytes_per_second", (("node", "n1"),)): 300.0,
        ("labscope_node_disk_write_bytes_per_second", (("node", "n1"),)): 400.0,
        ("labscope_sample", (("name", "temp"), ("node", "n1"))): 21.5,
    }
    assert found[("labscope_collector_reports_total", ())] == 42
    assert found[("labscope_collector_uptime_seconds", ())] == 9.5
    assert found[("labscope_collector_nodes", (("status", "live"),))] == 2
    assert found[("labscope_collector_nodes", (("status", "lost"),))] == 1
    assert not any("dist_dropped" in name for name, _ in found)  # exported per distribution instead


def test_the_latest_value_wins() -> None:
    state = MetricState()
    points(state, "n1", cpu_percent=1.0)
    points(state, "n1", cpu_percent=2.0)
    assert series(state.families())[("labscope_node_cpu_percent", (("node", "n1"),))] == 2.0


def test_a_lost_node_keeps_only_up_0_and_ignores_late_points_until_it_is_back() -> None:
    state = MetricState()
    points(state, "n1", up=1, temp=3.0, **SYSTEM)
    points(state, "n2", up=1, cpu_percent=5.0)
    points(state, "n1", up=0)
    points(state, "n1", cpu_percent=99.0, temp=4.0)  # late: queued before the loss
    found = series(state.families())
    assert node_series(found, "n1") == {("labscope_node_up", (("node", "n1"),)): 0.0}
    assert found[("labscope_node_cpu_percent", (("node", "n2"),))] == 5.0
    points(state, "n1", up=1, cpu_percent=7.0)
    assert series(state.families())[("labscope_node_cpu_percent", (("node", "n1"),))] == 7.0


def test_distribution_figures_come_from_the_runners() -> None:
    stats = {
        "prom": {"queued": 3, "dropped": {"queue-full": 2, "error": 0}, "sent": 10, "connected": True},
        "arch": {"queued": 0, "dropped": {"queue-full": 0, "error": 1}, "sent": 5, "connected": False},
    }
    found = series(MetricState().families(lambda: stats))
    assert found[("labscope_distribution_queue_length", (("distribution", "prom"),))] == 3
    assert found[("labscope_distribution_dropped_total", (("distribution", "prom"), ("reason", "queue-full")))] == 2
    assert found[("labscope_distribution_dropped_total", (("distribution", "arch"), ("reason", "error")))] == 1
    assert found[("labscope_distribution_sent_total", (("distribution", "arch"),))] == 5
    assert found[("labscope_distribution_connected", (("distribution", "arch"),))] == 0


@pytest.mark.parametrize(
    ("listen", "address"),
    [("127.0.0.1:9464", ("127.0.0.1", 9464)), ("[::1]:80", ("::1", 80)), ("0.0.0.0:0", ("0.0.0.0", 0))],
)
def test_listen_is_host_and_port(listen: str, address: tuple[str, int]) -> None:
    assert parse_listen(listen) == address


@pytest.mark.parametrize("listen", ["9464", ":9464", "host:", "host:http", "host:70000"])
def test_a_bad_listen_is_a_config_error(listen: str) -> None:
    with pytest.raises(dist.ConfigError, match="expected HOST:PORT"):
        parse_listen(listen)


def test_without_prometheus_client_configure_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dist_prometheus, "make_wsgi_app", None)
    prom = PrometheusDistribution(DistCore("prom", "prometheus"))
    with pytest.raises(dist.ConfigError, match=r"pip install 'labscope\[prometheus\]'"):
        prom.configure({"listen": "127.0.0.1:9464"})


# ---------------------------------------------------------------- its own server, in this process


def test_serves_metrics_and_a_port_in_use_is_a_connect_failure(tmp_path: Path) -> None:
    port = free_port()
    first = PrometheusDistribution(DistCore("prom", "prometheus", data_root=tmp_path))
    first.configure({"listen": f"127.0.0.1:{port}"})
    second = PrometheusDistribution(DistCore("again", "prometheus", data_root=tmp_path))
    second.configure({"listen": f"127.0.0.1:{port}"})
    try:
        assert first.connect() and first.isConnected()
        assert first.sendUpdate(DataPoint("n1/cpu_percent", 3.0, 1.0, "n1"))
        assert scrape(port)[("labscope_node_cpu_percent", (("node", "n1"),))] == 3.0
        with pytest.raises(OSError):
            second.connect()
        assert not second.isConnected()
    finally:
        first.close()
    assert not first.isConnected()
    assert second.connect()  # the port is free again
    second.close()


# ---------------------------------------------------------------- a real collector, scraped over HTTP


@pytest.mark.e2e
@pytest.mark.timeout(90)
def test_a_real_collector_scraped_and_a_lost_nodes_series_disappear(
    procs: ProcessGroup, zmq_context: Any, tmp_path: Path
) -> None:
    port = free_port()
    config = tmp_path / "collector.toml"
    config.write_text(
        f'[distributions.prom]\ntype = "prometheus"\nlisten = "127.0.0.1:{port}"\n'
        '[distributions.arch]\ntype = "jsonl"\n'
    )
    collector = procs.collector("--config", str(config))
    agent = Peer(zmq_context, collector.agents)  # plays agent n1
    try:
        agent.send(Kind.HELLO, "NodeInfo", NodeInfo(node="n1", hostname="h", instance="i1"), node="n1", seq=1)
        agent.expect(lambda e: e.kind == Kind.ACK, what="the ACK of the HELLO")
        stats = SystemStats(time=1000.0, cpu_percent=37.5, load1=1.25)
        stats.memory.percent = 61.0
        stats.net_io_total.recv_rate = 1500.0
        agent.send(Kind.REPORT, "SystemStats", stats, node="n1", seq=2)
        agent.expect(lambda e: e.kind == Kind.ACK and e.seq >= 2, what="the ACK of report 2")
        found = wait_for(
            lambda: (
                (s := scrape_once_up(port)).get(("labscope_node_cpu_percent", (("node", "n1"),))) is not None
                and ("labscope_collector_reports_total", ()) in s
                and s
            ),
            20,
            what="n1's cpu in /metrics",
        )
        n1 = (("node", "n1"),)
        assert found[("labscope_node_up", n1)] == 1
        assert found[("labscope_node_cpu_percent", n1)] == 37.5
        assert found[("labscope_node_memory_percent", n1)] == 61.0
        assert found[("labscope_node_load1", n1)] == 1.25
        assert found[("labscope_node_network_receive_bytes_per_second", n1)] == 1500.0
        assert found[("labscope_distribution_queue_length", (("distribution", "arch"),))] >= 0
        assert found[("labscope_distribution_dropped_total", (("distribution", "prom"), ("reason", "queue-full")))] == 0
        assert slow_scrape(port).startswith(b"HTTP/1.0 200") and scrape(port)  # and it still serves after

        agent.send(Kind.BYE, node="n1")
        gone = wait_for(
            lambda: (s := scrape(port)).get(("labscope_node_up", n1)) == 0 and s, 20, what="n1 lost in /metrics"
        )
        assert node_series(gone, "n1") == {("labscope_node_up", n1): 0.0}
        lost = wait_for(
            lambda: (s := scrape(port)).get(("labscope_collector_nodes", (("status", "lost"),))) == 1 and s,
            10,
            what="the collector counting n1 lost",
        )
        assert lost[("labscope_collector_nodes", (("status", "live"),))] == 0
    finally:
        agent.close()
    assert collector.stop() == 0
    with pytest.raises(OSError):  # the port is released at shutdown
        scrape(port)


@pytest.mark.e2e
def test_a_bad_listen_stops_the_collector_with_one_line(tmp_path: Path) -> None:
    config = tmp_path / "collector.toml"
    config.write_text('[distributions.prom]\ntype = "prometheus"\nlisten = "nowhere"\n')
    args = ["--config", str(config), "--data-dir", str(tmp_path / "data"), "--listen-agents", "tcp://127.0.0.1:*"]
    done = subprocess.run(labscope_cmd("collector", *args), capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 2, done.stderr
    line = error_line(done)
    assert "[distributions.prom]" in line and "expected HOST:PORT" in line


PROMETHEUS = "/usr/bin/prometheus"  # Debian's package


def prometheus_binary() -> str:
    """Debian's Prometheus; skips in one line without it, fails instead under CI=true."""
    found = shutil.which("prometheus") or (PROMETHEUS if Path(PROMETHEUS).exists() else None)
    if found is None:
        reason = f"{PROMETHEUS} missing (apt-get install prometheus)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI=true does not skip")
        pytest.skip(reason)
    return found


def prometheus_query(web: int, query: str) -> list[dict[str, Any]]:
    """An instant query to the Prometheus server's HTTP API; its result vector (empty before it answers)."""
    url = f"http://127.0.0.1:{web}/api/v1/query?{urllib.parse.urlencode({'query': query})}"
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return list(json.loads(answer.read())["data"]["result"])
    except urllib.error.URLError:
        return []  # not listening yet, or not ready (503)


@pytest.mark.e2e
def test_a_real_prometheus_server_scrapes_the_endpoint(procs: ProcessGroup, zmq_context: Any, tmp_path: Path) -> None:
    """Debian's Prometheus scrapes the collector every second: it takes the page; a lost node's figures go stale."""
    binary = prometheus_binary()
    port, web = free_port(), free_port()
    config = tmp_path / "collector.toml"
    config.write_text(f'[distributions.prom]\ntype = "prometheus"\nlisten = "127.0.0.1:{port}"\n')
    collector = procs.collector("--config", str(config), "--node-timeout", "120")  # n1 is lost only by its BYE
    scrape_config = tmp_path / "prometheus.yml"
    scrape_config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"scrape_configs:\n  - job_name: labscope\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
    )
    server, _ = procs._spawn(
        [
            binary,
            f"--config.file={scrape_config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{web}",
        ],
        "prometheus",
    )
    agent = Peer(zmq_context, collector.agents)  # plays agent n1
    try:
        agent.send(Kind.HELLO, "NodeInfo", NodeInfo(node="n1", hostname="h", instance="i1"), node="n1", seq=1)
        agent.expect(lambda e: e.kind == Kind.ACK, what="the ACK of the HELLO")
        agent.send(Kind.REPORT, "SystemStats", SystemStats(time=1000.0, cpu_percent=37.5), node="n1", seq=2)
        agent.expect(lambda e: e.kind == Kind.ACK and e.seq >= 2, what="the ACK of report 2")
        cpu = wait_for(
            lambda: prometheus_query(web, 'labscope_node_cpu_percent{node="n1"}'), 30, what="n1's cpu in Prometheus"
        )
        assert [(s["metric"]["job"], float(s["value"][1])) for s in cpu] == [("labscope", 37.5)]
        (up,) = prometheus_query(web, 'up{job="labscope"}')
        assert float(up["value"][1]) == 1  # the scrape succeeded: Prometheus took the whole page
        agent.send(Kind.BYE, node="n1")
        wait_for(
            lambda: not prometheus_query(web, 'labscope_node_cpu_percent{node="n1"}'), 30, what="n1's cpu gone stale"
        )
        (down,) = prometheus_query(web, 'labscope_node_up{node="n1"}')
        assert float(down["value"][1]) == 0
    finally:
        agent.close()
        server.terminate()
    assert collector.stop() == 0
