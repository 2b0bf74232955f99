"""The ``labscope collector`` process's garbage collector settings.

Ingest makes short-lived container objects by the hundred thousand a second
(reports, tuples, a distribution's queued samples). With CPython's default
young-generation threshold (700) a collection runs every 700 of them, every
object still alive then (a pass's reports, what waits in a distribution's
queue) is traversed again in the middle generation, and the objects promoted
from there set off full collections over the whole heap. Measured with the
bench's ingest on the collector's main thread: 3.97 -> 3.68 µs of CPU per
report without distributions, 5.28 -> 4.52 µs with a JSON-lines one attached
(docs/architecture.md, "Garbage collection").

Reference counting frees nearly everything ingest makes; the collector
therefore collects the young generation every :data:`YOUNG` allocations,
and freezes what start-up made (modules, classes, config: alive for the
whole run) so that full collections never walk it again. Cycles are still
collected, only less often. Only the command-line collector does
this; an embedded one leaves its host program's settings alone.
"""

from __future__ import annotations

import gc
import logging

__all__ = ["MIDDLE", "OLD", "YOUNG", "freeze_startup", "tune_for_ingest"]

log = logging.getLogger(__name__)

YOUNG = 50_000  # allocations of container objects between young collections (CPython: 700)
MIDDLE = 20  # young collections between middle ones (CPython: 10)
OLD = 10  # middle collections between full ones, when the heap has grown enough (CPython: 10)


def tune_for_ingest() -> None:
    """Set the collection thresholds for a process that ingests (call it before start-up)."""
    gc.set_threshold(YOUNG, MIDDLE, OLD)


def freeze_startup() -> None:
    """Collect once, then move every object alive now out of the collector's reach (call it once ready)."""
    gc.collect()
    gc.freeze()
    log.debug("gc: thresholds %s; %d start-up objects frozen", gc.get_threshold(), gc.get_freeze_count())
