"""Loading drop-in files: one ``.py`` file as a module of its own, and the classes it defines.

Aggregator modules (collector/loader.py), distributions (collector/dist_loader.py),
probes and node request handlers (node_agent/loader.py) are all drop-in files;
this is the one place that imports them and finds their classes.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import TypeVar

from messages.errors import ModuleError

__all__ = ["defined_subclasses", "import_file", "module_name"]

T = TypeVar("T")


def module_name(path: Path, kind: str) -> str:
    """The module name a drop-in file of ``kind`` is imported under: its stem and its path's digest."""
    # Two folders may hold files of the same name: the path's digest keeps their modules apart.
    digest = hashlib.sha1(str(path.resolve()).encode(), usedforsecurity=False).hexdigest()[:12]
    stem = re.sub(r"\W", "_", path.stem)
    return f"labscope_{kind}_{stem}_{digest}"


def import_file(path: Path, kind: str) -> ModuleType:
    """Import the file ``path`` as a module of its own; raises ModuleError naming the file.

    The error's ``__cause__`` is the exception the import raised.
    """
    name = module_name(path, kind)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ModuleError(str(path), "cannot be imported as a Python file")
    module = importlib.util.module_from_spec(spec)
    # Registered before running: dataclasses and typing look the module up by name.
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:  # a drop-in's import may raise anything, SyntaxError included
        del sys.modules[name]
        raise ModuleError(str(path), f"import failed: {type(exc).__name__}: {exc}") from exc
    return module


def defined_subclasses(module: ModuleType, base: type[T]) -> list[type[T]]:
    """The subclasses of ``base`` that ``module`` itself defines (not the ones it imports)."""
    return [
        obj
        for obj in vars(module).values()
        if isinstance(obj, type) and issubclass(obj, base) and obj is not base and obj.__module__ == module.__name__
    ]
