"""The rules of a streamed answer, written once: credit, chunks, the size + digest trailer, two-part headers.

docs/protocol.md, "Streamed responses and flow control", is the contract; this
module is its reference implementation. It is socket-free and never waits:
each runtime keeps only its own waiting primitive around :class:`CreditAccount`
(a gevent Event in the collector, a ``threading.Condition`` in the agent), the
way pyzmq keeps ZAP logic in ``zmq/auth/base.py`` and only the loop per runtime.

A sender turns its answer into CHUNKs with :func:`chunk_stream`, taking one
credit per CHUNK from a :class:`CreditAccount`; a receiver feeds what it gets
into a :class:`Digest` (made by :meth:`Digest.announced` from the first
chunk's ``params``) and checks the final chunk's ``params`` with
:meth:`Digest.check`. The requester names the digest it would rather check
(``params["digest"]``, :func:`request_digest`); the sender uses it when it can
compute it (:func:`digest_param`), else SHA-256, and says which on the first
chunk. :func:`two_part_header` reads the first part of a
``[header, bytes]`` CHUNK.

This module imports nothing else of the project but messages/.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from enum import StrEnum
from typing import Any, NamedTuple

from messages.codec import DEFAULT_MAX_FRAME_BYTES, unpack
from messages.errors import ProtocolError
from messages.labscope_pb2 import Envelope, Kind
from messages.limits import DEFAULT_CREDIT, MAX_CREDIT

__all__ = [
    "CHUNK_BYTES",
    "DEFAULT_CREDIT",
    "MAX_CREDIT",
    "STALL_TIMEOUT",
    "TWO_PART_MIN",
    "DIGESTS",
    "SHA256",
    "XXH3_128",
    "CreditAccount",
    "Digest",
    "UnknownDigestError",
    "digest_param",
    "request_digest",
    "Piece",
    "Take",
    "chunk_stream",
    "pieces",
    "two_part_header",
]

CHUNK_BYTES = 1024 * 1024  # the largest CHUNK payload (or second part)
TWO_PART_MIN = 64 * 1024  # from this size a CHUNK's bytes ride as a second part; below, a copy costs less
STALL_TIMEOUT = 60.0  # seconds a sender waits for credit before it gives up on the requester

_SIZE_DIGITS = 20  # a size beyond 2^64 is no size any sender sent

SHA256 = "sha256"  # every sender and receiver computes it: the default, and the fallback
XXH3_128 = "xxh3_128"  # ~30 GB/s against SHA-256's ~1.2 here; needs the xxhash package (labscope[fast])
FAST_MISSING = "pip install 'labscope[fast]'"
_LABELS = {SHA256: "SHA-256", XXH3_128: "XXH3-128 digest"}


def _digests() -> dict[str, Callable[[], Any]]:
    """The digests this process can compute, by the name a trailer gives them."""
    found: dict[str, Callable[[], Any]] = {SHA256: hashlib.sha256}
    try:
        import xxhash
    except ImportError:
        return found
    found[XXH3_128] = xxhash.xxh3_128
    return found


DIGESTS = _digests()


class UnknownDigestError(ValueError):
    """A stream announced a digest this process cannot compute."""


def request_digest() -> str:
    """The digest a requester asks for: the fastest this process can check (xxh3_128 when xxhash is installed)."""
    return XXH3_128 if XXH3_128 in DIGESTS else SHA256


def digest_param(params: Mapping[str, str]) -> str:
    """The digest a sender uses for a REQUEST: its ``params["digest"]`` when this process has it, else SHA-256.

    A name the sender does not know is not an error: the requester said which it would rather
    check, and every receiver checks SHA-256.
    """
    wanted = params.get("digest", SHA256)
    return wanted if wanted in DIGESTS else SHA256


class Take(StrEnum):
    """What taking one credit gave: send the chunk, wait for a CREDIT, or stop."""

    OK = "ok"  # one credit used: send the chunk
    WAIT = "wait"  # no credit left: wait for a CREDIT (only :meth:`CreditAccount.try_take` says this)
    CANCELLED = "cancelled"  # the requester (or the sender's side) cancelled: send nothing more
    STALLED = "stalled"  # no credit within the stall timeout (only the runtimes' waiting wrappers say this)


class CreditAccount:
    """How many more CHUNKs one stream may send; counts only, never waits.

    ``credit`` starts at the REQUEST's (``messages.limits.credit_param``) and
    never adds up to more than MAX_CREDIT, however many CREDITs arrive.
    """

    def __init__(self, credit: int = DEFAULT_CREDIT) -> None:
        self.credit = credit
        self.cancelled = False

    @property
    def ready(self) -> bool:
        """True when :meth:`try_take` would not say WAIT: there is credit, or the stream is cancelled."""
        return self.credit > 0 or self.cancelled

    def grant(self, count: int) -> None:
        """Take a checked CREDIT (``messages.limits.credit_grant``): ``count`` more chunks, or 0 to cancel."""
        if count < 0:
            raise ValueError(f"a credit grant is 0 (cancel) or more, not {count}")
        if count == 0:
            self.cancel()
            return
        self.credit = min(MAX_CREDIT, self.credit + count)

    def cancel(self) -> None:
        """Stop the stream: every later :meth:`try_take` says CANCELLED."""
        self.cancelled = True

    def try_take(self) -> Take:
        """Use one credit if there is one: OK, WAIT (none left) or CANCELLED."""
        if self.cancelled:
            return Take.CANCELLED
        if self.credit <= 0:
            return Take.WAIT
        self.credit -= 1
        return Take.OK


class Digest:
    """Running size and digest of a stream's bytes (SHA-256 unless the stream names another): the trailer."""

    def __init__(self, name: str = SHA256) -> None:
        if name not in DIGESTS:
            raise UnknownDigestError(
                f"the sender checks the stream with {name[:40]!r}, which this process cannot compute"
                + (f" ({FAST_MISSING})" if name == XXH3_128 else "")
            )
        self.name = name
        self.size = 0
        self._hash = DIGESTS[name]()

    @classmethod
    def announced(cls, params: Mapping[str, str]) -> Digest:
        """The digest a stream's first chunk names in ``params["digest"]`` (SHA-256 when it names none)."""
        return cls(params.get("digest", SHA256))

    def update(self, data: bytes | memoryview) -> None:
        """Count and hash the next bytes."""
        self.size += len(data)
        self._hash.update(data)

    def hexdigest(self) -> str:
        """Hex digest of the bytes so far."""
        return str(self._hash.hexdigest())

    def announcement(self) -> dict[str, str]:
        """What the first chunk says of the digest: nothing for SHA-256 (what every receiver assumes)."""
        return {} if self.name == SHA256 else {"digest": self.name}

    def params(self) -> dict[str, str]:
        """The final chunk's trailer: ``{"size": total bytes, NAME: hex digest}`` (NAME ``sha256`` by default)."""
        return {"size": str(self.size), self.name: self.hexdigest()}

    def check(self, params: Mapping[str, str]) -> str | None:
        """Why the bytes so far do not match a final chunk's ``params``, or None when they do.

        A trailer field the sender left out is not checked, except a digest the first chunk announced.
        """
        size, expected = params.get("size"), params.get(self.name)
        if size is not None and not _is_size(size, self.size):
            return f"received {self.size} bytes, the sender sent {size[:_SIZE_DIGITS]}"
        if expected is None and self.name != SHA256:
            return f"the final chunk carries no {self.name}, which the first announced"
        if expected is not None and expected != self.hexdigest():
            return f"the {_LABELS.get(self.name, self.name)} of the bytes received does not match the sender's"
        return None


