"""The seeds' code samples run as drop-ins, exactly as the seeds show them (../shared/seeds/).

The FileProcessor of seed 003 is copied verbatim into tests/fixtures/seed_modules
(only Python 3 syntax changed) and run in a real collector, fed by a real agent's probe.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from messages import Encoding, Files, Kind
from tests.conftest import FIXTURES, ProcessGroup
from tests.wire import Client

SEED_MODULES = FIXTURES / "seed_modules"
SEED_PROBES = FIXTURES / "seed_probes"
CONTENT = b"run 7: 42 packets\n"

pytestmark = pytest.mark.timeout(60)


def files_of(payload: bytes) -> list[tuple[str, bytes]]:
    """(name, data) of every file in a serialized labscope.Files."""
    return [(f.name, f.data) for f in Files.FromString(payload).files]


def test_seed_file_processor_is_verbatim() -> None:
    source = (SEED_MODULES / "fileprocessor.py").read_text()
    for line in (
        "for f in data.files:",
        "file = data.files.add()",
        "return self.getFileData(msg.filename)",
        "storagedir = '/tmp/dir'",
        "requesttypes = 'File', 'FileList',",
        'logging.warning("Failed open/read %s" % name)',
    ):
        assert line in source, line


@pytest.mark.e2e
def test_seed_file_processor_runs_as_a_drop_in(procs: ProcessGroup, zmq_context, tmp_path: Path) -> None:
    store = tmp_path / "seed-store"
    config = tmp_path / "collector.toml"
    config.write_text(f'[modules.fileprocessor]\nstoragedir = "{store}"\nupdate_interval = 0.2\n')
    collector = procs.collector(
        "--modules-dir", str(SEED_MODULES), "--disable-module", "files", "--config", str(config)
    )
    client = Client(zmq_context, collector.clients)
    try:
        client.send(Kind.SUBSCRIBE, params={"types": "FileList"})
        procs.agent(collector.agents, "seed-node", "--probes-dir", str(SEED_PROBES))
        update = client.expect(
            lambda e: e.kind == Kind.UPDATE and e.type == "FileList" and ("notes.txt", CONTENT) in files_of(e.payload),
            what="FileList update",
        )
        assert update.encoding == Encoding.RAW  # the classic module's bytes, untouched
        assert (store / "notes.txt").read_bytes() == CONTENT

        listing = client.ask("FileList")
        assert listing.kind == Kind.RESPONSE
        assert [name for name, _ in files_of(listing.payload)] == ["notes.txt"]
        assert files_of(listing.payload) == [("notes.txt", b"")]  # a list without data

        one = client.ask("File", filename="notes.txt")
        assert one.kind == Kind.RESPONSE
        assert files_of(one.payload) == [("notes.txt", CONTENT)]

        missing = client.ask("File", filename="absent.txt")
        assert (missing.kind, missing.payload) == (Kind.RESPONSE, b"")  # the seed answers None
    finally:
        client.close()
