"""The probe API: the node-side twin of aggregator modules.

A probe is one ``.py`` file in a ``--probes-dir`` folder holding one subclass
of :class:`Probe`. The agent calls :meth:`Probe.getReport` every ``interval``
seconds and sends what it returns as a REPORT.

Example::

    from node_agent.addons import Probe

    class Uptime(Probe):
        reporttype = "Uptime"
        interval = 5.0

        def getReport(self, now):
            with open("/proc/uptime") as f:
                return {"uptime": float(f.read().split()[0])}
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

__all__ = ["Probe"]


class Probe:
    """Base class of every agent probe; subclass it in one file.

    Class attributes:

    - ``name``: the probe's name; defaults to the file's stem.
    - ``reporttype``: the REPORT type of what :meth:`getReport` returns.
    - ``interval``: seconds between calls (None: the agent's ``--interval``).

    Like aggregators, a probe may define ``__init__(self)`` with no arguments
    and skip ``super().__init__()``.
    """

    name: ClassVar[str] = ""
    reporttype: ClassVar[str] = ""
    interval: ClassVar[float | None] = None

    @property
    def log(self) -> logging.Logger:
        """A logger named after the probe."""
        return logging.getLogger(f"labscope.probe.{self.name or type(self).__name__}")

    def getReport(self, now: float) -> Any:
        """Produce one report at time ``now`` (epoch seconds).

        Return None (nothing to send this time), data, or ``(type, data)`` to
        send under another type than ``reporttype``. Data is bytes (sent
        untouched), a protobuf message, or a dict/list (sent as msgpack).
        An exception is logged with the probe's name and counted; the probe is
        called again at its next interval.
        """
        return None
