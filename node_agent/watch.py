"""Watched folders (``--watch-dir``): new and changed files go out as ``FileOutput`` reports.

Cheap polling, no busy loop: every ``interval`` seconds (1 s) each folder is
walked and every regular file's (mtime, size) noted. A file is sent when it
differs from what was last sent for its name *and* was the same at the
previous poll, so a file still being written waits until it is quiet.

Each report carries a ``labscope.Files`` with one ``File``: ``name`` (path
relative to the watched folder, ``/``-separated), ``modtime``, ``data`` and
``offset`` / ``size`` / ``last``. A file of up to ``piece`` bytes (1 MiB)
travels whole; a larger one in consecutive reports of ``piece`` bytes, read
one at a time with ``pread``. At most ``ahead`` pieces (4) are in the outbox
unacknowledged, so a 10 GiB file costs a few MiB of outbox, and it waits
while the collector is away. A file that changes while it is being sent is
dropped and sent again from the start once it is quiet.

Symlinks are followed only when they resolve inside the watched folder (a
link to a folder is followed once), and only regular files are read (a FIFO
would block). Names that are not UTF-8 or hold a backslash cannot travel
(receivers refuse them) and are skipped with one warning each.

What was sent is remembered in ``<data-dir>/watched.json`` (written once a
report's last piece is committed to the outbox), so a restarted agent does
not send unchanged files again.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from messages import Envelope, File, Files, Kind
from messages.codec import envelope
from node_agent.outbox import Outbox

__all__ = ["AHEAD", "PIECE", "STATE_NAME", "Watcher"]

log = logging.getLogger(__name__)

PIECE = 1024 * 1024
AHEAD = 4
STATE_NAME = "watched.json"

Key = tuple[str, str]  # (real path of the watched folder, name relative to it)
Stamp = tuple[int, int]  # (st_mtime_ns, st_size)


@dataclass
class Transfer:
    """A file being sent piece by piece."""

    key: Key
    fd: int
    stamp: Stamp
    modtime: float
    offset: int = 0


class Watcher:
    """Polls watched folders and feeds their new and changed files into the outbox."""

    def __init__(
        self,
        dirs: Iterable[Path],
        interval: float = 1.0,
        state_path: Path | None = None,
        piece: int = PIECE,
        ahead: int = AHEAD,
    ) -> None:
        self.roots = [os.path.realpath(d) for d in dirs]
        self.interval = interval
        self.state_path = state_path
        self.piece = piece
        self.ahead = ahead
        self.next_due = time.monotonic()
        self.files_sent = 0
        self._seen: dict[Key, Stamp] = {}  # as at the previous poll
        self._sent: dict[Key, Stamp] = self._load_state()
        self._ready: deque[Key] = deque()
        self._queued: set[Key] = set()
        self._transfer: Transfer | None = None
        self._unacked: deque[int] = deque()
        self._unsaved: list[tuple[int, Key, Stamp]] = []  # sent, to save once the outbox committed seq
        self._warned: set[str] = set()

    # ------------------------------------------------------------------ polling

    def scan(self, now: float, committed: int = 0) -> None:
        """Walk the folders now; queue the files that are quiet and not sent as they are."""
        self.next_due = now + self.interval
        self._save(committed)
        current: dict[Key, Stamp] = {}
        for root in self.roots:
            for name, stamp in self._walk(root):
                current[(root, name)] = stamp
        sending = self._transfer.key if self._transfer is not None else None
        for key in sorted(current):
            stamp = current[key]
            if (
                stamp != self._sent.get(key)
                and stamp == self._seen.get(key)
                and key not in self._queued
                and key != sending
            ):
                self._ready.append(key)
                self._queued.add(key)
        gone = [key for key in self._sent if key not in current]
        for key in gone:
            del self._sent[key]  # a file made again later with the same stamp is new
        self._seen = current

    def _walk(self, root: str) -> Iterator[tuple[str, Stamp]]:
        """(name, stamp) of every regular file under ``root``, links leaving it not followed."""
        stack, visited = [(root, "")], {root}
        while stack:
            folder, prefix = stack.pop()
            try:
                entries = list(os.scandir(folder))
            except OSError as exc:
                self._warn_once(folder, "cannot read watched folder %s: %s", folder, exc.strerror or exc)
                continue
            for entry in entries:
                name = prefix + entry.name
                if entry.is_symlink() and not self._link_inside(root, entry):
                    continue
                try:
                    info = entry.stat()
                except OSError:
                    continue  # vanished or a dangling link
                if stat.S_ISDIR(info.st_mode):
                    # By real path, so a folder reached through links as well is walked once (no loops).
                    real = os.path.realpath(entry.path)
                    if real not in visited:
                        visited.add(real)
                        stack.append((entry.path, name + "/"))
                elif stat.S_ISREG(info.st_mode) and self._sendable(name, entry.path):
                    yield name, (info.st_mtime_ns, info.st_size)

    def _link_inside(self, root: str, entry: os.DirEntry[str]) -> bool:
        """Whether the symlink ``entry`` resolves inside ``root`` (warned once when it does not)."""
        target = os.path.realpath(entry.path)
        if target == root or target.startswith(root + os.sep):
            return True
        self._warn_once(entry.path, "not following %s: it links outside the watched folder %s", entry.path, root)
        return False

    def _sendable(self, name: str, path: str) -> bool:
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            self._warn_once(path, "not sending %r: its name is not UTF-8", path)
            return False
        if "\\" in name:
            self._warn_once(path, "not sending %s: receivers refuse names holding a backslash", path)
            return False
        return True

    def _warn_once(self, key: str, msg: str, *args: object) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(msg, *args)

    # ------------------------------------------------------------------ sending

    @property
    def busy(self) -> bool:
        """True while a file waits to be sent or is being sent."""
        return self._transfer is not None or bool(self._ready)

    def feed(self, outbox: Outbox, node: str) -> int:
        """Add the next pieces to ``outbox`` while fewer than ``ahead`` are unacknowledged; returns how many."""
        while self._unacked and self._unacked[0] <= outbox.acked:
            self._unacked.popleft()
        added = 0
        while self.busy and len(self._unacked) < self.ahead:
            env = self._next_piece(node)
            if env is None:
                continue
            seq = outbox.add(env)
            if seq is None:  # the outbox cannot take it (disk trouble): start this file again later
                self._abort(requeue=True)
                break
            self._unacked.append(seq)
            added += 1
            if self._transfer is not None and self._transfer.offset >= self._transfer.stamp[1]:
                self._finish(self._transfer, seq)
        return added

    def _next_piece(self, node: str) -> Envelope | None:
        """The next piece of the current file (opening the next file if none); None when a file failed."""
        if self._transfer is None and not self._start():
            return None
        transfer = self._transfer
        assert transfer is not None
        size = transfer.stamp[1]
        try:
            data = os.pread(transfer.fd, min(self.piece, size - transfer.offset), transfer.offset)
            info = os.fstat(transfer.fd)
        except OSError as exc:
            log.warning("reading %s failed: %s; trying again later", self._path(transfer.key), exc)
            self._abort(requeue=False)
            return None
        if (info.st_mtime_ns, info.st_size) != transfer.stamp or len(data) != min(self.piece, size - transfer.offset):
            log.info("%s changed while being sent; sending it again once it is quiet", self._path(transfer.key))
            self._abort(requeue=False)
            return None
        piece = File(
            name=transfer.key[1],
            modtime=transfer.modtime,
            data=data,
            offset=transfer.offset,
            size=size,
            last=transfer.offset + len(data) >= size,
        )
        transfer.offset += len(data)
        return envelope(Kind.REPORT, "FileOutput", Files(files=[piece]), node=node)

    def _start(self) -> bool:
        """Open the next ready file; False when it cannot be sent (it is then dropped from the queue)."""
        key = self._ready.popleft()
        self._queued.discard(key)
        path = self._path(key)
        real = os.path.realpath(path)
        if not (real.startswith(key[0] + os.sep)):
            return False  # became a link leaving the folder since the scan
        try:
            fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        except OSError as exc:
            log.debug("cannot open %s: %s", path, exc)
            return False
        info = os.fstat(fd)
        stamp = (info.st_mtime_ns, info.st_size)
        if not stat.S_ISREG(info.st_mode) or stamp != self._seen.get(key):
            os.close(fd)  # replaced since the scan: the next polls will see it settle
            return False
        self._transfer = Transfer(key, fd, stamp, info.st_mtime)
        return True

    def _finish(self, transfer: Transfer, seq: int) -> None:
        os.close(transfer.fd)
        self._transfer = None
        self._sent[transfer.key] = transfer.stamp
        self._unsaved.append((seq, transfer.key, transfer.stamp))
        self.files_sent += 1
        log.debug("sent %s (%d bytes)", self._path(transfer.key), transfer.stamp[1])

    def _abort(self, requeue: bool) -> None:
        transfer = self._transfer
        if transfer is None:
            return
        os.close(transfer.fd)
        self._transfer = None
        if requeue and transfer.key not in self._queued:
            self._ready.appendleft(transfer.key)
            self._queued.add(transfer.key)

    @staticmethod
    def _path(key: Key) -> str:
        return os.path.join(key[0], *key[1].split("/"))

    def close(self, committed: int = 0) -> None:
        """Stop: close the file being sent and save what was sent."""
        self._abort(requeue=False)
        self._save(committed)

    # -------------------------------------------------------------------- state

    def _load_state(self) -> dict[Key, Stamp]:
        if self.state_path is None or not self.state_path.exists():
            return {}
        try:
            saved = json.loads(self.state_path.read_text())
            return {
                (root, name): (int(stamp[0]), int(stamp[1]))
                for root, files in saved["dirs"].items()
                if root in self.roots
                for name, stamp in files.items()
            }
        except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
            log.warning("ignoring %s (%s): every watched file will be sent again", self.state_path, exc)
            return {}

    def _save(self, committed: int) -> None:
        """Write the sent files whose last piece the outbox has committed (those are safe on disk)."""
        done = [item for item in self._unsaved if item[0] <= committed]
        if self.state_path is None or not done:
            return
        self._unsaved = [item for item in self._unsaved if item[0] > committed]
        saved = {(key, stamp) for _, key, stamp in self._unsaved}
        dirs: dict[str, dict[str, list[int]]] = {root: {} for root in self.roots}
        for key, stamp in self._sent.items():
            if (key, stamp) not in saved:
                dirs[key[0]][key[1]] = list(stamp)
        tmp = self.state_path.with_name(self.state_path.name + ".tmp")
        try:
            tmp.write_text(json.dumps({"version": 1, "dirs": dirs}))
            os.replace(tmp, self.state_path)
        except OSError as exc:
            log.warning("cannot save %s: %s", self.state_path, exc)
