"""Find the file of a distribution type, import it, and check a section against its class.

A distribution type ``T`` is the file ``dist_T.py`` in a ``--distributions-dir``
(searched in the order given) or in the built-in package
``collector/distributions/``; a drop-in of the same type as a built-in takes
its place (with a warning). Only the types that config sections name are
imported, so a built-in whose library (an extra) is missing costs nothing
until it is used. The file holds exactly one :class:`~collector.dist.Distribution`
subclass defined in it (classes it imports do not count).

Every problem is a start-up :class:`ConfigError` (exit status 2) of one line
naming the config file, the section and the key.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from collector import settings
from collector.addons import Option
from collector.config import DIST_DEFAULTS, DistSection
from collector.dist import FEEDS, Distribution
from messages.errors import ConfigError, ModuleError
from messages.options import folder_problem
from messages.plugins import defined_subclasses, import_file, module_name

__all__ = ["BUILTIN_PACKAGE", "builtin_dir", "check_section", "find_file", "known_types", "load_class"]

log = logging.getLogger(__name__)

BUILTIN_PACKAGE = "collector.distributions"
COMMON_KEYS = ("type", *DIST_DEFAULTS)


def builtin_dir() -> Path:
    """The folder of the built-in distributions (collector/distributions/)."""
    return Path(__file__).resolve().parent / "distributions"


def check_dirs(dirs: list[Path]) -> None:
    """Raise ConfigError for a --distributions-dir that is not a folder."""
    for folder in dirs:
        problem = folder_problem(folder)
        if problem is not None:
            raise ConfigError(f"--distributions-dir {folder}: {problem}")


def find_file(type_name: str, dirs: list[Path]) -> Path | None:
    """The file of distribution type ``type_name``: drop-in folders first, then the built-ins."""
    for folder in [*dirs, builtin_dir()]:
        path = folder / f"dist_{type_name}.py"
        if path.is_file():
            return path
    return None


def known_types(dirs: list[Path]) -> list[str]:
    """Every type a ``dist_*.py`` file offers in ``dirs`` and the built-ins."""
    found = {path.stem[len("dist_") :] for folder in [*dirs, builtin_dir()] for path in folder.glob("dist_*.py")}
    return sorted(found)


def load_class(section: DistSection, dirs: list[Path], config_path: str | None) -> type[Distribution]:
    """The Distribution subclass of ``section.type``; raises ConfigError naming the file and section."""
    where = f"config {config_path}: [distributions.{section.name}] type"
    path = find_file(section.type, dirs)
    if path is None:
        places = ", ".join(str(d) for d in dirs) or "no --distributions-dir"
        raise ConfigError(
            f"{where}: no distribution type {section.type!r} (no dist_{section.type}.py in "
            f"{places} nor the built-ins); known types: {', '.join(known_types(dirs))}"
        )
    builtin = path.parent == builtin_dir()
    if not builtin and (builtin_dir() / path.name).is_file():
        log.warning("%s replaces the built-in distribution type %s", path, section.type)
    module = _import(path, builtin, where)
    return _the_class(module, path, where)


def _import(path: Path, builtin: bool, where: str) -> ModuleType:
    name = f"{BUILTIN_PACKAGE}.{path.stem}" if builtin else module_name(path, "dist")
    if name in sys.modules:  # the same file named by two sections: one module, one class
        return sys.modules[name]
    try:
        return importlib.import_module(name) if builtin else import_file(path, "dist")
    except ModuleError as exc:
        cause = exc.__cause__ or exc
        raise ConfigError(f"{where}: {path} failed to import: {type(cause).__name__}: {cause}") from None
    except Exception as exc:  # a built-in's import may raise anything (an extra's library missing ...)
        raise ConfigError(f"{where}: {path} failed to import: {type(exc).__name__}: {exc}") from None


def _the_class(module: ModuleType, path: Path, where: str) -> type[Distribution]:
    classes = defined_subclasses(module, Distribution)
    if len(classes) != 1:
        names = ", ".join(sorted(c.__name__ for c in classes)) or "none"
        raise ConfigError(f"{where}: {path} must define exactly one dist.Distribution subclass (found: {names})")
    return classes[0]


def check_section(cls: type[Distribution], section: DistSection, config_path: str | None) -> dict[str, Any]:
    """The config ``configure()`` gets: the type's option defaults under the section's values.

    Raises ConfigError for a mode the type does not support, a feed it asks
    for that does not exist, and (when the type declares
    ``options``) an unknown key or a value of the wrong type or out of bounds.
    """
    where = f"config {config_path}: [distributions.{section.name}]"
    if section.mode not in cls.modes:
        raise ConfigError(f"{where} mode: type {section.type} supports {' or '.join(cls.modes)}, not {section.mode!r}")
    if section.mode == "reports" and cls.feed not in FEEDS:
        raise ConfigError(
            f"{where} mode: type {section.type} asks for the {cls.feed!r} report feed, which does not exist"
        )
    if cls.options:
        _check_options(cls, section, config_path)
    defaults = {key: _option(value).default for key, value in cls.options.items()}
    return {**defaults, **section.values}


def _check_options(cls: type[Distribution], section: DistSection, config_path: str | None) -> None:
    where = f"config {config_path}: [distributions.{section.name}]"
    for key, value in section.values.items():
        if key in COMMON_KEYS:
            continue
        option = cls.options.get(key)
        if option is None:
            known = sorted([*COMMON_KEYS, *cls.options])
            raise ConfigError(f"{where}: unknown key '{key}' for type {section.type}; known keys: {', '.join(known)}")
        try:
            settings.check_value(f"distributions.{section.name}", key, value, _option(option))
        except ConfigError as exc:
            raise ConfigError(f"config {config_path}: {exc}") from None


def _option(value: Any) -> Option:
    return value if isinstance(value, Option) else Option(value)
