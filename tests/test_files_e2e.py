"""Files end to end with real processes: fetch through the collector, watched folders, hostile names.

One collector (``--node-timeout 2``) and one agent ``n1`` (a serve folder and a
watched folder) are shared by the tests of this file; the tests that kill a
node or need another module set start their own.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import zmq

from messages import File, Files, Kind, NodeInfo
from tests.conftest import FIXTURES, CollectorProcess, ProcessGroup, labscope_cmd, wait_for
from tests.wire import Client, Peer

pytestmark = pytest.mark.e2e

MIB = 1024 * 1024
RSS_LIMIT = 150 * MIB


@dataclass
class Bed:
    """The shared collector and agent, and a client of the collector."""

    collector: CollectorProcess
    agent: subprocess.Popen
    client: Client
    serve: Path
    watch: Path
    root: Path


def live(client: Client, node: str) -> bool:
    return any(n.node == node and n.status == "live" for n in client.answer("NodeList").nodes)


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bed]:
    root = tmp_path_factory.mktemp("files-e2e")
    serve, watch = root / "serve", root / "watch"
    serve.mkdir()
    watch.mkdir()
    group = ProcessGroup(root)
    context = zmq.Context()
    try:
        collector = group.collector("--node-timeout", "2")
        agent = group.agent(
            collector.agents,
            "n1",
            "--serve-dir",
            str(serve),
            "--watch-dir",
            str(watch),
            "--watch-interval",
            "0.2",
            interval=1.0,
        )
        client = Client(context, collector.clients)
        wait_for(lambda: live(client, "n1"), 20, what="node n1 live")
        yield Bed(collector, agent, client, serve, watch, root)
        client.close()
    finally:
        group.stop_all()
        context.destroy(linger=0)


def fetch(bed: Bed, source: str, output: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    args = labscope_cmd("fetch", "--collector", bed.collector.clients, source, "-o", str(output))
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout)


def write_random(path: Path, size: int) -> str:
    """Write ``size`` random bytes a MiB at a time; returns their SHA-256."""
    digest = hashlib.sha256()
    with open(path, "wb") as handle:
        for start in range(0, size, MIB):
            block = os.urandom(min(MIB, size - start))
            digest.update(block)
            handle.write(block)
    return digest.hexdigest()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(MIB):
            digest.update(block)
    return digest.hexdigest()


# ------------------------------------------------------------------------------------ fetch


@pytest.mark.timeout(150)
def test_200_mib_fetch_is_exact_and_no_process_grows_past_150_mib(bed: Bed) -> None:
    source = bed.serve / "big.bin"
    expected = write_random(source, 200 * MIB)
    output = bed.root / "out" / "big.bin"
    popen = subprocess.Popen(
        labscope_cmd("fetch", "--collector", bed.collector.clients, "n1:big.bin", "-o", str(output)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    watched = {"collector": bed.collector.popen.pid, "agent": bed.agent.pid, "fetch": popen.pid}
    peaks = sample_rss(popen, watched, timeout=120)
    _, stderr = popen.communicate(timeout=10)
    try:
        assert popen.returncode == 0, stderr
        assert sha256_of(output) == expected and "verified" in stderr
        assert all(peak < RSS_LIMIT for peak in peaks.values()), {k: v / MIB for k, v in peaks.items()}
        assert peaks["fetch"] > 0 and peaks["agent"] > 0, "RSS was really sampled"
    finally:
        source.unlink()
        output.unlink(missing_ok=True)


def sample_rss(popen: subprocess.Popen[str], pids: dict[str, int], timeout: float) -> dict[str, int]:
    """Peak RSS of each process while ``popen`` runs, sampled every 20 ms."""
    procs = {name: psutil.Process(pid) for name, pid in pids.items()}
    peaks = dict.fromkeys(pids, 0)
    deadline = time.monotonic() + timeout
    while popen.poll() is None:
        assert time.monotonic() < deadline, "fetch did not finish in time"
        for name, proc in procs.items():
            try:
                peaks[name] = max(peaks[name], proc.memory_info().rss)
            except psutil.Error:
                pass
        try:
            popen.wait(0.02)
        except subprocess.TimeoutExpired:
            pass
    return peaks


@pytest.mark.parametrize(
    "path, code",
    [
        ("/etc/passwd", "denied"),
        ("SERVE/../../etc/passwd", "denied"),
        ("../etc/passwd", "denied"),
        ("missing.bin", "not-found"),
    ],
)
def test_refused_fetch_exits_1_with_one_line_and_leaves_no_file(bed: Bed, path: str, code: str) -> None:
    out = bed.root / f"refused-{uuid.uuid4().hex[:8]}"
    result = fetch(bed, "n1:" + path.replace("SERVE", str(bed.serve)), out / "x")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f": {code}: " in lines[0] and "Traceback" not in result.stderr, result.stderr
    assert not out.exists() or list(out.iterdir()) == [], "a refused fetch leaves no file, not even a temporary"


def test_fetch_from_a_killed_node_fails_quickly(bed: Bed, procs: ProcessGroup) -> None:
    (bed.serve / "small.txt").write_bytes(b"small")
    agent = procs.agent(bed.collector.agents, "n2", "--serve-dir", str(bed.serve))
    wait_for(lambda: live(bed.client, "n2"), 20, what="node n2 live")
    assert fetch(bed, "n2:small.txt", bed.root / "alive.txt").returncode == 0
    agent.send_signal(signal.SIGKILL)
    agent.wait(5)
    started = time.monotonic()
    result = fetch(bed, "n2:small.txt", bed.root / "dead.txt")
    took = time.monotonic() - started
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "node-lost" in result.stderr and took < 6.0, (took, result.stderr)
    assert not (bed.root / "dead.txt").exists()


# ------------------------------------------------------------------------------ watched folders


def stored(bed: Bed, node: str, name: str) -> Path:
    return bed.collector.data_dir / "modules" / "files" / node / name


def test_watched_files_arrive_in_the_store_byte_for_byte(bed: Bed) -> None:
    (bed.watch / "run").mkdir()
    small = b"step,loss\n1,0.5\n"
    (bed.watch / "run" / "metrics.csv").write_bytes(small)
    large = os.urandom(3 * MIB + 17)
    (bed.watch / "capture.bin").write_bytes(large)

    def arrived() -> bool:
        return all(stored(bed, "n1", name).exists() for name in ("run/metrics.csv", "capture.bin"))

    wait_for(arrived, 20, what="both watched files in the store")
    assert stored(bed, "n1", "run/metrics.csv").read_bytes() == small
    assert stored(bed, "n1", "capture.bin").read_bytes() == large
    listing = {f["name"]: f["size"] for f in bed.client.answer("FileList", node="n1")}
    assert listing == {"run/metrics.csv": len(small), "capture.bin": len(large)}
    served = bed.client.ask("File", node="n1", filename="run/metrics.csv")
    assert Files.FromString(served.payload).files[0].data == small


def test_hostile_file_names_write_nothing_outside_the_store(bed: Bed) -> None:
    before = bed.client.answer("FileStats")["refused"]
    escape = f"/tmp/labscope-hostile-{uuid.uuid4().hex}"
    peer = Peer(bed.client.socket.context, bed.collector.agents)
    try:
        peer.send(Kind.HELLO, "NodeInfo", NodeInfo(node="evil", instance="evil-1"), node="evil", seq=1)
        peer.expect(lambda e: e.kind == Kind.ACK, what="ACK after HELLO")
        hostile = Files(
            files=[
                File(name="../../x", data=b"evil", size=4, last=True),
                File(name=escape, data=b"evil", size=4, last=True),
                File(name="ok.txt", data=b"fine", size=4, last=True),
            ]
        )
        peer.send(Kind.REPORT, "FileOutput", hostile, node="evil", seq=1)
        peer.expect(lambda e: e.kind == Kind.ACK and e.seq == 1, what="ACK of the hostile report")
    finally:
        peer.close()
    wait_for(lambda: bed.client.answer("FileStats")["refused"] == before + 2, 10, what="two refused names")
    store = bed.collector.data_dir / "modules" / "files"
    assert not (store / "evil" / "../../x").resolve().exists() and not Path(escape).exists()
    assert not (bed.collector.data_dir / "x").exists()
    assert stored(bed, "evil", "ok.txt").read_bytes() == b"fine", "the good file of the same report is kept"
    assert bed.collector.popen.poll() is None and live(bed.client, "n1"), "the collector keeps serving"


# -------------------------------------------------------------------------- the classic module


def test_classic_file_processor_round_trips_a_classic_probe(procs: ProcessGroup, zmq_context: zmq.Context) -> None:
    collector = procs.collector(
        "--modules-dir", str(FIXTURES / "modules"), "--disable-module", "files", "--disable-module", "raising"
    )
    procs.agent(collector.agents, "c1", "--probes-dir", str(FIXTURES / "probes_classic"))
    client = Client(zmq_context, collector.clients)
    try:

        def names() -> list[str]:
            answer = client.ask("FileList")
            assert answer.kind == Kind.RESPONSE, answer.error
            return [f.name for f in Files.FromString(answer.payload).files]

        assert wait_for(names, 20, what="a FileList with the classic file") == ["classic/report.txt"]
        files = Files.FromString(client.ask("File", filename="classic/report.txt").payload)
        assert [(f.name, f.data, f.modtime) for f in files.files] == [
            ("classic/report.txt", b"written by a classic probe\n", 1700000000.0)
        ]
        missing = client.ask("File", filename="nope")
        assert (missing.kind, missing.error_code) == (Kind.ERROR, "not-found")
    finally:
        client.close()
