"""The collector's configuration: flags over the ``[collector]`` TOML section over defaults.

Sample config (every key optional; defaults shown)::

    [collector]
    # listen_agents = "tcp://127.0.0.1:5555"   # loopback: give tcp://*:5555 for agents on other hosts
    # listen_clients = "tcp://127.0.0.1:5556"
    # data_dir = "<$XDG_STATE_HOME or ~/.local/state>/labscope/collector"
    # modules_dirs = []
    # disable_modules = []
    # alias = "<host name>"
    # update_interval = 1.0       # seconds between getUpdateMessage() calls
    # node_timeout = 5.0          # seconds of silence before a node is lost
    # heartbeat_interval = 1.0    # seconds between agent heartbeats
    # subscription_lease = 10.0   # seconds a client SUBSCRIBE lasts
    # max_frame_bytes = 16777216  # larger frames are counted and dropped
    # journal = true              # false: acknowledge without writing reports to disk
    # journal_sync = "normal"     # "full": fsync every pass (survives power loss, not only crashes)
    # retention = 86400.0         # seconds of journal kept for rebuilding modules
    # snapshot_interval = 60.0    # seconds between module snapshots
    # module_grace = 5.0          # seconds a module's main() has to return once the collector stops
    # node_request_timeout = 30.0 # seconds a request forwarded to a node waits for its answer
    # log_level = "info"
    # audit_retention = 2592000.0 # seconds the audit trail keeps its entries (30 days; docs/security.md)
    # client_request_rate = 200.0 # requests a second one client may send (token bucket) ...
    # client_request_burst = 400  # ... and how many it may send at once; beyond: ERROR busy
    # client_max_streams = 4      # streamed answers one client may have running at once; beyond: ERROR busy
    # max_nodes = 10000           # HELLOs of new nodes beyond this many are refused (ERROR busy)
    # distributions_dirs = []     # folders of drop-in dist_<type>.py files
    # curve_secret = ""           # the collector's own NAME.key_secret: CURVE on both endpoints (docs/security.md)
    # allow_agents = ""           # folder of agents' public NAME.key files (NAME = the node id it may claim)
    # allow_viewers = ""          # folder of viewers' public .key files (query, watch, GUI)
    # allow_operators = ""        # folder of operators' public .key files (viewers who may also command nodes)
    # web = false                 # the web status page (docs/web.md); --web turns it on too
    # web_listen = "127.0.0.1:5557"  # HOST:PORT of the web page (a bare PORT or ":PORT" means loopback)
    # web_token_file = ""         # file holding the token that lets PUT /api/config/NAME edit files
    # extra_config_files = []     # files viewable (and, with a token, editable) in the web page
    # store = "sqlite"            # sqlite | postgresql | memory | null | package.module:Class (docs/stores.md)
    # observers = []              # "file.py:Class" or "package.module:Class" (docs/observers.md)
    # observer_queue = 10000      # observer calls waiting for the observer thread; beyond: dropped, counted
    # backlog_alert = 10000       # an agent reporting more unsent reports than this: observers' backlog_high
    # site = ""                   # this collector is site SITE of a top collector (docs/sites.md)
    # site_heartbeat = 2.0        # seconds between a site's heartbeats (and node status) on NATS
    # ingest_nats = ""            # a top collector: ingest the sites' stream from nats://HOST:PORT[,...]
    # ingest_stream = "LABSCOPE"  # the JetStream stream the sites publish into
    # ingest_prefix = "labscope"  # the sites' subject prefix
    # ingest_sites = []           # only these sites (default: every site in the stream)
    # ingest_durable = "labscope-top"  # the durable consumer's name (one per top collector)
    # ingest_site_timeout = 10.0  # seconds without a site's heartbeat before its nodes show lost
    # nats_nkey_seed = ""         # this collector's NATS NKey seed file (a site's or a top's NATS user)
    # nats_credentials = ""       # or its NATS .creds file (JWT + seed); docs/sites.md, "Commands down the tree"

    [collector.store_args]        # the chosen store's options, e.g. for store = "postgresql":
    # dsn = "host=127.0.0.1 dbname=labscope"
    # schema = "labscope"
    # history_raw = "1h"          # the history tiers' retentions (every built-in store)
    # history_1m = "30d"
    # history_1h = "2y"

    [modules.systemstats]
    # update_interval = 1.0
    # history = 300               # raw samples SystemStatsHistory answers without since

    [distributions.files]         # see docs/distributions.md
    type = "jsonl"
    # codes = ["*"]
    # mode = "points"
    # queue_max = 10000
    # on_full = "drop-oldest"
"""

