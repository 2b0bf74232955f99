"""``labscope agent``: stream this node's reports to a collector.

Settings come from flags, then the ``[agent]`` section of ``--config``;
a flag wins over the file. Relative paths in the file are taken from the
file's own folder. Sample config (defaults shown commented out)::

    [agent]
    collector = "tcp://collector.example:5555"
    # node_id = "<hostname>"
    # interval = 1.0               # seconds between SystemStats samples
    # probes_dirs = []             # folders of drop-in probe files
    # data_dir = "~/.local/state/labscope/agent-<node_id>"
    # log_level = "info"
    # batch_delay = 0.005          # seconds a report may wait to share a frame
    # heartbeat_interval = 1.0     # until the collector says otherwise
    # outbox_max_mb = 256          # MiB of unacknowledged report payloads kept on disk
    # outbox_max_age = "7d"        # oldest unacknowledged report kept: seconds, or with s/m/h/d
    # watch_dirs = []              # folders whose new and changed files are sent (FileOutput)
    # watch_interval = 1.0         # seconds between scans of the watched folders
    # serve_dirs = []              # folders NodeFile requests may read (none: NodeFile is denied)
    # handlers_dirs = []           # folders of drop-in node request handlers
    # curve_server_key = "keys/collector.key"      # CURVE: the collector's public certificate
    # curve_secret = "keys/<node_id>.key_secret"   # CURVE: this agent's secret certificate

The CURVE files may also come from ``--curve-server-key`` / ``--curve-secret`` or
the environment variables ``LABSCOPE_CURVE_SERVER_KEY`` / ``LABSCOPE_CURVE_SECRET``
(flags first, then the environment, then the file; docs/security.md).
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import math
import platform
import re
import socket
from pathlib import Path
from typing import Any

from messages.codec import check_protobuf_backend
from messages.errors import ConfigError
from messages.keys import add_curve_args, client_keys
from messages.options import (
    Parser,
    check_endpoint,
    config_section,
    endpoint_arg,
    folder_problem,
    load_config,
    positive_float,
    run_command,
    setup_logging,
    shown,
)
from node_agent.agent import Agent, AgentConfig
from node_agent.loader import load_probes
from node_agent.outbox import DEFAULT_MAX_AGE, DEFAULT_MAX_BYTES, Outbox
from node_agent.runner import ScheduledProbe
from node_agent.sysprobe import SystemStatsProbe

__all__ = ["CONFIG_SCHEMA", "build_parser", "main", "make_probes", "parse_age", "parse_megabytes", "resolve_config"]

log = logging.getLogger(__name__)

PROG = "labscope agent"
LOG_LEVELS = ("debug", "info", "warning", "error")
_NUMBER = (int, float)
CONFIG_SCHEMA: dict[str, type | tuple[type, ...]] = {
    "collector": str,
    "node_id": str,
    "interval": _NUMBER,
    "probes_dirs": list,
    "data_dir": str,
    "log_level": str,
    "batch_delay": _NUMBER,
    "heartbeat_interval": _NUMBER,
    "outbox_max_mb": _NUMBER,
    "outbox_max_age": (int, float, str),
    "watch_dirs": list,
    "watch_interval": _NUMBER,
    "serve_dirs": list,
    "handlers_dirs": list,
    "curve_server_key": str,
    "curve_secret": str,
}
CURVE_FILES = ("curve_server_key", "curve_secret")
DIR_LISTS = {"probes_dirs": "probes", "watch_dirs": "watched", "serve_dirs": "serve", "handlers_dirs": "handlers"}
MIB = 1024 * 1024
# glibc's mallopt parameters, and the values the agent sets (see keep_malloc_arenas).
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD, TRIM_THRESHOLD = 4 * MIB, 32 * MIB
_AGE_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_AGE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([smhd]?)\s*$")


def parse_age(text: str | float) -> float:
    """Seconds from ``3600``, ``90s``, ``30m``, ``12h`` or ``7d``; raises ValueError unless it is above 0."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        match = _AGE.match(str(text))
        if match is None:
            raise ValueError(f"{text!r} is not an age: give seconds, or a number with s, m, h or d (e.g. 7d)")
        seconds = float(match.group(1)) * _AGE_UNITS[match.group(2)]
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"{text!r} must be an age greater than 0")
    return seconds


def parse_megabytes(text: str | float) -> float:
    """A size in MiB greater than 0 (fractions allowed); raises ValueError."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number of MiB") from None
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{text!r} must be a number of MiB greater than 0")
    return value


def _arg(parse: Any) -> Any:
    """An argparse ``type=`` from a parser raising ValueError (argparse then prints one line)."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


