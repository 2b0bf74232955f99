"""A JetStream target for ``labscope bench``'s distributions section.

The shared server on 127.0.0.1:4222 when it answers, else a ``nats-server -js``
the bench starts on a free port (``/usr/sbin/nats-server`` or one on PATH). The
stream is new for every run (``LSBENCH<hex>``, subjects ``lsbench<hex>.>``),
capped in bytes so that it never grows without bound, and deleted at the end.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from messages.errors import LabscopeError

__all__ = ["SHARED_URL", "STREAM_BYTES", "JetStreamTarget", "JetStreamUnavailableError", "jetstream_target"]

SHARED_URL = "nats://127.0.0.1:4222"
STREAM_BYTES = 256 * 2**20  # the run's stream keeps at most this much (oldest messages go first)
SERVER_WAIT = 15.0  # seconds for our own nats-server to listen


class JetStreamUnavailableError(LabscopeError):
    """No JetStream to publish to: nats-py missing, or no server and no nats-server to start."""


@dataclass
class JetStreamTarget:
    """Where the ``nats`` distribution publishes during one bench run."""

    url: str
    stream: str
    prefix: str
    where: str  # for the note: which server this is

    def config(self, name: str) -> str:
        """The ``[distributions.NAME]`` TOML block of a reports-mode ``nats`` distribution to this stream."""
        return (
            f'[distributions.{name}]\ntype = "nats"\nmode = "reports"\n'
            f'url = "{self.url}"\nstream = "{self.stream}"\nprefix = "{self.prefix}"\n'
        )

    def messages(self) -> int:
        """Messages in the stream now."""
        return int(_run(self._stream_messages()))

    async def _stream_messages(self) -> int:
        import nats

        nc = await nats.connect(self.url, connect_timeout=5, allow_reconnect=False)
        try:
            return int((await nc.jetstream().stream_info(self.stream)).state.messages)
        finally:
            await nc.close()


def reachable(port: int, host: str = "127.0.0.1") -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


async def _add_stream(url: str, stream: str, prefix: str) -> None:
    import nats

    nc = await nats.connect(url, connect_timeout=5, allow_reconnect=False)
    try:
        await nc.jetstream().add_stream(
            name=stream, subjects=[f"{prefix}.>"], max_bytes=STREAM_BYTES, duplicate_window=10.0
        )
    finally:
        await nc.close()


async def _delete_stream(url: str, stream: str) -> None:
    import nats

    nc = await nats.connect(url, connect_timeout=5, allow_reconnect=False)
    try:
        await nc.jetstream().delete_stream(stream)
    finally:
        await nc.close()


@contextmanager
def nats_server(folder: Path) -> Iterator[tuple[str, str]]:
    """(url, description) of a JetStream server: the shared one, or our own on a free port."""
    if reachable(4222):
        yield SHARED_URL, f"the JetStream server at {SHARED_URL}"
        return
    binary = shutil.which("nats-server") or (
        "/usr/sbin/nats-server" if Path("/usr/sbin/nats-server").exists() else None
    )
    if binary is None:
        raise JetStreamUnavailableError(
            "no NATS server on 127.0.0.1:4222 and no nats-server binary (apt-get install nats-server)"
        )
    port = free_port()
    store = folder / "nats-js"
    store.mkdir(exist_ok=True)
    server = subprocess.Popen(
        [binary, "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(store)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + SERVER_WAIT
        while not reachable(port):
            if time.monotonic() > deadline or server.poll() is not None:
                raise JetStreamUnavailableError(f"{binary} did not listen on 127.0.0.1:{port} within {SERVER_WAIT:g} s")
            time.sleep(0.1)
        yield f"nats://127.0.0.1:{port}", f"a nats-server -js the bench started on 127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(10)


@contextmanager
def jetstream_target(folder: Path) -> Iterator[JetStreamTarget]:
    """A fresh, capped stream on a JetStream server for this run; deleted (and our server stopped) after."""
    try:
        import nats  # noqa: F401
    except ImportError:
        raise JetStreamUnavailableError(
            "the distributions section needs nats-py: pip install 'labscope[nats]'"
        ) from None
    tag = uuid.uuid4().hex[:10]
    with nats_server(folder) as (url, where):
        target = JetStreamTarget(url, f"LSBENCH{tag.upper()}", f"lsbench{tag}", where)
        _run(_add_stream(url, target.stream, target.prefix))
        try:
            yield target
        finally:
            _run(_delete_stream(url, target.stream))
