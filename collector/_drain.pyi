"""Types of the C module built from collector/_drain.c (collector/fast_drain.py uses it)."""

from collections.abc import Callable
from typing import overload

def bind(init: int, recv: int, close: int, data: int, size: int, more: int, errno: int, gets: int, /) -> None:
    """Take the addresses of libzmq's zmq_msg_init, _recv, _close, _data, _size, _more, zmq_errno, zmq_msg_gets."""

@overload
def drain(
    handle: int, limit: int, single_limit: int, heads: list[bytes], idents: list[bytes], bodies: list[bytes], /
) -> tuple[int, tuple[bytes, bytes, bool] | None]: ...
@overload
def drain(
    handle: int,
    limit: int,
    single_limit: int,
    heads: list[bytes],
    idents: list[bytes],
    bodies: list[bytes],
    senders: list[str],
    check: Callable[[bytes, str], str],
    /,
) -> tuple[int, tuple[bytes, bytes, bool, str, str] | None]: ...
