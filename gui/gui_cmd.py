"""``labscope gui``: the desktop GUI (PySide6 + pyqtgraph), or a PNG of it with ``--screenshot``.

Qt is imported only here, and only once the flags are good, so that a node
without Qt runs every other subcommand. With ``--screenshot FILE`` and no
display, Qt renders offscreen.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from messages.errors import ConfigError, LabscopeError
from messages.keys import add_curve_args, client_keys
from messages.options import Parser, add_collector_arg, folder_problem, positive_float, run_command, setup_logging

PROG = "labscope gui"
SCREENSHOT_TIMEOUT = 30.0


def build_parser() -> Parser:
    """The argument parser of ``labscope gui``."""
    parser = Parser(
        prog=PROG,
        description="Show a collector's testbed live: nodes, plots, events, files and every module's updates.",
    )
    add_collector_arg(parser)
    parser.add_argument(
        "--screenshot",
        type=Path,
        default=None,
        metavar="FILE",
        help="wait until the nodes are shown, save a PNG of the window to FILE and exit",
    )
    parser.add_argument(
        "--timeout",
        type=positive_float,
        default=SCREENSHOT_TIMEOUT,
        metavar="S",
        help=f"with --screenshot: give up (exit 1) when no node is shown after S seconds "
        f"(default {SCREENSHOT_TIMEOUT:g})",
    )
    parser.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default="warning",
        help="log detail on stderr (default warning)",
    )
    add_curve_args(parser)
    return parser


def choose_platform(screenshot: bool, environ: dict[str, str] | os._Environ[str] = os.environ) -> None:
    """Render offscreen for a screenshot without a display; refuse a window without one.

    Raises LabscopeError (exit 1) when a window is wanted on Linux and there is no display.
    """
    if environ.get("QT_QPA_PLATFORM") or not sys.platform.startswith("linux"):
        return
    if environ.get("DISPLAY") or environ.get("WAYLAND_DISPLAY"):
        return
    if screenshot:
        environ["QT_QPA_PLATFORM"] = "offscreen"
        return
    raise LabscopeError(
        "no display (DISPLAY and WAYLAND_DISPLAY are unset); run it on a desktop, "
        "or use --screenshot FILE, or 'labscope top' in a terminal"
    )


def check_screenshot_path(path: Path | None) -> None:
    """Refuse a screenshot path whose folder does not exist (exit 2)."""
    if path is None:
        return
    problem = folder_problem(path.parent)
    if problem is not None:
        raise ConfigError(f"--screenshot {path}: {problem}: {path.parent}")


def run(args: argparse.Namespace) -> int:
    """Check the flags and the display, then hand over to Qt."""
    check_screenshot_path(args.screenshot)
    keys = client_keys(args.curve_server_key, args.curve_secret)
    choose_platform(args.screenshot is not None)
    try:
        from gui import app
    except ImportError as exc:
        raise LabscopeError(
            f"the GUI needs PySide6-Essentials and pyqtgraph ({exc}); install them with: pip install 'labscope[gui]'"
        ) from None
    return app.run(args.collector, args.screenshot, args.timeout, keys)


def main(argv: list[str]) -> int:
    """Entry point of ``labscope gui``."""
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    return run_command(PROG, lambda: run(args))
