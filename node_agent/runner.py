"""Run probes on their schedule and turn what they return into REPORT envelopes.

A probe's failure is never fatal: an exception (or a value that cannot be
sent) is counted and logged with the probe's name, at most once per
``ERROR_LOG_INTERVAL`` seconds per probe so a probe failing every second does
not flood the log.

A probe is never called twice at once: the schedule (main loop) and a
``RunProbe`` node request (a worker thread) take the probe's lock.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from messages import Envelope, Kind
from messages.codec import envelope
from messages.logs import ThrottledLog
from node_agent.addons import Probe

__all__ = ["ERROR_LOG_INTERVAL", "ScheduledProbe", "report_envelope"]

log = logging.getLogger(__name__)

ERROR_LOG_INTERVAL = 30.0


def report_envelope(result: Any, reporttype: str, node: str, now: float) -> Envelope | None:
    """The REPORT for what getReport returned: None, data, or ``(type, data)``.

    Returns None when there is nothing to send; raises TypeError or ValueError
    for a value that cannot be sent.
    """
    if result is None:
        return None
    rtype = reporttype
    if isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], str):
        rtype, result = result
        if not rtype:
            raise ValueError("getReport returned an empty report type")
        if result is None:
            return None
    return envelope(Kind.REPORT, rtype, result, node=node, time=now)


class ScheduledProbe:
    """One probe with its interval, next due time (monotonic clock) and error count."""

    def __init__(self, name: str, probe: Probe, interval: float, start: float | None = None) -> None:
        self.name = name
        self.probe = probe
        self.interval = interval
        self.next_due = time.monotonic() if start is None else start
        self.errors = 0
        self._throttled = ThrottledLog(log, ERROR_LOG_INTERVAL, suffix=" (%d more failures not logged)")
        self._lock = threading.Lock()

    def run(self, node: str, wall: float, clock: float) -> Envelope | None:
        """Call the probe now and schedule its next run; returns the REPORT to send, if any."""
        self.next_due += self.interval
        if self.next_due <= clock:
            # Missed runs (a stopped process, a slow probe) are skipped, not replayed.
            self.next_due = clock + self.interval
        try:
            with self._lock:
                result = self.probe.getReport(wall)
            return report_envelope(result, self.probe.reporttype, node, wall)
        except Exception as exc:
            self._failed(exc, clock)
            return None

    def sample(self, wall: float) -> tuple[str, Any]:
        """Call the probe now, off schedule: ``(report type, data)``; its exceptions propagate."""
        with self._lock:
            result = self.probe.getReport(wall)
        if isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], str):
            return result[0] or self.probe.reporttype, result[1]
        return self.probe.reporttype, result

    def _failed(self, exc: Exception, clock: float) -> None:
        self.errors += 1
        self._throttled.log(
            logging.ERROR,
            "failed",
            "probe %s failed: %s: %s",
            self.name,
            type(exc).__name__,
            exc,
            now=clock,
            exc_info=log.isEnabledFor(logging.DEBUG),
        )
