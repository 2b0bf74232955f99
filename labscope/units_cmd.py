"""``labscope install-units``: print or write the systemd units of a deployment (docs/deploy.md).

::

    labscope install-units [--dir DIR | --print] [--force] [--user NAME] [--exec PATH | --prefix DIR]
                           [--config FILE] [--keys DIR | --no-curve]

Writes ``labscope-collector.service`` and ``labscope-agent@.service`` into DIR (default
/etc/systemd/system), or prints them. An existing unit file is never overwritten without
``--force``: one line, exit status 2, and nothing is written. Each file is written whole
(a temporary file renamed into place), mode 0644.
"""

from __future__ import annotations

import argparse
import os
import pwd
import sys
import sysconfig
import tempfile
from pathlib import Path, PurePosixPath

from labscope.units import DEFAULT_CONFIG, DEFAULT_KEYS, DEFAULT_USER, UnitOptions, render_units
from messages.errors import ConfigError
from messages.options import Parser, folder_problem, run_command

__all__ = ["DEFAULT_DIR", "build_parser", "host_problems", "main", "options_from", "this_labscope", "write_units"]

PROG = "labscope install-units"
DEFAULT_DIR = Path("/etc/systemd/system")


def build_parser() -> Parser:
    """The argument parser of ``labscope install-units``."""
    parser = Parser(
        prog=PROG,
        description="Write the systemd units of a labscope deployment: labscope-collector.service and "
        "labscope-agent@.service, one agent per node with the node id as instance name "
        "(systemctl enable --now labscope-agent@NODE). They run as a dedicated user, read --config, keep "
        "their state (journal, store, agent outbox) in /var/lib/labscope/ (StateDirectory=), are sandboxed "
        "(ProtectSystem=strict, NoNewPrivileges=yes, PrivateTmp=yes ...) and restart on failure. With CURVE "
        "(the default) the collector reads KEYS/collector.key_secret and the allow folders KEYS/agents, "
        "KEYS/viewers and KEYS/operators; an agent reads KEYS/collector.key and KEYS/NODE.key_secret.",
        epilog="Then: systemctl daemon-reload; systemctl enable --now labscope-collector (on the collector's "
        "host) and labscope-agent@NODE (on each node). Step by step: docs/deploy.md.",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--dir", metavar="DIR", type=Path, help=f"the folder to write the units into (default {DEFAULT_DIR})"
    )
    where.add_argument("--print", action="store_true", help="print the units on stdout instead; write nothing")
    parser.add_argument("--force", action="store_true", help="overwrite unit files that exist")
    parser.add_argument(
        "--user",
        metavar="NAME",
        default=DEFAULT_USER,
        help=f"the system user the services run as (default {DEFAULT_USER})",
    )
    command = parser.add_mutually_exclusive_group()
    command.add_argument(
        "--exec", metavar="PATH", help="the labscope executable the units start (default: this installation's)"
    )
    command.add_argument("--prefix", metavar="DIR", help="the installation prefix: the units start DIR/bin/labscope")
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=str(DEFAULT_CONFIG),
        help=f"the config file both read (default {DEFAULT_CONFIG})",
    )
    keys = parser.add_mutually_exclusive_group()
    keys.add_argument(
        "--keys", metavar="DIR", default=str(DEFAULT_KEYS), help=f"the key folder, for CURVE (default {DEFAULT_KEYS})"
    )
    keys.add_argument("--no-curve", action="store_true", help="units without CURVE keys (a trusted network only)")
    return parser


def this_labscope() -> tuple[str, ...]:
    """The command that runs this installation's labscope: its console script, else ``python -m labscope``."""
    started = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if started is not None and started.name == "labscope" and _executable(started):
        return (str(started.absolute()),)
    script = Path(sysconfig.get_path("scripts")) / "labscope"
    if _executable(script):
        return (str(script),)
    return (sys.executable, "-m", "labscope")


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def options_from(args: argparse.Namespace) -> UnitOptions:
    """The UnitOptions the flags ask for; raises ConfigError for a bad value."""
    if args.exec:
        command: tuple[str, ...] = (args.exec,)
    elif args.prefix:
        command = (str(PurePosixPath(args.prefix) / "bin" / "labscope"),)
    else:
        command = this_labscope()
    keys = None if args.no_curve else PurePosixPath(args.keys)
    return UnitOptions(command=command, user=args.user, config=PurePosixPath(args.config), keys=keys)


def write_units(units: dict[str, str], folder: Path, force: bool) -> list[Path]:
    """Write every unit into ``folder``; nothing at all when one exists and not ``force``. Raises ConfigError."""
    problem = folder_problem(folder)
    if problem is not None:
        raise ConfigError(f"--dir {folder}: {problem} (create it, or use --print)")
    if not os.access(folder, os.W_OK):
        raise ConfigError(f"--dir {folder}: not writable (run as root, or choose another --dir)")
    targets = [folder / name for name in units]
    existing = [path for path in targets if path.exists() or path.is_symlink()]
    if existing and not force:
        raise ConfigError(f"{existing[0]} exists; pass --force to overwrite it (nothing was written)")
    for path, text in zip(targets, units.values(), strict=True):
        _write_whole(path, text)
    return targets


def _write_whole(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file renamed into place (mode 0644)."""
    try:
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    except OSError as exc:
        raise ConfigError(f"--dir {path.parent}: cannot write: {exc.strerror}") from None
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except OSError as exc:
        Path(temporary).unlink(missing_ok=True)
        raise ConfigError(f"{path}: cannot write: {exc.strerror}") from None


def host_problems(options: UnitOptions) -> list[str]:
    """What this host still lacks for the units it was given: the user, the config file, the key folder."""
    found: list[str] = []
    try:
        pwd.getpwnam(options.user)
    except KeyError:
        found.append(
            f"no user {options.user!r} on this host: useradd --system --user-group --home-dir /var/lib/labscope "
            f"--no-create-home --shell /usr/sbin/nologin {options.user}"
        )
    if not Path(options.config).is_file():
        found.append(f"no config file {options.config} yet: both units read it (docs/deploy.md)")
    if options.keys is not None and folder_problem(Path(options.keys)) is not None:
        found.append(
            f"no key folder {options.keys} yet: make the keys (docs/deploy.md), or write the units with --no-curve"
        )
    return found


def _run(args: argparse.Namespace) -> int:
    options = options_from(args)
    units = render_units(options)
    if args.print:
        sys.stdout.write("\n".join(units.values()))
        return 0
    for path in write_units(units, args.dir or DEFAULT_DIR, args.force):
        sys.stdout.write(f"wrote {path}\n")
    for line in host_problems(options):
        sys.stderr.write(f"{PROG}: warning: {line}\n")
    sys.stdout.write(
        "next: systemctl daemon-reload; systemctl enable --now labscope-collector (collector host) "
        "or labscope-agent@NODE (each node)\n"
    )
    return 0


def main(argv: list[str]) -> int:
    """Entry point of ``labscope install-units``; returns the exit status."""
    args = build_parser().parse_args(argv)
    return run_command(PROG, lambda: _run(args))
