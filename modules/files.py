"""Built-in module ``files``: files that nodes send (``FileOutput``), stored per node.

Agents with ``--watch-dir`` send new and changed files as ``FileOutput`` reports
(``labscope.Files``); files above the chunk limit arrive in pieces, which are
written at their offsets into a partial file (in a folder of its own, beside
the store, so no name a node sends can collide with it) and moved into place when the last piece
is in, so no file is ever held in memory whole.

Requests:

- ``FileList [node=ID]``: a list of ``{node, name, size, modtime}``.
- ``File node=ID filename=NAME``: the file; up to 1 MiB as a ``labscope.Files``
  holding it, larger ones streamed in chunks (credit flow control).
- ``FileStats``: ``{files, bytes, refused}``.

Update ``FileList`` (the full list) when a file arrived since the last push.

Names are confined to the node's folder of the store: an absolute name, ``..``,
a NUL, a backslash, a node id that is not a plain name, or a symlink anywhere
in the store path is refused, counted and logged; nothing is ever written
outside ``DATA_DIR/modules/files``. At a top collector a node id is qualified
by its site, ``SITE:NODE`` (docs/sites.md): its files go to ``SITE/NODE/``, the
site a plain name without dots and the node a plain name, each level confined
alike; at start-up a top folder is a site's when a known node id starts with
``FOLDER:``. Numbers are bounded too (docs/protocol.md,
"Bounds"): a piece must lie within its file's ``size``, a file within 64 GiB,
a piece may not start past the bytes already received (no holes, so no sparse
file of any size), and ``modtime`` must be finite epoch seconds up to year 3000.

Sample config block::

    [modules.files]
    # update_interval = 1.0
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from collector.addons import Aggregator, Param, Payload, Report, Request, RequestError, RequestSpec, UpdateSpec
from messages import File, Files
from messages.limits import OutOfRangeError, check_file_piece, check_time
from messages.stream import CHUNK_BYTES, DEFAULT_CREDIT, MAX_CREDIT

INLINE_LIMIT = 1024 * 1024
_NODE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
_SITE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # a site name is one NATS subject token (docs/sites.md)
# What the file system says about a name that cannot be stored: too long, a file where a folder must go
# (or the reverse), a symlink loop. Refused like an unsafe name; any other OSError is the collector's own.
_NAME_ERRNOS = frozenset({errno.ENAMETOOLONG, errno.EEXIST, errno.ENOTDIR, errno.EISDIR, errno.ELOOP})
_LISTING = "list of maps {node, name, size, modtime}, sorted by node and name"


class RefusedNameError(ValueError):
    """A name from the wire that would leave its folder."""


def safe_parts(name: str) -> list[str]:
    """The path components of a relative, confined file name; raises RefusedNameError otherwise."""
    if not name or "\x00" in name or "\\" in name or name.startswith("/"):
        raise RefusedNameError(f"file name {name!r} is empty, absolute or holds a NUL or backslash")
    parts = name.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise RefusedNameError(f"file name {name!r} holds an empty, '.' or '..' component")
    return parts


def safe_node(node: str) -> str:
    """A node id usable as a folder name; raises RefusedNameError otherwise."""
    if not _NODE_NAME.match(node) or node in (".", ".."):
        raise RefusedNameError(f"node id {node!r} is not a plain name")
    return node


def node_folders(node: str) -> list[str]:
    """The folders of a node's files: ``[NODE]``, or ``[SITE, NODE]`` for ``SITE:NODE``; RefusedNameError otherwise."""
    site, sep, rest = node.partition(":")
    if not sep:
        return [safe_node(node)]
    if not _SITE_NAME.match(site):
        raise RefusedNameError(f"node id {node!r}: site {site!r} is not a plain name without dots")
    return [site, safe_node(rest)]


