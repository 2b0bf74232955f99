"""Command-line and config-file helpers shared by every labscope command.

Every expected failure becomes one line on stderr (what, where, how to fix) and
exit status 2 for usage errors; never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NoReturn

from messages.errors import ConfigError, LabscopeError, ModuleError

__all__ = [
    "add_collector_arg",
    "folder_problem",
    "USAGE_EXIT",
    "Parser",
    "check_endpoint",
    "config_section",
    "endpoint_arg",
    "load_config",
    "positive_float",
    "run_command",
    "setup_logging",
    "shown",
]

USAGE_EXIT = 2

# Sections a labscope config file may hold; each command reads its own and
# leaves the others alone, so one file can serve a whole testbed.
KNOWN_SECTIONS = frozenset({"collector", "modules", "distributions", "agent", "client"})

_TCP = re.compile(r"^tcp://(\*|\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):(\*|\d{1,5})$")


class Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line and exit status 2."""

    def error(self, message: str) -> NoReturn:
        """Print one line naming the command and the problem, then exit 2."""
        sys.stderr.write(f"{self.prog}: error: {message} (see '{self.prog} --help')\n")
        sys.exit(USAGE_EXIT)


def check_endpoint(text: str, bind: bool = False) -> str:
    """Validate a ZeroMQ endpoint; ``bind`` allows ``*`` for host or port.

    Accepts ``tcp://HOST:PORT``, ``ipc://PATH`` and ``inproc://NAME``.
    Raises ConfigError naming the endpoint and the expected form.
    """
    if text.startswith(("ipc://", "inproc://")) and len(text.split("://", 1)[1]) > 0:
        return text
    match = _TCP.match(text)
    if match is None:
        raise ConfigError(f"malformed endpoint {text!r}: expected tcp://HOST:PORT, ipc://PATH or inproc://NAME")
    host, port = match.groups()
    if not bind and "*" in (host, port):
        raise ConfigError(f"endpoint {text!r}: '*' is only allowed where labscope binds; give a host and port")
    if port != "*" and not 0 < int(port) < 65536:
        raise ConfigError(f"endpoint {text!r}: port {port} is outside 1-65535")
    return text


def endpoint_arg(bind: bool = False) -> Callable[[str], str]:
    """An argparse ``type=`` that validates an endpoint (see check_endpoint)."""

    def parse(text: str) -> str:
        try:
            return check_endpoint(text, bind=bind)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def add_collector_arg(
    parser: argparse.ArgumentParser, endpoint: str = "clients", example: str = "tcp://127.0.0.1:5556"
) -> None:
    """Add the required ``--collector EP`` of a client (or, with ``endpoint="agents"``, an agent-like) command."""
    parser.add_argument(
        "--collector",
        required=True,
        type=endpoint_arg(),
        metavar="EP",
        help=f"the collector's {endpoint} endpoint, e.g. {example}",
    )


def folder_problem(path: Path) -> str | None:
    """Why ``path`` is not a usable folder ("no such folder", "File name too long", ...), or None when it is.

    ``Path.is_dir()`` raises for some errors (a name too long, a permission
    denied on the way); a flag or a config key naming such a path is a usage
    error like any other, never a traceback.
    """
    try:
        return None if path.is_dir() else "no such folder"
    except OSError as exc:
        return exc.strerror or str(exc)


def positive_float(text: str) -> float:
    """An argparse ``type=`` for a number of seconds greater than zero."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be greater than 0")
    return value


def load_config(path: str | Path | None) -> dict[str, Any]:
    """Read a TOML config file; an empty dict when ``path`` is None.

    Raises ConfigError for a missing file, invalid TOML or an unknown section.
    """
    if path is None:
        return {}
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config {path}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"config {path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:  # tomllib decodes the bytes before it parses them
        raise ConfigError(f"config {path}: not valid TOML: not UTF-8 text (byte {exc.start})") from None
    unknown = sorted(set(data) - KNOWN_SECTIONS)
    if unknown:
        raise ConfigError(
            f"config {path}: unknown section [{shown(unknown[0])}]; known sections: {', '.join(sorted(KNOWN_SECTIONS))}"
        )
    return data


def config_section(
    data: Mapping[str, Any], section: str, schema: Mapping[str, type | tuple[type, ...]], path: str | Path | None
) -> dict[str, Any]:
    """Check one section of a config against ``schema`` (key -> accepted type or types).

    Returns the section's values; raises ConfigError naming the file, section
    and key for an unknown key or a value of the wrong type.
    """
    values = data.get(section, {})
    if not isinstance(values, dict):
        raise ConfigError(f"config {path}: [{section}] must be a table")
    for key, value in values.items():
        if key not in schema:
            raise ConfigError(
                f"config {path}: unknown key {key!r} in [{section}]; known keys: {', '.join(sorted(schema))}"
            )
        expected = schema[key]
        if not isinstance(value, expected) or (isinstance(value, bool) and bool not in _as_tuple(expected)):
            names = " or ".join(t.__name__ for t in _as_tuple(expected))
            raise ConfigError(f"config {path}: [{section}] {key} must be {names}, not {value!r}")
    return dict(values)


def shown(name: str) -> str:
    """A name from a config file as it goes into a one-line message: as is, or quoted when it is not printable."""
    return name if name.isprintable() else repr(name)


def _as_tuple(expected: type | tuple[type, ...]) -> tuple[type, ...]:
    return expected if isinstance(expected, tuple) else (expected,)


def setup_logging(level: str = "info") -> None:
    """Log to stderr at ``level`` (debug, info, warning, error)."""
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def run_command(prog: str, main: Callable[[], int]) -> int:
    """Run a command's main, turning expected failures into one line and an exit status.

    ConfigError and ModuleError (bad module set, dependency errors) exit 2, other LabscopeErrors 1, Ctrl-C 130.
    """
    try:
        return main()
    except (ConfigError, ModuleError) as exc:
        sys.stderr.write(f"{prog}: error: {exc}\n")
        return USAGE_EXIT
    except LabscopeError as exc:
        sys.stderr.write(f"{prog}: error: {exc}\n")
        return 1
    except KeyboardInterrupt:
        return 130
