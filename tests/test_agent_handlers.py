"""Node request handling without a collector: serve folders, the worker pool, credit, built-in handlers.

The pool's workers are real threads and its wake-up is a real socket pair;
answers are read back as the frames the agent would send.
"""

from __future__ import annotations

import hashlib
import os
import select
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest

from messages import Encoding, Envelope, Kind, SystemStats
from messages.codec import decode_payload, envelope, unpack
from messages.stream import CHUNK_BYTES as MAX_CHUNK
from node_agent.addons import Handler, NodeRequest, RequestError, Responder
from node_agent.handlers import (
    NodeFileHandler,
    ProcessListHandler,
    RunProbeHandler,
    builtin_handlers,
    handler_table,
    load_handlers,
)
from node_agent.pool import Credit, RequestPool
from node_agent.runner import ScheduledProbe
from node_agent.serve import ServeDirs
from node_agent.sysprobe import SystemStatsProbe
from tests.conftest import FIXTURES, wait_for

# ----------------------------------------------------------------------------- serve folders


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """serve/ (data.txt, sub/deep.txt, a link inside, a link out), outside/secret.txt."""
    serve = tmp_path / "serve"
    (serve / "sub").mkdir(parents=True)
    (serve / "data.txt").write_bytes(b"data")
    (serve / "sub" / "deep.txt").write_bytes(b"deep")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_bytes(b"secret")
    (serve / "inner-link").symlink_to(serve / "data.txt")
    (serve / "out-link").symlink_to(tmp_path / "outside" / "secret.txt")
    (serve / "out-dir").symlink_to(tmp_path / "outside")
    return tmp_path


def read_served(serve: ServeDirs, path: str) -> bytes:
    handle, size = serve.open(path)
    with handle:
        data = handle.read()
    assert len(data) == size
    return data


@pytest.mark.parametrize("path", ["data.txt", "sub/deep.txt", "./sub/../data.txt", "inner-link", "SERVE/data.txt"])
def test_paths_inside_the_serve_folder_are_served(tree: Path, path: str) -> None:
    serve = ServeDirs([tree / "serve"])
    path = path.replace("SERVE", str(tree / "serve"))
    assert read_served(serve, path) in (b"data", b"deep")


@pytest.mark.parametrize(
    "path",
    [
        "/etc/passwd",
        "../outside/secret.txt",
        "SERVE/../outside/secret.txt",
        "SERVE/../../../etc/passwd",
        "out-link",
        "out-dir/secret.txt",
        "/",
        "../outside/missing.txt",
    ],
)
def test_paths_leaving_the_serve_folders_are_denied(tree: Path, path: str) -> None:
    serve = ServeDirs([tree / "serve"])
    with pytest.raises(RequestError) as caught:
        serve.open(path.replace("SERVE", str(tree / "serve")))
    assert caught.value.code == "denied", caught.value.reason


def test_missing_folder_and_unconfigured_cases(tree: Path) -> None:
    serve = ServeDirs([tree / "serve"])
    for path, code in (
        ("missing.txt", "not-found"),
        ("sub", "bad-request"),
        ("", "bad-request"),
        ("a\x00b", "bad-request"),
    ):
        with pytest.raises(RequestError) as caught:
            serve.open(path)
        assert caught.value.code == code, path
    with pytest.raises(RequestError) as caught:
        ServeDirs([]).open(str(tree / "serve" / "data.txt"))
    assert caught.value.code == "denied" and "--serve-dir" in caught.value.reason


def test_second_serve_folder_takes_absolute_paths_only(tree: Path) -> None:
    serve = ServeDirs([tree / "serve", tree / "outside"])
    assert read_served(serve, str(tree / "outside" / "secret.txt")) == b"secret"
    with pytest.raises(RequestError) as caught:
        serve.open("secret.txt")  # relative paths are taken from the first folder
    assert caught.value.code == "not-found"


# ----------------------------------------------------------------------------- the pool


def wait_frames(pool: RequestPool, count: int, timeout: float = 5.0) -> list[Envelope]:
    """Read answers the way the agent's loop does: wait on the wake-up socket, then take the frames."""
    found: list[Envelope] = []
    deadline = time.monotonic() + timeout
    while len(found) < count:
        left = deadline - time.monotonic()
        assert left > 0, f"only {len(found)} of {count} answers within {timeout} s: {found}"
        readable, _, _ = select.select([pool.wake], [], [], left)
        if readable:
            while True:
                try:
                    if not pool.wake.recv(4096):
                        break
                except BlockingIOError:
                    break
        for frame in pool.frames():
            envs = unpack(frame)
            if getattr(frame, "bulk", None) is not None:  # a two-part CHUNK: its bytes ride in the second part
                envs[0].payload = frame.bulk
            found.extend(envs)
    return found


