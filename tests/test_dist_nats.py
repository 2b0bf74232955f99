"""The built-in ``nats`` distribution against a real NATS JetStream server.

The server is the one on 127.0.0.1:4222 when it answers, else a ``nats-server -js`` this module
starts on a free port; with neither, the tests skip with one line (and fail under ``CI=true``).
Each test gets its own stream and subject prefix, deleted at teardown.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from collector.dist import DataPoint, DistCore, ReportItem
from collector.segments import SegmentReader, segment_folder
from collector.store import BATCH_COLUMNS, row_batch
from messages import Batch, Encoding
from tests.conftest import ProcessGroup, wait_for

nats = pytest.importorskip("nats", reason="nats-py missing: pip install 'labscope[nats]'")

from nats.errors import MaxPayloadError  # noqa: E402

from collector.distributions import dist_nats  # noqa: E402
from collector.distributions.dist_nats import BatchNotAckedError, NatsDistribution  # noqa: E402

pytestmark = [pytest.mark.timeout(120), pytest.mark.e2e]  # may start nats-server

DEFAULT_URL = "nats://127.0.0.1:4222"


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A JetStream server's URL: the shared one, or our own nats-server; else skip (fail under CI=true)."""
    if _reachable("127.0.0.1", 4222):
        yield DEFAULT_URL
        return
    binary = shutil.which("nats-server") or (
        "/usr/sbin/nats-server" if Path("/usr/sbin/nats-server").exists() else None
    )
    if binary is None:
        reason = "no NATS server on 127.0.0.1:4222 and no nats-server binary"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI=true: a skip is a failure)")
        pytest.skip(reason)
    port = _free_port()
    store = tmp_path_factory.mktemp("nats-js")
    server = subprocess.Popen([binary, "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(store)])
    try:
        wait_for(lambda: _reachable("127.0.0.1", port), timeout=15, what="nats-server")
        yield f"nats://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(10)


class Stream:
    """A unique stream and subject prefix for one test; reads it back, deletes it at the end."""

    def __init__(self, url: str) -> None:
        tag = uuid.uuid4().hex[:10]
        self.url = url
        self.name = f"T{tag.upper()}"
        self.prefix = f"t{tag}"
        self.loop = asyncio.new_event_loop()

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(asyncio.wait_for(coro, 30))

    async def _with_js(self, work: Any) -> Any:
        nc = await nats.connect(self.url, connect_timeout=5)
        try:
            return await work(nc.jetstream())
        finally:
            await nc.close()

    def messages(self) -> list[Any]:
        """Every message in the stream, oldest first."""

        async def read(js: Any) -> list[Any]:
            info = await js.stream_info(self.name)
            state = info.state
            return [await js.get_msg(self.name, seq) for seq in range(state.first_seq, state.last_seq + 1)]

        return list(self.run(self._with_js(read)))

    def count(self) -> int:
        async def count(js: Any) -> int:
            return int((await js.stream_info(self.name)).state.messages)

        return int(self.run(self._with_js(count)))

    def delete(self) -> None:
        async def delete(js: Any) -> None:
            try:
                await js.delete_stream(self.name)
            except Exception:
                pass

        self.run(self._with_js(delete))
        self.loop.close()


@pytest.fixture
def stream(nats_url: str) -> Iterator[Stream]:
    made = Stream(nats_url)
    yield made
    made.delete()


def nats_dist(stream: Stream, mode: str, tmp_path: Path, alias: str = "site1") -> NatsDistribution:
    dist = NatsDistribution(DistCore("js", "nats", mode, alias, tmp_path / "data"))
    config = {key: option.default for key, option in NatsDistribution.options.items()}
    dist.configure({**config, "url": stream.url, "stream": stream.name, "prefix": stream.prefix})
    return dist


def test_points_arrive_on_their_subjects_as_text(stream: Stream, tmp_path: Path) -> None:
    dist = nats_dist(stream, "points", tmp_path)
    assert not dist.isConnected()
    assert dist.connect() and dist.isConnected()
    points = [
        DataPoint("n1/cpu_percent", 12.5, 100.0, "n1"),
        DataPoint("n.2/disk/sda", 7, 101.0, "n.2"),
    ]
    for point in points:
        assert dist.sendUpdate(point)
    dist.updateBatchComplete()
    dist.close()
    got = [(m.subject, m.data, m.headers["Labscope-Time"]) for m in stream.messages()]
    assert got == [
        (f"{stream.prefix}.site1.n1.cpu_percent", b"12.5", "100.0"),
        (f"{stream.prefix}.site1.n_2.disk_sda", b"7", "101.0"),
    ]


def test_a_report_carries_its_headers_and_a_resend_is_dropped(stream: Stream, tmp_path: Path) -> None:
    dist = nats_dist(stream, "reports", tmp_path)
    assert dist.connect()
    report = ReportItem("n1", 7, "Samples", 5.5, Encoding.MSGPACK, "", b"\x81\xa1a\x01", journal_id=3)
    assert dist.sendUpdate(report)
    dist.updateBatchComplete()
    assert dist.sendUpdate(report)  # the re-send after a crash: JetStream drops it by Nats-Msg-Id
    dist.updateBatchComplete()
    assert dist.duplicates == 1
    dist.close()
    (msg,) = stream.messages()
    assert msg.subject == f"{stream.prefix}.site1.n1.Samples"
    assert msg.data == b"\x81\xa1a\x01"
    assert {k: v for k, v in msg.headers.items()} == {
        "Nats-Msg-Id": "n1:7",
        "Labscope-Node": "n1",
        "Labscope-Seq": "7",
        "Labscope-Type": "Samples",
        "Labscope-Time": "5.5",
        "Labscope-Encoding": "MSGPACK",
        "Labscope-Schema": "",
    }


def test_a_batch_is_published_at_once_in_order(stream: Stream, tmp_path: Path) -> None:
    """sendUpdate keeps; updateBatchComplete publishes the whole batch and waits for every PubAck."""
    dist = nats_dist(stream, "reports", tmp_path)
    assert dist.connect()
    reports = [ReportItem("n1", seq, "T", 1.0, Encoding.RAW, "", str(seq).encode(), 1) for seq in range(1, 301)]
    for report in reports:
        assert dist.sendUpdate(report)
    assert stream.count() == 0  # nothing published before the batch completes
    dist.updateBatchComplete()
    assert [int(m.headers["Labscope-Seq"]) for m in stream.messages()] == list(range(1, 301))
    for report in reports[:5]:  # the start of the batch again, as after a failed batch's rewind
        assert dist.sendUpdate(report)
    dist.updateBatchComplete()
    assert dist.duplicates == 5 and stream.count() == 300
    dist.close()


def test_a_batch_not_acknowledged_raises_and_disconnects(stream: Stream, tmp_path: Path) -> None:
    dist = nats_dist(stream, "reports", tmp_path)
    assert dist.connect()
    stream.run(stream._with_js(lambda js: js.delete_stream(stream.name)))  # nothing takes the subjects now
    assert dist.sendUpdate(ReportItem("n1", 1, "T", 1.0, Encoding.RAW, "", b"x", 1))
    with pytest.raises(BatchNotAckedError, match="1 messages not all acknowledged"):
        dist.updateBatchComplete()
    assert not dist.isConnected() and dist.batch == []
    dist.close()


def test_points_of_a_failed_batch_are_published_first_once_connected_again(stream: Stream, tmp_path: Path) -> None:
    dist = nats_dist(stream, "points", tmp_path)
    assert dist.connect()
    stream.run(stream._with_js(lambda js: js.delete_stream(stream.name)))  # nothing takes the subjects now
    for at in (1.0, 2.0):
        assert dist.sendUpdate(DataPoint("n1/cpu_percent", at * 10, at, "n1"))
    with pytest.raises(BatchNotAckedError, match=r"2 messages not all acknowledged \(kept to publish again: 2\)"):
        dist.updateBatchComplete()
    assert not dist.isConnected() and not dist.sendUpdate(DataPoint("n1/cpu_percent", 0.0, 2.5, "n1"))
    assert dist.connect()  # makes the stream again
    assert dist.sendUpdate(DataPoint("n1/cpu_percent", 30.0, 3.0, "n1"))
    dist.updateBatchComplete()
    assert dist.kept == [] and dist.lost == 0
    dist.close()
    assert [(m.data, m.headers["Labscope-Time"]) for m in stream.messages()] == [
        (b"10.0", "1.0"),
        (b"20.0", "2.0"),
        (b"30.0", "3.0"),
    ]


def test_kept_points_are_bounded_and_counted_when_dropped(
    stream: Stream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dist_nats, "KEEP_MAX", 2)
    dist = nats_dist(stream, "points", tmp_path)
    assert dist.connect()
    stream.run(stream._with_js(lambda js: js.delete_stream(stream.name)))
    for at in (1.0, 2.0, 3.0):
        assert dist.sendUpdate(DataPoint("n1/cpu_percent", at, at, "n1"))
    with pytest.raises(BatchNotAckedError, match=r"kept to publish again: 2; dropped, oldest first: 1"):
        dist.updateBatchComplete()
    assert [head["Labscope-Time"] for _, _, head in dist.kept] == ["2.0", "3.0"] and dist.lost == 1
    dist.close()  # never connected again: the kept points are lost now, and counted
    assert dist.kept == [] and dist.lost == 3


def test_a_payload_the_server_never_takes_raises_at_once(stream: Stream, tmp_path: Path) -> None:
    dist = nats_dist(stream, "reports", tmp_path)
    assert dist.connect()
    too_big = dist.nc.max_payload + 1
    with pytest.raises(MaxPayloadError):
        dist.sendUpdate(ReportItem("n1", 1, "T", 1.0, Encoding.RAW, "", b"x" * too_big, 1))
    assert dist.batch == []
    dist.close()


def test_a_report_whose_headers_take_it_over_max_payload_raises_at_once(stream: Stream, tmp_path: Path) -> None:
    """nats-py checks the body alone; the server counts the headers too, and so does the distribution."""
    dist = nats_dist(stream, "reports", tmp_path)
    assert dist.connect()
    body = b"x" * (dist.nc.max_payload - 10)  # the body fits, the body and its headers do not
    with pytest.raises(MaxPayloadError):
        dist.sendUpdate(ReportItem("n1", 1, "T", 1.0, Encoding.RAW, "", body, 1))
    assert dist.batch == []
    dist.close()


def test_a_server_that_is_away_is_not_connected(tmp_path: Path) -> None:
    dist = NatsDistribution(DistCore("js", "nats", "points", "a", tmp_path))
    config = {key: option.default for key, option in NatsDistribution.options.items()}
    dist.configure({**config, "url": f"nats://127.0.0.1:{_free_port()}", "timeout": 1.0})
    with pytest.raises(Exception):
        dist.connect()
    assert not dist.isConnected()
    assert not dist.sendUpdate(DataPoint("n1/x", 1, 1.0, "n1"))
    dist.close()


def journal_payloads(data_dir: Path) -> dict[tuple[str, int], bytes]:
    """Every journaled report's payload by (node, seq), read from the collector's journal."""
    db = sqlite3.connect(f"file:{data_dir / 'collector.sqlite3'}?mode=ro", uri=True)
    reader = SegmentReader(segment_folder(data_dir / "collector.sqlite3"))
    try:
        rows = db.execute(f"SELECT {BATCH_COLUMNS} FROM journal ORDER BY id").fetchall()
        batches = [row_batch(reader, *where) or b"" for where in rows]
    finally:
        db.close()
        reader.close()
    return {(env.node, env.seq): env.payload for batch in batches for env in Batch.FromString(batch).envelopes}


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_reports_mode_exactly_once_through_two_kill_9(procs: ProcessGroup, stream: Stream) -> None:
    from tests.test_reliability import FAST_PROBES, Rig, agent_last_seq, stop_agents

    config = procs.tmp_path / "collector.toml"
    config.write_text(
        f'[distributions.js]\ntype = "nats"\nmode = "reports"\nurl = "{stream.url}"\n'
        f'stream = "{stream.name}"\nprefix = "{stream.prefix}"\n'
    )
    alias = f"site-{stream.prefix}"
    rig = Rig(procs, "--config", str(config), "--alias", alias)
    nodes = ["node-a", "node-b"]
    agents = [procs.agent(rig.agents, node, *FAST_PROBES, interval=0.05) for node in nodes]
    wait_for(lambda: stream_has(stream, 1), timeout=30, what="the first reports in the stream")
    for _ in range(2):
        seen = stream.count()
        wait_for(lambda seen=seen: stream_has(stream, seen + 40), timeout=30, what="reports flowing")
        rig.collector.stop(signal.SIGKILL)  # under load: the agents report 20+ a second each
        rig.start()
    seen = stream.count()
    wait_for(lambda: stream_has(stream, seen + 40), timeout=30, what="reports after the last restart")
    stop_agents(agents)
    total = sum(agent_last_seq(procs.tmp_path / f"agent-{node}") for node in nodes)
    wait_for(lambda: stream_has(stream, total), timeout=40, interval=0.3, what=f"{total} reports in the stream")
    time.sleep(0.5)  # anything beyond `total` would be a duplicate: give a late one the chance to show
    messages = stream.messages()
    journal = journal_payloads(rig.data_dir)
    keys = [(m.headers["Labscope-Node"], int(m.headers["Labscope-Seq"])) for m in messages]
    expected = {(node, seq) for node in nodes for seq in range(1, agent_last_seq(procs.tmp_path / f"agent-{node}") + 1)}
    print(f"stream: {len(messages)} messages, {len(set(keys))} distinct (node, seq), expected {len(expected)}")
    assert len(keys) == len(set(keys)), "a (node, seq) is in the stream twice"
    assert set(keys) == expected
    for msg, key in zip(messages, keys, strict=True):
        assert msg.headers["Nats-Msg-Id"] == f"{key[0]}:{key[1]}"
        assert msg.subject.startswith(f"{stream.prefix}.{alias}.{key[0]}.")
        assert msg.data == journal[key], f"{key}: payload differs from the journal's"
    cursor = (rig.data_dir / "distributions" / "js" / "cursor").read_text().split()
    assert int(cursor[0]) > 0


def stream_has(stream: Stream, count: int) -> bool:
    try:
        return stream.count() >= count
    except Exception:  # not created yet
        return False


def test_a_created_stream_has_the_configured_limits(stream: Stream, tmp_path: Path) -> None:
    dist = nats_dist(stream, "reports", tmp_path)
    assert dist.limits == {"max_age": 7 * 86400.0}  # the default: a week, as long as journal_hold
    dist.configure({**dist.config, "max_age": 90.0, "max_bytes": 5_000_000})
    assert dist.connect()
    dist.close()

    async def config(js: Any) -> Any:
        return (await js.stream_info(stream.name)).config

    made = stream.run(stream._with_js(config))
    assert (made.max_age, made.max_bytes) == (90.0, 5_000_000)


def test_zero_leaves_a_stream_limit_off(stream: Stream, tmp_path: Path) -> None:
    dist = nats_dist(stream, "reports", tmp_path)
    dist.configure({**dist.config, "max_age": 0, "max_bytes": 0})
    assert dist.limits == {}
    assert dist.connect()
    dist.close()

    async def config(js: Any) -> Any:
        return (await js.stream_info(stream.name)).config

    made = stream.run(stream._with_js(config))
    assert not made.max_age and made.max_bytes in (None, -1, 0)
