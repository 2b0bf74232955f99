"""The collector's web status page (docs/web.md): the page, a JSON API, live nodes and config edits.

Needs the ``web`` extra (Falcon); :func:`check_installed` says so in one line when it is missing.
The rest of the package imports Falcon: import it only after that check.
"""

from __future__ import annotations

import importlib.util

from messages.errors import ConfigError

__all__ = ["MISSING", "check_installed"]

MISSING = "--web needs Falcon: pip install 'labscope[web]'"


def check_installed() -> None:
    """Raise ConfigError (one line with the pip command) when Falcon is not installed."""
    if importlib.util.find_spec("falcon") is None:
        raise ConfigError(MISSING)
