"""The labscope exception family and the wire's error codes, in one place.

::

    LabscopeError              anything labscope raises on purpose
    ├── ConfigError            a bad flag, config file or config key (exit status 2)
    │   └── KeyFileError       a CURVE certificate file that is missing, unreadable or malformed
    ├── ModuleError            an aggregator or probe that cannot load or start
    │   └── DependencyError    a missing dependency or a dependency cycle (exit status 2)
    ├── ProtocolError          a frame or envelope that breaks the wire contract (``code``)
    │   └── BadPayloadError    a payload that does not decode as it says (a ``bad-report``)
    ├── RequestError           raised by a module or a node handler: answer the request with ERROR (``code``)
    ├── RequestFailed          a client got ERROR for its request (``code``, ``reason``, ``type``)
    │   └── SubscriptionRefused  the collector refused a SUBSCRIBE (unknown types, empty list)
    ├── TransferCancelled      a client cancelled a streamed transfer
    ├── ClientTimeout          a client heard nothing from the collector in time
    ├── AuthRefused            the collector refused this client's or agent's CURVE handshake
    ├── NoUpdates              ``labscope watch`` got no update in time
    ├── OutboxError            the agent's outbox file cannot be opened or written
    ├── BrokenQtBinding        the installed PySide6 cannot run the GUI
    ├── ScreenshotFailed       ``labscope gui --screenshot`` could not take its picture
    └── ChildFailure           a process ``labscope demo`` / ``bench`` started died early

Each carries enough context (file, key, module, node, message type) to print
one line that tells the user what is wrong, where, and how to fix it.

:class:`Code` names every ``error_code`` that travels in an ERROR envelope;
docs/protocol.md lists them with their meaning, and a test keeps the two equal.
"""

from __future__ import annotations

__all__ = [
    "CHECKSUM",
    "AuthRefused",
    "KeyFileError",
    "BadPayloadError",
    "BrokenQtBinding",
    "ChildFailure",
    "ClientTimeout",
    "Code",
    "ConfigError",
    "DependencyError",
    "LabscopeError",
    "ModuleError",
    "NoUpdates",
    "OutboxError",
    "ProtocolError",
    "RequestError",
    "RequestFailed",
    "SubscriptionRefused",
    "ScreenshotFailed",
    "TransferCancelled",
]


class Code:
    """Every wire error code (``Envelope.error_code``), as named constants."""

    # collector -> agent
    HELLO_REQUIRED = "hello-required"  # an envelope from a connection that has not said HELLO
    BAD_HELLO = "bad-hello"  # a HELLO without a usable NodeInfo
    DUPLICATE_NODE = "duplicate-node"  # the node id is live through another agent
    OUT_OF_RANGE = "out-of-range"  # a number in the envelope is outside its documented bounds
    # collector -> client (and agent -> collector -> client for node requests)
    UNKNOWN_TYPE = "unknown-type"  # nobody answers this request (or subscription) type
    BAD_REQUEST = "bad-request"  # a parameter is missing or wrong
    NOT_FOUND = "not-found"  # the thing asked for does not exist
    MODULE_ERROR = "module-error"  # the answering module raised
    BAD_FRAME = "bad-frame"  # the frame could not be read
    NODE_LOST = "node-lost"  # the node of a node request is lost
    TIMEOUT = "timeout"  # the node did not answer in time
    BUSY = "busy"  # the agent's request workers are all busy
    DENIED = "denied"  # a path outside the agent's serve folders
    HANDLER_ERROR = "handler-error"  # the agent's handler raised
    FORBIDDEN = "forbidden"  # the client's key is not allowed this action (a viewer asking for an operator's)

    @classmethod
    def all(cls) -> frozenset[str]:
        """Every wire error code."""
        return frozenset(v for k, v in vars(cls).items() if k.isupper() and isinstance(v, str))


# Not a wire code: what a client's RequestFailed says when a stream's size or SHA-256 does not match.
CHECKSUM = "checksum"


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


class RequestError(LabscopeError):
    """Raise from a module's ``processREQUEST`` or a node handler to answer with an ERROR.

    ``code`` is one of :class:`Code` (``bad-request``, ``not-found``, ...);
    ``reason`` is the one line the user sees.
    """

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class RequestFailed(LabscopeError):  # noqa: N818 - the name the GUI and commands use
    """The collector answered a request with ERROR; ``code`` and ``reason`` say why."""

    def __init__(self, code: str, reason: str, type: str = "") -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason
        self.type = type


class SubscriptionRefused(RequestFailed):
    """The collector answered a SUBSCRIBE with ERROR; the previous subscription stays as it was.

    ``types`` are the types asked for, ``unknown`` those no module pushes
    (empty for ``bad-request``).
    """

    def __init__(self, code: str, reason: str, types: tuple[str, ...], unknown: tuple[str, ...]) -> None:
        super().__init__(code, reason, "SUBSCRIBE")
        self.types = types
        self.unknown = unknown


class TransferCancelled(LabscopeError):  # noqa: N818 - reads as what happened, like RequestFailed
    """The user (or the worker stopping) cancelled a transfer."""


class ClientTimeout(LabscopeError):  # noqa: N818 - the name the GUI and commands use
    """No answer from the collector within the caller's timeout."""

    def __init__(self, endpoint: str, timeout: float) -> None:
        super().__init__(f"no answer from {endpoint} after {timeout:g} s (is the collector running?)")
        self.endpoint = endpoint
        self.timeout = timeout


class AuthRefused(LabscopeError):  # noqa: N818 - reads as what happened, like RequestFailed
    """The collector refused the CURVE handshake: an unknown key, or plain against CURVE (or the reverse)."""

    def __init__(self, endpoint: str, reason: str) -> None:
        super().__init__(f"{endpoint}: {reason}")
        self.endpoint = endpoint
        self.reason = reason


class KeyFileError(ConfigError):
    """A CURVE certificate file that is missing, unreadable or malformed; names the file and the fix."""


class NoUpdates(LabscopeError):  # noqa: N818 - reads as the condition it reports
    """No update arrived within ``--timeout``."""

    def __init__(self, type: str, endpoint: str, timeout: float) -> None:
        super().__init__(f"no {type} update from {endpoint} for {timeout:g} s (is the collector running?)")


class OutboxError(LabscopeError):
    """The outbox file cannot be opened or written (unwritable folder, disk full, corrupt file).

    ``code`` is SQLite's error name (``SQLITE_FULL``, ``SQLITE_READONLY`` ...) or the OS error's class.
    """

    def __init__(self, reason: str, code: str = "") -> None:
        super().__init__(reason)
        self.code = code


class BrokenQtBinding(LabscopeError):  # noqa: N818 - reads as the condition it reports
    """The installed PySide6 drops Python references; the message says what to install instead."""


class ScreenshotFailed(LabscopeError):  # noqa: N818 - reads as the condition it reports
    """The window did not show the collector's nodes in time, or the PNG could not be written."""


class ChildFailure(LabscopeError):  # noqa: N818 - reads as the condition it reports
    """The testbed could not start or a child died early; ``tail`` holds its last log lines."""

    def __init__(self, reason: str, tail: list[str]) -> None:
        super().__init__(reason)
        self.tail = tail