def build_parser() -> Parser:
    """The argument parser of ``labscope agent``."""
    parser = Parser(
        prog=PROG,
        description="Run a node agent: sample this node (SystemStats) and run drop-in probes, and stream "
        "their reports to a collector. Every report is kept on disk (DATA_DIR/outbox.sqlite3) "
        "until the collector acknowledges it, and resent after a reconnect or a restart. "
        "SIGINT/SIGTERM stop it cleanly (flush, BYE, exit 0).",
        epilog="Flags override the [agent] section of --config (keys: " + ", ".join(CONFIG_SCHEMA) + ").",
    )
    parser.add_argument(
        "--collector",
        metavar="EP",
        type=endpoint_arg(bind=False),
        help="the collector's agents endpoint, e.g. tcp://HOST:PORT (required, here or in config)",
    )
    parser.add_argument("--node-id", metavar="ID", help="this node's id (default: the host name)")
    parser.add_argument(
        "--interval",
        metavar="S",
        type=positive_float,
        help="seconds between SystemStats samples, and the default for probes without "
        "their own interval (default: 1.0)",
    )
    parser.add_argument(
        "--probes-dir",
        metavar="DIR",
        action="append",
        dest="probes_dirs",
        help="a folder of drop-in probe files (*.py); repeat for more folders",
    )
    parser.add_argument(
        "--watch-dir",
        metavar="DIR",
        action="append",
        dest="watch_dirs",
        help="send this folder's new and changed files (FileOutput reports, large ones in 1 MiB "
        "pieces); repeat for more folders",
    )
    parser.add_argument(
        "--watch-interval",
        metavar="S",
        type=positive_float,
        help="seconds between scans of the watched folders; a file is sent once it was the same "
        "for one scan (default: 1.0)",
    )
    parser.add_argument(
        "--serve-dir",
        metavar="DIR",
        action="append",
        dest="serve_dirs",
        help="a folder whose files NodeFile requests (labscope fetch) may read; nothing outside "
        "the serve folders is ever served; repeat for more folders",
    )
    parser.add_argument(
        "--handlers-dir",
        metavar="DIR",
        action="append",
        dest="handlers_dirs",
        help="a folder of drop-in node request handlers (*.py); repeat for more folders",
    )
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        help="the agent's data folder, created on start (default: ~/.local/state/labscope/agent-<node-id>)",
    )
    parser.add_argument(
        "--outbox-max-mb",
        metavar="MB",
        type=_arg(parse_megabytes),
        help="MiB of unacknowledged report payloads kept in the outbox; beyond it the oldest are "
        "dropped and a gap event says which (default: 256)",
    )
    parser.add_argument(
        "--outbox-max-age",
        metavar="AGE",
        type=_arg(parse_age),
        help="oldest unacknowledged report kept, in seconds or with a unit: 90s, 30m, 12h, 7d (default: 7d)",
    )
    parser.add_argument("--config", metavar="FILE", help="a TOML file whose [agent] section sets defaults")
    parser.add_argument(
        "--log-level", metavar="LEVEL", choices=LOG_LEVELS, help="debug, info, warning or error (default: info)"
    )
    add_curve_args(parser)
    return parser


