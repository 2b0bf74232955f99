"""Find and load drop-in probes and handlers: one ``.py`` file each in their folders.

Every ``*.py`` file whose name does not start with ``_`` is imported from its
path under a module name of its own, and must define exactly one subclass of
:class:`node_agent.addons.Probe` (in a probes folder) or
:class:`node_agent.addons.Handler` (in a handlers folder). A file that fails
to import or validate is logged with its path and skipped; the agent runs on
without it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TypeVar

from messages.errors import ModuleError
from messages.plugins import defined_subclasses, import_file
from node_agent.addons import Probe

__all__ = ["LoadedProbe", "addon_class", "import_file", "load_probe_file", "load_probes", "probe_files"]

T = TypeVar("T")

log = logging.getLogger(__name__)


@dataclass
class LoadedProbe:
    """A probe instance ready to run, with the name and file it came from."""

    name: str
    probe: Probe
    path: Path | None = None


def probe_files(dirs: Iterable[Path]) -> list[Path]:
    """The probe files of ``dirs`` in load order: by folder as given, then by file name."""
    files: list[Path] = []
    for folder in dirs:
        files.extend(sorted(p for p in Path(folder).glob("*.py") if not p.name.startswith("_") and p.is_file()))
    return files


def load_probes(dirs: Iterable[Path], reserved: Iterable[str] = ()) -> list[LoadedProbe]:
    """Load every probe file of ``dirs``; files that fail are logged with their path and skipped.

    ``reserved`` are names already taken (the built-in probes); a probe of the same name is skipped.
    """
    loaded: list[LoadedProbe] = []
    names: set[str] = set(reserved)
    for path in probe_files(dirs):
        try:
            item = load_probe_file(path)
        except ModuleError as exc:
            log.error("skipping probe file %s: %s", path, exc.reason)
            continue
        if item.name in names:
            log.error("skipping probe file %s: a probe named %r is already loaded", path, item.name)
            continue
        names.add(item.name)
        loaded.append(item)
        log.debug("loaded probe %s (%s) from %s", item.name, item.probe.reporttype, path)
    return loaded


def load_probe_file(path: Path) -> LoadedProbe:
    """Import ``path``, find its one Probe subclass, validate it and make an instance.

    Raises ModuleError naming the file and what is wrong with it.
    """
    module = import_file(path, "probe")
    cls = addon_class(module, path, Probe)
    name = cls.name or path.stem
    _validate(cls, name, path)
    try:
        probe = cls()
    except Exception as exc:
        raise ModuleError(str(path), f"{cls.__name__}() raised {type(exc).__name__}: {exc}") from exc
    return LoadedProbe(name=name, probe=probe, path=path)


def addon_class(module: ModuleType, path: Path, base: type[T]) -> type[T]:
    """The one subclass of ``base`` defined in ``module``; raises ModuleError naming the file."""
    what = f"{base.__module__}.{base.__name__}"
    classes = defined_subclasses(module, base)
    if not classes:
        raise ModuleError(str(path), f"defines no subclass of {what}")
    if len(classes) > 1:
        names = ", ".join(sorted(c.__name__ for c in classes))
        raise ModuleError(str(path), f"defines more than one {base.__name__} subclass ({names}); keep one per file")
    found: type[T] = classes[0]
    return found


def _validate(cls: type[Probe], name: object, path: Path) -> None:
    if not isinstance(name, str) or not name.strip():
        raise ModuleError(str(path), f"{cls.__name__}.name must be a non-empty string, not {name!r}")
    if not isinstance(cls.reporttype, str) or not cls.reporttype.strip():
        raise ModuleError(str(path), f"{cls.__name__}.reporttype must be a non-empty string, not {cls.reporttype!r}")
    interval = cls.interval
    if interval is None:
        return
    if (
        isinstance(interval, bool)
        or not isinstance(interval, (int, float))
        or not (math.isfinite(interval) and interval > 0)
    ):
        raise ModuleError(str(path), f"{cls.__name__}.interval must be None or seconds > 0, not {interval!r}")
