"""The ``labscope collector`` process's malloc settings (glibc): CHUNK-sized buffers come from the heap and are reused.

A streamed answer (a node's file, docs/protocol.md) crosses the collector in
CHUNKs of up to 1 MiB (messages/stream.py). libzmq mallocs a buffer for each
as it arrives and frees it once the client's connection has sent it. glibc
serves an allocation that large with ``mmap`` until a freed one raises its
threshold, and gives memory back to the system whenever more than twice that
threshold lies free at the top of a heap: under a stream the heap grows and
shrinks a megabyte at a time, and every page of every chunk is faulted in and
zeroed afresh. Measured streaming 200 MiB from a real agent through the
collector to a client, 30 alternated pairs: ~140,000 page faults a second over
the three processes; with these settings in the collector its CPU fell from
104-115 to 94-107 ms a stream, and the stream from 0.64 to 0.68-0.73 of a raw
pyzmq stream (the lowest pair 0.48-0.50 -> 0.60-0.65; BENCHMARKS.md, "Issue 14:
round eight").

The collector therefore sets ``M_MMAP_THRESHOLD`` to :data:`MMAP_THRESHOLD`
(CHUNK buffers come from the heap) and ``M_TRIM_THRESHOLD`` to
:data:`TRIM_THRESHOLD`: up to that much free memory stays at the top of a heap
for the next chunks (a client's credit window is 32 chunks). An operator who
sets glibc's own knobs (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``,
or ``malloc.`` tunables in ``GLIBC_TUNABLES``) keeps them: the collector then
sets nothing. Only the command-line collector does this; an embedded one leaves
its host program's allocator alone. With another C library nothing is done.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform

__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "keep_chunk_buffers"]

log = logging.getLogger(__name__)

MMAP_THRESHOLD = 4 * 2**20  # bytes: allocations below come from the heap (a CHUNK is 1 MiB and a header)
TRIM_THRESHOLD = 32 * 2**20  # bytes of free memory kept at the top of a heap before it is given back

# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_OPERATOR_KNOBS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")


def keep_chunk_buffers() -> bool:
    """Set the two thresholds (call it before start-up); True when they were set."""
    if platform.libc_ver()[0] != "glibc":
        return False
    if operator_chose():
        log.info("malloc: the environment sets glibc's thresholds; the collector leaves them as they are")
        return False
    mallopt = ctypes.CDLL(None).mallopt
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    done = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1)
    if not done:
        log.info("malloc: glibc refused the collector's thresholds; its defaults stay")
    return done


def operator_chose() -> bool:
    """Whether the environment already sets glibc's malloc thresholds."""
    return any(os.environ.get(name) for name in _OPERATOR_KNOBS) or "malloc." in os.environ.get("GLIBC_TUNABLES", "")
