"""The envelope codec: frames <-> envelopes, payload values <-> bytes.

A frame (one ZeroMQ message body) is always one serialized :class:`Batch`.
Payloads are protobuf messages (``PROTOBUF`` + ``schema``), msgpack values
(``MSGPACK``), opaque bytes (``RAW``) or nothing (``NONE``). Serialization
happens at the socket boundary only; pickle is never used.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any

import msgpack
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.message import DecodeError, Message

from messages.errors import BadPayloadError, ProtocolError
from messages.labscope_pb2 import Batch, Encoding, Envelope, Kind

__all__ = [
    "DEFAULT_MAX_FRAME_BYTES",
    "SINGLE_HEADS",
    "SINGLE_LIMIT",
    "Serialized",
    "check_protobuf_backend",
    "decode_payload",
    "encode_payload",
    "envelope",
    "envelope_frame",
    "field_key",
    "is_single",
    "kind_name",
    "message_class",
    "pack",
    "pack_one",
    "unpack",
    "unpack_singles",
]

DEFAULT_MAX_FRAME_BYTES = 16 * 1024 * 1024

KIND_NAMES: dict[int, str] = {value: name for name, value in Kind.items()}
VALID_KINDS = frozenset(v for v in Kind.values() if v != Kind.KIND_UNSPECIFIED)
_BATCH_ENVELOPES = Batch.DESCRIPTOR.fields_by_name["envelopes"].number
_ENVELOPE_PAYLOAD = Envelope.DESCRIPTOR.fields_by_name["payload"].number

_MSGPACK_TYPES = (dict, list, tuple, str, int, float, bool)
# Plain ints: every Encoding.X (and Kind.X) is a Python-level __getattr__ of protobuf's enum wrapper,
# about a microsecond each, and these run once per envelope built or read.
_NONE, _RAW, _MSGPACK, _PROTOBUF = (int(Encoding.Value(name)) for name in ("NONE", "RAW", "MSGPACK", "PROTOBUF"))


class Serialized:
    """A protobuf message already in its wire form, sent as it is: no parse here, no re-serialization at the socket.

    For answers of megabytes built straight as bytes (a week of history
    buckets): the client decodes them as the message named ``schema`` (its
    full name, e.g. ``labscope.SystemStatsHistory``), exactly as if the module
    had returned that message. ``data`` is the bytes, or the buffers that make
    them in order: the collector then copies them once, into the frame
    (:func:`envelope_frame`). :meth:`message` parses them in process.
    """

    __slots__ = ("parts", "schema")

    def __init__(self, data: bytes | Sequence[bytes | memoryview], schema: str) -> None:
        self.parts: tuple[bytes | memoryview, ...] = (data,) if isinstance(data, bytes) else tuple(data)
        self.schema = schema

    @property
    def data(self) -> bytes:
        """The message's bytes, joined."""
        return self.parts[0] if len(self.parts) == 1 and isinstance(self.parts[0], bytes) else b"".join(self.parts)

    def message(self) -> Message:
        """The message itself, parsed (raises BadPayloadError when ``data`` is not one)."""
        value = decode_payload(self.data, Encoding.PROTOBUF, self.schema)
        if not isinstance(value, Message):
            raise BadPayloadError(f"no protobuf message is named {self.schema!r}")
        return value

    def __repr__(self) -> str:
        return f"Serialized({sum(len(part) for part in self.parts)} bytes of {self.schema})"


def encode_payload(value: Any) -> tuple[bytes, int, str]:
    """Encode a payload value as ``(bytes, Encoding, schema)``.

    None -> NONE; bytes-like -> RAW (untouched); a protobuf message -> PROTOBUF
    with its full name as schema; a :class:`Serialized` message -> PROTOBUF as
    it is; dict, list, str, numbers -> MSGPACK. Raises TypeError for anything else.
    """
    if value is None:
        return b"", _NONE, ""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value), _RAW, ""
    if isinstance(value, Serialized):
        return value.data, _PROTOBUF, value.schema
    if isinstance(value, Message):
        return value.SerializeToString(), _PROTOBUF, value.DESCRIPTOR.full_name
    if isinstance(value, _MSGPACK_TYPES):
        return msgpack.packb(value, use_bin_type=True), _MSGPACK, ""
    raise TypeError(f"cannot send a {type(value).__name__}: return a protobuf message, bytes, dict or list")


def message_class(schema: str) -> type[Message] | None:
    """The protobuf class registered under ``schema`` (a full name), or None."""
    try:
        descriptor = descriptor_pool.Default().FindMessageTypeByName(schema)
    except KeyError:
        return None
    return message_factory.GetMessageClass(descriptor)


def decode_payload(payload: bytes, encoding: int, schema: str = "") -> Any:
    """Decode a payload; a protobuf of an unknown schema comes back as bytes.

    Raises BadPayloadError (a ProtocolError, code ``bad-payload``) when the bytes do not decode
    or the encoding is unknown.
    """
    if encoding == _NONE:
        return None
    if encoding == _RAW:
        return payload
    try:
        if encoding == _MSGPACK:
            return msgpack.unpackb(payload, raw=False, strict_map_key=False)
        if encoding == _PROTOBUF:
            cls = message_class(schema)
            return payload if cls is None else cls.FromString(payload)
    except (ValueError, TypeError, DecodeError, msgpack.UnpackException) as exc:
        # TypeError: a msgpack map keyed by an array or a map (an unhashable key) is bad bytes too.
        raise BadPayloadError(f"payload does not decode as {schema or 'msgpack'}: {exc}") from exc
    # A bad-payload too: a module reading a report's payload (Report.decode) must see the one documented error.
    raise BadPayloadError(f"unknown payload encoding {encoding}")