def assert_quiet(pool: RequestPool, seconds: float) -> None:
    """Nothing is queued for ``seconds``: polls on the wake-up socket for the whole time, then looks.

    A worker queues its frame before it writes the wake-up byte, so the byte of a frame that
    :func:`wait_frames` already took may come after it returned: such a byte is read and ignored,
    and what counts is that no frame was queued.
    """
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        readable, _, _ = select.select([pool.wake], [], [], left)
        if readable and not pool.wake.recv(4096):
            break
    assert pool.frames() == []


def request(type: str, request_id: int, **params: str) -> Envelope:
    return envelope(Kind.REQUEST, type, request_id=request_id, params=params)


class Gate(Handler):
    """Blocks until released; counts how many run at once."""

    requesttypes = ("Gate",)

    def __init__(self) -> None:
        self.release = threading.Event()
        self.running = 0
        self.peak = 0
        self.lock = threading.Lock()

    def handle(self, request: NodeRequest, responder: Responder) -> Any:
        with self.lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
        self.release.wait(10)
        with self.lock:
            self.running -= 1
        return {"id": request.request_id}


class Streamer(Handler):
    """``Stream n=N size=B``: N chunks of B bytes; records how many it produced."""

    requesttypes = ("Stream", "Fail", "Boom")

    def __init__(self) -> None:
        self.produced = 0

    def chunks(self, count: int, size: int) -> Iterator[bytes]:
        for index in range(count):
            self.produced += 1
            yield bytes([index % 251]) * size

    def handle(self, request: NodeRequest, responder: Responder) -> Any:
        if request.type == "Fail":
            raise RequestError("not-found", "nothing here")
        if request.type == "Boom":
            raise ZeroDivisionError("kaboom")
        count, size = int(request.n), int(request.params.get("size", "100"))
        responder.respond_streamed(self.chunks(count, size), size=count * size)
        return None


@pytest.fixture
def make_pool() -> Iterator[Callable[..., RequestPool]]:
    pools: list[RequestPool] = []

    def make(*handlers: Handler, **options: Any) -> RequestPool:
        pool = RequestPool("n1", handler_table(handlers), **options)
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.close()


def test_answers_errors_and_unknown_types(make_pool: Callable[..., RequestPool]) -> None:
    pool = make_pool(Streamer(), ProcessListHandler())
    refusal = pool.submit(request("Nope", 1))
    assert refusal is not None and (refusal.kind, refusal.error_code, refusal.request_id) == (
        Kind.ERROR,
        "unknown-type",
        1,
    )
    assert pool.submit(request("Fail", 2)) is None and pool.submit(request("Boom", 3)) is None
    assert pool.submit(request("ProcessList", 4)) is None
    answers = {e.request_id: e for e in wait_frames(pool, 3)}
    assert (answers[2].error_code, answers[2].error) == ("not-found", "nothing here")
    assert answers[3].error_code == "handler-error" and "ZeroDivisionError: kaboom" in answers[3].error
    assert answers[4].kind == Kind.RESPONSE and answers[4].node == "n1"
    rows = decode_payload(answers[4].payload, answers[4].encoding)
    me = next(r for r in rows if r["pid"] == os.getpid())
    assert me["rss"] > 0 and ("pytest" in me["cmdline"] or "python" in me["name"])
    assert set(me) == {"pid", "name", "username", "cpu_percent", "rss", "status", "cmdline"}


def test_pool_is_bounded_and_answers_busy(make_pool: Callable[..., RequestPool]) -> None:
    gate = Gate()
    pool = make_pool(gate, workers=2, queue_limit=2)
    assert pool.submit(request("Gate", 1)) is None and pool.submit(request("Gate", 2)) is None
    wait_for(lambda: gate.running == 2, 5, what="both workers busy")
    refusals = [pool.submit(request("Gate", i)) for i in range(3, 7)]
    assert refusals[:2] == [None, None], "two more wait in the queue"
    assert [(r.error_code, r.request_id) for r in refusals[2:] if r is not None] == [("busy", 5), ("busy", 6)]
    gate.release.set()
    answers = wait_frames(pool, 4)
    assert gate.peak == 2 and sorted(a.request_id for a in answers) == [1, 2, 3, 4]


