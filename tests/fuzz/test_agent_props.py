"""The agent's side of node requests under random input: serve-folder confinement and the request handlers.

A path from the wire (``NodeFile path=P``) is built from ``..``, ``.``, empty
components, absolute prefixes, symlinks (to a file and a folder outside, a
loop), a FIFO, NULs, very long and unicode names. Whatever it is, the file
opened lies inside a serve folder, or the answer is ``denied`` /
``not-found`` / ``bad-request``; nothing ever blocks. The built-in handlers
behind the real worker pool answer random requests with a RESPONSE, CHUNKs
or an ERROR of a documented code, never ``handler-error`` (a handler that
raised something it did not mean to).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from messages import Envelope, Kind
from messages.codec import envelope
from node_agent.addons import RequestError
from node_agent.handlers import builtin_handlers, handler_table
from node_agent.pool import RequestPool
from node_agent.runner import ScheduledProbe
from node_agent.serve import ServeDirs
from node_agent.sysprobe import SystemStatsProbe
from tests.fuzz.strategies import HOSTILE, params
from tests.test_agent_handlers import wait_frames

COMPONENTS = st.sampled_from(
    ["..", ".", "", "data.txt", "sub", "deep.txt", "out-link", "out-dir", "loop", "in-link", "pipe", "é", "x" * 300]
)
PREFIXES = st.sampled_from(["", "/", "SERVE/", "OUTSIDE/", "SERVE/../", "/etc/", "//"])
PATHS = st.one_of(
    st.builds(lambda prefix, parts: prefix + "/".join(parts), PREFIXES, st.lists(COMPONENTS, min_size=1, max_size=6)),
    HOSTILE,
)
REFUSALS = {"denied", "not-found", "bad-request"}
FRESH = itertools.count()
SETTINGS = settings(
    max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def make_tree(top: Path) -> tuple[Path, Path]:
    """serve/ (files, a folder, links in, out and in a loop, a FIFO) and outside/secret.txt."""
    serve, outside = top / "serve", top / "outside"
    (serve / "sub").mkdir(parents=True)
    outside.mkdir()
    (serve / "data.txt").write_bytes(b"data")
    (serve / "sub" / "deep.txt").write_bytes(b"deep")
    (outside / "secret.txt").write_bytes(b"secret")
    (serve / "in-link").symlink_to(serve / "data.txt")
    (serve / "out-link").symlink_to(outside / "secret.txt")
    (serve / "out-dir").symlink_to(outside, target_is_directory=True)
    (serve / "loop").symlink_to(serve / "loop")
    os.mkfifo(serve / "pipe")
    return serve, outside


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_tree(tmp_path_factory.mktemp("serve-tree"))


def concrete(path: str, serve: Path, outside: Path) -> str:
    return path.replace("SERVE", str(serve)).replace("OUTSIDE", str(outside))


@settings(SETTINGS, max_examples=300)
@given(PATHS)
@example("pipe")  # a FIFO inside the serve folder: open() blocked until a writer came, forever
@example("SERVE/pipe")
def test_served_paths_never_leave_the_serve_folder(tree: tuple[Path, Path], path: str) -> None:
    serve, outside = tree
    dirs = ServeDirs([serve])
    try:
        handle, size = dirs.open(concrete(path, serve, outside))
    except RequestError as exc:
        assert exc.code in REFUSALS, exc.reason
        return
    with handle:
        real = Path(os.readlink(f"/proc/self/fd/{handle.fileno()}"))
        assert real.is_relative_to(serve.resolve()), real
        assert len(handle.read()) == size


def test_a_fifo_in_a_serve_folder_is_refused_without_blocking(tmp_path: Path) -> None:
    """Regression: opening a FIFO blocked the worker until some process opened it for writing."""
    serve, _ = make_tree(tmp_path)
    with pytest.raises(RequestError) as caught:
        ServeDirs([serve]).open("pipe")
    assert caught.value.code == "bad-request" and "not a regular file" in caught.value.reason


@pytest.fixture(scope="module")
def pool(tree: tuple[Path, Path]) -> Iterator[RequestPool]:
    serve, _ = tree
    probes = [ScheduledProbe("SystemStats", SystemStatsProbe(), 1.0)]
    workers = RequestPool("n1", handler_table(builtin_handlers(ServeDirs([serve]), probes)), workers=2)
    yield workers
    workers.close()


REQUESTS = st.tuples(
    st.sampled_from(["NodeFile", "RunProbe", "ProcessList", "Nope"]) | HOSTILE,
    params
    | st.builds(lambda p: {"path": p}, PATHS)
    | st.builds(lambda n: {"name": n}, st.sampled_from(["SystemStats"]) | HOSTILE),
)


@settings(SETTINGS, max_examples=40)
@given(st.lists(REQUESTS, min_size=1, max_size=4))
def test_handlers_answer_random_requests_with_documented_outcomes(
    pool: RequestPool, tree: tuple[Path, Path], asks: list[tuple[str, dict[str, str]]]
) -> None:
    serve, outside = tree
    ids = [next(FRESH) + 1 for _ in asks]
    expected = 0
    answers: list[Envelope] = []
    for request_id, (type, request_params) in zip(ids, asks, strict=True):
        request_params = {k: concrete(v, serve, outside) for k, v in request_params.items()}
        refusal = pool.submit(envelope(Kind.REQUEST, type, request_id=request_id, params=request_params))
        if refusal is None:
            expected += 1
        else:
            answers.append(refusal)
    finals: list[Envelope] = []
    while len(finals) < expected:
        for answer in wait_frames(pool, 1, timeout=20):
            if answer.kind != Kind.CHUNK or answer.last:
                finals.append(answer)
    for answer in answers + finals:
        assert answer.request_id in ids and answer.kind in (Kind.RESPONSE, Kind.CHUNK, Kind.ERROR)
        if answer.kind == Kind.ERROR:
            assert answer.error_code in REFUSALS | {"unknown-type", "out-of-range"}, answer.error