def _is_size(text: str, size: int) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= _SIZE_DIGITS and int(text) == size


class Piece(NamedTuple):
    """One CHUNK to send: its ``seq``, bytes, whether it is the last, and its ``params``."""

    seq: int
    data: bytes
    last: bool
    params: dict[str, str]


def pieces(chunks: Iterable[bytes | bytearray | memoryview], limit: int = CHUNK_BYTES) -> Iterator[bytes]:
    """``chunks`` as non-empty pieces of at most ``limit`` bytes (larger ones are cut, empty ones skipped)."""
    for chunk in chunks:
        if len(chunk) <= limit:
            if chunk:
                yield bytes(chunk)  # no copy for bytes, the usual case
            continue
        view = memoryview(chunk)
        for start in range(0, len(view), limit):
            yield bytes(view[start : start + limit])


def chunk_stream(
    chunks: Iterable[bytes | bytearray | memoryview],
    size: int | None = None,
    limit: int = CHUNK_BYTES,
    digest: str = SHA256,
) -> Iterator[Piece]:
    """The CHUNKs of a streamed answer, in order: at least one, the last carrying data, ``last`` and the trailer.

    One piece is held back, so that the last piece of data itself is the final
    chunk (a small answer is one CHUNK); an empty answer is one empty final
    chunk. ``size``, when the sender knows it in advance, rides on a first chunk
    that is not the last. The first chunk names ``digest`` unless it is SHA-256
    (:func:`digest_param` picks it from the REQUEST). The trailer is counted
    over every piece yielded, so it is complete when the final piece comes out.
    Exceptions of ``chunks`` propagate.
    """
    running, seq = Digest(digest), 0
    first = running.announcement()
    if size is not None:
        first["size"] = str(size)
    held: bytes | None = None
    for piece in pieces(chunks, limit):
        if held is not None:
            yield Piece(seq, held, False, first if seq == 0 else {})
            seq += 1
        running.update(piece)
        held = piece
    trailer = running.params()
    yield Piece(seq, held or b"", True, {**first, **trailer} if seq == 0 else trailer)


def two_part_header(frame: bytes, max_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> Envelope | None:
    """The CHUNK header of a two-part message ``[frame, bytes]``, or None when ``frame`` is not one.

    A valid header is a frame of exactly one envelope, of kind CHUNK, with an
    empty payload (docs/protocol.md, "Two-part chunks").
    """
    try:
        envelopes = unpack(frame, max_bytes)
    except ProtocolError:
        return None
    if len(envelopes) != 1 or envelopes[0].kind != Kind.CHUNK or envelopes[0].payload:
        return None
    return envelopes[0]
