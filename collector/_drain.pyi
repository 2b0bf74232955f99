"""Types of the C module built from collector/_drain.c (collector/fast_drain.py uses it)."""

def bind(init: int, recv: int, close: int, data: int, size: int, more: int, errno: int, /) -> None:
    """Take the addresses of libzmq's zmq_msg_init, _recv, _close, _data, _size, _more and zmq_errno."""

def drain(
    handle: int, limit: int, single_limit: int, heads: list[bytes], idents: list[bytes], bodies: list[bytes], /
) -> tuple[int, tuple[bytes, bytes, bool] | None]:
    """Read up to ``limit`` messages from the ROUTER at ``handle``; (messages read, odd message or None)."""
