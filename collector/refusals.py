"""Refused peers: counted, logged once per key per minute with their fingerprint, raised as an Event.

Every refusal (docs/security.md) goes through :meth:`Refusals.refuse`: the
counters ``auth-refused`` and ``auth-refused:REASON`` (CollectorStats), one
warning per key per minute, and an ``auth-refused`` Event each time the
warning is logged (so a peer retrying every 100 ms cannot flood the events).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from collector.counters import Counters
from messages.keys import fingerprint
from messages.logs import ThrottledLog

__all__ = [
    "KEY_MISMATCH",
    "KEY_REMOVED",
    "LOG_PERIOD",
    "OPERATOR_ONLY",
    "UNKNOWN_KEY",
    "WRONG_NODE",
    "Refusals",
    "safe_fingerprint",
]

log = logging.getLogger(__name__)

# The reasons, as the suffix of the auth-refused:REASON counter and the Event's ``reason`` attribute.
UNKNOWN_KEY = "unknown-key"  # the ZAP handshake: a key in no allow folder of that endpoint
WRONG_NODE = "wrong-node"  # an agent's HELLO for a node id its key may not claim
KEY_MISMATCH = "key-mismatch"  # a frame from an agent connection (routing id) bound to another key
KEY_REMOVED = "key-removed"  # a connected peer whose key left the allow folder (or may no longer claim its node)
OPERATOR_ONLY = "operator-only"  # a viewer asking for what only operators may do

LOG_PERIOD = 60.0  # seconds: one warning per key per minute
MAX_KEYS = 10_000  # distinct keys remembered for throttling; then forget them all (random keys cost an attacker little)

EmitEvent = Callable[..., None]  # ModuleHost.emit_event(kind, node, severity, message, **attrs)


class Refusals:
    """Counts, logs and raises an Event for every refused peer."""

    def __init__(self, counters: Counters, emit_event: EmitEvent, period: float = LOG_PERIOD) -> None:
        self.counters = counters
        self.emit_event = emit_event
        self.period = period
        self.throttled = ThrottledLog(log, period=period)
        self._keys: set[str] = set()

    def refuse(self, reason: str, fingerprint: str, detail: str, node: str = "", **attrs: str) -> None:
        """Record one refusal; ``detail`` says what was refused, in words, for the log and the Event."""
        self.counters["auth-refused"] += 1
        self.counters[f"auth-refused:{reason}"] += 1
        if fingerprint not in self._keys and len(self._keys) >= MAX_KEYS:
            self._keys.clear()
            self.throttled = ThrottledLog(log, period=self.period)
        self._keys.add(fingerprint)
        message = f"refused key {fingerprint or '(none)'} ({reason}): {detail}"
        if self.throttled.warning(fingerprint, "%s", message):
            self.emit_event("auth-refused", node, "warning", message, reason=reason, fingerprint=fingerprint, **attrs)


def safe_fingerprint(key: str | bytes) -> str:
    """The key's fingerprint (messages/keys.py), or a placeholder for a key that is not Z85."""
    try:
        return fingerprint(key) if key else "(no key)"
    except (ValueError, KeyError):
        return "(malformed key)"
