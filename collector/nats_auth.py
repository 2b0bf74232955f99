"""Who a collector is to NATS: its NKey seed or its credentials file (docs/sites.md, "Commands down the tree").

A site's and a top's own NATS connections (the heartbeat publisher, the
ingest, the commands) take the ticket's ``nats_nkey_seed`` or
``nats_credentials``; nats-py signs the server's challenge with the seed (the
``nkeys`` package), so the server knows which user connected and applies that
user's permissions. The ``nats`` distribution takes the same two as options
of its own section.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from messages.errors import ConfigError

__all__ = ["auth_options", "check_auth_files"]


def auth_options(seed: Path | str | None, credentials: Path | str | None) -> dict[str, Any]:
    """nats-py ``connect()`` keyword arguments for a seed file or a credentials file (none: no arguments)."""
    options: dict[str, Any] = {}
    if seed:
        options["nkeys_seed"] = str(seed)
    if credentials:
        options["user_credentials"] = str(credentials)
    return options


def check_auth_files(seed: Path | str | None, credentials: Path | str | None, where: str) -> None:
    """Raise ConfigError (exit 2) when a given file is missing, both are given, or ``nkeys`` is not installed."""
    if seed and credentials:
        raise ConfigError(f"{where}: give nats_nkey_seed or nats_credentials, not both")
    for key, path in (("nats_nkey_seed", seed), ("nats_credentials", credentials)):
        if path and not Path(path).is_file():
            raise ConfigError(f"{where} {key} {path}: no such file (the NATS user's seed or .creds file)")
    if seed or credentials:
        try:
            import nkeys  # noqa: F401
        except ImportError:
            raise ConfigError(f"{where}: NATS NKeys need the nkeys package: pip install 'labscope[nats]'") from None
