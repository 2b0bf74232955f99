"""The systemd units of a labscope deployment, as text (docs/deploy.md).

Two units: ``labscope-collector.service`` and the template ``labscope-agent@.service``, whose
instance name is the node id (``systemctl enable --now labscope-agent@node-7``). Both run as a
dedicated user, read one config file under /etc/labscope/, keep their state in a
``StateDirectory=`` (the collector's journal and store, the agent's durable outbox) and are
hardened (``ProtectSystem=strict``, ``NoNewPrivileges=yes``, ``PrivateTmp=yes`` ...).

With a key folder (the default) CURVE is on: each unit gets its own secret certificate through
``LoadCredential=`` (systemd copies it into a private folder only the service's user can read, so
the ``.key_secret`` files stay root's, mode 0600, as ``labscope keys generate`` made them), and
the collector takes its allow folders from the key folder.

Every value that comes from the user is escaped for systemd (``%`` and ``$``, quotes around
spaces) and refused when it could break the unit (a newline, a control character).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from messages import __version__
from messages.errors import ConfigError

__all__ = [
    "AGENT_UNIT",
    "COLLECTOR_UNIT",
    "DEFAULT_CONFIG",
    "DEFAULT_KEYS",
    "DEFAULT_USER",
    "UnitOptions",
    "agent_unit",
    "collector_unit",
    "exec_arg",
    "render_units",
]

COLLECTOR_UNIT = "labscope-collector.service"
AGENT_UNIT = "labscope-agent@.service"
DEFAULT_USER = "labscope"
DEFAULT_CONFIG = PurePosixPath("/etc/labscope/labscope.toml")
DEFAULT_KEYS = PurePosixPath("/etc/labscope/keys")
# Allow folders the collector's unit names, inside the key folder (docs/security.md).
ALLOW_FOLDERS = ("agents", "viewers", "operators")

# useradd's and systemd's portable user names.
_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,30}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_NEEDS_QUOTES = re.compile(r"[\s\"'\\;]")


@dataclass(frozen=True)
class UnitOptions:
    """What the units depend on: the labscope command, the user, the config file and the key folder.

    ``command`` is the absolute path of the ``labscope`` executable, or an interpreter and its
    arguments (``/usr/bin/python3 -m labscope``); ``keys`` None writes units without CURVE.
    """

    command: tuple[str, ...]
    user: str = DEFAULT_USER
    config: PurePosixPath = DEFAULT_CONFIG
    keys: PurePosixPath | None = DEFAULT_KEYS

    def __post_init__(self) -> None:
        _check_user(self.user)
        _check_paths(self.command, self.config, self.keys)


def _check_user(user: str) -> None:
    if not _USER.match(user):
        raise ConfigError(
            f"--user {user!r}: not a system user name (lower-case letters, digits, '_' and '-', "
            "at most 31, not starting with a digit or '-')"
        )


def _check_paths(command: tuple[str, ...], config: PurePosixPath, keys: PurePosixPath | None) -> None:
    """Absolute paths only, no control character anywhere, nothing LoadCredential= cannot take in the key folder."""
    if not command or not command[0].startswith("/"):
        shown = command[0] if command else ""
        raise ConfigError(
            f"{shown!r}: the labscope the units start must be an absolute path (--exec PATH or --prefix DIR)"
        )
    for flag, path in (("--config", config), ("--keys", keys)):
        if path is not None and not path.is_absolute():
            raise ConfigError(f"{flag} {str(path)!r}: give an absolute path (systemd starts in /)")
    for value in (*command, str(config), str(keys or "")):
        if _CONTROL.search(value):
            raise ConfigError(f"{value!r}: a path in a systemd unit cannot hold a newline or control character")
    if keys is not None and _NEEDS_QUOTES.search(str(keys)):
        raise ConfigError(f"--keys {str(keys)!r}: a key folder for LoadCredential= cannot hold spaces or quotes")


def exec_arg(value: str) -> str:
    """``value`` as one literal argument of an ``Exec*=`` line: specifiers and variables escaped, quoted if needed."""
    text = value.replace("%", "%%").replace("$", "$$")
    if not text or _NEEDS_QUOTES.search(text):
        text = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def _exec(options: UnitOptions, *parts: str) -> str:
    """An ``ExecStart=`` value: the labscope command (escaped) then ``parts`` (already in unit syntax)."""
    return " ".join([*(exec_arg(part) for part in options.command), *parts])


def _lines(*pairs: tuple[str, str] | str) -> list[str]:
    """Unit lines from ``(key, value)`` pairs and ``# comment`` strings."""
    return [item if isinstance(item, str) else f"{item[0]}={item[1]}" for item in pairs]


