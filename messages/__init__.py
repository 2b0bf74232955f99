"""labscope's wire contract: generated protobuf classes, the envelope codec and shared helpers.

The standard payload classes are importable from the package itself::

    import messages
    files = messages.Files()

This package imports nothing else of the project.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from messages.errors import (
    BadPayloadError,
    Code,
    ConfigError,
    DependencyError,
    LabscopeError,
    ModuleError,
    ProtocolError,
    RequestError,
)
from messages.labscope_pb2 import (
    Batch,
    CollectorInfo,
    DiskIO,
    DiskUsage,
    Encoding,
    Envelope,
    Event,
    File,
    Files,
    HistorySeries,
    Kind,
    Memory,
    NetIO,
    NodeInfo,
    NodeList,
    NodeStatus,
    NodeSummary,
    Samples,
    Swap,
    SystemStats,
    SystemStatsHistory,
    SystemStatsSummary,
)


def _version() -> str:
    """labscope's version, written once: in pyproject.toml, read from the installed package's metadata.

    A source tree that was never installed (e.g. on ``PYTHONPATH``) reads its own pyproject.toml.
    """
    try:
        return importlib.metadata.version("labscope")
    except importlib.metadata.PackageNotFoundError:
        import tomllib  # only a source tree that is not installed needs it

        pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
        try:
            return str(tomllib.loads(pyproject.read_text())["project"]["version"])
        except (OSError, KeyError, tomllib.TOMLDecodeError):
            return "0+unknown"


__version__ = _version()

__all__ = [
    "BadPayloadError",
    "Batch",
    "Code",
    "CollectorInfo",
    "ConfigError",
    "DependencyError",
    "DiskIO",
    "DiskUsage",
    "Encoding",
    "Envelope",
    "Event",
    "File",
    "Files",
    "HistorySeries",
    "Kind",
    "LabscopeError",
    "Memory",
    "ModuleError",
    "NetIO",
    "NodeInfo",
    "NodeList",
    "NodeStatus",
    "NodeSummary",
    "ProtocolError",
    "RequestError",
    "Samples",
    "Swap",
    "SystemStats",
    "SystemStatsHistory",
    "SystemStatsSummary",
    "__version__",
]
