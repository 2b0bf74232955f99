"""``null``: a distribution that takes every item and sends it nowhere (``labscope bench``'s second one)."""

from __future__ import annotations

from typing import Any

from collector import dist


class NullDistribution(dist.Distribution):
    """Accepts every point or report; measures the runner's own cost."""

    def sendUpdate(self, payload: Any) -> bool:
        """Delivered (nowhere)."""
        return True
