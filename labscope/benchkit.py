"""Load generators for ``labscope bench``, each run as its own process.

``python -m labscope.benchkit MODE ENDPOINT ...`` sends as fast as it can (or
paced), waits for the last acknowledgement, and prints one JSON line with what
it measured. Every mode uses plain pyzmq in one thread, so the sender is never
the slower side of a comparison by accident of its own design. ``raw`` and
``ingest`` take two more arguments for CURVE: the receiver's public ``.key``
file and the sender's ``.key_secret`` file.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable

import zmq

from messages import Kind, NodeInfo, Samples, SystemStats
from messages.codec import envelope, pack, unpack
from messages.keys import ClientKeys, client_keys

MESSAGE_BYTES = 256


def given_keys(server_key: str | None, secret: str | None) -> ClientKeys | None:
    """CURVE keys from the two files when the bench names them; never from the environment's
    ``LABSCOPE_CURVE_*`` (a plain round stays plain whatever the operator's shell holds)."""
    return client_keys(server_key, secret, {}) if server_key or secret else None


def raw_send(endpoint: str, count: int, server_key: str | None = None, secret: str | None = None) -> dict[str, float]:
    """Send ``count`` 256-byte messages on a DEALER as fast as the socket takes them; CURVE with both key files."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.linger = -1
    keys = given_keys(server_key, secret)
    if keys is not None:
        keys.apply(sock)
    sock.connect(endpoint)
    payload = b"x" * MESSAGE_BYTES
    start = time.perf_counter()
    for _ in range(count):
        sock.send(payload)
    seconds = time.perf_counter() - start
    sock.close()
    ctx.term()
    return {"count": count, "seconds": seconds}


def raw_receive(sock: zmq.Socket[bytes], count: int, timeout: float) -> float:
    """Receive ``count`` messages on a ROUTER; messages per second from the first to the last."""
    if not sock.poll(int(timeout * 1000)):
        raise TimeoutError("the raw sender sent nothing")
    sock.recv_multipart()
    start = time.perf_counter()
    for _ in range(count - 1):
        sock.recv_multipart()
    return (count - 1) / (time.perf_counter() - start)


def report_frame(node: str, seq: int, now: float) -> bytes:
    """One unbatched REPORT frame of about 256 bytes: a small SystemStats sample."""
    stats = SystemStats(time=now, cpu_percent=12.5, load1=0.5, load5=0.4, load15=0.3, interval=1.0)
    stats.cpu_percent_per_cpu.extend((10.0, 15.0))
    stats.memory.total, stats.memory.used, stats.memory.percent = 8 << 30, 3 << 30, 37.5
    stats.swap.total = 2 << 30
    stats.net_io_total.name, stats.net_io_total.recv_rate, stats.net_io_total.send_rate = "total", 1e5, 2e5
    stats.disk_io_total.name, stats.disk_io_total.read_rate, stats.disk_io_total.write_rate = "total", 1e6, 2e6
    stats.disks.add(mountpoint="/", total=250 << 30, used=40 << 30, percent=16.0)
    return pack([envelope(Kind.REPORT, "SystemStats", stats, node=node, seq=seq, time=now)])


def samples_frame(node: str, first_seq: int, reports: int, values: int, now: float) -> bytes:
    """A batched frame: ``reports`` REPORTs of type Samples with ``values`` samples each."""
    samples = Samples(time=now, values=[float(i) for i in range(values)])
    return pack(
        [envelope(Kind.REPORT, "Samples", samples, node=node, seq=first_seq + i, time=now) for i in range(reports)]
    )


class AgentPeer:
    """A minimal agent: HELLO, then frames with ACK accounting, on a plain DEALER."""

    def __init__(self, endpoint: str, node: str, keys: ClientKeys | None = None) -> None:
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.linger = 0
        self.sock.sndhwm = 0  # the sender must never be the one that drops or stalls on a full pipe
        if keys is not None:
            keys.apply(self.sock)
        self.sock.connect(endpoint)
        self.node = node
        self.acked = 0

    def hello(self, timeout: float = 10.0) -> None:
        """Say HELLO as a fresh agent and wait for the collector's ACK."""
        info = NodeInfo(node=self.node, hostname=self.node, instance=f"bench-{time.time()}")
        self.sock.send(pack([envelope(Kind.HELLO, "NodeInfo", info, node=self.node, seq=1)]))
        deadline = time.monotonic() + timeout
        while not self._read(max(0.0, deadline - time.monotonic())):
            if time.monotonic() > deadline:
                raise TimeoutError("the collector did not answer HELLO")

    def _read(self, timeout: float) -> bool:
        if not self.sock.poll(round(timeout * 1000)):
            return False
        while True:
            try:
                frame = self.sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return True
            for env in unpack(frame):
                if env.kind == Kind.ACK:
                    self.acked = max(self.acked, env.seq)

    def send_all(self, frames: list[bytes], last_seq: int, timeout: float) -> float:
        """Send every frame, then wait for ACK ``last_seq``; seconds from first send to that ACK."""
        start = time.perf_counter()
        for frame in frames:
            self.sock.send(frame)
        deadline = time.monotonic() + timeout
        while self.acked < last_seq:
            if time.monotonic() > deadline:
                raise TimeoutError(f"ACK stopped at {self.acked} of {last_seq}")
            self._read(0.5)
        return time.perf_counter() - start

    def paced(self, rate: float, seconds: float, make: Callable[[int, float], bytes]) -> int:
        """Send one frame per report at ``rate`` per second for ``seconds``; returns reports sent."""
        period, seq = 1.0 / rate, 0
        start = next_send = time.perf_counter()
        while (now := time.perf_counter()) < start + seconds:
            while next_send <= now:
                seq += 1
                self.sock.send(make(seq, time.time()))
                next_send += period
            # poll() counts whole milliseconds: at 10,000/s a sub-millisecond wait would spin a
            # core, so the generator wakes every millisecond and sends what has come due.
            self._read(max(0.001, next_send - time.perf_counter()))
        return seq

    def close(self) -> None:
        """Close the socket and context."""
        self.sock.close(0)
        self.ctx.term()


INGEST_NODE = "bench-ingest"


def ingest(endpoint: str, count: int, server_key: str | None = None, secret: str | None = None) -> dict[str, float]:
    """Unbatched reports: ``count`` frames of one ~256-byte REPORT each; CURVE with both key files."""
    peer = AgentPeer(endpoint, INGEST_NODE, given_keys(server_key, secret))
    peer.hello()
    now = time.time()
    frames = [report_frame(peer.node, seq, now) for seq in range(1, count + 1)]
    seconds = peer.send_all(frames, count, timeout=120)
    peer.close()
    return {"count": count, "seconds": seconds, "frame_bytes": len(frames[0])}


def samples(endpoint: str, frames: int, reports: int, values: int) -> dict[str, float]:
    """Batched reports: ``frames`` frames of ``reports`` Samples reports of ``values`` samples."""
    peer = AgentPeer(endpoint, "bench-samples")
    peer.hello()
    now = time.time()
    batch = [samples_frame(peer.node, 1 + i * reports, reports, values, now) for i in range(frames)]
    seconds = peer.send_all(batch, frames * reports, timeout=120)
    peer.close()
    return {"count": frames * reports * values, "seconds": seconds}


def paced(endpoint: str, rate: float, seconds: float) -> dict[str, float]:
    """Reports of type BenchProbe at ``rate`` per second, one per frame, stamped with the send time."""
    peer = AgentPeer(endpoint, "bench-latency")
    peer.hello()
    sent = peer.paced(
        rate,
        seconds,
        lambda seq, now: pack([envelope(Kind.REPORT, "BenchProbe", None, node=peer.node, seq=seq, time=now)]),
    )
    peer.close()
    return {"count": sent, "seconds": seconds}


def raw_stream(endpoint: str, path: str, chunk: int) -> dict[str, float]:
    """Send a file's bytes in ``chunk``-byte messages on a DEALER, then an empty end marker."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.linger = -1
    sock.connect(endpoint)
    sent = 0
    with open(path, "rb") as handle:
        while data := handle.read(chunk):
            sock.send(data)
            sent += len(data)
    sock.send(b"")
    sock.close()
    ctx.term()
    return {"bytes": sent}


def raw_stream_receive(sock: zmq.Socket[bytes], timeout: float) -> tuple[int, float]:
    """Receive a raw stream until its empty end marker; (bytes, seconds from first to last)."""
    if not sock.poll(int(timeout * 1000)):
        raise TimeoutError("the raw stream sender sent nothing")
    _, first = sock.recv_multipart()
    start, received = time.perf_counter(), len(first)
    while True:
        _, data = sock.recv_multipart()
        if not data:
            return received, time.perf_counter() - start
        received += len(data)


MODES: dict[str, Callable[..., dict[str, float]]] = {
    "rawstream": lambda ep, path, chunk: raw_stream(ep, path, int(chunk)),
    "raw": lambda ep, n, *keys: raw_send(ep, int(n), *keys),
    "ingest": lambda ep, n, *keys: ingest(ep, int(n), *keys),
    "samples": lambda ep, f, r, v: samples(ep, int(f), int(r), int(v)),
    "paced": lambda ep, rate, s: paced(ep, float(rate), float(s)),
}

if __name__ == "__main__":
    mode, endpoint, *rest = sys.argv[1:]
    sys.stdout.write(json.dumps(MODES[mode](endpoint, *rest)) + "\n")
