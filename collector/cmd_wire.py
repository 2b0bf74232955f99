"""Commands down the tree on the wire: node requests from a top collector to a site over NATS (docs/sites.md).

The top publishes on ``PREFIX.SITE.cmd`` with a reply subject of its own
(``INBOX.RID``, one per forwarded request):

- the REQUEST (one envelope, ``pack_one``; ``params["node"]`` the node id as
  the site knows it), with headers naming the top's CURVE key and the original
  requester (:data:`TOP_KEY`, :data:`REQUESTER`, :data:`REQUESTER_FP`);
- later CREDITs (and a cancel) of the same request, on the same subject with
  the same reply subject.

The site answers on the reply subject: RESPONSE / ERROR as one envelope, a
CHUNK as its header envelope (base64 in the :data:`CHUNK_HEAD` header, an
empty payload) with the chunk's bytes as the message body, so a 1 MiB chunk
is never copied into a protobuf. This module is socket-free: both sides and
the tests use it.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from messages import Envelope, Kind
from messages.codec import pack_one, unpack
from messages.errors import ProtocolError

__all__ = [
    "CHUNK_HEAD",
    "REQUESTER",
    "REQUESTER_FP",
    "TOP_KEY",
    "cmd_subject",
    "decode_answer",
    "decode_command",
    "encode_answer",
    "reply_rid",
]

TOP_KEY = "Labscope-Top-Key"  # the top's CURVE public key (Z85), empty when the top runs without CURVE
REQUESTER = "Labscope-Requester"  # who asked at the top: the key's name, or the client's address without CURVE
REQUESTER_FP = "Labscope-Requester-Fingerprint"  # that key's fingerprint ("" without CURVE)
CHUNK_HEAD = "Labscope-Chunk"  # base64 of a CHUNK's header envelope; the body is its bytes

_COMMAND_KINDS = (Kind.REQUEST, Kind.CREDIT)
_ANSWER_KINDS = (Kind.RESPONSE, Kind.ERROR, Kind.CHUNK)


def cmd_subject(prefix: str, site: str) -> str:
    """Where site ``site`` takes node requests from the top."""
    return f"{prefix}.{site}.cmd"


def reply_rid(subject: str) -> int | None:
    """The top's request id of a reply subject ``INBOX.RID``, or None when it holds none."""
    tail = subject.rpartition(".")[2]
    return int(tail) if tail.isdigit() and len(tail) <= 19 else None


def decode_command(data: bytes, max_bytes: int) -> Envelope:
    """The REQUEST or CREDIT a command message holds; raises ProtocolError for anything else."""
    envelopes = unpack(data, max_bytes)
    if len(envelopes) != 1 or envelopes[0].kind not in _COMMAND_KINDS:
        raise ProtocolError("bad-frame", "a command is one REQUEST or CREDIT envelope")
    return envelopes[0]


def encode_answer(env: Envelope, bulk: Any = None) -> tuple[bytes, dict[str, str]]:
    """The body and headers of one answer; a CHUNK's bytes (``bulk``, any buffer, or its payload) become the body."""
    if env.kind != Kind.CHUNK:
        return pack_one(env), {}
    head = Envelope()
    head.CopyFrom(env)
    data = bulk if bulk is not None else env.payload
    head.payload = b""
    return bytes(memoryview(data)), {CHUNK_HEAD: base64.b64encode(pack_one(head)).decode()}


def decode_answer(data: bytes, headers: dict[str, str] | None, max_bytes: int) -> tuple[Envelope, bytes | None]:
    """The answer envelope of one reply and, for a CHUNK, its bytes; raises ProtocolError for anything else."""
    head = (headers or {}).get(CHUNK_HEAD)
    if head is None:
        envelopes = unpack(data, max_bytes)
        bulk = None
    else:
        try:
            envelopes = unpack(base64.b64decode(head, validate=True), max_bytes)
        except binascii.Error:
            raise ProtocolError("bad-frame", "a chunk header that is not base64") from None
        bulk = data
        if len(envelopes) == 1 and (envelopes[0].kind != Kind.CHUNK or envelopes[0].payload):
            raise ProtocolError("bad-frame", "a chunk header must be one CHUNK envelope without payload")
    if len(envelopes) != 1 or envelopes[0].kind not in _ANSWER_KINDS:
        raise ProtocolError("bad-frame", "an answer is one RESPONSE, ERROR or CHUNK envelope")
    return envelopes[0], bulk