def test_stream_holds_to_credit_and_ends_with_size_and_digest(make_pool: Callable[..., RequestPool]) -> None:
    streamer = Streamer()
    pool = make_pool(streamer)
    pool.submit(request("Stream", 7, n="10", size="3000", credit="3"))
    first = wait_frames(pool, 3)
    assert [c.seq for c in first] == [0, 1, 2] and first[0].params["size"] == "30000"
    assert_quiet(pool, 0.2)  # a worker that ignored the credit would have sent more by now
    # credit 3 sent, one held back (to mark the last), one read while waiting for credit to send it
    assert streamer.produced <= 5
    rest: list[Envelope] = []
    while not (rest and rest[-1].last):
        pool.credit(envelope(Kind.CREDIT, request_id=7, seq=1))
        rest.extend(wait_frames(pool, 1))
    chunks = first + rest
    data = b"".join(c.payload for c in chunks)
    assert [c.seq for c in chunks] == list(range(10)) and all(c.kind == Kind.CHUNK for c in chunks)
    assert chunks[-1].params["size"] == "30000" and chunks[-1].params["sha256"] == hashlib.sha256(data).hexdigest()


def test_cancel_stops_a_stream_and_frees_the_worker(make_pool: Callable[..., RequestPool]) -> None:
    streamer = Streamer()
    pool = make_pool(streamer, workers=1)
    pool.submit(request("Stream", 8, n="1000", credit="2"))
    assert len(wait_frames(pool, 2)) == 2
    pool.credit(envelope(Kind.CREDIT, request_id=8, params={"cancel": "1"}))
    pool.submit(request("Fail", 9))  # the only worker must be free again
    (answer,) = wait_frames(pool, 1)
    assert answer.request_id == 9 and streamer.produced < 10


def test_large_chunks_are_split_and_empty_streams_end(make_pool: Callable[..., RequestPool]) -> None:
    pool = make_pool(Streamer())
    pool.submit(request("Stream", 10, n="1", size=str(MAX_CHUNK * 2 + 5), credit="8"))
    pieces = wait_frames(pool, 3)
    assert [len(p.payload) for p in pieces] == [MAX_CHUNK, MAX_CHUNK, 5] and pieces[-1].last
    pool.submit(request("Stream", 11, n="0"))
    (empty,) = wait_frames(pool, 1)
    assert empty.last and empty.payload == b"" and empty.params["size"] == "0"


def test_stalled_stream_and_silent_handler_time_out(make_pool: Callable[..., RequestPool]) -> None:
    gate = Gate()
    pool = make_pool(Streamer(), gate, timeout=0.3)
    pool.submit(request("Gate", 12))
    wait_for(lambda: (pool.expire(time.monotonic()), pool.counters["timeouts"])[1], 5, what="the timeout")
    (late,) = wait_frames(pool, 1)
    assert (late.request_id, late.error_code) == (12, "timeout")
    gate.release.set()
    wait_for(lambda: gate.running == 0, 5, what="the handler to return")
    assert_quiet(pool, 0.1)  # the handler's answer after the timeout must not be sent


def test_credit_take_waits_and_reports_stall_and_cancel() -> None:
    credit = Credit(1)
    assert credit.take(0.01) == "ok" and credit.take(0.05) == "stalled"
    threading.Timer(0.05, credit.grant, (2,)).start()
    assert credit.take(2) == "ok" and credit.credit == 1
    credit.cancel()
    assert credit.take(2) == "cancelled"


def test_cancel_all_drops_queued_answers(make_pool: Callable[..., RequestPool]) -> None:
    pool = make_pool(Streamer())
    pool.submit(request("Stream", 13, n="100", credit="1"))
    wait_frames(pool, 1)
    pool.cancel_all()
    pool.credit(envelope(Kind.CREDIT, request_id=13, seq=50))  # too late: nothing may leave any more
    assert_quiet(pool, 0.1)


# ----------------------------------------------------------------------------- built-in handlers


