"""Serve folders: which files a node request may read (``--serve-dir``).

A path from the wire is taken as absolute, or relative to the first serve
folder, and resolved with every symlink and ``..`` followed. Only a path
whose resolved form lies inside the resolved form of a serve folder is
served; anything else is ``denied``, whether or not it exists, so a request
cannot even learn which files exist outside. The file is then opened without
following a symlink in its last component (nor waiting, should it be a FIFO)
and checked to be a regular file with fstat, so swapping in a symlink after
the check gains nothing.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from messages.errors import Code
from node_agent.addons import RequestError

__all__ = ["ServeDirs"]

NO_SERVE_DIRS = "this agent serves no files: start it with --serve-dir DIR (or serve_dirs in [agent])"


class ServeDirs:
    """The serve folders of an agent, resolved once at start."""

    def __init__(self, folders: Iterable[Path]) -> None:
        self.folders = [Path(os.path.realpath(f)) for f in folders]

    def resolve(self, path: str) -> Path:
        """The real path ``path`` names, inside a serve folder; raises RequestError otherwise.

        ``denied`` when it lies outside every serve folder (or none is configured),
        ``bad-request`` for an empty path or one holding a NUL.
        """
        if not self.folders:
            raise RequestError(Code.DENIED, NO_SERVE_DIRS)
        if not path or "\x00" in path:
            raise RequestError(Code.BAD_REQUEST, "NodeFile needs path=PATH (no NUL)")
        candidate = Path(path) if os.path.isabs(path) else self.folders[0] / path
        real = Path(os.path.realpath(candidate))
        if not any(real == f or real.is_relative_to(f) for f in self.folders):
            raise RequestError(Code.DENIED, f"{path} is outside the folders this agent serves")
        return real

    def open(self, path: str) -> tuple[BinaryIO, int]:
        """Open the served file ``path`` for reading; returns (file, size). Raises RequestError."""
        real = self.resolve(path)
        try:
            # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer, forever.
            fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            raise RequestError(Code.NOT_FOUND, f"{path}: no such file") from None
        except OSError as exc:
            # ELOOP: the last component became a symlink after resolve(); anything else is a refusal too.
            raise RequestError(Code.DENIED, f"{path}: {exc.strerror or exc}") from None
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            what = "a folder" if stat.S_ISDIR(info.st_mode) else "not a regular file"
            raise RequestError(Code.BAD_REQUEST, f"{path} is {what}")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb", buffering=0), info.st_size