from __future__ import annotations

import argparse
import math
import os
import re
import socket
import tomllib
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from collector import sites
from messages.codec import DEFAULT_MAX_FRAME_BYTES
from messages.errors import ConfigError
from messages.keys import load
from messages.options import (
    KNOWN_SECTIONS,
    Parser,
    check_endpoint,
    config_section,
    endpoint_arg,
    folder_problem,
    load_config,
    positive_float,
    shown,
)

# Where the web page listens when it is on and nothing else is said (docs/web.md).
DEFAULT_WEB_PORT = 5557
DEFAULT_WEB_LISTEN = f"127.0.0.1:{DEFAULT_WEB_PORT}"
_WEB_LISTEN = re.compile(r"^(?:(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]*):)?(\d{1,5})$")

# The allow-folder keys and their flags (docs/security.md).
ALLOW_KEYS = {
    "allow_agents": "--allow-agents",
    "allow_viewers": "--allow-viewers",
    "allow_operators": "--allow-operators",
}

LOG_LEVELS = ("debug", "info", "warning", "error")

DIST_MODES = ("points", "reports")
# Data points a distribution's queue holds by default (Telegraf's metric_buffer_limit is the same
# 10,000 per output). Under a flood that a distribution cannot keep up with, a full drop-oldest queue
# is a conveyor: every entry is made when offered and freed when dropped, queue_max points later. At
# 10,000 points (~1,400 SystemStats samples, ~0.5 MB) that fits in a core's L2 cache; at the earlier
# 100,000 (~5 MB) it did not, and ingest with a `jsonl` distribution attached ran several per cent
# slower for it (BENCHMARKS.md, issue 14 rounds ten and twelve). docs/distributions.md "Queue size".
DIST_QUEUE_MAX = 10_000
DIST_ON_FULL = ("drop-oldest", "collapse")
_DIST_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_TYPE_NAME = re.compile(r"^[A-Za-z0-9_]+$")


@dataclass(frozen=True)
class DistSection:
    """One ``[distributions.NAME]`` section, its common keys checked (docs/distributions.md).

    ``values`` is the whole section as the distribution's ``configure()``
    gets it: every key as written, the common keys filled with their defaults.
    """

    name: str
    type: str
    codes: tuple[str, ...] = ("*",)
    mode: str = "points"
    queue_max: int = DIST_QUEUE_MAX
    on_full: str = "drop-oldest"
    batch_max: int = 1000
    cpu_limit: float = 0.02
    values: dict[str, Any] = field(default_factory=dict)


# The keys every [distributions.NAME] section may hold besides ``type``, with their defaults.
DIST_DEFAULTS: dict[str, Any] = {
    "codes": ["*"],
    "mode": "points",
    "queue_max": DIST_QUEUE_MAX,
    "on_full": "drop-oldest",
    "batch_max": 1000,
    "cpu_limit": 0.02,
}


def default_data_dir() -> Path:
    """The per-user state folder: ``$XDG_STATE_HOME/labscope/collector`` (``~/.local/state/...``).

    ``./labscope-data`` when the user has no home folder (a service account, a container).
    """
    state = os.environ.get("XDG_STATE_HOME", "")
    if state and Path(state).is_absolute():
        return Path(state) / "labscope" / "collector"
    try:
        return Path.home() / ".local" / "state" / "labscope" / "collector"
    except RuntimeError:  # no HOME and no passwd entry
        return Path("labscope-data")


NO_TOML = {"toml": False}  # field metadata: set by the program, never a [collector] key


