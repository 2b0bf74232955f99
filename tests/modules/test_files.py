"""The files module without sockets: whole and chunked files, confinement, listing, serving."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from collector.addons import NodeRecord, Report, Request, RequestError
from collector.testing import StubCollector, attach
from messages import Encoding, File, Files
from messages.stream import CHUNK_BYTES as CHUNK
from modules.files import FilesModule


@pytest.fixture
def files(tmp_path: Path) -> FilesModule:
    return attach(FilesModule(), StubCollector(tmp_path / "store"))


def send(module: FilesModule, node: str, *pieces: File, seq: int = 1) -> None:
    data = Files(files=list(pieces)).SerializeToString()
    module.processReport(Report(node, "FileOutput", seq, 0.0, data, Encoding.PROTOBUF, "labscope.Files"))


def test_whole_file_is_stored_listed_and_served(files: FilesModule) -> None:
    send(files, "n1", File(name="logs/run.log", modtime=1700000000.0, data=b"hello\n", size=6, last=True))
    stored = files.root / "n1" / "logs" / "run.log"  # type: ignore[operator]
    assert stored.read_bytes() == b"hello\n" and stored.stat().st_mtime == 1700000000.0
    assert files.listing() == [{"node": "n1", "name": "logs/run.log", "size": 6, "modtime": 1700000000.0}]
    answer = files.processREQUEST(Request("File", {"node": "n1", "filename": "logs/run.log"}))
    assert answer.files[0].data == b"hello\n"
    assert files.getUpdateMessage() == files.listing() and files.getUpdateMessage() is None


def test_a_part_suffix_is_an_ordinary_name(files: FilesModule) -> None:
    send(files, "n1", File(name="download.part", modtime=1.0, data=b"ok", size=2, last=True))
    assert files.refused == 0 and files.listing()[0]["name"] == "download.part"


def test_classic_piece_without_size_is_a_whole_file(files: FilesModule) -> None:
    send(files, "n1", File(name="a.txt", modtime=5.0, data=b"classic"))
    assert files.listing()[0]["size"] == 7


def test_chunked_file_is_assembled_and_streamed_back(files: FilesModule) -> None:
    blob = os.urandom(CHUNK * 2 + 123)
    pieces = [blob[i : i + CHUNK] for i in range(0, len(blob), CHUNK)]
    for index, piece in enumerate(pieces):
        send(
            files,
            "n2",
            File(
                name="big.bin",
                modtime=9.0,
                data=piece,
                offset=index * CHUNK,
                size=len(blob),
                last=index == len(pieces) - 1,
            ),
            seq=index + 1,
        )
        if index < len(pieces) - 1:
            assert files.listing() == [], "a file is listed only once complete"
    answer = files.processREQUEST(Request("File", {"node": "n2", "filename": "big.bin"}))
    streamed = b"".join(answer)
    assert hashlib.sha256(streamed).digest() == hashlib.sha256(blob).digest()


@pytest.mark.parametrize("name", ["../../x", "/tmp/x", "a/../../x", "nul\x00.txt", "back\\slash", "", "a//b"])
def test_hostile_names_are_refused_and_write_nothing_outside(files: FilesModule, tmp_path: Path, name: str) -> None:
    before = sorted(p for p in tmp_path.rglob("*"))
    send(files, "n1", File(name=name, modtime=1.0, data=b"evil", size=4, last=True))
    assert files.refused == 1
    after = sorted(p for p in tmp_path.rglob("*"))
    assert [p for p in after if p not in before and p.is_file()] == []
    assert not Path("/tmp/x").exists() or Path("/tmp/x").read_bytes() != b"evil"


def test_hostile_node_id_is_refused(files: FilesModule, tmp_path: Path) -> None:
    send(files, "../evil", File(name="x", modtime=1.0, data=b"evil", size=4, last=True))
    assert files.refused == 1 and not (tmp_path / "evil").exists()


def test_symlink_in_the_store_is_refused(files: FilesModule, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (files.root / "n1").mkdir()  # type: ignore[operator]
    (files.root / "n1" / "link").symlink_to(outside)  # type: ignore[operator]
    send(files, "n1", File(name="link/x", modtime=1.0, data=b"evil", size=4, last=True))
    assert files.refused == 1 and list(outside.iterdir()) == []


def test_restart_indexes_what_is_stored(tmp_path: Path) -> None:
    collector = StubCollector(tmp_path / "store")
    first = attach(FilesModule(), collector)
    send(first, "n1", File(name="keep.csv", modtime=3.0, data=b"1,2", size=3, last=True))
    second = attach(FilesModule(), collector)
    assert second.listing() == first.listing()


def test_request_errors(files: FilesModule) -> None:
    with pytest.raises(RequestError) as missing:
        files.processREQUEST(Request("File", {"node": "n1"}))
    assert missing.value.code == "bad-request"
    with pytest.raises(RequestError) as unknown:
        files.processREQUEST(Request("File", {"node": "n1", "filename": "nope"}))
    assert unknown.value.code == "not-found"
    assert files.processREQUEST(Request("FileStats", {})) == {"files": 0, "bytes": 0, "refused": 0}


def test_a_site_qualified_node_stores_under_site_and_node(files: FilesModule) -> None:
    send(files, "lab1:n1", File(name="logs/run.log", modtime=1700000000.0, data=b"top\n", size=4, last=True))
    assert (files.root / "lab1" / "n1" / "logs" / "run.log").read_bytes() == b"top\n"  # type: ignore[operator]
    answer = files.processREQUEST(Request("File", {"node": "lab1:n1", "filename": "logs/run.log"}))
    assert answer.files[0].data == b"top\n"
    assert files.listing("lab1:n1") == [{"node": "lab1:n1", "name": "logs/run.log", "size": 4, "modtime": 1700000000.0}]


@pytest.mark.parametrize(
    "node", ["../x:n1", "a.b:n1", "lab1:..", "lab1:../x", ":n1", "lab1:", "lab1:n1:x/y", "lab/1:n"]
)
def test_a_hostile_qualified_node_id_is_refused(files: FilesModule, tmp_path: Path, node: str) -> None:
    before = sorted(tmp_path.rglob("*"))
    send(files, node, File(name="x", modtime=1.0, data=b"evil", size=4, last=True))
    assert files.refused == 1
    assert [p for p in sorted(tmp_path.rglob("*")) if p not in before and p.is_file()] == []


def test_restart_indexes_a_site_node_by_its_qualified_id(tmp_path: Path) -> None:
    collector = StubCollector(tmp_path / "store")
    collector.records["lab1:n1"] = NodeRecord("lab1:n1", site="lab1")
    first = attach(FilesModule(), collector)
    send(first, "lab1:n1", File(name="keep.csv", modtime=3.0, data=b"1,2", size=3, last=True))
    send(first, "n2", File(name="sub/keep.csv", modtime=3.0, data=b"1,2", size=3, last=True))
    second = attach(FilesModule(), collector)
    assert second.listing() == first.listing()
    assert {entry["node"] for entry in second.listing()} == {"lab1:n1", "n2"}
