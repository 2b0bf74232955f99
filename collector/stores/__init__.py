"""Pluggable stores: ``open_store(name, args, data_dir)`` builds the backend the config names.

Built-in names: ``sqlite`` (default), ``postgresql``, ``memory``, ``null``; any
other value must be ``package.module:Class`` (a :class:`~collector.stores.base.Store`
subclass built as ``Class(data_dir, **store_args)``). See docs/stores.md.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from collector.stores.base import Store, StoreError
from collector.stores.history import DEFAULT_RETENTION
from collector.stores.history_memory import MemoryHistoryTables
from collector.stores.tiers import TierHistory
from messages.errors import ConfigError

__all__ = ["BACKENDS", "Store", "StoreError", "backend_class", "open_store"]

# name -> "module:Class", imported only when chosen (psycopg is an extra)
BACKENDS = {
    "sqlite": "collector.stores.sqlite:SQLiteStoreBackend",
    "postgresql": "collector.stores.postgresql:PostgreSQLStore",
    "memory": "collector.stores.memory:MemoryStore",
    "null": "collector.stores.null:NullStore",
}


def backend_class(name: str) -> type[Store]:
    """The class ``name`` stands for; raises ConfigError (one line) for a bad name or a class that is no Store."""
    target = BACKENDS.get(name, name)
    module_name, _, class_name = target.partition(":")
    if not module_name or not class_name:
        known = ", ".join(BACKENDS)
        raise ConfigError(f"store {name!r}: not a backend name ({known}) nor package.module:Class")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except ImportError as exc:
        raise ConfigError(f"store {name!r}: cannot import {module_name}: {exc}") from None
    except AttributeError:
        raise ConfigError(f"store {name!r}: {module_name} has no class {class_name}") from None
    if not (isinstance(cls, type) and issubclass(cls, Store)):
        raise ConfigError(f"store {name!r}: {class_name} is not a collector.stores.Store subclass")
    return cls


def open_store(name: str, args: dict[str, Any], data_dir: Path) -> Store:
    """Build the store ``name`` with ``args``; ConfigError for bad names or args, StoreError when it cannot open."""
    cls = backend_class(name)
    try:
        store = cls(data_dir, **args)  # type: ignore[call-arg]  # backends take (data_dir, **store_args)
    except TypeError as exc:
        raise ConfigError(f"store {name!r}: bad store_args {sorted(args)}: {exc}") from None
    if not hasattr(store, "history"):  # a drop-in of an earlier version: history in memory
        store.history = TierHistory(MemoryHistoryTables(), dict(DEFAULT_RETENTION), store.name)
    return store
