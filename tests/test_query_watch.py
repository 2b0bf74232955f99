"""``labscope query`` and ``labscope watch`` as real subprocesses against a real collector."""

from __future__ import annotations

import json
import selectors
import signal
import subprocess
import time
from collections.abc import Iterator

import msgpack
import pytest
import zmq

from gui import query, watch
from gui.client import Client
from messages import NodeList
from tests.conftest import REPO, CollectorProcess, ProcessGroup, labscope_cmd


@pytest.fixture(scope="module")
def testbed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessGroup]:
    """One real collector's process group shared by this file's tests (they only read from it)."""
    group = ProcessGroup(tmp_path_factory.mktemp("query-watch"))
    try:
        yield group
    finally:
        group.stop_all()


@pytest.fixture(scope="module")
def collector(testbed: ProcessGroup) -> CollectorProcess:
    """The shared collector, started once for the file."""
    return testbed.collector()


def run_labscope(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[bytes]:
    """Run ``labscope ARGS`` to completion and capture its output."""
    return subprocess.run(labscope_cmd(*args), capture_output=True, timeout=timeout, cwd=REPO)


def one_line(stderr: bytes) -> str:
    """The single line of ``stderr``; fails when there are more or it holds a traceback."""
    text = stderr.decode()
    assert "Traceback" not in text
    lines = text.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {lines!r}"
    return lines[0]


def free_port(context: zmq.Context) -> int:
    """A loopback port that (very likely) nobody listens on."""
    sock = context.socket(zmq.ROUTER)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    sock.close(linger=0)
    return port


def wait_node_update(endpoint: str, node: str, timeout: float) -> None:
    """Wait until the collector has pushed a NodeList update naming ``node``."""
    deadline = time.monotonic() + timeout
    with Client(endpoint) as client:
        client.subscribe(["NodeList"])
        while time.monotonic() < deadline:
            update = client.next_update(max(0.0, deadline - time.monotonic()))
            if update and isinstance(update.payload, NodeList) and node in [s.node for s in update.payload.nodes]:
                return
    raise AssertionError(f"no NodeList update named {node} within {timeout} s")


def read_line(popen: subprocess.Popen[bytes], timeout: float) -> bytes:
    """One line of the process's stdout, waiting at most ``timeout`` s."""
    assert popen.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(popen.stdout, selectors.EVENT_READ)
        assert selector.select(timeout), f"no output within {timeout} s"
    return popen.stdout.readline()


# ---------------------------------------------------------------- query


@pytest.mark.e2e
def test_query_collector_stats_prints_json(collector):
    result = run_labscope("query", "--collector", collector.clients, "CollectorStats")
    assert result.returncode == 0, result.stderr
    stats = json.loads(result.stdout)
    assert isinstance(stats, dict) and "uptime" in stats
    assert result.stdout.startswith(b"{\n  "), "JSON is indented by 2"


@pytest.mark.e2e
def test_query_unknown_type_exits_1_with_one_line(collector):
    result = run_labscope("query", "--collector", collector.clients, "NoSuchRequest", "a=b")
    assert result.returncode == 1
    assert one_line(result.stderr).startswith("labscope query: error: unknown-type: ")
    assert result.stdout == b""


@pytest.mark.e2e
def test_query_raw_gives_the_payload_bytes(collector):
    result = run_labscope("query", "--collector", collector.clients, "CollectorStats", "--raw")
    assert result.returncode == 0, result.stderr
    stats = msgpack.unpackb(result.stdout, raw=False)
    assert isinstance(stats, dict) and "uptime" in stats


@pytest.mark.e2e
def test_query_timeout_when_nobody_listens(zmq_context):
    endpoint = f"tcp://127.0.0.1:{free_port(zmq_context)}"
    start = time.monotonic()
    result = run_labscope("query", "--collector", endpoint, "--timeout", "0.5", "CollectorStats", timeout=15)
    assert time.monotonic() - start < 10
    assert result.returncode == 1
    line = one_line(result.stderr)
    assert line == f"labscope query: error: no answer from {endpoint} after 0.5 s (is the collector running?)"


@pytest.mark.e2e
def test_query_bad_parameter_exits_2_through_the_dispatcher():
    result = run_labscope("query", "--collector", "tcp://127.0.0.1:5556", "NodeList", "node")
    assert result.returncode == 2
    assert "'node' is not key=value" in one_line(result.stderr)


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--collector", "tcp://127.0.0.1:5556", "NodeList", "=x"], "not key=value"),
        (["--collector", "tcp://127.0.0.1", "NodeList"], "malformed endpoint"),
        (["--collector", "tcp://127.0.0.1:*", "NodeList"], "only allowed where labscope binds"),
        (["NodeList"], "--collector"),
        (["--collector", "tcp://127.0.0.1:5556", "NodeList", "--timeout", "-1"], "greater than 0"),
        (["--collector", "tcp://127.0.0.1:5556"], "TYPE"),
    ],
)
def test_query_bad_args_exit_2_with_one_line(argv, fragment, capsys):
    with pytest.raises(SystemExit) as caught:
        query.main(argv)
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("labscope query: error: ") and fragment in err


