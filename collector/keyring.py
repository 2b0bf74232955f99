"""The collector's allow lists: which public keys may connect, as what (docs/security.md).

Three folders of public ``NAME.key`` files (``labscope keys generate``):
``allow_agents`` (``NAME`` is the node id the key may claim, plus the ids in
its metadata ``nodes = "n1 n2"``), ``allow_viewers`` and ``allow_operators``
(an operator is a viewer too). A file that does not load is logged once, with
its path, and skipped. The ring re-reads the folders when :meth:`KeyRing.reload`
is called (SIGHUP) and when :meth:`KeyRing.watch` sees their content change.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import gevent

from collector.peers import AGENT, OPERATOR, VIEWER
from messages.errors import KeyFileError
from messages.keys import PUBLIC_SUFFIX, load

__all__ = ["POLL_INTERVAL", "KeyEntry", "KeyRing"]

log = logging.getLogger(__name__)

POLL_INTERVAL = 1.0  # seconds between looks at the folders' content

Signature = tuple[tuple[str, int, int], ...]


@dataclass(frozen=True)
class KeyEntry:
    """One allowed public key (Z85 text): its name, fingerprint, role and, for an agent, the node ids it may claim."""

    public: str
    name: str
    fingerprint: str
    role: str
    nodes: tuple[str, ...] = ()


class KeyRing:
    """Allowed keys by their Z85 public key, for each endpoint; folders may be None (nobody of that role)."""

    def __init__(
        self,
        agents: Path | None = None,
        viewers: Path | None = None,
        operators: Path | None = None,
    ) -> None:
        self.folders: dict[str, Path | None] = {AGENT: agents, VIEWER: viewers, OPERATOR: operators}
        self.agents: dict[str, KeyEntry] = {}
        self.clients: dict[str, KeyEntry] = {}
        self.listeners: list[Callable[[], None]] = []  # called after every reload
        self._signature: Signature | None = None
        self._reported: set[tuple[str, int, int]] = set()  # bad files already logged, by (path, mtime, size)
        self.reload()

    def agent(self, public: str) -> KeyEntry | None:
        """The agent key ``public`` (Z85), or None when it is not in the agents' folder."""
        return self.agents.get(public)

    def client(self, public: str) -> KeyEntry | None:
        """The viewer or operator key ``public`` (Z85), or None when neither folder holds it."""
        return self.clients.get(public)

    # ------------------------------------------------------------ loading

    def reload(self) -> None:
        """Read the three folders again; the new lists replace the old ones at once."""
        self._signature = self.signature()
        agents: dict[str, KeyEntry] = {}
        for entry in self._load(AGENT):
            known = agents.get(entry.public)
            nodes = entry.nodes if known is None else tuple(dict.fromkeys((*known.nodes, *entry.nodes)))
            agents[entry.public] = replace(known or entry, nodes=nodes)
        clients = {e.public: e for e in self._load(VIEWER)}
        clients.update((e.public, e) for e in self._load(OPERATOR))  # an operator is also a viewer
        self.agents, self.clients = agents, clients
        log.info(
            "allowed keys: %d agent, %d viewer, %d operator",
            len(agents),
            sum(e.role == VIEWER for e in clients.values()),
            sum(e.role == OPERATOR for e in clients.values()),
        )
        for listener in self.listeners:
            listener()

    def reload_if_changed(self) -> bool:
        """Reload when a folder's content changed since the last load; True when it did."""
        if self.signature() == self._signature:
            return False
        self.reload()
        return True

    def watch(self, interval: float = POLL_INTERVAL) -> None:
        """Look at the folders every ``interval`` seconds and reload on change; runs in its own greenlet."""
        while True:
            gevent.sleep(interval)
            self.reload_if_changed()

    def signature(self) -> Signature:
        """Every ``.key`` file's path, modification time and size, and each folder's own mtime."""
        items: list[tuple[str, int, int]] = []
        for folder in self.folders.values():
            if folder is not None:
                items.extend(_stat_folder(folder))
        return tuple(items)

    def _load(self, role: str) -> Iterable[KeyEntry]:
        folder = self.folders[role]
        if folder is None:
            return
        try:
            paths = sorted(p for p in folder.iterdir() if p.name.endswith(PUBLIC_SUFFIX))
        except OSError as exc:
            self._report((str(folder), 0, 0), "cannot read allow folder %s: %s", folder, exc.strerror or exc)
            return
        for path in paths:
            try:
                cert = load(path)
            except KeyFileError as exc:
                self._report(_stat(path), "skipping key file %s: %s", path, exc)
                continue
            nodes = cert.nodes() if role == AGENT else ()
            yield KeyEntry(cert.public.decode("ascii"), cert.name, cert.fingerprint, role, nodes)

    def _report(self, key: tuple[str, int, int], fmt: str, *args: object) -> None:
        """Log a bad file or folder once (again only after it changes)."""
        if key not in self._reported:
            self._reported.add(key)
            log.warning(fmt, *args)


def _stat(path: Path) -> tuple[str, int, int]:
    try:
        st = path.stat()
    except OSError:
        return (str(path), -1, -1)
    return (str(path), st.st_mtime_ns, st.st_size)


def _stat_folder(folder: Path) -> list[tuple[str, int, int]]:
    """The folder's own stat (catches renames and removals) and each ``.key`` file's."""
    items = [_stat(folder)]
    try:
        with os.scandir(folder) as entries:
            names = sorted(e.name for e in entries if e.name.endswith(PUBLIC_SUFFIX))
    except OSError:
        return items
    items.extend(_stat(folder / name) for name in names)
    return items