@dataclass
class CollectorTicket:
    """Every start-up option of a collector, each with a default good enough to leave it empty.

    One field per option; the field's name is its ``[collector]`` TOML key and
    (with dashes) its flag, and its type is what the TOML value must be
    (:data:`SCHEMA` is derived from these fields). ``labscope collector`` fills
    one from flags and ``--config``; a program embedding the collector builds
    one itself (docs/embedding.md). ``observers`` may hold observer objects as
    well as ``"file.py:Class"`` / ``"package.module:Class"`` strings.
    """

    listen_agents: str = "tcp://127.0.0.1:5555"
    listen_clients: str = "tcp://127.0.0.1:5556"
    data_dir: Path = field(default_factory=default_data_dir)
    modules_dirs: list[Path] = field(default_factory=list)
    disable_modules: list[str] = field(default_factory=list)
    alias: str = field(default_factory=socket.gethostname)
    update_interval: float = 1.0
    node_timeout: float = 5.0
    heartbeat_interval: float = 1.0
    subscription_lease: float = 10.0
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    journal: bool = True
    journal_sync: str = "normal"
    retention: float = 86400.0
    snapshot_interval: float = 60.0
    module_grace: float = 5.0  # seconds a module's main() gets to return on shutdown before it is abandoned
    node_request_timeout: float = 30.0
    log_level: str = "info"
    audit_retention: float = 30 * 86400.0
    client_request_rate: float = 200.0
    client_request_burst: int = 400
    client_max_streams: int = 4
    max_nodes: int = 10_000
    modules: dict[str, dict[str, Any]] = field(default_factory=dict, metadata=NO_TOML)
    distributions_dirs: list[Path] = field(default_factory=list)
    distributions: list[DistSection] = field(default_factory=list, metadata=NO_TOML)
    config_path: str | None = field(default=None, metadata=NO_TOML)
    curve_secret: Path | None = None
    allow_agents: Path | None = None
    allow_viewers: Path | None = None
    allow_operators: Path | None = None
    web: bool = False
    web_listen: str = DEFAULT_WEB_LISTEN
    web_token_file: Path | None = None
    extra_config_files: list[Path] = field(default_factory=list)
    store: str = "sqlite"
    store_args: dict[str, Any] = field(default_factory=dict)
    observers: list[Any] = field(default_factory=list)
    observer_queue: int = 10_000
    backlog_alert: int = 10_000
    site: str = ""
    site_heartbeat: float = 2.0
    ingest_nats: str = ""
    ingest_stream: str = "LABSCOPE"
    ingest_prefix: str = "labscope"
    ingest_sites: list[str] = field(default_factory=list)
    ingest_durable: str = "labscope-top"
    ingest_site_timeout: float = 10.0
    nats_nkey_seed: Path | None = None
    nats_credentials: Path | None = None


CollectorConfig = CollectorTicket  # the name every part of the collector has used; the same class


def _toml_type(hint: Any) -> type | tuple[type, ...]:
    """What a TOML value must be for a ticket field of type ``hint``."""
    origin = typing.get_origin(hint) or hint
    if origin in (types.UnionType, typing.Union):  # ``Path | None``: given as a string, "" for none
        return str
    if origin is float:
        return (int, float)
    return str if origin is Path else typing.cast(type, origin)


def _schema() -> dict[str, type | tuple[type, ...]]:
    hints = typing.get_type_hints(CollectorTicket)
    return {f.name: _toml_type(hints[f.name]) for f in fields(CollectorTicket) if f.metadata.get("toml", True)}


# key -> accepted TOML type(s) of the [collector] section, derived from CollectorTicket: one place per option.
SCHEMA: dict[str, type | tuple[type, ...]] = _schema()