def test_query_parses_params():
    parser = query.build_parser()
    assert query.parse_params(parser, ["node=n1", "path=a=b", "empty="]) == {"node": "n1", "path": "a=b", "empty": ""}


# ---------------------------------------------------------------- watch


@pytest.mark.e2e
def test_watch_nodelist_count_1_prints_one_json_line(testbed, collector):
    testbed.agent(collector.agents, "watched-node")
    wait_node_update(collector.clients, "watched-node", 20)  # so the latest update, sent first, names it
    result = run_labscope("watch", "--collector", collector.clients, "NodeList", "--count", "1", "--timeout", "20")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.decode().splitlines()
    assert len(lines) == 1
    update = json.loads(lines[0])
    assert set(update) == {"type", "time", "payload"}
    assert update["type"] == "NodeList" and abs(update["time"] - time.time()) < 60
    assert "watched-node" in [node["node"] for node in update["payload"]["nodes"]]


@pytest.mark.e2e
def test_watch_timeout_exits_1_when_no_update_comes(collector):
    start = time.monotonic()
    # FileList is pushed only after a file arrives, and no test here sends one
    result = run_labscope("watch", "--collector", collector.clients, "FileList", "--timeout", "0.5")
    assert time.monotonic() - start < 10
    assert result.returncode == 1
    assert one_line(result.stderr) == (
        f"labscope watch: error: no FileList update from {collector.clients} for 0.5 s (is the collector running?)"
    )
    assert result.stdout == b""


@pytest.mark.e2e
def test_watch_unknown_type_exits_2_naming_it_and_the_known_ones(collector):
    start = time.monotonic()
    result = run_labscope("watch", "--collector", collector.clients, "NoSuchType", "--timeout", "20")
    assert time.monotonic() - start < 10, "the refusal must come at once, not after --timeout"
    assert result.returncode == 2
    assert one_line(result.stderr) == (
        "labscope watch: error: unknown-type: no module pushes update type 'NoSuchType' "
        "(known: Events, FileList, NodeList, SystemStatsSummary; '*' for every type)"
    )
    assert result.stdout == b""


@pytest.mark.e2e
def test_watch_ctrl_c_exits_0_quietly(collector):
    popen = subprocess.Popen(
        labscope_cmd("watch", "--collector", collector.clients, "NodeList"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO,
    )
    try:
        first = json.loads(read_line(popen, 20))
        assert first["type"] == "NodeList"
        popen.send_signal(signal.SIGINT)
        assert popen.wait(10) == 0
        assert popen.stderr is not None and popen.stderr.read() == b""
    finally:
        if popen.poll() is None:
            popen.kill()
            popen.wait(5)


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--collector", "tcp://127.0.0.1:5556", "NodeList", "--count", "0"], "at least 1"),
        (["--collector", "tcp://127.0.0.1:5556", "NodeList", "--count", "x"], "not a whole number"),
        (["--collector", "tcp://nowhere", "NodeList"], "malformed endpoint"),
        (["--collector", "tcp://127.0.0.1:5556", "NodeList", "--timeout", "0"], "greater than 0"),
        (["--collector", "tcp://127.0.0.1:5556", "NodeList", "--bogus"], "--bogus"),
    ],
)
def test_watch_bad_args_exit_2_with_one_line(argv, fragment, capsys):
    with pytest.raises(SystemExit) as caught:
        watch.main(argv)
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("labscope watch: error: ") and fragment in err
