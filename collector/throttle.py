"""Per-client limits on the clients' endpoint: a token bucket of requests, and concurrent streams.

A client over its rate gets ``ERROR busy`` at once (no queueing, no waiting):
the collector spends one dict look-up and one envelope on it, so a client
sending flat out is throttled and everybody else is still served. The key is
the client's identity: today its connection (the ROUTER routing id); with
CURVE, its key's fingerprint, so that one key cannot multiply its rate by
opening connections.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable

__all__ = ["ClientLimits", "TokenBucket"]

MAX_BUCKETS = 4096  # beyond this many clients, full (idle) buckets are forgotten


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; a request takes one."""

    def __init__(self, rate: float, burst: int, now: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"a token bucket needs rate > 0 and burst >= 1, not {rate}, {burst}")
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.at = now

    def take(self, now: float) -> bool:
        """Take one token if there is one; False when the bucket is empty."""
        self.refill(now)
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True

    def refill(self, now: float) -> None:
        """Add the tokens earned since the last call (a clock going back earns none)."""
        if now > self.at:
            self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now

    def full(self, now: float) -> bool:
        """True when the bucket holds ``burst`` tokens: forgetting it changes nothing."""
        self.refill(now)
        return self.tokens >= self.burst


class ClientLimits:
    """One token bucket per client key; ``admit`` says whether a request may run now."""

    def __init__(self, rate: float, burst: int, max_streams: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self.max_streams = max_streams
        self.clock = clock
        self.buckets: dict[Hashable, TokenBucket] = {}

    def admit(self, key: Hashable) -> bool:
        """Take one request token for ``key``; False when it is over its rate."""
        now = self.clock()
        bucket = self.buckets.get(key)
        if bucket is None:
            if len(self.buckets) >= MAX_BUCKETS:
                self._forget_idle(now)
            bucket = self.buckets[key] = TokenBucket(self.rate, self.burst, now)
        return bucket.take(now)

    def streams_left(self, open_streams: int) -> bool:
        """Whether a client with ``open_streams`` streams running may start one more."""
        return open_streams < self.max_streams

    def _forget_idle(self, now: float) -> None:
        for key in [k for k, b in self.buckets.items() if b.full(now)]:
            del self.buckets[key]