def _hardening(home: str, devices: bool, hide_processes: bool) -> list[str]:
    """The sandbox both units share; ``home``, ``devices`` and ``hide_processes`` are where they differ."""
    lines = _lines(
        "# Sandbox: the whole file system read-only but the StateDirectory, no privileges to gain.",
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", home),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes" if devices else "no"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectKernelLogs", "yes"),
        ("ProtectControlGroups", "yes"),
        ("ProtectClock", "yes"),
        ("ProtectHostname", "yes"),
        ("RestrictNamespaces", "yes"),
        ("RestrictRealtime", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("LockPersonality", "yes"),
        ("CapabilityBoundingSet", ""),
        ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6 AF_NETLINK"),
        ("SystemCallArchitectures", "native"),
        ("SystemCallFilter", "@system-service"),
        ("SystemCallErrorNumber", "EPERM"),
        ("UMask", "0027"),
    )
    return lines + (["ProtectProc=invisible"] if hide_processes else [])


def _header(name: str, description: str, after: str, user: str) -> list[str]:
    """The comment on top, the [Unit] section and the start of [Service]."""
    return [
        f"# {name}: written by 'labscope install-units' (labscope {__version__}); see docs/deploy.md.",
        "# Change it with a drop-in ('systemctl edit NAME'), not here: install-units --force rewrites this file.",
        "[Unit]",
        f"Description={description}",
        f"After={after}",
        "Wants=network-online.target",
        "",
        "[Service]",
        "Type=exec",
        f"User={user}",
        f"Group={user}",
    ]


def _service_common(stop_timeout: int) -> list[str]:
    """Restart policy and clean stop, the same for both units."""
    return _lines(
        "# SIGTERM stops labscope cleanly (the collector checkpoints its journal, the agent flushes and says BYE;",
        "# both exit 0); SIGKILL after the timeout, and even that loses nothing acknowledged (docs/reliability.md).",
        ("KillSignal", "SIGTERM"),
        ("TimeoutStopSec", str(stop_timeout)),
        "# Exit status 2 is a usage error (bad flag, config or key file): restarting cannot mend it.",
        ("Restart", "on-failure"),
        ("RestartSec", "5s"),
        ("RestartPreventExitStatus", "2"),
    )


def _install() -> list[str]:
    return ["", "[Install]", "WantedBy=multi-user.target", ""]


def _unit(head: list[str], body: list[str]) -> str:
    return "\n".join(head + body)


def collector_unit(options: UnitOptions) -> str:
    """The text of ``labscope-collector.service``."""
    head = _header(COLLECTOR_UNIT, "labscope collector", "network-online.target", options.user)
    args = ["collector", "--config", exec_arg(str(options.config)), "--data-dir", "%S/labscope/collector"]
    extra: list[str] = []
    if options.keys is not None:
        keys = options.keys
        args += ["--curve-secret", "%d/collector.key_secret"]
        for role in ALLOW_FOLDERS:
            args += [f"--allow-{role}", exec_arg(str(keys / role))]
        extra = _lines(
            "# The secret certificate stays root's (mode 0600); systemd hands the service a private copy.",
            ("LoadCredential", f"collector.key_secret:{_spec(str(keys / 'collector.key_secret'))}"),
            "# SIGHUP reads the allow folders again (they are also watched, within about a second).",
            ("ExecReload", "/bin/kill -HUP $MAINPID"),
        )
    body = _lines(
        ("ExecStart", _exec(options, *args)),
        *extra,
        "# DATA_DIR: the journal agents are acknowledged from, the store, files the nodes sent.",
        ("StateDirectory", "labscope/collector"),
        ("StateDirectoryMode", "0750"),
        "# One descriptor per connected agent and client, and more: room for thousands of nodes.",
        ("LimitNOFILE", "65536"),
    )
    body += _service_common(stop_timeout=30)
    body += _hardening(home="yes", devices=True, hide_processes=True)
    return _unit(head, body + _install())


def agent_unit(options: UnitOptions) -> str:
    """The text of the template ``labscope-agent@.service`` (instance name = node id)."""
    head = _header(
        AGENT_UNIT, "labscope agent of node %i", "network-online.target labscope-collector.service", options.user
    )
    args = ["agent", "--config", exec_arg(str(options.config)), "--node-id", "%i", "--data-dir", "%S/labscope/agent-%i"]
    extra: list[str] = []
    if options.keys is not None:
        args += [
            "--curve-server-key",
            exec_arg(str(options.keys / "collector.key")),
            "--curve-secret",
            "%d/%i.key_secret",
        ]
        extra = _lines(
            "# This node's secret certificate, KEYS/NODE.key_secret, stays root's; the service reads a private copy.",
            ("LoadCredential", f"%i.key_secret:{_spec(str(options.keys))}/%i.key_secret"),
        )
    body = _lines(
        ("ExecStart", _exec(options, *args)),
        *extra,
        "# DATA_DIR: the durable outbox; unacknowledged reports survive restarts and upgrades here.",
        ("StateDirectory", "labscope/agent-%i"),
        ("StateDirectoryMode", "0750"),
    )
    body += _service_common(stop_timeout=15)
    # ProtectHome=read-only, not yes: watched and served folders may be under /home, and SystemStats
    # measures its disk. Devices and other users' processes stay visible: disk counters, ProcessList.
    body += _hardening(home="read-only", devices=False, hide_processes=False)
    return _unit(head, body + _install())


def _spec(path: str) -> str:
    """A path in a directive that expands specifiers but takes no quotes: ``%`` doubled."""
    return path.replace("%", "%%")


def render_units(options: UnitOptions) -> dict[str, str]:
    """Every unit file's name and text, in the order they are written and printed."""
    return {COLLECTOR_UNIT: collector_unit(options), AGENT_UNIT: agent_unit(options)}
