"""The extra config files the web page shows and edits: names, reading, checking and atomic saving.

A file is known by its base name, fixed at start-up (``--extra-config-file``):
a name from the wire only ever selects one of these paths, it is never joined
to a folder or opened itself. An edit is checked before anything is written
(JSON for ``*.json``, TOML for the rest, and the collector's own schema for
the collector's own ``--config`` file), then saved atomically: a temporary
file in the same folder, written, fsynced and renamed over the old one, so a
reader sees the old text or the new one, never half of either.
"""

from __future__ import annotations

import json
import os
import tempfile
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from collector.config import check_config_text
from messages.errors import ConfigError

__all__ = ["MAX_BYTES", "ConfigFile", "ConfigFiles", "EditRefused", "check_text", "write_atomically"]

MAX_BYTES = 1 << 20  # the largest file the page edits; a larger body is refused


class EditRefused(Exception):  # noqa: N818 - reads as what happened
    """An edit that was not saved; ``str()`` is the reason, one line for the operator."""


@dataclass(frozen=True)
class ConfigFile:
    """One editable file: its name on the page, where it is, and whether it is the collector's own config."""

    name: str
    path: Path
    own: bool

    def describe(self) -> dict[str, object]:
        """The file as ``GET /api/config`` lists it."""
        try:
            size: int | None = self.path.stat().st_size
        except OSError:
            size = None
        return {"name": self.name, "path": str(self.path), "size": size, "collector_config": self.own}


class ConfigFiles:
    """The configured extra config files, by base name."""

    def __init__(self, paths: Iterable[Path], own_config: str | None) -> None:
        own = Path(own_config).resolve() if own_config else None
        self.files: dict[str, ConfigFile] = {}
        for path in paths:
            target = path.resolve()  # a symlink is edited where it points; the link stays
            self.files[path.name] = ConfigFile(path.name, target, target == own)

    def get(self, name: str) -> ConfigFile | None:
        """The file called ``name``, or None: the only way a name from the wire reaches a path."""
        return self.files.get(name)

    def listing(self) -> list[dict[str, object]]:
        """Every file as ``GET /api/config`` lists it, by name."""
        return [self.files[name].describe() for name in sorted(self.files)]

    def save(self, file: ConfigFile, body: bytes) -> None:
        """Check ``body`` and replace the file with it atomically; raises EditRefused, leaving the file as it was."""
        text = _text(body)
        check_text(file, text)
        try:
            write_atomically(file.path, body)
        except OSError as exc:
            raise EditRefused(f"cannot save {file.name}: {exc.strerror or exc}") from None


def _text(body: bytes) -> str:
    if len(body) > MAX_BYTES:
        raise EditRefused(f"the new text is {len(body)} bytes; at most {MAX_BYTES} are accepted")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EditRefused(f"the new text is not UTF-8 (byte {exc.start})") from None


def check_text(file: ConfigFile, text: str) -> None:
    """Raise EditRefused with the reason when ``text`` is not a valid content for ``file``."""
    if file.own:
        try:
            check_config_text(text, str(file.path))
        except ConfigError as exc:
            raise EditRefused(str(exc)) from None
    elif file.path.suffix.lower() == ".json":
        try:
            json.loads(text)
        except ValueError as exc:
            raise EditRefused(f"{file.name}: not valid JSON: {exc}") from None
    else:
        try:
            tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise EditRefused(f"{file.name}: not valid TOML: {exc}") from None


def write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data``: temporary file in the same folder, fsync, rename, fsync the folder.

    The file keeps its permission bits. Raises OSError; on failure the old file is untouched.
    """
    folder = path.parent
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        _keep_mode(path, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _sync_folder(folder)


def _keep_mode(path: Path, tmp: str) -> None:
    try:
        os.chmod(tmp, path.stat().st_mode & 0o7777)
    except FileNotFoundError:
        pass  # a file deleted behind the collector's back is created again with mkstemp's 0600


def _sync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
