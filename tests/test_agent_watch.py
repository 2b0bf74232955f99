"""Watched folders without a collector: what the watcher puts into a (real, in-memory) outbox."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from messages import File, Files, Kind
from node_agent.outbox import Outbox
from node_agent.watch import STATE_NAME, Watcher

PIECE = 1000


@pytest.fixture
def outbox() -> Iterator[Outbox]:
    box = Outbox.open(None, "n1")
    yield box
    box.close()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "watched"
    path.mkdir()
    return path


def settle(watcher: Watcher, polls: int = 2) -> None:
    """Scan as many times as it takes a quiet file to be sent (seen once, then the same again)."""
    for _ in range(polls):
        watcher.scan(0.0)


def sent(outbox: Outbox, watcher: Watcher, ack: bool = True) -> list[File]:
    """Feed, commit and read back every piece (acknowledging as we go unless ``ack`` is False)."""
    pieces: list[File] = []
    while watcher.feed(outbox, "n1"):
        outbox.commit()
        frame = outbox.next_frame(1000)
        outbox.mark_sent(frame)
        for env in frame:
            assert (env.kind, env.type, env.schema) == (Kind.REPORT, "FileOutput", "labscope.Files")
            (piece,) = Files.FromString(env.payload).files
            pieces.append(piece)
        if ack and frame:
            outbox.ack(frame[-1].seq)
        if not ack:
            break
    return pieces


def test_quiet_file_is_sent_once_whole(folder: Path, outbox: Outbox) -> None:
    (folder / "a.txt").write_bytes(b"hello")
    watcher = Watcher([folder], piece=PIECE)
    watcher.scan(0.0)
    assert sent(outbox, watcher) == [], "a file seen once may still be being written"
    watcher.scan(1.0)
    (piece,) = sent(outbox, watcher)
    assert (piece.name, piece.data, piece.offset, piece.size, piece.last) == ("a.txt", b"hello", 0, 5, True)
    assert piece.modtime == pytest.approx(os.stat(folder / "a.txt").st_mtime)
    settle(watcher, 3)
    assert sent(outbox, watcher) == [], "an unchanged file is not sent again"


def test_growing_file_waits_until_it_is_quiet(folder: Path, outbox: Outbox) -> None:
    path = folder / "log.txt"
    path.write_bytes(b"one\n")
    watcher = Watcher([folder], piece=PIECE)
    watcher.scan(0.0)
    with open(path, "ab") as handle:
        handle.write(b"two\n")
    watcher.scan(1.0)
    assert sent(outbox, watcher) == []
    watcher.scan(2.0)
    assert [p.data for p in sent(outbox, watcher)] == [b"one\ntwo\n"]
    with open(path, "ab") as handle:
        handle.write(b"three\n")
    settle(watcher)
    assert [p.data for p in sent(outbox, watcher)] == [b"one\ntwo\nthree\n"], "a changed file goes again"


def test_large_file_goes_in_pieces_a_few_ahead_of_the_acks(folder: Path, outbox: Outbox) -> None:
    blob = os.urandom(PIECE * 7 + 3)
    (folder / "big.bin").write_bytes(blob)
    watcher = Watcher([folder], piece=PIECE, ahead=2)
    settle(watcher)
    unacked = sent(outbox, watcher, ack=False)
    assert len(unacked) == 2 and watcher.feed(outbox, "n1") == 0, "no more than `ahead` unacknowledged"
    outbox.commit()
    outbox.ack(outbox.committed)
    pieces = unacked + sent(outbox, watcher)
    assert [p.offset for p in pieces] == [i * PIECE for i in range(8)]
    assert {p.size for p in pieces} == {len(blob)} and [p.last for p in pieces] == [False] * 7 + [True]
    assert b"".join(p.data for p in pieces) == blob and all(len(p.data) <= PIECE for p in pieces)


def test_file_changed_while_sent_starts_over_once_quiet(folder: Path, outbox: Outbox) -> None:
    path = folder / "big.bin"
    path.write_bytes(b"a" * PIECE * 4)
    watcher = Watcher([folder], piece=PIECE, ahead=2)
    settle(watcher)
    assert len(sent(outbox, watcher, ack=False)) == 2
    path.write_bytes(b"b" * PIECE * 3)
    outbox.commit()
    outbox.ack(outbox.committed)
    assert sent(outbox, watcher) == [], "the transfer is dropped when the file changes"
    settle(watcher)
    pieces = sent(outbox, watcher)
    assert pieces[0].offset == 0 and b"".join(p.data for p in pieces) == b"b" * PIECE * 3 and pieces[-1].last


def test_names_links_and_special_files(folder: Path, outbox: Outbox, tmp_path: Path) -> None:
    (folder / "sub" / "deeper").mkdir(parents=True)
    (folder / "sub" / "deeper" / "x.csv").write_bytes(b"x")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    (folder / "inside-link").symlink_to(folder / "sub" / "deeper" / "x.csv")
    (folder / "out-file").symlink_to(outside / "secret")
    (folder / "out-dir").symlink_to(outside)
    (folder / "loop").symlink_to(folder)
    os.mkfifo(folder / "fifo")
    (folder / "back\\slash").write_bytes(b"refused by receivers")
    watcher = Watcher([folder], piece=PIECE)
    settle(watcher)
    pieces = sent(outbox, watcher)
    assert sorted(p.name for p in pieces) == ["inside-link", "sub/deeper/x.csv"]
    assert all(p.data == b"x" for p in pieces)


def test_sent_files_are_remembered_across_restarts(folder: Path, outbox: Outbox, tmp_path: Path) -> None:
    (folder / "a.txt").write_bytes(b"a")
    (folder / "b.txt").write_bytes(b"b")
    state = tmp_path / STATE_NAME
    first = Watcher([folder], piece=PIECE, state_path=state)
    settle(first)
    assert len(sent(outbox, first)) == 2
    first.close(outbox.committed)
    assert state.exists()
    (folder / "b.txt").write_bytes(b"bb")
    again = Watcher([folder], piece=PIECE, state_path=state)
    settle(again)
    assert [(p.name, p.data) for p in sent(outbox, again)] == [("b.txt", b"bb")]


def test_uncommitted_files_are_not_remembered(folder: Path, tmp_path: Path, outbox: Outbox) -> None:
    (folder / "a.txt").write_bytes(b"a")
    state = tmp_path / STATE_NAME
    watcher = Watcher([folder], piece=PIECE, state_path=state)
    settle(watcher)
    assert watcher.feed(outbox, "n1") == 1
    watcher.close(committed=0)  # the agent died before the outbox committed the report
    again = Watcher([folder], piece=PIECE, state_path=state)
    settle(again)
    assert again.feed(outbox, "n1") == 1, "a file whose report was never committed is sent again"


def test_deleted_and_recreated_file_is_sent_again(folder: Path, outbox: Outbox) -> None:
    path = folder / "a.txt"
    path.write_bytes(b"same")
    stamp = os.stat(path)
    watcher = Watcher([folder], piece=PIECE)
    settle(watcher)
    assert len(sent(outbox, watcher)) == 1
    path.unlink()
    watcher.scan(0.0)
    path.write_bytes(b"same")
    os.utime(path, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    settle(watcher)
    assert [p.data for p in sent(outbox, watcher)] == [b"same"]


def test_corrupt_state_file_is_ignored(folder: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    state = tmp_path / STATE_NAME
    state.write_text("{not json")
    watcher = Watcher([folder], state_path=state)
    assert watcher.busy is False and "ignoring" in caplog.text
