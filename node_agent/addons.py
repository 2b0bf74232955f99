"""The probe and handler APIs: the node-side twins of aggregator modules.

A probe is one ``.py`` file in a ``--probes-dir`` folder holding one subclass
of :class:`Probe`. The agent calls :meth:`Probe.getReport` every ``interval``
seconds and sends what it returns as a REPORT.

A handler is one ``.py`` file in a ``--handlers-dir`` folder holding one
subclass of :class:`Handler`. It answers the node requests of its
``requesttypes`` that clients send through the collector (``node=ID``), in
the agent's worker pool, through a :class:`Responder` (docs/files.md).

Probe example::

    from node_agent.addons import Probe

    class Uptime(Probe):
        reporttype = "Uptime"
        interval = 5.0

        def getReport(self, now):
            with open("/proc/uptime") as f:
                return {"uptime": float(f.read().split()[0])}
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, ClassVar, Protocol

from messages.errors import Code, RequestError
from messages.requests import RequestView
from messages.specs import RequestSpec

__all__ = ["Handler", "NodeRequest", "Probe", "RequestError", "Responder"]


class Probe:
    """Base class of every agent probe; subclass it in one file.

    Class attributes:

    - ``name``: the probe's name; defaults to the file's stem.
    - ``reporttype``: the REPORT type of what :meth:`getReport` returns.
    - ``interval``: seconds between calls (None: the agent's ``--interval``).

    Like aggregators, a probe may define ``__init__(self)`` with no arguments
    and skip ``super().__init__()``.
    """

    name: ClassVar[str] = ""
    reporttype: ClassVar[str] = ""
    interval: ClassVar[float | None] = None

    @property
    def log(self) -> logging.Logger:
        """A logger named after the probe."""
        return logging.getLogger(f"labscope.probe.{self.name or type(self).__name__}")

    def getReport(self, now: float) -> Any:
        """Produce one report at time ``now`` (epoch seconds).

        Return None (nothing to send this time), data, or ``(type, data)`` to
        send under another type than ``reporttype``. Data is bytes (sent
        untouched), a protobuf message, or a dict/list (sent as msgpack).
        An exception is logged with the probe's name and counted; the probe is
        called again at its next interval.
        """
        return None


class NodeRequest(RequestView):
    """One node request as a handler sees it.

    ``type`` is the request type, ``params`` every ``key=value`` parameter as
    strings (``node`` and ``credit`` included). Parameters are also attributes
    (``request.path``); a missing one raises AttributeError.
    """


class Responder(Protocol):
    """How a handler answers; exactly one of the three ``respond*`` calls counts."""

    @property
    def cancelled(self) -> bool:
        """True once the requester cancelled, the collector went away or the agent is stopping."""
        ...

    def respond(self, data: Any, params: dict[str, str] | None = None) -> None:
        """Answer with one RESPONSE: bytes, a protobuf message, a dict/list (msgpack) or None.

        At most 8 MiB; stream anything larger. ``params`` ride along in the RESPONSE.
        """
        ...

    def respond_error(self, code: str, reason: str) -> None:
        """Answer with an ERROR of ``code`` (see :class:`RequestError`) and a one-line ``reason``."""
        ...

    def respond_streamed(self, chunks: Iterable[bytes], size: int | None = None) -> bool:
        """Stream ``chunks`` as CHUNKs under the requester's credit; blocks until done.

        Chunks above 1 MiB are split. ``size`` (total bytes, when known) goes in
        the first chunk; the last one carries size and SHA-256. Returns False
        when the stream was cancelled or stalled (an ERROR then says why).
        """
        ...


class Handler:
    """Base class of every node request handler; subclass it in one file.

    Class attributes:

    - ``name``: the handler's name; defaults to the file's stem.
    - ``requesttypes``: the request type(s) it answers, a string or a tuple
      (the classic ``requesttypes = 'Echo',`` form works).
    - ``request_specs``: optional, request type -> ``messages.specs.RequestSpec``
      (summary, parameters, answer payload), the same description modules give;
      a handler that sets it must describe every type it answers.

    Requests run in the agent's worker pool (4 threads by default), never on
    the thread that sends reports, so a slow handler delays no report. Two
    requests may run at once: guard shared state with a lock. ``__init__``
    takes no arguments and runs when the agent starts.
    """

    name: ClassVar[str] = ""
    requesttypes: ClassVar[str | tuple[str, ...]] = ()
    request_specs: ClassVar[dict[str, RequestSpec]] = {}

    @property
    def log(self) -> logging.Logger:
        """A logger named after the handler."""
        return logging.getLogger(f"labscope.handler.{self.name or type(self).__name__}")

    def handle(self, request: NodeRequest, responder: Responder) -> Any:
        """Answer ``request``.

        Either call one of ``responder``'s methods, or return the answer (as for
        :meth:`Responder.respond`; returning None without responding answers an
        empty RESPONSE). Raise :class:`RequestError` for an ERROR of that code;
        any other exception answers ``handler-error`` and is logged with the
        handler's name. ``responder.respond_streamed`` blocks while the requester
        has no credit left, so a large answer costs bounded memory.
        """
        raise RequestError(Code.UNKNOWN_TYPE, f"handler {self.name or type(self).__name__} answers no {request.type!r}")