def build_parser() -> Parser:
    """The ``labscope collector`` argument parser."""
    parser = Parser(
        prog="labscope collector",
        description="Run the labscope collector: agents connect to --listen-agents and stream reports; "
        "clients (query, watch, GUI) connect to --listen-clients. Every module in the built-in modules "
        "folder and in each --modules-dir is loaded and started in dependency order.",
    )
    parser.add_argument(
        "--listen-agents",
        type=endpoint_arg(bind=True),
        metavar="EP",
        help="endpoint agents connect to (default tcp://127.0.0.1:5555, this host only; tcp://*:5555 for every "
        "interface; tcp://HOST:* picks a free port)",
    )
    parser.add_argument(
        "--listen-clients",
        type=endpoint_arg(bind=True),
        metavar="EP",
        help="endpoint clients connect to (default tcp://127.0.0.1:5556)",
    )
    parser.add_argument(
        "--modules-dir",
        action="append",
        default=None,
        metavar="DIR",
        help="folder of extra aggregator modules (*.py); repeatable",
    )
    parser.add_argument(
        "--distributions-dir",
        action="append",
        default=None,
        metavar="DIR",
        help="folder of drop-in distributions (dist_<type>.py); repeatable",
    )
    parser.add_argument(
        "--disable-module",
        action="append",
        default=None,
        metavar="NAME",
        help="do not load this module (and warn if no module has that name); repeatable",
    )
    parser.add_argument(
        "--data-dir", metavar="DIR", help="folder for the collector's state (default ~/.local/state/labscope/collector)"
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="TOML config file ([collector], [modules.NAME] and [distributions.NAME] sections)",
    )
    parser.add_argument("--alias", help="name shown to clients (default: this host's name)")
    parser.add_argument(
        "--update-interval", type=positive_float, metavar="S", help="default seconds between module updates (default 1)"
    )
    parser.add_argument(
        "--node-timeout",
        type=positive_float,
        metavar="S",
        help="seconds of silence before a node is marked lost (default 5)",
    )
    parser.add_argument(
        "--no-journal",
        dest="journal",
        action="store_false",
        default=None,
        help="acknowledge reports without writing them to the journal (faster, loses what a crash catches in flight)",
    )
    parser.add_argument(
        "--retention",
        type=positive_float,
        metavar="S",
        help="seconds of journal kept to rebuild modules after a restart (default 86400)",
    )
    parser.add_argument(
        "--snapshot-interval", type=positive_float, metavar="S", help="seconds between module snapshots (default 60)"
    )
    parser.add_argument(
        "--module-grace",
        type=positive_float,
        metavar="S",
        help="seconds a module's main() has to return once the collector stops; then it is abandoned (default 5)",
    )
    parser.add_argument("--log-level", choices=LOG_LEVELS, help="log detail (default info)")
    parser.add_argument(
        "--store", metavar="NAME", help='the store backend: a name or "package.module:Class" (default sqlite)'
    )
    parser.add_argument(
        "--observer",
        action="append",
        default=None,
        metavar="SPEC",
        help='a CollectorObserver class, "file.py:Class" or "package.module:Class" (docs/observers.md); repeatable',
    )
    parser.add_argument(
        "--store-arg",
        dest="store_args",
        action="append",
        default=None,
        metavar="KEY=VALUE",
        help="one of the store's options (e.g. dsn=..., schema=...), over [collector.store_args]; repeatable",
    )
    _add_security_flags(parser)
    _add_web_flags(parser)
    _add_site_flags(parser)
    return parser


def _add_site_flags(parser: Parser) -> None:
    parser.add_argument("--site", metavar="NAME", help="this collector is site NAME of a top collector (docs/sites.md)")
    parser.add_argument(
        "--site-heartbeat", type=positive_float, metavar="S", help="seconds between a site's heartbeats (default 2)"
    )
    parser.add_argument(
        "--ingest-nats",
        metavar="URL",
        help="be a top collector: ingest the sites' reports from this NATS JetStream server "
        "(nats://HOST:PORT; a cluster as a comma-separated list)",
    )
    parser.add_argument("--ingest-stream", metavar="NAME", help="the sites' stream (default LABSCOPE)")
    parser.add_argument(
        "--ingest-sites", type=sites.site_list, metavar="A,B", help="ingest only these sites (default: every site)"
    )
    parser.add_argument(
        "--ingest-site-timeout",
        type=positive_float,
        metavar="S",
        help="seconds without a site's heartbeat before its nodes show lost (default 10)",
    )


def _add_web_flags(parser: Parser) -> None:
    parser.add_argument(
        "--web",
        nargs="?",
        const="",
        type=web_listen_arg,
        metavar="HOST:PORT",
        help=f"serve the web status page (docs/web.md) on HOST:PORT (default {DEFAULT_WEB_LISTEN}; "
        "a bare PORT or :PORT means loopback; port 0 picks a free one)",
    )
    parser.add_argument(
        "--web-token-file",
        metavar="FILE",
        help="file holding the token that lets the web page edit the extra config files (none: read-only)",
    )
    parser.add_argument(
        "--extra-config-file",
        dest="extra_config_files",
        action="append",
        default=None,
        metavar="PATH",
        help="a config file shown (and, with --web-token-file, editable) in the web page; repeatable",
    )


