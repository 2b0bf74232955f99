"""``labscope gui`` as a command: --screenshot against a real testbed, errors as one line, Qt only when needed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6 import QtGui

from gui import gui_cmd
from messages.errors import LabscopeError
from tests.conftest import REPO, ProcessGroup, labscope_cmd
from tests.gui.conftest import start_testbed

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run_gui(*args: str, timeout: float = 45) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONUNBUFFERED="1")
    return subprocess.run(
        labscope_cmd("gui", *args), capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO
    )


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_screenshot_writes_a_png_of_the_nodes(procs: ProcessGroup, tmp_path: Path) -> None:
    bed = start_testbed(procs, ("shot-a", "shot-b", "shot-c"))
    path = tmp_path / "shot.png"
    result = run_gui("--collector", bed.collector.clients, "--screenshot", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # Qt's own chatter goes to the log at debug level, not to the user
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC)
    image = QtGui.QImage(str(path))
    assert (image.width(), image.height()) == (1280, 860)
    # not a blank picture: the status colours of the live nodes are in it
    colours = {image.pixelColor(x, y).name() for x in range(0, image.width(), 4) for y in range(0, 200, 2)}
    assert "#2e7d32" in colours


@pytest.mark.e2e
@pytest.mark.timeout(30)
def test_screenshot_gives_up_after_its_timeout(tmp_path: Path) -> None:
    path = tmp_path / "never.png"
    result = run_gui("--collector", "tcp://127.0.0.1:9", "--screenshot", str(path), "--timeout", "1.5")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("labscope gui: error: the nodes view showed no nodes within 1.5 s")
    assert "tcp://127.0.0.1:9" in lines[0]
    assert not path.exists()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--collector", "nope"], "malformed endpoint 'nope'"),
        ([], "the following arguments are required: --collector"),
        (["--collector", "tcp://127.0.0.1:5556", "--timeout", "0"], "must be greater than 0"),
        (["--collector", "tcp://127.0.0.1:5556", "--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_bad_flags_exit_2_with_one_line(args: list[str], expected: str, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        gui_cmd.main(args)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err and err.startswith("labscope gui: error:")


def test_screenshot_into_a_missing_folder_exits_2(tmp_path: Path, capsys) -> None:
    code = gui_cmd.main(["--collector", "tcp://127.0.0.1:5556", "--screenshot", str(tmp_path / "no" / "x.png")])
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such folder" in err


def test_platform_choice() -> None:
    env: dict[str, str] = {}
    gui_cmd.choose_platform(True, env)
    assert env == {"QT_QPA_PLATFORM": "offscreen"} or not sys.platform.startswith("linux")
    with_display = {"DISPLAY": ":0"}
    gui_cmd.choose_platform(True, with_display)
    assert "QT_QPA_PLATFORM" not in with_display
    chosen = {"QT_QPA_PLATFORM": "xcb"}
    gui_cmd.choose_platform(False, chosen)
    assert chosen == {"QT_QPA_PLATFORM": "xcb"}
    if sys.platform.startswith("linux"):
        with pytest.raises(LabscopeError, match="no display"):
            gui_cmd.choose_platform(False, {})


@pytest.mark.e2e
def test_terminal_commands_do_not_import_qt() -> None:
    code = (
        "import sys, gui.top, gui.gui_cmd, labscope.cli; "
        "print(sorted(m for m in sys.modules if m.startswith(('PySide6', 'pyqtgraph'))))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
