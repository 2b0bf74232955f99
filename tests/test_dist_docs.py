"""docs/distributions.md is real: its complete example runs, and its sample config blocks are valid.

The example is the fenced ``python`` block after ``<!-- example: distribution (FILENAME) -->``; it is
written to FILENAME in a temporary folder and loaded the way the collector loads a drop-in, then run
against a real TCP server on 127.0.0.1: in a runner alone, and in a real collector fed by a real agent.
"""

from __future__ import annotations

import re
import socket
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from collector import dist_loader
from collector.config import dist_sections
from collector.dist import DistCore
from collector.dist_runner import Runner
from messages import ConfigError
from tests.conftest import ProcessGroup, wait_for
from tests.wire import Client

DOC = Path(__file__).resolve().parent.parent / "docs" / "distributions.md"
EXAMPLE = re.compile(r"<!-- example: distribution \(([\w.]+)\) -->\s*```python\n(.*?)\n```", re.DOTALL)

pytestmark = pytest.mark.timeout(60)


def write_example(folder: Path) -> Path:
    (found,) = EXAMPLE.findall(DOC.read_text())
    filename, source = found
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / filename
    path.write_text(source + "\n")
    return path


class LineServer:
    """A TCP server on 127.0.0.1 that keeps every line it receives; ``drop()`` closes its connections."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.lines: list[str] = []
        self.accepted = 0
        self.conns: list[socket.socket] = []
        self.running = True
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while self.running:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            self.conns.append(conn)
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        buffer = b""
        with conn:
            while chunk := _recv(conn):
                buffer += chunk
                *done, buffer = buffer.split(b"\n")
                self.lines.extend(line.decode() for line in done)

    def drop(self) -> None:
        for conn in self.conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by its reader
        self.conns.clear()

    def close(self) -> None:
        self.running = False
        self.drop()
        self.sock.close()


def _recv(conn: socket.socket) -> bytes:
    try:
        return conn.recv(65536)
    except OSError:
        return b""


@pytest.fixture
def server() -> Iterator[LineServer]:
    srv = LineServer()
    yield srv
    srv.close()


def load(tmp_path: Path, section_text: str) -> tuple[Any, Any]:
    write_example(tmp_path / "dists")
    (section,) = dist_sections(tomllib.loads(section_text), "doc.toml")
    cls = dist_loader.load_class(section, [tmp_path / "dists"], "doc.toml")
    return section, (cls, dist_loader.check_section(cls, section, "doc.toml"))


def test_the_example_sends_lines_and_reconnects(tmp_path: Path, server: LineServer) -> None:
    section, (cls, values) = load(tmp_path, f'[distributions.g]\ntype = "graphite"\nport = {server.port}\n')
    dist = cls(DistCore("g", "graphite", "points", "test", tmp_path / "data"))
    dist.configure(values)
    runner = Runner(section, dist, lambda *a: None)
    runner.start()
    try:
        runner.put(("n1/cpu_percent", 12.5, 1000.9, None))
        runner.put(("n1/name", "not a number", 1000.0, None))
        runner.put((None, "lab.1", ("load1", "up"), (0.5, True), 1001.0, None))
        wait_for(lambda: len(server.lines) >= 2, 10, what="two lines")
        assert server.lines == ["labscope.n1.cpu_percent 12.5 1000", "labscope.lab_1.load1 0.5 1001"]
        server.drop()

        def fed_and_seen() -> bool:  # the first sends after a drop may vanish in TCP; later ones must arrive
            runner.put(("n1/x", 1.0, 1002.0, None))
            return server.accepted == 2 and "labscope.n1.x 1.0 1002" in server.lines

        wait_for(fed_and_seen, 15, interval=0.2, what="lines after a reconnect")
    finally:
        runner.stop()
        assert runner.join(10)
    assert dist.sock is None  # closed at stop


def test_the_example_checks_its_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="port: expected at most 65535"):
        load(tmp_path, '[distributions.g]\ntype = "graphite"\nport = 70000\n')
    with pytest.raises(ConfigError, match="unknown key 'hots'"):
        load(tmp_path, '[distributions.g]\ntype = "graphite"\nhots = "x"\n')
    _, (cls, values) = load(tmp_path, '[distributions.g]\ntype = "graphite"\nprefix = "lab 1"\n')
    with pytest.raises(ConfigError, match="expected dotted words"):
        cls(DistCore("g", "graphite")).configure(values)


@pytest.mark.e2e
def test_the_example_runs_in_a_real_collector(
    procs: ProcessGroup, zmq_context: Any, tmp_path: Path, server: LineServer
) -> None:
    folder = write_example(tmp_path / "dists").parent
    config = tmp_path / "collector.toml"
    config.write_text(
        f'[distributions.graphite]\ntype = "graphite"\nport = {server.port}\ncodes = ["*/cpu_percent", "collector/*"]\n'
    )
    collector = procs.collector("--distributions-dir", str(folder), "--config", str(config))
    procs.agent(collector.agents, "n1", interval=0.2)
    wait_for(
        lambda: any(line.startswith("labscope.n1.cpu_percent ") for line in server.lines),
        30,
        what="the agent's cpu_percent at the server",
    )
    wait_for(
        lambda: any(line.startswith("labscope.collector.nodes_live ") for line in server.lines),
        10,
        what="the collector's own figures",
    )
    assert {line.split(" ")[0] for line in server.lines} <= {
        "labscope.n1.cpu_percent",
        *(
            f"labscope.collector.{m}"
            for m in (
                "reports_total",
                "nodes_total",
                "nodes_live",
                "bad_reports_total",
                "module_errors_total",
                "dist_dropped_total",
                "uptime",
            )
        ),
    }
    client = Client(zmq_context, collector.clients)
    try:
        stats = client.answer("Distributions")["graphite"]
        assert stats["connected"] and stats["sent"] > 0 and stats["errors"] == 0
    finally:
        client.close()


def test_every_sample_config_block_in_the_doc_is_a_valid_section() -> None:
    blocks = re.findall(r"```toml\n(.*?)\n```", DOC.read_text(), re.DOTALL)
    sections = [s for block in blocks for s in dist_sections(tomllib.loads(block), "doc")]
    assert {s.type for s in sections} >= {"jsonl", "custom", "graphite"}
    for section in sections:
        if section.type != "graphite":  # the example's own type lives in the example, not the built-ins
            cls = dist_loader.load_class(section, [], "doc")
            dist_loader.check_section(cls, section, "doc")
