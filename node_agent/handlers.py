"""The agent's node request handlers: the built-in ones and drop-ins from ``--handlers-dir``.

Built-in request types (docs/files.md):

- ``NodeFile path=P``: a file from a serve folder, streamed (node_agent/serve.py
  decides what may be read).
- ``ProcessList``: this node's processes, a msgpack list of maps.
- ``RunProbe name=N``: run probe N now and answer what it returns; the
  RESPONSE's ``params["reporttype"]`` says its report type.

Drop-in handlers are ``.py`` files holding one :class:`node_agent.addons.Handler`
subclass; a file that fails to load, or claims a type already taken, is
logged and skipped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import psutil

from messages.errors import Code, ModuleError
from messages.specs import ANY, Param, Payload, RequestSpec, spec_mismatch
from messages.stream import CHUNK_BYTES, DEFAULT_CREDIT, MAX_CREDIT
from node_agent.addons import Handler, NodeRequest, RequestError, Responder
from node_agent.loader import addon_class, import_file, probe_files
from node_agent.runner import ScheduledProbe
from node_agent.serve import ServeDirs

__all__ = [
    "BUILTIN_HANDLERS",
    "NodeFileHandler",
    "ProcessListHandler",
    "RunProbeHandler",
    "builtin_handlers",
    "handler_table",
    "handler_types",
    "load_handler_file",
    "load_handlers",
]

log = logging.getLogger(__name__)

READ_CHUNK = CHUNK_BYTES  # the largest CHUNK: fewest per-chunk costs
CMDLINE_MAX = 256
_PROCESS_FIELDS = ["pid", "name", "username", "cpu_percent", "memory_info", "status", "cmdline"]


class NodeFileHandler(Handler):
    """``NodeFile path=P``: stream a file from a serve folder, read piece by piece."""

    name = "NodeFile"
    requesttypes = ("NodeFile",)
    request_specs = {
        "NodeFile": RequestSpec(
            "a file from one of the agent's serve folders (--serve-dir), always streamed, even when small; "
            "outside every serve folder (or none configured): denied; missing: not-found",
            Payload.chunks("the file's bytes; the first CHUNK's params[\"size\"] is the file's size"),
            params=(
                Param("node", "the node", required=True),
                Param(
                    "path",
                    "the file: relative to the agent's first serve folder, or absolute; it must "
                    "resolve (symlinks followed) inside a serve folder",
                    required=True,
                ),
                Param("credit", f"chunks the client takes at once (default {DEFAULT_CREDIT}, at most {MAX_CREDIT})"),
                Param(
                    "digest",
                    "the digest the client would rather check: xxh3_128 (when this agent has xxhash) "
                    "or sha256 (the default, and the answer to any other name)",
                ),
            ),
        ),
    }

    def __init__(self, serve: ServeDirs, chunk: int = READ_CHUNK) -> None:
        self.serve = serve
        self.chunk = chunk

    def handle(self, request: NodeRequest, responder: Responder) -> None:
        """Stream the file; denied / not-found / bad-request as serve.py decides."""
        path = request.params.get("path", "")
        handle, size = self.serve.open(path)
        with handle:
            responder.respond_streamed(_read(handle, size, self.chunk, path), size)


def _read(handle: BinaryIO, size: int, chunk: int, path: str) -> Iterator[bytes]:
    """The file's first ``size`` bytes (its size when opened), ``chunk`` at a time."""
    left = size
    while left > 0:
        data = handle.read(min(chunk, left))
        if not data:
            raise OSError(f"{path} shrank while it was being read ({size - left} of {size} bytes)")
        left -= len(data)
        yield data


class ProcessListHandler(Handler):
    """``ProcessList``: pid, name, username, cpu_percent, rss, status and cmdline of every process."""

    name = "ProcessList"
    requesttypes = ("ProcessList",)
    request_specs = {
        "ProcessList": RequestSpec(
            "the node's processes, by pid",
            Payload.msgpack(
                "list of maps {pid, name, username, cpu_percent, rss, status, cmdline}; cpu_percent "
                "is since the previous ProcessList (0.0 the first time), cmdline at most 256 chars"
            ),
            params=(Param("node", "the node", required=True),),
        ),
    }

    def handle(self, request: NodeRequest, responder: Responder) -> list[dict[str, Any]]:
        """A list of maps, by pid; cpu_percent is since the previous ProcessList (0.0 the first time)."""
        return sorted(
            (_process_row(p.info) for p in psutil.process_iter(_PROCESS_FIELDS, ad_value=None)),
            key=lambda row: row["pid"],
        )


