"""The example modules in tests/fixtures/modules behave as the collector's integration tests expect."""

from __future__ import annotations

import importlib.util
import inspect
from pathlib import Path
from typing import Any

import pytest

from collector.addons import Aggregator, Report, Request, RequestError, as_names
from collector.testing import StubCollector, attach
from messages import Encoding, File, Files
from tests.modules import report, sample

FIXTURE_MODULES = Path(__file__).resolve().parent.parent / "fixtures" / "modules"


def load(stem: str) -> Aggregator:
    """Import a fixture file by path (as a modules folder is loaded) and build its one Aggregator."""
    spec = importlib.util.spec_from_file_location(f"fixture_module_{stem}", FIXTURE_MODULES / f"{stem}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    classes = [
        c for c in vars(module).values() if inspect.isclass(c) and issubclass(c, Aggregator) and c is not Aggregator
    ]
    assert len(classes) == 1, classes
    return attach(classes[0](), StubCollector())


def files_report(seq: int, *files: File) -> Report:
    return Report(
        "n1",
        "FileOutput",
        seq,
        1000.0 + seq,
        Files(files=files).SerializeToString(),
        Encoding.PROTOBUF,
        "labscope.Files",
    )


def names(data: bytes) -> list[tuple[str, float, bytes]]:
    return [(f.name, f.modtime, f.data) for f in Files.FromString(data).files]


def test_classic_is_written_in_the_classic_form() -> None:
    source = (FIXTURE_MODULES / "classic_fileprocessor.py").read_text()
    assert "def __init__(self):" in source
    assert "super(" not in source.replace("super() call", "")
    assert "requesttypes = 'File', 'FileList'," in source
    module = load("classic_fileprocessor")
    assert module.reporttype == "FileOutput"
    assert as_names(module.requesttypes) == ("File", "FileList")
    assert module.updatetype == "FileList"


def test_classic_serves_files_as_bytes() -> None:
    module = load("classic_fileprocessor")
    module.processReport(
        files_report(1, File(name="b.log", modtime=5.0, data=b"bee"), File(name="a.log", modtime=6.0, data=b"ay"))
    )
    module.processReport(files_report(2, File(name="b.log", modtime=7.0, data=b"bee2")))
    listing = module.processREQUEST(Request("FileList"))
    assert isinstance(listing, bytes)
    assert names(listing) == [("a.log", 6.0, b""), ("b.log", 7.0, b"")]
    one = module.processREQUEST(Request("File", {"filename": "b.log"}))
    assert isinstance(one, bytes)
    assert names(one) == [("b.log", 7.0, b"bee2")]


@pytest.mark.parametrize(("params", "code"), [({}, "bad-request"), ({"filename": "nope"}, "not-found")])
def test_classic_request_errors(params: dict[str, str], code: str) -> None:
    module = load("classic_fileprocessor")
    with pytest.raises(RequestError) as info:
        module.processREQUEST(Request("File", params))
    assert info.value.code == code


def test_classic_update_bytes_only_when_changed() -> None:
    module = load("classic_fileprocessor")
    assert module.getUpdateMessage() is None
    module.processReport(files_report(1, File(name="x", modtime=1.0, data=b"1")))
    update = module.getUpdateMessage()
    assert isinstance(update, bytes)
    assert names(update) == [("x", 1.0, b"")]
    assert module.getUpdateMessage() is None


def test_raising_raises_and_counts() -> None:
    module = load("raising")
    assert module.name == "raising"
    assert as_names(module.reporttype) == ("SystemStats",)
    for seq in (1, 2):
        with pytest.raises(RuntimeError, match="deliberate"):
            module.processReport(report("n1", seq, sample(1000.0)))
    assert module.processREQUEST(Request("RaisingCalls")) == {"calls": 2}
    with pytest.raises(RuntimeError):
        module.processREQUEST(Request("RaisingRequest"))


def test_counter_records_seqs_in_order() -> None:
    module = load("counter")
    assert module.name == "counter"
    assert as_names(module.reporttype) == ("SystemStats", "ProbeData")
    for seq in (1, 2, 3):
        module.processReport(report("n1", seq, sample(1000.0 + seq)))
    module.processReport(Report("n2", "ProbeData", 9, 1000.0, b"\x80", Encoding.MSGPACK))
    module.processReport(report("n1", 3, sample(1004.0)))  # a duplicate shows up as such
    answer: Any = module.processREQUEST(Request("CounterStats"))
    assert answer == {"n1": {"count": 4, "seqs": [1, 2, 3, 3]}, "n2": {"count": 1, "seqs": [9]}}
    assert module.processREQUEST(Request("CounterStats", {"node": "n2"})) == {"n2": {"count": 1, "seqs": [9]}}
    assert module.processREQUEST(Request("CounterStats", {"node": "zz"})) == {}