class FilesModule(Aggregator):
    """Stores nodes' files and serves them back."""

    name = "files"
    reporttype = "FileOutput"
    requesttypes = ("FileList", "File", "FileStats")
    updatetype = "FileList"
    request_specs = {
        "FileList": RequestSpec(
            "the files nodes sent (FileOutput) and the collector stored",
            Payload.msgpack(_LISTING),
            params=(Param("node", "only this node's files"),),
        ),
        "File": RequestSpec(
            "one stored file",
            (
                Payload.protobuf(Files, "files up to 1 MiB; Files.files holds the one File, data included"),
                Payload.chunks("the file's bytes", "larger files"),
            ),
            params=(
                Param("node", "the node that sent the file", required=True),
                Param("filename", "the file's name as the node sent it (relative, '/'-separated)", required=True),
                Param(
                    "credit",
                    f"chunks the client takes at once when streamed (default {DEFAULT_CREDIT}, at most {MAX_CREDIT})",
                ),
            ),
        ),
        "FileStats": RequestSpec(
            "counts of the store", Payload.msgpack("map {files, bytes, refused}: refused = names refused as unsafe")
        ),
    }
    update_spec = UpdateSpec("the full file list, when a file arrived since the last push", Payload.msgpack(_LISTING))

    def __init__(self) -> None:
        self.root: Path | None = None
        self.partial_root: Path | None = None
        self.index: dict[tuple[str, str], tuple[int, float]] = {}
        self.refused = 0
        self.changed = False

    def on_startup(self) -> None:
        """Find the store and index what earlier runs stored."""
        self.root = self.collector.data_dir(self.name).resolve()
        self.partial_root = self.collector.data_dir(f"{self.name}-partial").resolve()
        sites = {record.node.partition(":")[0] for record in self.collector.nodes() if ":" in record.node}
        for path in self.root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                node, *rest = path.relative_to(self.root).parts
                if node in sites and len(rest) > 1:
                    node = f"{node}:{rest.pop(0)}"
                stat = path.stat()
                self.index[(node, "/".join(rest))] = (stat.st_size, stat.st_mtime)
        self.changed = bool(self.index)

    # ------------------------------------------------------------ reports

    def processReport(self, msg: Report) -> None:
        """Write every file (or piece) of a FileOutput report under the node's folder."""
        for piece in msg.message(Files).files:
            try:
                self._write(msg.node, piece)
            except (RefusedNameError, OutOfRangeError) as exc:
                self._refuse(msg.node, exc)
            except OSError as exc:
                if exc.errno not in _NAME_ERRNOS:
                    raise
                self._refuse(msg.node, exc)
                self._partial(msg.node, piece.name).unlink(missing_ok=True)  # nothing will ever complete it

    def _refuse(self, node: str, exc: Exception) -> None:
        self.refused += 1
        self.log.warning("refused a file from node %s: %s", node, exc)

    def _write(self, node: str, piece: File) -> None:
        check_file_piece(piece.offset, len(piece.data), piece.size)
        check_time(piece.modtime, "File.modtime")
        target = self._target(node_folders(node), safe_parts(piece.name))
        whole = piece.size == 0
        part = self._partial(node, piece.name)
        received = _received(part) if piece.offset else 0
        if piece.offset > received:
            raise OutOfRangeError("File.offset", piece.offset, f"must not pass the {received} bytes received so far")
        flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | (os.O_TRUNC if piece.offset == 0 else 0)
        fd = os.open(part, flags, 0o644)
        try:
            os.pwrite(fd, piece.data, piece.offset)
        finally:
            os.close(fd)
        if whole or piece.last:
            os.replace(part, target)
            os.utime(target, (piece.modtime, piece.modtime))
            self.index[(node, piece.name)] = (target.stat().st_size, piece.modtime)
            self.changed = True

    def _partial(self, node: str, name: str) -> Path:
        """Where the pieces of ``node``'s file ``name`` gather until the last one is in."""
        assert self.partial_root is not None
        digest = hashlib.sha256(f"{node}/{name}".encode()).hexdigest()
        return self.partial_root / digest

    def _target(self, folders: list[str], parts: list[str], create: bool = True) -> Path:
        """The confined path; refuses a symlink at any level below the store root."""
        assert self.root is not None
        current = self.root
        for component in (*folders, *parts[:-1]):
            current = current / component
            if current.is_symlink():
                raise RefusedNameError(f"{current} is a symlink in the store")
            if create:
                current.mkdir(exist_ok=True)
        target = current / parts[-1]
        if target.is_symlink() or not target.resolve().is_relative_to(self.root):
            raise RefusedNameError(f"{target} would leave the store")
        return target

    # ------------------------------------------------------------ requests

    def processREQUEST(self, msg: Request) -> Any:
        """FileList, File or FileStats (see the module docstring)."""
        if msg.type == "FileList":
            return self.listing(msg.node)
        if msg.type == "FileStats":
            return {"files": len(self.index), "bytes": sum(s for s, _ in self.index.values()), "refused": self.refused}
        return self._file(msg)

    def listing(self, node: str | None = None) -> list[dict[str, Any]]:
        """Every stored file (of ``node``), sorted by node and name."""
        return [
            {"node": n, "name": name, "size": size, "modtime": modtime}
            for (n, name), (size, modtime) in sorted(self.index.items())
            if node in (None, n)
        ]

    def _file(self, msg: Request) -> Files | Iterator[bytes]:
        if not msg.node or "filename" not in msg.params:
            raise RequestError("bad-request", "File needs node=ID and filename=NAME")
        entry = self.index.get((msg.node, msg.filename))
        if entry is None:
            raise RequestError("not-found", f"no file {msg.filename!r} from node {msg.node!r}")
        path = self._target(node_folders(msg.node), safe_parts(msg.filename), create=False)
        size, modtime = entry
        if size > INLINE_LIMIT:
            return _chunks(path)
        return Files(files=[File(name=msg.filename, modtime=modtime, data=path.read_bytes(), size=size, last=True)])

    def getUpdateMessage(self) -> list[dict[str, Any]] | None:
        """The full file list when a file arrived since the last push."""
        if not self.changed:
            return None
        self.changed = False
        return self.listing()

    def snapshot(self) -> dict[str, int]:
        """The files themselves are the state (on disk); only the refused count needs keeping."""
        return {"refused": self.refused}

    def restore(self, state: dict[str, int]) -> None:
        """Take back the refused count; on_startup indexed the files already."""
        self.refused = int(state.get("refused", 0))


def _received(part: Path) -> int:
    """Bytes of a partial file gathered so far (0 when none)."""
    try:
        return part.stat().st_size
    except FileNotFoundError:
        return 0


def _chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            yield chunk