def main(argv: list[str]) -> int:
    """Entry point of ``labscope agent``; returns the exit status."""
    args = build_parser().parse_args(argv)
    return run_command(PROG, lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    config = resolve_config(args)
    setup_logging(config.log_level)
    check_protobuf_backend(log)
    keep_malloc_arenas()
    # First, so that a folder of another node, in use, unwritable or on a full disk stops us before anything runs.
    outbox = Outbox.open(config.data_dir, config.node_id, config.outbox_max_bytes, config.outbox_max_age, config.window)
    try:
        probes = make_probes(config)
    except BaseException:
        outbox.close(commit=False)
        raise
    return Agent(config, probes, outbox=outbox).run()


def keep_malloc_arenas() -> bool:
    """On glibc, serve buffers of up to 4 MiB from the heap and keep up to 32 MiB of it when freed.

    A streamed file or a watched file's piece goes through a few 0.5-1 MiB buffers per chunk,
    made on one thread and freed on another. With glibc's defaults each of them is a fresh
    mmap (or a trimmed heap) and costs ~130 page faults: measured, they took two thirds of the
    agent's CPU while streaming (sys time) and capped a fetch at ~180 MiB/s; with the heap kept,
    ~280 MiB/s. Memory stays bounded by the peak in use (a stream's credit), not by these figures.
    Returns whether the settings were applied.
    """
    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def resolve_config(args: argparse.Namespace) -> AgentConfig:
    """Merge flags over the config file into a checked AgentConfig; raises ConfigError."""
    values = _file_values(args.config)
    keys = client_keys(args.curve_server_key, args.curve_secret, values)
    flags = {key: value for key, value in vars(args).items() if value is not None and key != "config"}
    values.update(flags)
    if "collector" not in values:
        raise ConfigError("no collector given: use --collector tcp://HOST:PORT or collector in [agent] of --config")
    node_id = values.get("node_id") or socket.gethostname()
    config = AgentConfig(
        collector=values["collector"],
        node_id=node_id,
        interval=float(values.get("interval", 1.0)),
        probes_dirs=_paths(values, "probes_dirs"),
        watch_dirs=_paths(values, "watch_dirs"),
        watch_interval=float(values.get("watch_interval", 1.0)),
        serve_dirs=_paths(values, "serve_dirs"),
        handlers_dirs=_paths(values, "handlers_dirs"),
        data_dir=expand(str(values.get("data_dir") or _default_data_dir(node_id))),
        log_level=values.get("log_level", "info"),
        batch_delay=float(values.get("batch_delay", 0.005)),
        heartbeat_interval=float(values.get("heartbeat_interval", 1.0)),
        outbox_max_bytes=max(1, int(float(values.get("outbox_max_mb", DEFAULT_MAX_BYTES / MIB)) * MIB)),
        outbox_max_age=float(values.get("outbox_max_age", DEFAULT_MAX_AGE)),
        keys=keys,
    )
    for key, what in DIR_LISTS.items():
        _check_dirs(getattr(config, key), what)
    return config


def _paths(values: dict[str, Any], key: str) -> list[Path]:
    return [expand(p) for p in values.get(key, [])]


def expand(path: str) -> Path:
    """``path`` with a leading ``~`` or ``~USER`` expanded; raises ConfigError for an unknown user."""
    if "\x00" in path:
        raise ConfigError(f"{path!r}: a path cannot hold a NUL character")
    try:
        return Path(path).expanduser()
    except RuntimeError:  # pathlib's "Could not determine home directory."
        raise ConfigError(f"{path}: no home folder for {path.split('/', 1)[0]}") from None


def _default_data_dir(node_id: str) -> Path:
    return Path.home() / ".local" / "state" / "labscope" / f"agent-{re.sub(r'[^A-Za-z0-9_.-]', '_', node_id)}"


def _file_values(path: str | None) -> dict[str, Any]:
    """The checked [agent] section of the config file, paths made relative to its folder."""
    if path is None:
        return {}
    values = config_section(load_config(path), "agent", CONFIG_SCHEMA, path)
    where = f"config {path}: [agent]"
    if "collector" in values:
        try:
            check_endpoint(values["collector"])
        except ConfigError as exc:
            raise ConfigError(f"{where} collector: {exc}") from None
    for key in ("interval", "heartbeat_interval", "watch_interval"):
        _check_number(values, key, where, allow_zero=False)
    _check_number(values, "batch_delay", where, allow_zero=True)
    for key, parse in (("outbox_max_mb", parse_megabytes), ("outbox_max_age", parse_age)):
        if key in values:
            try:
                values[key] = parse(values[key])
            except ValueError as exc:
                raise ConfigError(f"{where} {key}: {exc}") from None
    if values.get("log_level", "info") not in LOG_LEVELS:
        raise ConfigError(f"{where} log_level must be one of {', '.join(LOG_LEVELS)}, not {values['log_level']!r}")
    if "node_id" in values and not values["node_id"].strip():
        raise ConfigError(f"{where} node_id must not be empty")
    base = Path(path).parent
    for key in DIR_LISTS:
        dirs = values.get(key, [])
        if not all(isinstance(d, str) for d in dirs):
            raise ConfigError(f"{where} {key} must be a list of folder names, not {dirs!r}")
        if key in values:
            values[key] = [str(base / _expand_in(d, where, key)) for d in dirs]
    for key in ("data_dir", *CURVE_FILES):
        if key in values:
            values[key] = str(base / _expand_in(values[key], where, key))
    return values


def _expand_in(path: str, where: str, key: str) -> Path:
    try:
        return expand(path)
    except ConfigError as exc:
        raise ConfigError(f"{where} {key}: {exc}") from None


def _check_number(values: dict[str, Any], key: str, where: str, allow_zero: bool) -> None:
    if key not in values:
        return
    value = values[key]
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = "0 or more" if allow_zero else "greater than 0"
        raise ConfigError(f"{where} {key} must be a number of seconds {bound}, not {value!r}")


def _check_dirs(dirs: list[Path], what: str) -> None:
    for folder in dirs:
        problem = folder_problem(folder)
        if problem is not None:
            raise ConfigError(
                f"{what} folder {shown(str(folder))}: {'no such directory' if problem == 'no such folder' else problem}"
            )


def make_probes(config: AgentConfig) -> list[ScheduledProbe]:
    """The built-in SystemStats probe and every drop-in probe of the probes folders."""
    probes = [ScheduledProbe("SystemStats", SystemStatsProbe(), config.interval)]
    for item in load_probes(config.probes_dirs, reserved={p.name for p in probes}):
        interval = item.probe.interval if item.probe.interval is not None else config.interval
        probes.append(ScheduledProbe(item.name, item.probe, float(interval)))
    log.info("%d probe(s): %s", len(probes), ", ".join(p.name for p in probes))
    return probes