def envelope(kind: int, type: str = "", payload: Any = None, **fields: Any) -> Envelope:
    """Build an envelope of ``kind`` carrying ``payload`` (encoded as by encode_payload).

    ``fields`` are other Envelope fields (node, seq, request_id, params, ...);
    ``time`` defaults to now.
    """
    return _envelope(kind, type, *encode_payload(payload), fields)


def envelope_frame(kind: int, type: str = "", payload: Any = None, **fields: Any) -> bytes:
    """A frame of one envelope, as ``pack_one(envelope(...))`` makes it, with the payload's bytes copied once.

    An answer of megabytes would otherwise be copied into the Envelope, into
    its serialization (grown as it is written) and into the frame: here the
    Envelope is serialized without its payload and the payload field is
    written after it (protobuf reads fields in any order). A
    :class:`Serialized` payload's buffers are joined straight into the frame.
    """
    if isinstance(payload, Serialized):
        parts, encoding, schema = payload.parts, _PROTOBUF, payload.schema
    else:
        data, encoding, schema = encode_payload(payload)
        parts = (data,)
    head = _envelope(kind, type, b"", encoding, schema, fields).SerializeToString()
    length = sum(len(part) for part in parts)
    payload_key = field_key(_ENVELOPE_PAYLOAD, length) if length else b""
    size = len(head) + len(payload_key) + length
    return b"".join((field_key(_BATCH_ENVELOPES, size), head, payload_key, *parts))


def _envelope(kind: int, type: str, data: bytes, encoding: int, schema: str, fields: dict[str, Any]) -> Envelope:
    fields.setdefault("time", time.time())
    # The generated stubs type enum fields as their wrapper classes; plain ints are what upb takes.
    enums: dict[str, Any] = {"kind": kind, "encoding": encoding}
    return Envelope(type=type, payload=data, schema=schema, **enums, **fields)


def pack(envelopes: Iterable[Envelope]) -> bytes:
    """Serialize envelopes into one frame (a Batch).

    Written as the Batch's wire form (field 1, one length-delimited entry per
    envelope) rather than through ``Batch.envelopes.extend``, which copies every
    envelope before serializing it: the same bytes, faster, and a megabyte
    payload is serialized once instead of copied twice (tests/fuzz/test_codec_props.py).
    """
    parts = []
    for env in envelopes:
        data = env.SerializeToString()
        parts.append(field_key(_BATCH_ENVELOPES, len(data)))
        parts.append(data)
    return b"".join(parts)


def pack_one(env: Envelope) -> bytes:
    """Serialize a single envelope as a frame (a Batch of one)."""
    return pack((env,))


def unpack(frame: bytes, max_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> Sequence[Envelope]:
    """Parse one frame into its envelopes.

    Raises ProtocolError with code ``oversized``, ``bad-frame`` or ``empty``.
    """
    if len(frame) > max_bytes:
        raise ProtocolError("oversized", f"frame of {len(frame)} bytes exceeds the {max_bytes}-byte limit")
    try:
        # list(): upb's repeated field iterates at ~0.3 us an element, a list of it at a tenth of that
        envelopes = list(Batch.FromString(frame).envelopes)
    except DecodeError as exc:
        raise ProtocolError("bad-frame", f"frame is not a labscope Batch: {exc}") from exc
    if not envelopes:
        raise ProtocolError("empty", "frame carries no envelopes")
    return envelopes


def is_single(frame: bytes) -> bool:
    """True when ``frame`` is a Batch of exactly one envelope shorter than :data:`SINGLE_LIMIT` bytes.

    Such frames can be parsed together: the bytes of several Batches one after
    the other are one Batch of all their envelopes, in order.
    """
    size = len(frame)
    return size < SINGLE_LIMIT and frame.startswith(SINGLE_HEADS[size])


def unpack_singles(frames: list[bytes]) -> list[Envelope] | None:
    """The envelopes of frames that each hold one (see :func:`is_single`), parsed in one call; None when
    any of them does not parse (parse them one by one to find which)."""
    try:
        return list(Batch.FromString(b"".join(frames)).envelopes)
    except DecodeError:
        return None


def field_key(field_number: int, length: int) -> bytes:
    """The key and length (two varints) that open a length-delimited protobuf field of ``length`` bytes."""
    return _varint(field_number << 3 | 2) + _varint(length)


def _varint(value: int) -> bytes:
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _single_heads(limit: int) -> list[bytes]:
    """For each frame length below ``limit``, the bytes a frame of exactly one envelope starts with.

    Lengths no such frame can have (the varint's size jumps) get a head no frame starts with.
    """
    heads = [b"\xff"] * limit  # 0xff is never a Batch's first byte
    for size in range(limit):
        head = field_key(_BATCH_ENVELOPES, size)
        if len(head) + size < limit:
            heads[len(head) + size] = head
    return heads


SINGLE_LIMIT = 4096  # frames shorter than this are checked for "one envelope" by their first bytes
SINGLE_HEADS = _single_heads(SINGLE_LIMIT)


def kind_name(kind: int) -> str:
    """The name of an envelope kind, or ``KIND_<n>`` for an unknown value."""
    return KIND_NAMES.get(kind, f"KIND_{kind}")


def check_protobuf_backend(logger: logging.Logger) -> str:
    """Warn through ``logger`` unless protobuf runs on its fast upb backend; returns the backend's name."""
    from google.protobuf.internal import api_implementation

    backend = str(api_implementation.Type())
    if backend != "upb":
        logger.warning(
            "protobuf runs on its %s backend, about 30x slower than upb; install protobuf>=7 wheels", backend
        )
    return backend
