"""Shared fixtures: real collector and agent processes on 127.0.0.1 with random ports, and the fake collector.

Every process a test starts is stopped at teardown; every wait polls with a deadline. A test that
starts processes is marked ``e2e``; one that is not cannot start any (``make unit`` starts none).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import zmq

from tests.fakes import FakeCollector, Handler

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"

# A suite started with SIGINT ignored (a background job of a non-interactive shell, nohup, some CI
# runners) passes that on to every child, and a Python child then never raises KeyboardInterrupt:
# the tests that stop `labscope watch` or `labscope demo` with Ctrl-C would wait for nothing.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def labscope_cmd(*args: str) -> list[str]:
    """The command line that runs ``labscope ARGS`` with this interpreter."""
    return [sys.executable, "-m", "labscope", *args]


def wait_for(predicate: Callable[[], object], timeout: float, interval: float = 0.05, what: str = "condition"):
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


@dataclass
class CollectorProcess:
    """A running ``labscope collector`` and the endpoints it bound."""

    popen: subprocess.Popen
    data_dir: Path
    agents: str = ""
    clients: str = ""
    log_path: Path = field(default_factory=Path)

    def log(self) -> str:
        """Everything the collector wrote to stderr/stdout so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> int:
        """Signal the collector and wait for it to exit; returns its exit status."""
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            return self.popen.wait(5)


def _endpoints(data_dir: Path, popen: subprocess.Popen, log_path: Path) -> dict | None:
    if popen.poll() is not None:
        raise AssertionError(f"collector exited with {popen.returncode}: {log_path.read_text()[-3000:]}")
    path = data_dir / "collector.json"
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError:
        return None


class ProcessGroup:
    """Starts labscope processes for one test and stops them all at teardown."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.procs: list[subprocess.Popen] = []
        self.counter = 0

    def _spawn(self, args: list[str], name: str, inside: Any = None) -> tuple[subprocess.Popen, Path]:
        """Start ``args`` (inside network namespace ``inside``, a tests.netns.Namespace, when given)."""
        if inside is not None:
            args = inside.command(args)
        self.counter += 1
        log_path = self.tmp_path / f"{name}-{self.counter}.log"
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with open(log_path, "wb") as log:
            popen = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        self.procs.append(popen)
        return popen, log_path

    def collector(
        self, *extra: str, data_dir: Path | None = None, timeout: float = 20, inside: Any = None
    ) -> CollectorProcess:
        """Start a collector on random loopback ports (in namespace ``inside``); returns once it has bound them."""
        data_dir = data_dir or self.tmp_path / f"collector-data-{self.counter + 1}"
        data_dir.mkdir(parents=True, exist_ok=True)
        (data_dir / "collector.json").unlink(missing_ok=True)
        args = labscope_cmd(
            "collector",
            "--listen-agents",
            "tcp://127.0.0.1:*",
            "--listen-clients",
            "tcp://127.0.0.1:*",
            "--data-dir",
            str(data_dir),
            *extra,
        )
        popen, log_path = self._spawn(args, "collector", inside)
        info = wait_for(lambda: _endpoints(data_dir, popen, log_path), timeout, what="collector.json")
        return CollectorProcess(popen, data_dir, info["agents"], info["clients"], log_path)

    def agent(self, collector: str, node_id: str, *extra: str, interval: float = 0.2) -> subprocess.Popen:
        """Start ``labscope agent`` for ``node_id`` reporting every ``interval`` s."""
        args = labscope_cmd(
            "agent",
            "--collector",
            collector,
            "--node-id",
            node_id,
            "--interval",
            str(interval),
            "--data-dir",
            str(self.tmp_path / f"agent-{node_id}"),
            *extra,
        )
        popen, _ = self._spawn(args, f"agent-{node_id}")
        return popen

    def stop_all(self) -> None:
        """Terminate every process still running, the last started first, killing a straggler.

        Agents stop before their collector: one whose collector went at the same moment would wait
        out its last flush (a second) for acknowledgements that cannot come.
        """
        for popen in reversed(self.procs):
            if popen.poll() is None:
                popen.terminate()
            try:
                popen.wait(10)
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait(5)


@pytest.fixture(autouse=True)
def _unmarked_tests_start_no_process(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A test not marked ``e2e`` cannot start a process: ``make unit`` (``-m "not e2e"``) starts none."""
    if request.node.get_closest_marker("e2e") is not None:
        return

    def refuse(popen: subprocess.Popen, args: Any, *rest: Any, **options: Any) -> None:
        raise AssertionError(f"{request.node.nodeid} starts a process ({args!r}); mark it @pytest.mark.e2e")

    monkeypatch.setattr(subprocess.Popen, "_execute_child", refuse)


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[ProcessGroup]:
    """Start real labscope processes; all are stopped when the test ends."""
    group = ProcessGroup(tmp_path)
    yield group
    group.stop_all()


@pytest.fixture
def zmq_context() -> Iterator[zmq.Context]:
    """A fresh ZeroMQ context whose sockets are closed with linger 0 at teardown."""
    ctx = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


@pytest.fixture
def fake_collector(zmq_context: zmq.Context) -> Iterator[Callable[..., FakeCollector]]:
    """Make fake collectors (tests/fakes.py) on the test's context: ``fake_collector(handler, port=, info=)``.

    Each is closed (its serving thread stopped first) at teardown.
    """
    made: list[FakeCollector] = []

    def make(handler: Handler | None = None, **options: Any) -> FakeCollector:
        fake = FakeCollector(zmq_context, handler, **options)
        made.append(fake)
        return fake

    yield make
    for fake in made:
        fake.close()
