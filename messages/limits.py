"""Bounds of the numbers that come off the wire, and the small pure checks the collector and the agent share.

docs/protocol.md, "Limits and bad input" / "Bounds", is the table of these. A value
outside its bounds makes the whole envelope refused (an ERROR with ``code``),
never a crash and never state that breaks later requests. The bounds follow
what has to hold the value: sequence numbers and backlogs end up in SQLite
INTEGER columns (signed 64-bit), counters in msgpack (unsigned 64-bit).

This module imports nothing else of the project.
"""

from __future__ import annotations

from collections.abc import Mapping

from messages.errors import Code

__all__ = [
    "BAD_REQUEST",
    "DEFAULT_CREDIT",
    "MAX_BACKLOG",
    "MAX_CREDIT",
    "MAX_FILE_BYTES",
    "MAX_INTERVAL",
    "MAX_SEQ",
    "MAX_TIME",
    "MAX_UINT64",
    "MIN_INTERVAL",
    "OUT_OF_RANGE",
    "OutOfRangeError",
    "backlog_param",
    "check_file_piece",
    "check_seq",
    "check_time",
    "credit_grant",
    "credit_param",
    "interval_ok",
    "parse_decimal",
    "saturate",
]

OUT_OF_RANGE = Code.OUT_OF_RANGE  # ERROR code of an envelope refused for a number out of its bounds
BAD_REQUEST = "bad-request"  # ERROR code of a refused credit (docs/protocol.md, flow control)

MAX_SEQ = 2**63 - 1  # SQLite INTEGER: the journal, the nodes table, the agent's outbox
MAX_BACKLOG = MAX_SEQ
MAX_UINT64 = 2**64 - 1  # request ids, and where counters saturate (msgpack, protobuf uint64)
MAX_TIME = 32503680000.0  # 3000-01-01T00:00:00Z in epoch seconds
DEFAULT_CREDIT = 8
MAX_CREDIT = 64
MAX_FILE_BYTES = 1 << 36  # 64 GiB: the largest file a node may send (FileOutput)
MIN_INTERVAL = 0.01  # seconds: bounds of the heartbeat interval a collector may ask for
MAX_INTERVAL = 3600.0

_SHOWN = 40  # characters of a refused value quoted in the reason


class OutOfRangeError(ValueError):
    """A number off the wire outside its bounds; ``code`` is the ERROR code to refuse it with."""

    def __init__(self, what: str, value: object, bounds: str, code: str = OUT_OF_RANGE) -> None:
        shown = repr(value)
        if len(shown) > _SHOWN:
            shown = f"{shown[:_SHOWN]}... ({len(shown)} characters)"
        super().__init__(f"{what} {shown} is out of range: {bounds}")
        self.code = code
        self.what = what


def check_seq(seq: int, low: int = 1, what: str = "seq") -> int:
    """``seq`` when it is within ``low``..MAX_SEQ (1 for REPORTs, 0 for HELLO and ACK); raises OutOfRangeError."""
    if not low <= seq <= MAX_SEQ:
        raise OutOfRangeError(what, seq, f"must be {low}..2^63-1")
    return seq


def check_time(value: float, what: str = "time") -> float:
    """``value`` when it is finite epoch seconds within 0..MAX_TIME (year 3000); raises OutOfRangeError.

    NaN fails both comparisons and infinities one of them, so no separate test is needed.
    """
    if not 0.0 <= value <= MAX_TIME:
        raise OutOfRangeError(what, value, "must be finite epoch seconds from 0 to 32503680000 (year 3000)")
    return value


def parse_decimal(text: str, high: int, what: str, low: int = 0, code: str = OUT_OF_RANGE) -> int:
    """``text`` as an integer in ``low``..``high``: plain ASCII digits only, no sign, space or point.

    The length is checked before ``int()``, so a megabyte of digits costs nothing.
    """
    if not (text.isascii() and text.isdigit()) or len(text) > len(str(high)) or not low <= int(text) <= high:
        raise OutOfRangeError(what, text, f"must be a plain decimal from {low} to {high}", code)
    return int(text)


def backlog_param(params: Mapping[str, str]) -> int | None:
    """``params["backlog"]`` (HELLO, HEARTBEAT) as 0..MAX_BACKLOG, or None when absent; raises OutOfRangeError."""
    text = params.get("backlog")
    return None if text is None else parse_decimal(text, MAX_BACKLOG, "backlog")


def credit_param(params: Mapping[str, str]) -> int:
    """A REQUEST's ``params["credit"]``: DEFAULT_CREDIT when absent, else 1..MAX_CREDIT.

    Raises OutOfRangeError with code ``bad-request``: a credit out of range is refused, never clamped.
    """
    text = params.get("credit")
    if text is None:
        return DEFAULT_CREDIT
    return parse_decimal(text, MAX_CREDIT, "credit", low=1, code=BAD_REQUEST)


def credit_grant(seq: int, params: Mapping[str, str]) -> int:
    """The chunks a CREDIT envelope grants: 1..MAX_CREDIT, or 0 for a cancel (whose seq is ignored).

    Raises OutOfRangeError with code ``bad-request`` for any other seq.
    """
    if params.get("cancel") == "1":
        return 0
    if not 1 <= seq <= MAX_CREDIT:
        raise OutOfRangeError("CREDIT seq", seq, f"must be 1..{MAX_CREDIT} (or params cancel=1)", BAD_REQUEST)
    return seq


def check_file_piece(offset: int, length: int, size: int) -> None:
    """Refuse a FileOutput piece that would write past its file or past MAX_FILE_BYTES; raises OutOfRangeError.

    ``size`` 0 is a classic whole file (``offset`` must be 0); otherwise the piece's
    ``offset + length`` must lie within ``size``, and ``size`` within MAX_FILE_BYTES.
    """
    if size > MAX_FILE_BYTES:
        raise OutOfRangeError("File.size", size, f"must be at most {MAX_FILE_BYTES} bytes")
    if size == 0 and offset != 0:
        raise OutOfRangeError("File.offset", offset, "must be 0 when size is 0 (a whole file)")
    if size and offset + length > size:
        raise OutOfRangeError("File.offset", offset, f"+ {length} bytes of data must lie within size {size}")


def interval_ok(seconds: float) -> bool:
    """True for an interval (e.g. CollectorInfo.heartbeat_interval) within MIN_INTERVAL..MAX_INTERVAL."""
    return MIN_INTERVAL <= seconds <= MAX_INTERVAL


def saturate(count: int, high: int = MAX_UINT64) -> int:
    """``count``, or ``high`` when it is larger: a counter that can always be sent."""
    return count if count <= high else high
