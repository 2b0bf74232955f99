"""labscope's wire contract: generated protobuf classes, the envelope codec and shared helpers.

The standard payload classes are importable from the package itself::

    import messages
    files = messages.Files()

This package imports nothing else of the project.
"""

from __future__ import annotations

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

__version__ = "0.1.0"

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
