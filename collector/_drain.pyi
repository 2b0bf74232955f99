"""Types of the C module built from collector/_drain.c (collector/fast_drain.py types its uses)."""

from typing import Any

def bind(init: int, recv: int, close: int, data: int, size: int, more: int, errno: int, gets: int, /) -> None:
    """Take the addresses of libzmq's zmq_msg_init, _recv, _close, _data, _size, _more, zmq_errno, zmq_msg_gets."""

def drain(handle: int, *args: Any) -> Any:
    """Read up to ``limit`` messages from the ROUTER at ``handle`` (collector/_drain.c says what it returns)."""
