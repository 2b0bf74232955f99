"""The files module's name confinement under generated names: nothing from the wire leaves its folder.

A node names the files it sends; the names here are built from ``..``, ``.``,
empty components, absolute prefixes, NULs, backslashes, very long components,
unicode, and symlinks planted in the store (to a folder and to a file outside
it). Whatever the name, a FileOutput report either stores the file inside
``DATA_DIR/modules/files/NODE`` or refuses and counts it; nothing outside the
store is written, and every stored file is served back from inside the store.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from collector.addons import Report, Request, RequestError
from collector.testing import StubCollector, attach
from messages import Encoding, File, Files
from modules.files import FilesModule
from tests.fuzz.strategies import HOSTILE

COMPONENTS = st.sampled_from(
    ["..", ".", "", "in-link", "out-link", "file-link", "a", "b", "x" * 300, "é", "a\x00", "\\"]
)
NAMES = st.one_of(
    st.builds(
        lambda absolute, parts: ("/" if absolute else "") + "/".join(parts),
        st.booleans(),
        st.lists(COMPONENTS, min_size=1, max_size=5),
    ),
    HOSTILE,
)
NODE_IDS = st.sampled_from(["n1", "n2", ".", "..", "", "n1/..", "a" * 129, "é"]) | HOSTILE
PIECES = st.builds(
    lambda name, data, last: File(name=name, modtime=1.7e9, data=data, size=len(data), last=last),
    NAMES,
    st.binary(max_size=8),
    st.booleans(),
)
FRESH = itertools.count()
SETTINGS = settings(
    max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def plant(module: FilesModule, outside: Path) -> None:
    """Symlinks inside node n1's folder of the store: one to a folder outside, one to a file outside."""
    assert module.root is not None
    node = module.root / "n1"
    node.mkdir(exist_ok=True)
    (node / "out-link").symlink_to(outside, target_is_directory=True)
    (node / "file-link").symlink_to(outside / "secret.txt")
    (node / "in-link").symlink_to(node, target_is_directory=True)


def files_under(top: Path) -> set[Path]:
    """Every file and symlink below ``top``, symlinks not followed."""
    found = set()
    for folder, dirs, files in os.walk(top):
        found.update(Path(folder) / name for name in (*dirs, *files) if (Path(folder) / name).is_symlink())
        found.update(Path(folder) / name for name in files)
    return found


@SETTINGS
@given(st.lists(st.tuples(NODE_IDS, st.lists(PIECES, min_size=1, max_size=3)), min_size=1, max_size=4))
@example([("n1", [File(name="x" * 300, modtime=1.0, data=b"a", size=1, last=True)])])  # ENAMETOOLONG
@example([("n1", [File(name="a", data=b"a"), File(name="a/b", data=b"b")])])  # a file where a folder must go
@example([("n1", [File(name="a/b", data=b"b"), File(name="a", data=b"a")])])  # a folder where a file must go
def test_names_from_the_wire_never_leave_the_store(tmp_path: Path, sends: list[tuple[str, list[File]]]) -> None:
    top = tmp_path / str(next(FRESH))
    outside = top / "outside"
    outside.mkdir(parents=True)
    (outside / "secret.txt").write_bytes(b"secret")
    module = attach(FilesModule(), StubCollector(top / "store"))
    plant(module, outside)
    before = files_under(top)
    for seq, (node, pieces) in enumerate(sends, 1):
        data = Files(files=pieces).SerializeToString()
        module.processReport(Report(node, "FileOutput", seq, 1.7e9, data, Encoding.PROTOBUF, "labscope.Files"))
    assert module.root is not None and module.partial_root is not None
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert (outside / "secret.txt").read_bytes() == b"secret"
    for path in files_under(top) - before:
        assert path.is_relative_to(module.root) or path.is_relative_to(module.partial_root), path
        assert not path.is_symlink(), path
    for (node, name), (size, _) in module.index.items():
        stored = (module.root / node / name).resolve()
        assert stored.is_relative_to(module.root) and stored.stat().st_size == size
        answer = module.processREQUEST(Request("File", {"node": node, "filename": name}))
        assert isinstance(answer, Files) and len(answer.files[0].data) == size


@SETTINGS
@given(NODE_IDS, NAMES)
def test_requests_for_any_name_answer_or_refuse(tmp_path: Path, node: str, name: str) -> None:
    top = tmp_path / str(next(FRESH))
    outside = top / "outside"
    outside.mkdir(parents=True)
    (outside / "secret.txt").write_bytes(b"secret")
    module = attach(FilesModule(), StubCollector(top / "store"))
    plant(module, outside)
    try:
        answer = module.processREQUEST(Request("File", {"node": node, "filename": name}))
    except RequestError as exc:
        assert exc.code in ("bad-request", "not-found")
    else:
        pytest.fail(f"served {answer!r} that nobody sent")


@pytest.mark.parametrize(
    "names",
    [["x" * 300], ["a", "a/b"], ["a/b", "a"]],
    ids=["name-too-long", "file-where-a-folder-goes", "folder-where-a-file-goes"],
)
def test_names_the_file_system_refuses_are_counted_not_raised(tmp_path: Path, names: list[str]) -> None:
    """Regression: these raised OSError out of processReport (a module error and an Event per report)."""
    module = attach(FilesModule(), StubCollector(tmp_path / "store"))
    for seq, name in enumerate(names, 1):
        data = Files(files=[File(name=name, modtime=1.0, data=b"z", size=1, last=True)]).SerializeToString()
        module.processReport(Report("n1", "FileOutput", seq, 1.0, data, Encoding.PROTOBUF, "labscope.Files"))
    assert module.refused == 1 and len(module.index) == len(names) - 1
    assert module.partial_root is not None and list(module.partial_root.iterdir()) == []
