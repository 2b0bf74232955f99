"""What every part of the collector shares: its config, counters, node registry, module host and HELLO answer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from collector.config import CollectorConfig
from collector.counters import Counters
from collector.host import ModuleHost
from collector.registry import NodeRegistry
from messages import CollectorInfo

__all__ = ["Core"]


@dataclass(frozen=True)
class Core:
    """The collector's shared parts, handed to the agents' and the clients' links in one piece."""

    config: CollectorConfig
    counters: Counters
    registry: NodeRegistry
    host: ModuleHost
    info: Callable[[], CollectorInfo]
