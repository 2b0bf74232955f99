"""Folder flags whose path the file system refuses outright are one usage line, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from collector import dist_loader, loader
from collector.config import parse_args
from messages.errors import ConfigError
from messages.options import folder_problem

TOO_LONG = "a" * 5000  # past NAME_MAX and PATH_MAX: stat() fails with ENAMETOOLONG, which is_dir() lets through


def test_folder_problem_names_what_is_wrong(tmp_path: Path) -> None:
    assert folder_problem(tmp_path) is None
    assert folder_problem(tmp_path / "missing") == "no such folder"
    (tmp_path / "file").write_text("x")
    assert folder_problem(tmp_path / "file") == "no such folder"
    assert folder_problem(Path(TOO_LONG)) == "File name too long"
    assert folder_problem(Path("a\x00b")) == "no such folder"  # is_dir() says False for a NUL, never raises


@pytest.mark.parametrize("flag", ["--modules-dir", "--distributions-dir"])
def test_collector_folder_flags_with_a_name_too_long(tmp_path: Path, flag: str) -> None:
    config = parse_args(["--data-dir", str(tmp_path / "data"), flag, TOO_LONG])
    with pytest.raises(ConfigError, match=f"{flag} a+: File name too long"):
        if flag == "--modules-dir":
            loader.discover(config.modules_dirs)
        else:
            dist_loader.check_dirs(config.distributions_dirs)
