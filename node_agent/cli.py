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
"""

from __future__ import annotations

import argparse
import logging
import math
import re
import socket
from pathlib import Path
from typing import Any

from messages.codec import check_protobuf_backend
from messages.errors import ConfigError
from messages.options import (
    Parser,
    check_endpoint,
    config_section,
    endpoint_arg,
    load_config,
    positive_float,
    run_command,
    setup_logging,
)
from node_agent.agent import Agent, AgentConfig
from node_agent.loader import load_probes
from node_agent.runner import ScheduledProbe
from node_agent.sysprobe import SystemStatsProbe

__all__ = ["CONFIG_SCHEMA", "build_parser", "main", "make_probes", "resolve_config"]

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
}


def build_parser() -> Parser:
    """The argument parser of ``labscope agent``."""
    parser = Parser(
        prog=PROG,
        description="Run a node agent: sample this node (SystemStats) and run drop-in probes, and stream "
                    "their reports to a collector. Unacknowledged reports are kept and resent after a "
                    "reconnect. SIGINT/SIGTERM stop it cleanly (flush, BYE, exit 0).",
        epilog="Flags override the [agent] section of --config (keys: " + ", ".join(CONFIG_SCHEMA) + ").",
    )
    parser.add_argument("--collector", metavar="EP", type=endpoint_arg(bind=False),
                        help="the collector's agents endpoint, e.g. tcp://HOST:PORT (required, here or in config)")
    parser.add_argument("--node-id", metavar="ID", help="this node's id (default: the host name)")
    parser.add_argument("--interval", metavar="S", type=positive_float,
                        help="seconds between SystemStats samples, and the default for probes without "
                             "their own interval (default: 1.0)")
    parser.add_argument("--probes-dir", metavar="DIR", action="append", dest="probes_dirs",
                        help="a folder of drop-in probe files (*.py); repeat for more folders")
    parser.add_argument("--data-dir", metavar="DIR",
                        help="the agent's data folder, created on start "
                             "(default: ~/.local/state/labscope/agent-<node-id>)")
    parser.add_argument("--config", metavar="FILE", help="a TOML file whose [agent] section sets defaults")
    parser.add_argument("--log-level", metavar="LEVEL", choices=LOG_LEVELS,
                        help="debug, info, warning or error (default: info)")
    return parser


def main(argv: list[str]) -> int:
    """Entry point of ``labscope agent``; returns the exit status."""
    args = build_parser().parse_args(argv)
    return run_command(PROG, lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    config = resolve_config(args)
    setup_logging(config.log_level)
    check_protobuf_backend(log)
    if config.data_dir is not None:
        try:
            config.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"data folder {config.data_dir}: cannot create it: {exc.strerror}") from None
    return Agent(config, make_probes(config)).run()


def resolve_config(args: argparse.Namespace) -> AgentConfig:
    """Merge flags over the config file into a checked AgentConfig; raises ConfigError."""
    values = _file_values(args.config)
    flags = {key: value for key, value in vars(args).items() if value is not None and key != "config"}
    values.update(flags)
    if "collector" not in values:
        raise ConfigError("no collector given: use --collector tcp://HOST:PORT or collector in [agent] of --config")
    node_id = values.get("node_id") or socket.gethostname()
    config = AgentConfig(
        collector=values["collector"],
        node_id=node_id,
        interval=float(values.get("interval", 1.0)),
        probes_dirs=[Path(p).expanduser() for p in values.get("probes_dirs", [])],
        data_dir=Path(values.get("data_dir") or _default_data_dir(node_id)).expanduser(),
        log_level=values.get("log_level", "info"),
        batch_delay=float(values.get("batch_delay", 0.005)),
        heartbeat_interval=float(values.get("heartbeat_interval", 1.0)),
    )
    _check_dirs(config.probes_dirs)
    return config


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
    for key in ("interval", "heartbeat_interval"):
        _check_number(values, key, where, allow_zero=False)
    _check_number(values, "batch_delay", where, allow_zero=True)
    if values.get("log_level", "info") not in LOG_LEVELS:
        raise ConfigError(f"{where} log_level must be one of {', '.join(LOG_LEVELS)}, not {values['log_level']!r}")
    if "node_id" in values and not values["node_id"].strip():
        raise ConfigError(f"{where} node_id must not be empty")
    base = Path(path).parent
    dirs = values.get("probes_dirs", [])
    if not all(isinstance(d, str) for d in dirs):
        raise ConfigError(f"{where} probes_dirs must be a list of folder names, not {dirs!r}")
    values["probes_dirs"] = [str(base / Path(d).expanduser()) for d in dirs]
    if "data_dir" in values:
        values["data_dir"] = str(base / Path(values["data_dir"]).expanduser())
    return values


def _check_number(values: dict[str, Any], key: str, where: str, allow_zero: bool) -> None:
    if key not in values:
        return
    value = values[key]
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = "0 or more" if allow_zero else "greater than 0"
        raise ConfigError(f"{where} {key} must be a number of seconds {bound}, not {value!r}")


def _check_dirs(dirs: list[Path]) -> None:
    for folder in dirs:
        if not folder.is_dir():
            raise ConfigError(f"probes folder {folder}: no such directory")


def make_probes(config: AgentConfig) -> list[ScheduledProbe]:
    """The built-in SystemStats probe and every drop-in probe of the probes folders."""
    probes = [ScheduledProbe("SystemStats", SystemStatsProbe(), config.interval)]
    for item in load_probes(config.probes_dirs, reserved={p.name for p in probes}):
        interval = item.probe.interval if item.probe.interval is not None else config.interval
        probes.append(ScheduledProbe(item.name, item.probe, float(interval)))
    log.info("%d probe(s): %s", len(probes), ", ".join(p.name for p in probes))
    return probes
