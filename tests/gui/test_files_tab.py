"""The Files tab: listing, saving and fetching files through a real collector (pytest-qt, offscreen).

Files reach the collector's files module the way an agent sends them: a DEALER
says HELLO, then sends ``FileOutput`` REPORTs carrying ``labscope.Files`` (a
small file in one piece, a 3 MiB file in 1 MiB pieces with offset/size/last).
Dialogs are replaced by plain functions (``FilesView.ask_save_path`` and
``ask_node_path``), so nothing waits for a user.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import zmq
from PySide6 import QtWidgets

from gui.client import Client, RequestFailed
from gui.views.files import UNAVAILABLE, FileEntry, FilesView, NodePathDialog, parse_file_list
from gui.worker import Transfer, TransferCancelled, stream_to_file, unwrap_files
from messages import File, Files, Kind, NodeInfo
from tests.conftest import CollectorProcess, ProcessGroup
from tests.wire import Peer

pytestmark = pytest.mark.timeout(60)

WAIT_MS = 15_000
MIB = 1024 * 1024
NODE = "files-node"
SMALL = "logs/run.log"
BIG = "traces/big.bin"


@dataclass
class FilesBed:
    """A collector whose files module holds two files of ``NODE``, sent by a hand-played agent."""

    collector: CollectorProcess
    agent: Peer
    blobs: dict[str, bytes]
    seq: int = 0

    def send(self, name: str, blob: bytes, modtime: float = 1_700_000_000.0) -> None:
        """Send ``blob`` as FileOutput REPORTs of at most 1 MiB; returns once the collector acknowledged them."""
        offsets = range(0, max(len(blob), 1), MIB)
        for offset in offsets:
            self.seq += 1
            piece = File(
                name=name,
                modtime=modtime,
                data=blob[offset : offset + MIB],
                offset=offset,
                size=len(blob),
                last=offset == offsets[-1],
            )
            self.agent.send(Kind.REPORT, "FileOutput", Files(files=[piece]), node=NODE, seq=self.seq)
        self.agent.expect(lambda e: e.kind == Kind.ACK and e.seq >= self.seq, what=f"ACK of {name}")
        self.blobs[name] = blob


@pytest.fixture
def files_bed(procs: ProcessGroup, zmq_context: zmq.Context) -> Iterator[FilesBed]:
    collector = procs.collector("--update-interval", "0.2", "--node-timeout", "30")
    agent = Peer(zmq_context, collector.agents)
    agent.send(Kind.HELLO, "NodeInfo", NodeInfo(node=NODE, hostname="h", instance="i1"), node=NODE, seq=1)
    agent.expect(lambda e: e.kind == Kind.ACK, what="ACK after HELLO")
    bed = FilesBed(collector, agent, {})
    bed.send(SMALL, os.urandom(5000) + b"\n")
    bed.send(BIG, os.urandom(3 * MIB))
    try:
        yield bed
    finally:
        agent.close()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def listed(view: FilesView) -> set[tuple[str, str]]:
    return {(entry.node, entry.name) for entry in view.shown_entries()}


def open_files_tab(make_window, qtbot, bed: FilesBed, out: Path):
    """A window showing both files, whose save dialog answers ``out/NAME``."""
    window = make_window(bed.collector.clients)
    view = window.files
    view.ask_save_path = lambda parent, suggested: str(out / Path(suggested).name)
    qtbot.waitUntil(lambda: view.available and listed(view) >= {(NODE, SMALL), (NODE, BIG)}, timeout=WAIT_MS)
    return window, view


# ------------------------------------------------------------ against a real collector


@pytest.mark.e2e
def test_lists_and_saves_both_files_with_progress(files_bed: FilesBed, make_window, qtbot, tmp_path: Path) -> None:
    out = tmp_path / "saved"
    out.mkdir()
    window, view = open_files_tab(make_window, qtbot, files_bed, out)
    assert view.pages.currentWidget() is not view.notice
    rows = {item.text(1): [item.text(c) for c in range(4)] for item in map(view.table.topLevelItem, range(2))}
    assert rows[BIG][0] == NODE and rows[BIG][2] == "3.0 MiB" and rows[BIG][3].startswith("2023-11-1")
    assert rows[SMALL][2] == "4.9 KiB"
    progress: list[tuple[int, int]] = []
    window.worker.transfer_progress.connect(lambda tag, done, total: progress.append((done, total)))
    for name in (SMALL, BIG):
        assert view.select_file(NODE, name)
        view.save.click()
        assert view.active is not None and not view.save.isEnabled()
        qtbot.waitUntil(lambda: view.active is None, timeout=WAIT_MS)
        target = out / Path(name).name
        assert "Saved" in view.status.text(), view.status.text()
        assert sha(target.read_bytes()) == sha(files_bed.blobs[name])
        assert view.percent() == 100
    assert sorted(p.name for p in out.iterdir()) == ["big.bin", "run.log"]  # no temporary file left
    big = [(done, total) for done, total in progress if total == 3 * MIB]
    assert [done for done, _ in big] == sorted(done for done, _ in big) and big[-1][0] == 3 * MIB
    assert len(big) >= 3  # the bar advanced piece by piece, not once at the end


@pytest.mark.e2e
def test_list_follows_the_subscription(files_bed: FilesBed, make_window, qtbot, tmp_path: Path) -> None:
    window, view = open_files_tab(make_window, qtbot, files_bed, tmp_path)
    asked: list[str] = []
    view.list_wanted.connect(asked.append)
    files_bed.send("later.txt", b"arrived later")
    qtbot.waitUntil(lambda: (NODE, "later.txt") in listed(view), timeout=WAIT_MS)
    assert asked == []  # pushed by the FileList update, not polled
    window.nodes.select_nodes(["someone-else"])  # not a node: selection is empty, every file stays
    assert len(listed(view)) == 3


@pytest.mark.e2e
def test_a_failed_save_leaves_no_file_and_says_why(files_bed: FilesBed, make_window, qtbot, tmp_path: Path) -> None:
    out = tmp_path / "saved"
    out.mkdir()
    _, view = open_files_tab(make_window, qtbot, files_bed, out)
    assert view.save_file(FileEntry(NODE, "gone.bin", 10, 0.0))
    qtbot.waitUntil(lambda: view.active is None, timeout=WAIT_MS)
    text = view.status.text()
    assert "not-found" in text and "gone.bin" in text and "Nothing was saved" in text, text
    assert list(out.iterdir()) == []
    assert view.percent() == 0


@pytest.mark.e2e
def test_fetch_from_an_unknown_node_shows_the_collectors_error(
    files_bed: FilesBed, make_window, qtbot, tmp_path: Path
) -> None:
    out = tmp_path / "saved"
    out.mkdir()
    _, view = open_files_tab(make_window, qtbot, files_bed, out)
    asked: list[tuple[list[str], str]] = []

    def answer(parent: QtWidgets.QWidget, nodes: list[str], default: str) -> tuple[str, str]:
        asked.append((nodes, default))
        return "nobody", "/var/log/syslog"

    view.ask_node_path = answer
    assert view.select_file(NODE, SMALL)
    # The node list comes with the NodeList update, which may follow the FileList answer by a second.
    qtbot.waitUntil(lambda: NODE in view.known_nodes, timeout=WAIT_MS)
    view.fetch.click()
    qtbot.waitUntil(lambda: view.active is None, timeout=WAIT_MS)
    assert asked and asked[0][1] == NODE  # the selected file's node is the default
    assert NODE in asked[0][0]
    text = view.status.text()
    assert "not-found" in text and "nobody:/var/log/syslog" in text, text
    assert list(out.iterdir()) == []


@pytest.mark.e2e
def test_without_a_files_module_the_tab_says_so(procs: ProcessGroup, make_window, qtbot) -> None:
    collector = procs.collector("--disable-module", "files")
    window = make_window(collector.clients)
    qtbot.waitUntil(lambda: window.info is not None, timeout=WAIT_MS)
    assert "FileList" not in window.info.request_types
    assert window.files.pages.currentWidget() is window.files.notice
    assert window.files.notice.text() == UNAVAILABLE


@pytest.mark.e2e
def test_stream_to_file_verifies_and_cleans_up(files_bed: FilesBed, zmq_context: zmq.Context, tmp_path: Path) -> None:
    out = tmp_path / "saved"
    out.mkdir()
    target = out / "big.bin"
    target.write_bytes(b"the previous copy")
    with Client(files_bed.collector.clients, context=zmq_context) as client:
        spec = Transfer("t1", "File", {"node": NODE, "filename": BIG}, str(target), 3 * MIB, BIG)
        with pytest.raises(TransferCancelled):
            stream_to_file(client, spec, lambda done: None, cancelled=lambda: True, timeout=10)
        assert target.read_bytes() == b"the previous copy"  # a cancelled transfer leaves the target alone
        seen: list[int] = []
        size, digest = stream_to_file(client, spec, seen.append, timeout=10)
        assert (size, digest) == (3 * MIB, sha(files_bed.blobs[BIG])) and seen[-1] == 3 * MIB
        small = Transfer("t2", "File", {"node": NODE, "filename": SMALL}, str(out / "run.log"), 0, SMALL)
        assert stream_to_file(client, small, seen.append, timeout=10)[1] == sha(files_bed.blobs[SMALL])
        with pytest.raises(RequestFailed) as failed:
            stream_to_file(client, Transfer("t3", "File", {"node": NODE}, str(target)), seen.append, timeout=10)
        assert failed.value.code == "bad-request"
    assert sorted(p.name for p in out.iterdir()) == ["big.bin", "run.log"]
    assert target.read_bytes() == files_bed.blobs[BIG]


# ------------------------------------------------------------ without sockets


def test_unwrap_files_takes_a_files_answer_and_leaves_raw_bytes_alone() -> None:
    answer = Files(files=[File(name="a.txt", data=b"hello", size=5, last=True)]).SerializeToString()
    assert unwrap_files(answer, "a.txt") == b"hello"
    assert unwrap_files(answer, "other.txt") == answer  # not this file: raw bytes of a one-chunk stream
    assert unwrap_files(b"\xff\xff not protobuf", "a.txt") == b"\xff\xff not protobuf"
    short = Files(files=[File(name="a.txt", data=b"hel", size=5)]).SerializeToString()
    with pytest.raises(RequestFailed) as failed:
        unwrap_files(short, "a.txt")
    assert failed.value.code == "checksum"


def test_file_list_is_filtered_by_the_selected_nodes_and_sorts_sizes_as_numbers(qtbot) -> None:
    view = FilesView()
    qtbot.addWidget(view)
    view.set_request_types(["FileList"])
    view.set_file_list(
        [
            {"node": "n1", "name": "a", "size": 900, "modtime": 1.0},
            {"node": "n1", "name": "b", "size": 10_000, "modtime": 2.0},
            {"node": "n2", "name": "c", "size": 50, "modtime": 3.0},
            {"node": "", "name": "skipped"},
            "junk",
        ]
    )
    assert len(view.entries) == 3
    view.table.sortByColumn(2, view.table.header().sortIndicatorOrder().AscendingOrder)
    assert [e.name for e in view.shown_entries()] == ["c", "a", "b"]  # 50 B < 900 B < 9.8 KiB
    view.set_selected(["n2"])
    assert [e.name for e in view.shown_entries()] == ["c"] and "1 file" in view.status.text()
    view.set_selected([])
    assert len(view.shown_entries()) == 3
    view.set_file_list({"not": "a list"})
    assert len(view.entries) == 3 and "could not be read" in view.status.text()


def test_save_asks_for_a_path_and_emits_one_transfer_at_a_time(qtbot) -> None:
    view = FilesView()
    qtbot.addWidget(view)
    view.set_request_types(["FileList"])
    view.set_file_list([{"node": "n1", "name": "dir/a.csv", "size": 2000, "modtime": 1.0}])
    wanted: list[Transfer] = []
    view.transfer_wanted.connect(wanted.append)
    view.ask_save_path = lambda parent, suggested: ""  # the user cancelled the dialog
    assert view.select_file("n1", "dir/a.csv")
    view.save.click()
    assert wanted == [] and view.active is None
    view.ask_save_path = lambda parent, suggested: f"/somewhere/{suggested}"
    view.save.click()
    assert wanted == [
        Transfer("transfer:1", "File", {"node": "n1", "filename": "dir/a.csv"}, "/somewhere/a.csv", 2000, "dir/a.csv")
    ]
    assert not view.save.isEnabled() and not view.fetch.isEnabled() and not view.cancel.isHidden()
    view.show_progress("transfer:1", 1000, 2000)
    assert view.percent() == 50
    view.show_progress("transfer:other", 2000, 2000)  # not ours: ignored
    assert view.percent() == 50
    view.transfer_done("transfer:1", "/somewhere/a.csv", 2000, "ab" * 32)
    assert view.percent() == 100 and view.active is None and view.save.isEnabled()
    listing = [{"node": "n1", "name": "dir/a.csv", "size": 2000, "modtime": 1.0}]
    view.set_file_list(listing)  # the list refreshed right after: the outcome stays on the status line
    view.set_file_list([*listing, {"node": "n1", "name": "b", "size": 1, "modtime": 2.0}])
    assert view.status.text().startswith("Saved n1:dir/a.csv to /somewhere/a.csv"), view.status.text()
    view.save.click()  # the next save says what it does again
    assert view.status.text().startswith("Fetching")


def test_node_path_dialog_and_list_shapes(qtbot) -> None:
    dialog = NodePathDialog(None, ["n1", "n2"], "n2")
    qtbot.addWidget(dialog)
    assert dialog.values() is None  # no path yet
    dialog.path.setText(" /srv/out.txt ")
    assert dialog.values() == ("n2", "/srv/out.txt")
    assert parse_file_list(None) is None
    assert parse_file_list([{"node": "n", "name": "x", "size": "bad", "modtime": float("nan")}]) == [
        FileEntry("n", "x", 0, 0.0)
    ]


def test_files_tab_says_plainly_when_unavailable(qtbot) -> None:
    view = FilesView()
    qtbot.addWidget(view)
    view.set_request_types(["NodeList", "SystemStats"])
    assert view.pages.currentWidget() is view.notice
    assert view.notice.text() == UNAVAILABLE and "not available" in UNAVAILABLE
    wanted: list[str] = []
    view.list_wanted.connect(wanted.append)
    view.set_request_types(["FileList", "NodeList"])  # becoming available asks for every node's list once
    view.refresh.click()
    assert wanted == ["", ""]


@pytest.mark.e2e
def test_fetch_from_a_real_agents_serve_folder(procs: ProcessGroup, make_window, qtbot, tmp_path: Path) -> None:
    serve, out = tmp_path / "serve", tmp_path / "saved"
    serve.mkdir()
    out.mkdir()
    blob = os.urandom(2 * MIB + 17)
    (serve / "trace.bin").write_bytes(blob)
    collector = procs.collector("--update-interval", "0.2")
    procs.agent(collector.agents, "serving-node", "--serve-dir", str(serve), interval=0.5)
    window = make_window(collector.clients)
    view = window.files
    view.ask_save_path = lambda parent, suggested: str(out / Path(suggested).name)
    view.ask_node_path = lambda parent, nodes, default: ("serving-node", str(serve / "trace.bin"))
    qtbot.waitUntil(lambda: view.available, timeout=WAIT_MS)
    with Client(collector.clients) as client:
        qtbot.waitUntil(
            lambda: any(
                n.node == "serving-node" and n.status == "live" for n in client.request("NodeList").payload.nodes
            ),
            timeout=WAIT_MS,
        )
    view.fetch.click()
    qtbot.waitUntil(lambda: view.active is None and (out / "trace.bin").exists(), timeout=WAIT_MS)
    assert sha((out / "trace.bin").read_bytes()) == sha(blob)
    assert [p.name for p in out.iterdir()] == ["trace.bin"], "no temporary file left behind"
