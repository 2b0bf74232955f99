"""The collector's ZeroMQ context: libzmq's zero-copy receive turned off.

By default libzmq decodes what a TCP connection brings into a shared buffer of
8 KB (``ZMQ_IN_BATCH_SIZE``) and hands out messages that point into it: the
buffer is freed only when the last message in it is. A collector that falls
behind keeps messages waiting in thousands of pipes, each pinning a whole
buffer for a frame of a few hundred bytes. Measured with 5,000 simulated agents
and the collector stopped for 8 s (SIGSTOP) then let go: libzmq's thread arenas
went 148 -> 313-462 MB at the catch-up and the collector peaked at 61-145 KB a
node; with zero-copy receive off the arenas stayed at 143-148 MB and the peak was
44-45 KB a node (BENCHMARKS.md, "Issue 14: round seven"). Each message is then
copied out of the buffer once (~250 bytes for a report); ingest measured within
noise of the default (0.633-0.647 against 0.65-0.653 of raw pyzmq).
"""

from __future__ import annotations

import logging
from typing import Any

import zmq
import zmq.green

__all__ = ["ZERO_COPY_RECV", "new_context"]

log = logging.getLogger(__name__)

# libzmq's context option ZMQ_ZERO_COPY_RECV (zmq.h, "DRAFT Context options"); pyzmq does not name it.
ZERO_COPY_RECV = 10


def new_context() -> zmq.green.Context[Any]:
    """A green context whose sockets copy each received message out of libzmq's decoder buffer."""
    context = zmq.green.Context()
    try:
        context.set(ZERO_COPY_RECV, 0)
    except zmq.ZMQError as exc:  # a libzmq without the option: the default stays, nothing else changes
        log.info(
            "libzmq %s does not take ZMQ_ZERO_COPY_RECV (%s); messages share decoder buffers", zmq.zmq_version(), exc
        )
    return context
