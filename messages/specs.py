"""Declarative descriptions of request and update types, shared by modules and agent handlers.

A module (``collector/addons.py``) or an agent handler (``node_agent/addons.py``)
describes every request type it answers, and its update type, with these small
dataclasses; ``labscope/protodoc.py`` renders them into the table of
docs/protocol.md, so the code and the contract have one source::

    request_specs = {
        "Events": RequestSpec(
            "events, newest first",
            Payload.msgpack("list of {time, node, kind, severity, message, attrs}"),
            params=(Param("since", "only events with time > EPOCH (epoch seconds)"),),
        ),
    }
    update_spec = UpdateSpec("the latest 200 events", Payload.msgpack("as the Events answer"))

A payload is described by its encoding (the Envelope's ``Encoding`` name, or
``CHUNKS`` for a streamed answer) and its shape: the protobuf schema's full
name, or a short description of the msgpack value or raw bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "ANY",
    "CHUNKS",
    "ENCODINGS",
    "MSGPACK",
    "NONE",
    "ON_CHANGE",
    "PERIODIC",
    "PROTOBUF",
    "RAW",
    "Param",
    "Payload",
    "RequestSpec",
    "UpdateSpec",
    "spec_mismatch",
]

PROTOBUF = "PROTOBUF"
MSGPACK = "MSGPACK"
RAW = "RAW"
NONE = "NONE"
CHUNKS = "CHUNKs"  # streamed: CHUNK envelopes of RAW bytes under credit (docs/protocol.md)
ANY = "any"  # the encoding depends on the data (the shape says how); the envelope names it
ENCODINGS = (PROTOBUF, MSGPACK, RAW, NONE, CHUNKS, ANY)

PERIODIC = "periodic"  # sent every update interval, changed or not
ON_CHANGE = "on-change"  # sent only when it changed: checked every update interval (0: after each ingest pass)
SENDING = (PERIODIC, ON_CHANGE)


@dataclass(frozen=True)
class Param:
    """One ``key=value`` parameter of a request: its name, what it means, whether it must be given."""

    name: str
    meaning: str
    required: bool = False


@dataclass(frozen=True)
class Payload:
    """How an answer or update is encoded: ``encoding`` (one of ENCODINGS) and ``shape``.

    ``shape`` is the protobuf full name for PROTOBUF, else a short description
    of the value; ``when`` says when this form is used if an answer has several.
    """

    encoding: str
    shape: str = ""
    when: str = ""

    def __post_init__(self) -> None:
        if self.encoding not in ENCODINGS:
            raise ValueError(f"payload encoding {self.encoding!r} is not one of {', '.join(ENCODINGS)}")

    @classmethod
    def protobuf(cls, message: Any, when: str = "") -> Payload:
        """A protobuf payload of the generated class (or instance) ``message``."""
        return cls(PROTOBUF, message.DESCRIPTOR.full_name, when)

    @classmethod
    def msgpack(cls, shape: str, when: str = "") -> Payload:
        """A msgpack payload of the described ``shape``."""
        return cls(MSGPACK, shape, when)

    @classmethod
    def chunks(cls, shape: str, when: str = "") -> Payload:
        """A streamed answer: RAW bytes in CHUNKs (``shape`` says what the bytes are)."""
        return cls(CHUNKS, shape, when)


@dataclass(frozen=True)
class RequestSpec:
    """One request type: what it answers, its answer's payload(s) and its parameters."""

    summary: str
    answer: Payload | tuple[Payload, ...]
    params: tuple[Param, ...] = ()

    @property
    def answers(self) -> tuple[Payload, ...]:
        """The answer's forms as a tuple."""
        return self.answer if isinstance(self.answer, tuple) else (self.answer,)


@dataclass(frozen=True)
class UpdateSpec:
    """One update type: what it carries, its payload and when it is sent (PERIODIC or ON_CHANGE)."""

    summary: str
    payload: Payload
    sent: str = ON_CHANGE

    def __post_init__(self) -> None:
        if self.sent not in SENDING:
            raise ValueError(f"update 'sent' {self.sent!r} is not one of {', '.join(SENDING)}")


def spec_mismatch(
    requesttypes: tuple[str, ...], updatetype: str | None, request_specs: Any, update_spec: Any
) -> str | None:
    """Why a class's descriptions disagree with the types it answers, or None when they agree.

    A class that describes nothing (classic) agrees; one that describes anything
    must describe every request type it answers and its update type, and nothing else.
    """
    if not request_specs and update_spec is None:
        return None
    if not isinstance(request_specs, dict) or not all(isinstance(s, RequestSpec) for s in request_specs.values()):
        return "request_specs must be a dict of request type -> RequestSpec"
    if update_spec is not None and not isinstance(update_spec, UpdateSpec):
        return f"update_spec must be an UpdateSpec or None, not {update_spec!r}"
    undescribed = sorted(set(requesttypes) - set(request_specs))
    if undescribed:
        return f"answers request type(s) {', '.join(undescribed)} but request_specs does not describe them"
    extra = sorted(set(request_specs) - set(requesttypes))
    if extra:
        return f"request_specs describes {', '.join(extra)}, which requesttypes does not list"
    if (update_spec is None) != (updatetype is None):
        return "update_spec must be given exactly when updatetype is set"
    return None
