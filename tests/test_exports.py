"""The public surface is what ``__all__`` says: the module and probe APIs and the wire contract's helpers.

For each public module: (a) every name in ``__all__`` exists; (b) every public class and function
*defined* in the module (not imported) is in ``__all__``; (c) every name the docs use from it is in
``__all__`` -- read from the docs themselves: their ``from MODULE import ...`` lines, their
``MODULE.Name`` references, and the bare ``Name`` they mention that the module defines.
"""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCS = [
    REPO / "docs" / "modules.md",
    REPO / "docs" / "files.md",
    REPO / "docs" / "distributions.md",
    REPO / "docs" / "observers.md",
    REPO / "docs" / "embedding.md",
    REPO / "README.md",
]
API = ["collector.addons", "collector.dist", "collector.embed", "collector.observer", "node_agent.addons"]
CONTRACT = ["messages"] + sorted(
    f"messages.{path.stem}"
    for path in (REPO / "messages").glob("*.py")
    if not path.stem.startswith("_") and not path.stem.endswith("_pb2") and path.stem != "generate"
)
PUBLIC = API + CONTRACT


def load(name: str) -> ModuleType:
    return importlib.import_module(name)


def docs_text() -> str:
    return "\n".join(path.read_text() for path in DOCS)


def documented_names(module: str) -> set[str]:
    """The names the docs take from ``module``."""
    text = docs_text()
    names: set[str] = set()
    for imported in re.findall(rf"^from {re.escape(module)} import ([\w, ]+)$", text, re.MULTILINE):
        names.update(name.strip() for name in imported.split(","))
    names.update(re.findall(rf"`{re.escape(module)}\.([A-Za-z_]\w*)(?![\w.])", text))  # not a submodule
    defined = defined_here(load(module))
    names.update(name for name in re.findall(r"`([A-Z]\w*)", text) if name in defined)
    return names


def defined_here(module: ModuleType) -> set[str]:
    """Public classes and functions whose home is ``module`` (imported names do not count)."""
    return {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and value.__module__ == module.__name__
    }


@pytest.mark.parametrize("name", PUBLIC)
def test_every_exported_name_exists(name: str) -> None:
    module = load(name)
    exported = module.__all__
    assert len(exported) == len(set(exported)), f"{name}.__all__ names something twice"
    assert [n for n in exported if not hasattr(module, n)] == []


@pytest.mark.parametrize("name", PUBLIC)
def test_everything_public_defined_in_the_module_is_exported(name: str) -> None:
    module = load(name)
    assert sorted(defined_here(module) - set(module.__all__)) == []


@pytest.mark.parametrize("name", PUBLIC)
def test_what_the_docs_use_is_exported(name: str) -> None:
    assert sorted(documented_names(name) - set(load(name).__all__)) == []


def test_the_docs_name_the_apis() -> None:
    """The derivation above finds the API the docs teach (so an empty finding cannot pass silently)."""
    assert {"Aggregator", "Report", "Request", "RequestError", "NodeRecord"} <= documented_names("collector.addons")
    assert {"Probe", "Handler", "RequestError", "Responder"} <= documented_names("node_agent.addons")
    assert {"Distribution", "DataPoint", "ReportItem", "DistCore"} <= documented_names("collector.dist")
    assert {"ConfigError", "NodeList"} <= documented_names("messages")
    assert "CollectorObserver" in documented_names("collector.observer")
    assert "encode_payload" in documented_names("messages.codec")
    assert set(CONTRACT) >= {"messages.codec", "messages.errors", "messages.options", "messages.requests"}