def check_web_listen(text: str) -> str:
    """``HOST:PORT``, ``:PORT`` or ``PORT`` as ``HOST:PORT`` (loopback when no host); raises ConfigError."""
    match = _WEB_LISTEN.match(text.strip())
    if match is None or int(match.group(2)) > 65535:
        raise ConfigError(f"web address {text!r}: expected HOST:PORT, :PORT or PORT (port 0..65535)")
    host = match.group(1) or "127.0.0.1"
    return f"{host}:{int(match.group(2))}"


def web_listen_arg(text: str) -> str:
    """An argparse ``type=`` for ``--web``: "" (the flag alone) or an address checked by check_web_listen."""
    if not text:
        return ""
    try:
        return check_web_listen(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_security_flags(parser: Parser) -> None:
    parser.add_argument(
        "--curve-secret",
        metavar="FILE",
        help="the collector's own NAME.key_secret (labscope keys generate): CURVE encryption and key "
        "authentication on both endpoints; needs at least one --allow-* folder",
    )
    parser.add_argument(
        "--allow-agents",
        metavar="DIR",
        help="folder of agents' public NAME.key files; a key may claim node id NAME (and its metadata nodes)",
    )
    parser.add_argument(
        "--allow-viewers", metavar="DIR", help="folder of public .key files of clients that may query and watch"
    )
    parser.add_argument(
        "--allow-operators",
        metavar="DIR",
        help="folder of public .key files of clients that may also send requests to nodes and read the audit",
    )


def parse_args(argv: list[str]) -> CollectorConfig:
    """Flags, then the config file, then defaults; raises ConfigError on a bad config."""
    args = build_parser().parse_args(argv)
    data = load_config(args.config)
    values = config_section(data, "collector", SCHEMA, args.config)
    config = CollectorConfig(config_path=args.config)
    _apply(config, values, args.config)
    _apply_flags(config, args)
    config.modules = _module_sections(data, args.config)
    config.distributions = dist_sections(data, args.config)
    check_security(config)
    check_web(config)
    check_store(config, from_flag=args.store is not None)
    return config


def check_config_text(text: str, path: str) -> CollectorConfig:
    """Check the text of a collector config file as the collector would read it at its next start.

    The file's own values only (no flags); raises ConfigError naming the
    file, section and key. Module and distribution option values are checked
    against the modules when the collector starts.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {path}: not valid TOML: {exc}") from None
    unknown = sorted(set(data) - KNOWN_SECTIONS)
    if unknown:
        raise ConfigError(f"config {path}: unknown section [{shown(unknown[0])}]")
    config = CollectorConfig(config_path=path)
    _apply(config, config_section(data, "collector", SCHEMA, path), path)
    config.modules = _module_sections(data, path)
    config.distributions = dist_sections(data, path)
    check_security(config)
    check_web(config)
    check_store(config)
    return config


def check_web(config: CollectorConfig) -> None:
    """The extra config files must be files with distinct base names, the token file readable and non-empty.

    Raises ConfigError naming the option and the fix.
    """
    seen: dict[str, Path] = {}
    for path in config.extra_config_files:
        if not path.is_file():
            raise ConfigError(f"--extra-config-file {path}: not a file (create it first)")
        if path.name in seen:
            raise ConfigError(
                f"--extra-config-file {path}: its name {path.name!r} is taken by {seen[path.name]}; "
                "the web page names files by their base names, which must differ"
            )
        seen[path.name] = path
    if config.web_token_file is not None:
        read_token(config.web_token_file)


def read_token(path: Path) -> str:
    """The web token: the file's text without surrounding white space; raises ConfigError when unusable."""
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--web-token-file {path}: cannot read it: {exc}") from None
    if len(token) < 16 or any(c.isspace() for c in token):
        raise ConfigError(
            f"--web-token-file {path}: the token must be one word of at least 16 characters "
            "(e.g. python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    return token


def check_store(config: CollectorConfig, from_flag: bool = False) -> None:
    """The store must name a backend (or a class that imports); raises ConfigError naming the file or flag."""
    from collector.stores import backend_class

    try:
        backend_class(config.store)
    except ConfigError as exc:
        where = "--store: " if from_flag or not config.config_path else f"config {config.config_path}: [collector] "
        raise ConfigError(f"{where}{exc}") from None


def check_security(config: CollectorConfig) -> None:
    """CURVE needs an allow folder and allow folders need CURVE; each folder must exist and the secret load.

    Raises ConfigError (KeyFileError for the certificate) naming the flag or file and the fix.
    """
    folders = {key: getattr(config, key) for key in ALLOW_KEYS}
    given = [ALLOW_KEYS[key] for key, folder in folders.items() if folder is not None]
    if config.curve_secret is None:
        if given:
            raise ConfigError(
                f"{', '.join(given)} needs --curve-secret FILE (the collector's own .key_secret): "
                "without CURVE the collector cannot tell one key from another"
            )
        return
    if not given:
        raise ConfigError(
            "--curve-secret without --allow-agents, --allow-viewers or --allow-operators would let nobody in: "
            "give at least one folder of public .key files"
        )
    for key, folder in folders.items():
        problem = None if folder is None else folder_problem(folder)
        if problem is not None:
            problem = "not a folder" if problem == "no such folder" else problem
            raise ConfigError(f"{ALLOW_KEYS[key]} {folder}: {problem} (make it, or give the folder of .key files)")
    load(config.curve_secret, secret=True)


def _apply(config: CollectorConfig, values: dict[str, Any], path: str | None) -> None:
    for key, value in values.items():
        if key in ("listen_agents", "listen_clients"):
            value = _endpoint(value, key, path)
        elif key == "data_dir":
            value = Path(value)
        elif key in ("curve_secret", "nats_nkey_seed", "nats_credentials", *ALLOW_KEYS):
            value = Path(value) if value else None  # "" as in the sample config: not set
        elif key in ("modules_dirs", "distributions_dirs"):
            value = [Path(_string(v, key, path)) for v in value]
        elif key in ("disable_modules", "observers"):
            value = [_string(v, key, path) for v in value]
        elif key == "log_level" and value not in LOG_LEVELS:
            raise ConfigError(f"config {path}: [collector] log_level must be one of {', '.join(LOG_LEVELS)}")
        elif key in ("web_listen", "web_token_file", "extra_config_files"):
            value = _web_value(key, value, path)
        elif key in sites.KEYS:
            value = sites.check_key(key, value, f"config {path}: [collector]")
        elif key == "journal_sync" and value not in ("normal", "full"):
            raise ConfigError(f'config {path}: [collector] journal_sync must be "normal" or "full"')
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and not 0 < value < math.inf:
            raise ConfigError(f"config {path}: [collector] {key} must be greater than 0 (and finite), not {value}")
        setattr(config, key, value)


# The web page's flags, applied by _apply_web_flags: --web alone turns the page on at its default address.
_WEB_FLAGS = ("web", "web_token_file", "extra_config_files")

# Repeatable flags that add to a list the config file may also fill: flag dest -> ticket field.
_APPENDING = {
    "modules_dir": "modules_dirs",
    "distributions_dir": "distributions_dirs",
    "disable_module": "disable_modules",
    "observer": "observers",
}


def _apply_flags(config: CollectorConfig, args: argparse.Namespace) -> None:
    """Flags over the file: every flag's dest is its ticket field (or adds to one), checked as the file's keys are."""
    given = {key: value for key, value in vars(args).items() if value is not None and key != "config"}
    for dest in _WEB_FLAGS:  # --web alone means "on at the default address": its own rules
        given.pop(dest, None)
    store_args = given.pop("store_args", None)  # KEY=VALUE words over [collector.store_args]
    appended = {key: given.pop(dest) for dest, key in _APPENDING.items() if dest in given}
    _apply(config, given, "(flags)")
    for key, extra in appended.items():
        before = getattr(config, key)
        _apply(config, {key: extra}, "(flags)")
        setattr(config, key, before + getattr(config, key))
    _apply_web_flags(config, args)
    for item in store_args or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--store-arg {item!r}: expected KEY=VALUE")
        config.store_args = {**config.store_args, key: value}


def _apply_web_flags(config: CollectorConfig, args: argparse.Namespace) -> None:
    if args.web is not None:
        config.web = True
        if args.web:
            config.web_listen = args.web
    if args.web_token_file is not None:
        config.web_token_file = Path(args.web_token_file)
    if args.extra_config_files:
        config.extra_config_files = config.extra_config_files + [Path(p) for p in args.extra_config_files]


def _web_value(key: str, value: Any, path: str | None) -> Any:
    if key == "web_token_file":
        return Path(value) if value else None
    if key == "extra_config_files":
        return [Path(_string(v, key, path)) for v in value]
    try:
        return check_web_listen(value)
    except ConfigError as exc:
        raise ConfigError(f"config {path}: [collector] web_listen: {exc}") from None


def _module_sections(data: dict[str, Any], path: str | None) -> dict[str, dict[str, Any]]:
    sections = data.get("modules", {})
    if not isinstance(sections, dict) or not all(isinstance(v, dict) for v in sections.values()):
        raise ConfigError(f"config {path}: [modules] must hold tables like [modules.NAME]")
    return {name: dict(values) for name, values in sections.items()}


def dist_sections(data: dict[str, Any], path: str | None) -> list[DistSection]:
    """Every ``[distributions.NAME]`` section, checked; raises ConfigError naming the file, section and key."""
    sections = data.get("distributions", {})
    if not isinstance(sections, dict) or not all(isinstance(v, dict) for v in sections.values()):
        raise ConfigError(f"config {path}: [distributions] must hold tables like [distributions.NAME]")
    return [_dist_section(name, dict(values), path) for name, values in sections.items()]


def _dist_section(name: str, values: dict[str, Any], path: str | None) -> DistSection:
    where = f"config {path}: [distributions.{shown(name)}]"
    if not _DIST_NAME.match(name):
        raise ConfigError(f"{where}: NAME may hold only letters, digits, '_', '.' and '-'")
    if "type" not in values:
        raise ConfigError(f'{where} type: missing; name the distribution type, e.g. type = "jsonl"')
    merged = {**DIST_DEFAULTS, **values}
    for key, check in _DIST_CHECKS.items():
        problem = check(merged[key])
        if problem:
            raise ConfigError(f"{where} {key} {problem}, not {merged[key]!r}")
    if merged["on_full"] == "collapse" and merged["mode"] != "points":
        raise ConfigError(f'{where} on_full: "collapse" needs mode = "points" (reports are never collapsed)')
    common = {key: merged[key] for key in DIST_DEFAULTS}
    common["codes"] = tuple(common["codes"])
    return DistSection(name=name, type=merged["type"], values=merged, **common)


def _choice(choices: tuple[str, ...]) -> Callable[[Any], str]:
    return lambda v: "" if v in choices else "must be one of " + ", ".join(f'"{c}"' for c in choices)


def _int_at_least(low: int) -> Callable[[Any], str]:
    def problem(value: Any) -> str:
        fine = isinstance(value, int) and not isinstance(value, bool) and value >= low
        return "" if fine else f"must be an integer >= {low}"

    return problem


def _type_problem(value: Any) -> str:
    return "" if isinstance(value, str) and _TYPE_NAME.match(value) else "must name a type (letters, digits, _)"


def _codes_problem(value: Any) -> str:
    if isinstance(value, list) and value and all(isinstance(c, str) and c for c in value):
        return ""
    return 'must be a non-empty list of glob patterns, e.g. ["*/cpu_percent", "collector/*"]'


def _share_problem(value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value <= 1:
        return ""
    return "must be a number in (0, 1]: the share of one core the distribution may use"


# key -> what is wrong with its value ("" when fine): one table, not a chain of ifs
_DIST_CHECKS: dict[str, Callable[[Any], str]] = {
    "type": _type_problem,
    "codes": _codes_problem,
    "mode": _choice(DIST_MODES),
    "queue_max": _int_at_least(1),
    "on_full": _choice(DIST_ON_FULL),
    "batch_max": _int_at_least(1),
    "cpu_limit": _share_problem,
}


def _endpoint(value: str, key: str, path: str | None) -> str:
    try:
        return check_endpoint(value, bind=True)
    except ConfigError as exc:
        raise ConfigError(f"config {path}: [collector] {key}: {exc}") from None


def _string(value: object, key: str, path: str | None) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"config {path}: [collector] {key} must be a list of strings")
    return value
