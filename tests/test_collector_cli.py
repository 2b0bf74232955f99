"""``labscope collector`` start-up errors: one line, the right exit status, no traceback."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest
import zmq

from collector import gctune
from tests.conftest import ProcessGroup, labscope_cmd, wait_for
from tests.wire import Client

pytestmark = pytest.mark.e2e

LOOPBACK = ["--listen-agents", "tcp://127.0.0.1:*", "--listen-clients", "tcp://127.0.0.1:*"]


def run_collector(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run a collector that is expected to exit by itself at start-up."""
    cmd = labscope_cmd("collector", "--data-dir", str(tmp_path / "data"), *args)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)


def error_line(done: subprocess.CompletedProcess[str]) -> str:
    """The single error line, after checking there is no traceback."""
    assert "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if "error" in line.lower()]
    assert len(lines) == 1, done.stderr
    return lines[0]


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


CYCLE_A = "from collector.addons import Aggregator\nclass A(Aggregator):\n    depends = 'cyc_b'\n"
CYCLE_B = "from collector.addons import Aggregator\nclass B(Aggregator):\n    depends = 'cyc_a'\n"


def test_cycle_exits_2_naming_both(tmp_path: Path) -> None:
    mods = tmp_path / "mods"
    write(mods, "cyc_a.py", CYCLE_A)
    write(mods, "cyc_b.py", CYCLE_B)
    done = run_collector(tmp_path, *LOOPBACK, "--modules-dir", str(mods))
    assert done.returncode == 2
    line = error_line(done)
    assert "cyc_a" in line and "cyc_b" in line and "cycle" in line


def test_conflicting_request_types_exit_2_naming_both(tmp_path: Path) -> None:
    body = (
        "from collector.addons import Aggregator\nclass X(Aggregator):\n    requesttypes = 'Dup'\n"
        "    def processREQUEST(self, msg):\n        return None\n"
    )
    mods = tmp_path / "mods"
    write(mods, "first.py", body)
    write(mods, "second.py", body)
    done = run_collector(tmp_path, *LOOPBACK, "--modules-dir", str(mods))
    assert done.returncode == 2
    line = error_line(done)
    assert "first" in line and "second" in line and "Dup" in line


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--no-such-flag"], "--no-such-flag"),
        (["--listen-agents", "tcp//nohost"], "tcp//nohost"),
        (["--listen-agents", "tcp://127.0.0.1:99999"], "99999"),
        (["--modules-dir", "/nonexistent/labscope-mods", *LOOPBACK], "/nonexistent/labscope-mods"),
        (["--node-timeout", "-1"], "-1"),
        (["--allow-agents", "/tmp", *LOOPBACK], "--allow-agents needs --curve-secret"),
        (["--curve-secret", "/nonexistent/c.key_secret", "--allow-agents", "/tmp"], "/nonexistent/c.key_secret"),
        (["--site", "lab.1", *LOOPBACK], "'lab.1': a site name is 1 to 64 letters"),
        (["--site", "lab1", *LOOPBACK], 'needs a [distributions.NAME] section with type = "nats"'),
        (["--ingest-nats", "http://x:4222", *LOOPBACK], "expected nats://HOST:PORT"),
        (["--ingest-sites", "a,b.c", "--ingest-nats", "nats://127.0.0.1:1", *LOOPBACK], "'b.c'"),
        (["--ingest-sites", "a", *LOOPBACK], "ingest_sites (--ingest-sites) needs ingest_nats"),
    ],
)
def test_bad_flags_exit_2(tmp_path: Path, args: list[str], expected: str) -> None:
    done = run_collector(tmp_path, *args)
    assert done.returncode == 2
    assert expected in error_line(done)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[collector\nlisten_agents = 1", "not valid TOML"),
        ("[collector]\nlisten_agentz = 'tcp://*:1'\n", "unknown key 'listen_agentz' in [collector]"),
        ("[collector]\nnode_timeout = 'soon'\n", "node_timeout must be"),
        ("[colector]\n", "unknown section [colector]"),
        ("[modules.systemstats]\nhistroy = 5\n", "unknown key 'histroy' in [modules.systemstats]"),
        ("[modules.systemstats]\nhistory = 0\n", "history"),
        ("[collector]\nsite = 'a b'\n", "[collector] site 'a b'"),
        ("[collector]\ningest_sites = 'a'\n", "ingest_sites must be"),
    ],
)
def test_bad_config_exits_2_naming_file_and_key(tmp_path: Path, text: str, expected: str) -> None:
    config = write(tmp_path, "labscope.toml", text)
    done = run_collector(tmp_path, *LOOPBACK, "--config", str(config))
    assert done.returncode == 2
    line = error_line(done)
    assert expected in line and str(config) in line


def test_port_in_use_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = run_collector(
            tmp_path, "--listen-agents", f"tcp://127.0.0.1:{port}", "--listen-clients", "tcp://127.0.0.1:*"
        )
    assert done.returncode == 1
    assert f"tcp://127.0.0.1:{port}" in error_line(done)


def test_help_explains_flags() -> None:
    done = subprocess.run(labscope_cmd("collector", "--help"), capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0
    for flag in ("--listen-agents", "--listen-clients", "--modules-dir", "--disable-module", "--data-dir", "--config"):
        assert flag in done.stdout


def test_a_bad_observer_exits_2_naming_it(tmp_path: Path) -> None:
    done = run_collector(tmp_path, *LOOPBACK, "--observer", "nowhere.py:Watch")
    assert done.returncode == 2
    assert "observer nowhere.py" in error_line(done) and "no such file" in error_line(done)


STARTED = """\
from pathlib import Path

from collector.observer import CollectorObserver


class Started(CollectorObserver):
    def collector_started(self, alias, agents, clients):
        (Path(__file__).parent / "started.txt").write_text(agents)
"""


def test_observers_named_in_the_config_are_found_from_its_folder(tmp_path: Path, procs: ProcessGroup) -> None:
    write(tmp_path / "conf", "started.py", STARTED)
    config = write(tmp_path / "conf", "labscope.toml", '[collector]\nobservers = ["started.py:Started"]\n')
    collector = procs.collector("--config", str(config))
    marker = tmp_path / "conf" / "started.txt"
    assert wait_for(lambda: marker.exists() and marker.read_text(), 10, what="started.txt") == collector.agents
    assert collector.stop() == 0


GC_PROBE = """
import gc
from collector.addons import Aggregator
class GcProbe(Aggregator):
    requesttypes = "GcProbe"
    def processREQUEST(self, msg):
        return {"threshold": list(gc.get_threshold()), "frozen": gc.get_freeze_count()}
"""


def test_the_command_line_collector_tunes_its_garbage_collector(
    tmp_path: Path, procs: ProcessGroup, zmq_context: zmq.Context
) -> None:
    write(tmp_path / "mods", "gc_probe.py", GC_PROBE)
    collector = procs.collector("--modules-dir", str(tmp_path / "mods"))
    client = Client(zmq_context, collector.clients)
    answer = client.answer("GcProbe")
    client.close()
    assert answer["threshold"] == [gctune.YOUNG, gctune.MIDDLE, gctune.OLD]
    assert answer["frozen"] > 10_000  # what start-up made: modules, classes, config
    assert collector.stop() == 0