def test_node_file_handler_streams_the_file(make_pool: Callable[..., RequestPool], tmp_path: Path) -> None:
    blob = os.urandom(3 * 100_000 + 7)
    (tmp_path / "f.bin").write_bytes(blob)
    pool = make_pool(NodeFileHandler(ServeDirs([tmp_path]), chunk=100_000))
    pool.submit(request("NodeFile", 20, path="f.bin", credit="64"))
    chunks = wait_frames(pool, 4)
    assert b"".join(c.payload for c in chunks) == blob and chunks[0].params["size"] == str(len(blob))
    assert chunks[-1].params["sha256"] == hashlib.sha256(blob).hexdigest()
    pool.submit(request("NodeFile", 21, path="/etc/passwd"))
    pool.submit(request("NodeFile", 22))
    answers = {e.request_id: e.error_code for e in wait_frames(pool, 2)}
    assert answers == {21: "denied", 22: "bad-request"}


def test_node_file_chunks_carry_type_and_raw_and_a_small_file_is_one_chunk(
    make_pool: Callable[..., RequestPool], tmp_path: Path
) -> None:
    (tmp_path / "small.txt").write_bytes(b"ten bytes!")
    (tmp_path / "big.bin").write_bytes(b"x" * 300_000)
    pool = make_pool(NodeFileHandler(ServeDirs([tmp_path])), two_part=True)
    pool.submit(request("NodeFile", 23, path="small.txt"))
    (only,) = wait_frames(pool, 1)
    assert (only.kind, only.type, only.encoding, only.last, only.payload) == (
        Kind.CHUNK,
        "NodeFile",
        Encoding.RAW,
        True,
        b"ten bytes!",
    )
    assert only.params["size"] == "10" and only.params["sha256"] == hashlib.sha256(b"ten bytes!").hexdigest()
    pool = make_pool(NodeFileHandler(ServeDirs([tmp_path]), chunk=100_000), two_part=True)
    pool.submit(request("NodeFile", 24, path="big.bin"))
    chunks = wait_frames(pool, 3)  # two-part CHUNKs: the header's fields are the same
    assert {(c.type, c.encoding, c.request_id) for c in chunks} == {("NodeFile", Encoding.RAW, 24)}
    assert [c.last for c in chunks] == [False, False, True]


def test_run_probe_answers_the_probes_report(make_pool: Callable[..., RequestPool]) -> None:
    probe = ScheduledProbe("SystemStats", SystemStatsProbe(), 1.0)
    pool = make_pool(RunProbeHandler([probe]))
    pool.submit(request("RunProbe", 30, name="SystemStats"))
    pool.submit(request("RunProbe", 31, name="nope"))
    pool.submit(request("RunProbe", 32))
    answers = {e.request_id: e for e in wait_frames(pool, 3)}
    stats = decode_payload(answers[30].payload, answers[30].encoding, answers[30].schema)
    assert isinstance(stats, SystemStats) and stats.memory.total > 0
    assert answers[30].params["reporttype"] == "SystemStats"
    assert answers[31].error_code == "not-found" and "SystemStats" in answers[31].error
    assert answers[32].error_code == "bad-request"


def test_drop_in_handlers_load_and_bad_files_are_skipped(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    loaded = load_handlers([FIXTURES / "handlers"])
    assert sorted(h.name for h in loaded) == ["clash", "echo", "slow"]
    assert "broken.py" in caplog.text
    table = handler_table([*builtin_handlers(ServeDirs([tmp_path]), []), *loaded])
    assert sorted(table) == ["Echo", "EchoError", "NodeFile", "ProcessList", "RunProbe", "Slow"]
    assert isinstance(table["NodeFile"], NodeFileHandler) and "clash" in caplog.text


def test_drop_in_echo_handler_answers_and_streams(make_pool: Callable[..., RequestPool]) -> None:
    pool = make_pool(*[h for h in load_handlers([FIXTURES / "handlers"]) if h.name == "echo"])
    pool.submit(request("Echo", 40, word="hi", node="n1"))
    pool.submit(request("EchoError", 41, what="x"))
    pool.submit(request("Echo", 42, chunks="3"))
    got = wait_frames(pool, 5)
    answers = {e.request_id: e for e in got if e.kind != Kind.CHUNK}
    assert msgpack.unpackb(answers[40].payload) == {"word": "hi"}
    assert (answers[41].error_code, answers[41].error) == ("not-found", "nothing called x")
    assert sum(len(e.payload) for e in got if e.request_id == 42) == 3000