def _process_row(info: dict[str, Any]) -> dict[str, Any]:
    memory = info.get("memory_info")
    cmdline = " ".join(info.get("cmdline") or [])
    return {
        "pid": info["pid"],
        "name": info.get("name") or "",
        "username": info.get("username") or "",
        "cpu_percent": float(info.get("cpu_percent") or 0.0),
        "rss": int(memory.rss) if memory is not None else 0,
        "status": info.get("status") or "",
        "cmdline": cmdline if len(cmdline) <= CMDLINE_MAX else cmdline[: CMDLINE_MAX - 3] + "...",
    }


class RunProbeHandler(Handler):
    """``RunProbe name=N``: run one of the agent's probes now and answer its report."""

    name = "RunProbe"
    requesttypes = ("RunProbe",)
    request_specs = {
        "RunProbe": RequestSpec(
            "run one of the agent's probes now; the RESPONSE's params[\"reporttype\"] names the report type",
            Payload(
                ANY,
                "what the probe's report would carry, in the report's own encoding (PROTOBUF with its "
                "schema, MSGPACK or RAW)",
            ),
            params=(
                Param("node", "the node", required=True),
                Param("name", "the probe's name (unknown: not-found, the reason lists the probes)", required=True),
            ),
        ),
    }

    def __init__(self, probes: Iterable[ScheduledProbe]) -> None:
        self.probes = {p.name: p for p in probes}

    def handle(self, request: NodeRequest, responder: Responder) -> None:
        """The probe's data as its report would carry it; ``params["reporttype"]`` names the type."""
        name = request.params.get("name", "")
        if not name:
            raise RequestError(Code.BAD_REQUEST, "RunProbe needs name=PROBE")
        probe = self.probes.get(name)
        if probe is None:
            names = ", ".join(sorted(self.probes))
            raise RequestError(Code.NOT_FOUND, f"no probe named {name!r}; this agent runs {names}")
        rtype, data = probe.sample(time.time())
        responder.respond(data, params={"reporttype": rtype})


# The classes builtin_handlers() makes, for docs/protocol.md's table (labscope/protodoc.py).
BUILTIN_HANDLERS: tuple[type[Handler], ...] = (NodeFileHandler, ProcessListHandler, RunProbeHandler)


def builtin_handlers(serve: ServeDirs, probes: Iterable[ScheduledProbe]) -> list[Handler]:
    """The handlers every agent has."""
    return [NodeFileHandler(serve), ProcessListHandler(), RunProbeHandler(probes)]


def handler_types(handler: Handler | type[Handler]) -> tuple[str, ...]:
    """A handler's request types as a tuple (``requesttypes`` may be one string)."""
    types = handler.requesttypes
    return (types,) if isinstance(types, str) else tuple(types)


def handler_table(handlers: Iterable[Handler]) -> dict[str, Handler]:
    """Request type -> handler; a handler claiming a type already taken is logged and left out whole."""
    table: dict[str, Handler] = {}
    for handler in handlers:
        types = handler_types(handler)
        taken = [t for t in types if t in table]
        if taken:
            log.error(
                "skipping handler %s: request type(s) %s already answered by %s",
                handler.name,
                ", ".join(taken),
                ", ".join(sorted({table[t].name for t in taken})),
            )
            continue
        table.update(dict.fromkeys(types, handler))
    return table


def load_handlers(dirs: Iterable[Path]) -> list[Handler]:
    """Every handler file of ``dirs`` (by folder, then file name); failing files are logged and skipped."""
    loaded: list[Handler] = []
    for path in probe_files(dirs):
        try:
            loaded.append(load_handler_file(path))
        except ModuleError as exc:
            log.error("skipping handler file %s: %s", path, exc.reason)
    return loaded


def load_handler_file(path: Path) -> Handler:
    """Import ``path``, validate its one Handler subclass and make an instance; raises ModuleError."""
    cls = addon_class(import_file(path, "handler"), path, Handler)
    types = cls.requesttypes
    if (
        not isinstance(types, (str, tuple, list))
        or not handler_types(cls)
        or not all(isinstance(t, str) and t.strip() for t in handler_types(cls))
    ):
        raise ModuleError(
            str(path), f"{cls.__name__}.requesttypes must be a non-empty string or tuple of strings, not {types!r}"
        )
    if cls.handle is Handler.handle:
        raise ModuleError(str(path), f"{cls.__name__} does not define handle(request, responder)")
    mismatch = spec_mismatch(handler_types(cls), None, cls.request_specs, None)
    if mismatch:
        raise ModuleError(str(path), f"{cls.__name__}: {mismatch}")
    try:
        handler = cls()
    except Exception as exc:
        raise ModuleError(str(path), f"{cls.__name__}() raised {type(exc).__name__}: {exc}") from exc
    if not cls.name:
        handler.name = path.stem  # type: ignore[misc]
    return handler
