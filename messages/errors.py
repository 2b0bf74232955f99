"""The labscope exception family.

::

    LabscopeError            anything labscope raises on purpose
    ├── ConfigError          a bad flag, config file or config key (exit status 2)
    ├── ModuleError          an aggregator or probe that cannot load or start
    │   └── DependencyError  a missing dependency or a dependency cycle (exit status 2)
    └── ProtocolError        a frame or envelope that breaks the wire contract
        └── BadPayloadError  a payload that does not decode as it says (a ``bad-report``)

Each carries enough context (file, key, module, node, message type) to print
one line that tells the user what is wrong, where, and how to fix it.
"""

from __future__ import annotations

__all__ = ["BadPayloadError", "ConfigError", "DependencyError", "LabscopeError", "ModuleError", "ProtocolError"]


class LabscopeError(Exception):
    """Base of every error labscope raises on purpose."""


class ConfigError(LabscopeError):
    """A flag, a config file or a config key is wrong; the command exits with status 2."""


class ModuleError(LabscopeError):
    """An aggregator module (or agent probe) failed to load, validate or start.

    ``module`` names the module (or file) at fault.
    """

    def __init__(self, module: str, reason: str) -> None:
        super().__init__(f"module {module}: {reason}")
        self.module = module
        self.reason = reason


class DependencyError(ModuleError):
    """Modules whose ``depends`` cannot be satisfied: missing names or a cycle.

    ``modules`` lists every module involved.
    """

    def __init__(self, modules: list[str], reason: str) -> None:
        LabscopeError.__init__(self, reason)
        self.module = ", ".join(modules)
        self.modules = modules
        self.reason = reason


class ProtocolError(LabscopeError):
    """A frame or envelope that does not follow docs/protocol.md.

    ``code`` is a short machine-readable reason (``bad-frame``, ``oversized``,
    ``unknown-kind``, ...), used as the counter name.
    """

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code


class BadPayloadError(ProtocolError, ValueError):
    """A payload that does not decode as its envelope (or its reader) says.

    Raised by ``Report.decode()`` / ``Report.message()``; a module may raise it
    from ``processReport`` itself. The collector then counts the report as a
    ``bad-report`` (per node and type) instead of a module error.
    """

    def __init__(self, reason: str) -> None:
        super().__init__("bad-payload", reason)
