"""The version is written once, in pyproject.toml; everything else reads ``messages.__version__``."""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

import pytest

import messages
from labscope.cli import main

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("collector", "node_agent", "modules", "messages", "gui", "labscope")


def written_version() -> str:
    return str(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"])


def test_the_version_comes_from_the_package_metadata() -> None:
    assert messages.__version__ == importlib.metadata.version("labscope") == written_version()


def test_a_source_tree_that_is_not_installed_reads_its_pyproject(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_installed(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    assert messages._version() == written_version()


def test_the_command_line_tells_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"labscope {written_version()}\n"


def test_nothing_else_writes_the_version_down() -> None:
    version = written_version()
    files = [REPO / "setup.py", REPO / "README.md", REPO / "Makefile", *sorted((REPO / "docs").glob("*.md"))]
    for package in PACKAGES:
        files += sorted(p for p in (REPO / package).rglob("*") if p.suffix in (".py", ".pyi", ".proto", ".md"))
    assert [str(p.relative_to(REPO)) for p in files if version in p.read_text(errors="replace")] == []
