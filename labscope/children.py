"""Child processes of the commands that start others (demo, bench).

Each child runs in its own session with its output in a log file; leaving a
``Children`` block stops every child (SIGTERM, a bounded wait, then SIGKILL),
also on errors and Ctrl-C. When a child dies early, its last log lines travel
in the ChildFailure raised.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from messages.errors import ChildFailure

COLLECTOR_WAIT = 20.0  # seconds for the collector to bind and write collector.json
STOP_WAIT = 5.0  # seconds for the children to exit after SIGTERM before SIGKILL
TAIL_LINES = 20

log = logging.getLogger(__name__)


@dataclass
class Child:
    """A process the demo started, with its log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    def tail(self, lines: int = TAIL_LINES) -> list[str]:
        """The last ``lines`` lines of the child's log."""
        try:
            return self.log_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return []

    def failure(self, reason: str) -> ChildFailure:
        """A ChildFailure naming this child and carrying its log's tail."""
        return ChildFailure(f"{self.name} {reason}; last lines of {self.log_path.name}:", self.tail())


class Children:
    """The processes of one demo; leaving the ``with`` block stops every one of them."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.children: list[Child] = []

    def start(self, name: str, args: list[str]) -> Child:
        """Start ``args`` with output to ``FOLDER/NAME.log``, in its own session."""
        log_path = self.folder / f"{name}.log"
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with open(log_path, "wb") as out:
            # Own session: a Ctrl-C on the terminal reaches only the demo, which then stops
            # the children in order instead of racing them.
            popen = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        child = Child(name, popen, log_path)
        self.children.append(child)
        return child

    def check(self) -> None:
        """Raise ChildFailure for the first child that has exited."""
        for child in self.children:
            status = child.popen.poll()
            if status is not None:
                raise child.failure(f"exited early with status {status}")

    def stop(self, timeout: float = STOP_WAIT) -> None:
        """SIGTERM the children (agents first), wait up to ``timeout`` s, then SIGKILL."""
        with _ignoring_sigint():
            for child in reversed(self.children):
                _signal(child, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            for child in reversed(self.children):
                _wait_or_kill(child, max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> Children:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _signal(child: Child, sig: int) -> None:
    if child.popen.poll() is None:
        try:
            child.popen.send_signal(sig)
        except ProcessLookupError:
            pass


def _wait_or_kill(child: Child, timeout: float) -> None:
    try:
        child.popen.wait(timeout)
    except subprocess.TimeoutExpired:
        log.warning("%s did not stop within %s s; killing it", child.name, STOP_WAIT)
        child.popen.kill()
        child.popen.wait(STOP_WAIT)


@contextmanager
def _ignoring_sigint() -> Iterator[None]:
    """Ignore Ctrl-C while the children are being stopped, so cleanup is never cut short."""
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread: nothing to shield
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def labscope_args(*args: str) -> list[str]:
    """The command line of ``labscope ARGS`` with this interpreter."""
    return [sys.executable, "-m", "labscope", *args]


def local_collector_args(data_dir: Path, *extra: str) -> list[str]:
    """``labscope collector`` on random loopback ports with ``data_dir`` (the demo's and the bench's)."""
    return labscope_args(
        "collector",
        "--listen-agents",
        "tcp://127.0.0.1:*",
        "--listen-clients",
        "tcp://127.0.0.1:*",
        "--data-dir",
        str(data_dir),
        *extra,
    )


def read_endpoints(path: Path) -> dict[str, Any] | None:
    """The collector's endpoints file, or None while it is missing or half-written."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("agents") and data.get("clients") else None


def wait_collector(collector: Child, data_dir: Path, timeout: float = COLLECTOR_WAIT) -> dict[str, Any]:
    """Wait for ``collector.json``; raises ChildFailure when the collector dies or is too slow."""
    deadline = time.monotonic() + timeout
    while (endpoints := read_endpoints(data_dir / "collector.json")) is None:
        if time.monotonic() > deadline:
            raise collector.failure(f"wrote no collector.json within {timeout:g} s")
        try:
            status = collector.popen.wait(0.1)  # the poll interval doubles as a death check
        except subprocess.TimeoutExpired:
            continue
        raise collector.failure(f"exited early with status {status}")
    return endpoints


# The demo's name for it, kept for readers of demo code.
DemoFailure = ChildFailure
