"""Keep freed heap memory for reuse rather than handing it back to the kernel after every large answer.

glibc returns a freed block of more than 128 KB to the kernel at once (it was
``mmap``-ed) and trims the top of the heap past 128 KB; the next answer of that
size then faults every page in again. In a virtual machine a fault costs
microseconds: a week of history (2.8 MB, copied a few times on its way) spent
more time in page faults than in being read from the store (BENCHMARKS.md,
issue 14). :func:`keep_freed_heap` raises both thresholds, so up to
``trim_bytes`` of freed memory stays mapped for the next answer.

The collector and the GUI call it at start-up. glibc's own variables
(``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_MMAP_THRESHOLD_``) win when set, and on a C
library without ``mallopt`` (macOS, musl's stub) nothing changes.
"""

from __future__ import annotations

import ctypes
import os
import sys

__all__ = ["DEFAULT_MMAP_BYTES", "DEFAULT_TRIM_BYTES", "keep_freed_heap"]

DEFAULT_TRIM_BYTES = 32 * 2**20  # freed memory kept at the top of the heap
DEFAULT_MMAP_BYTES = 16 * 2**20  # blocks below this come from the heap (and are reused), not from mmap
M_TRIM_THRESHOLD = -1  # glibc's malloc.h
M_MMAP_THRESHOLD = -3
GLIBC_VARIABLES = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")


def keep_freed_heap(trim_bytes: int = DEFAULT_TRIM_BYTES, mmap_bytes: int = DEFAULT_MMAP_BYTES) -> bool:
    """Set glibc's trim and mmap thresholds for this process; True when both were set."""
    if not sys.platform.startswith("linux") or any(name in os.environ for name in GLIBC_VARIABLES):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process runs on
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # mallopt answers 1 on success; musl's stub answers 0 and changes nothing
    return bool(mallopt(M_MMAP_THRESHOLD, mmap_bytes)) and bool(mallopt(M_TRIM_THRESHOLD, trim_bytes))
