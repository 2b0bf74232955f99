"""labscope collector: sockets, module loader, routing and store.

``from collector import Collector, CollectorTicket, CollectorObserver`` is the
embedding API (docs/embedding.md). The names are imported on first use, so that
``import collector.cli`` stays light and gevent can patch the standard library
before the collector's modules import it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collector.config import CollectorTicket
    from collector.embed import Collector, Endpoints
    from collector.observer import CollectorObserver

__all__ = ["Collector", "CollectorObserver", "CollectorTicket", "Endpoints"]

_WHERE = {
    "Collector": "collector.embed",
    "Endpoints": "collector.embed",
    "CollectorTicket": "collector.config",
    "CollectorObserver": "collector.observer",
}


def __getattr__(name: str) -> Any:
    """Import an exported name from its module the first time it is asked for."""
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'collector' has no attribute {name!r}")
    return getattr(importlib.import_module(where), name)
