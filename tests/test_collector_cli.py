"""``labscope collector`` start-up errors: one line, the right exit status, no traceback."""

from __future__ import annotations

import platform
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import zmq

from collector import gctune, malloc_tune
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


HEAP_PROBE = """
import ctypes
from collector.addons import Aggregator

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = (ctypes.c_size_t,)
libc.free.argtypes = (ctypes.c_void_p,)

def mapped_by_malloc(size):
    # How many mmapped chunks one malloc of ``size`` bytes added (0: it came from a heap).
    before = libc.mallinfo2().hblks
    block = libc.malloc(size)
    mapped = libc.mallinfo2().hblks - before
    libc.free(block)
    return mapped

class HeapProbe(Aggregator):
    requesttypes = "HeapProbe"
    def processREQUEST(self, msg):
        return {"mapped": mapped_by_malloc(3 * 2**20)}
"""

glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc tuning is for glibc only")


def heap_probe_answer(tmp_path: Path, procs: ProcessGroup, zmq_context: zmq.Context) -> int:
    """How many mmapped chunks a 3 MiB malloc adds inside a real command-line collector."""
    write(tmp_path / "mods", "heap_probe.py", HEAP_PROBE)
    collector = procs.collector("--modules-dir", str(tmp_path / "mods"))
    client = Client(zmq_context, collector.clients)
    mapped = int(client.answer("HeapProbe")["mapped"])
    client.close()
    assert collector.stop() == 0
    return mapped


@glibc_only
def test_the_command_line_collector_serves_chunk_sized_buffers_from_its_heap(
    tmp_path: Path, procs: ProcessGroup, zmq_context: zmq.Context
) -> None:
    assert 3 * 2**20 < malloc_tune.MMAP_THRESHOLD
    probe = write(tmp_path / "mods", "heap_probe.py", HEAP_PROBE)
    plain = f"import runpy; print(runpy.run_path({str(probe)!r})['mapped_by_malloc'](3 * 2**20))"
    done = subprocess.run([sys.executable, "-c", plain], capture_output=True, text=True, timeout=30, check=True)
    assert done.stdout.strip() == "1"  # glibc's default: a block that large is mmapped (and faulted in afresh)
    assert heap_probe_answer(tmp_path, procs, zmq_context) == 0


@glibc_only
def test_an_operators_own_malloc_threshold_is_left_alone(
    tmp_path: Path, procs: ProcessGroup, zmq_context: zmq.Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", str(2**20))
    assert malloc_tune.operator_chose()
    assert heap_probe_answer(tmp_path, procs, zmq_context) == 1


def test_only_the_environments_malloc_knobs_count_as_an_operators_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "GLIBC_TUNABLES"):
        monkeypatch.delenv(name, raising=False)
    assert not malloc_tune.operator_chose()
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.rtld.optional_static_tls=512")
    assert not malloc_tune.operator_chose()
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=1048576")
    assert malloc_tune.operator_chose()
    assert not malloc_tune.keep_chunk_buffers()  # the operator's choice stands: nothing is set
