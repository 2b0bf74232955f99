"""The audit trail: every request that reaches a node, written durably before it is forwarded.

The relay (collector/relay.py) calls :meth:`AuditTrail.record` when a
client's request to a node arrives and :meth:`AuditTrail.finish` once its
outcome is known (``ok``, an error code such as ``timeout`` / ``node-lost`` /
``denied``, ``cancelled``; with the bytes streamed for a stream). The row is
committed to the store before the request leaves for the agent: a request
whose row cannot be written is refused, never forwarded unaudited.

``who`` is the client as the collector knows it: without CURVE its network
address and an empty fingerprint; with CURVE the key's name and fingerprint.
Rows older than ``audit_retention`` seconds are pruned (at most once a
minute, on the next record), and at most :data:`MAX_ROWS` are kept.
``Audit`` (answered by the collector) reads them: see docs/security.md.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Mapping
from typing import Any

from collector.audit_table import AuditRow, AuditTable
from collector.counters import Counters, ThrottledLog
from collector.stores.base import StoreError
from messages.errors import Code, RequestError
from messages.specs import Param, Payload, RequestSpec

__all__ = ["AUDIT_SPEC", "AuditFailed", "AuditTrail", "MAX_ROWS"]

log = logging.getLogger(__name__)

DEFAULT_SINCE = 86400.0  # seconds back the Audit answer reaches when `since` is not given
DEFAULT_LIMIT = 1000
MAX_LIMIT = 100_000
MAX_ROWS = 1_000_000  # whatever the retention, the table keeps at most this many rows (the newest)
PRUNE_EVERY = 60.0  # seconds between prunes

AUDIT_SPEC = RequestSpec(
    "the audit trail (docs/security.md): every request forwarded to a node, oldest first, the newest `limit`",
    Payload.msgpack(
        "list of {id, time, who, fingerprint, type, params: {key: value}, node, "
        "outcome: ok | error code | cancelled | null (not known yet), bytes: streamed bytes or null, finished}"
    ),
    params=(
        Param("since", "only entries at or after EPOCH (epoch seconds; default: the last 24 hours)"),
        Param("node", "only entries for this node (answered by the collector, never forwarded)"),
        Param("limit", f"at most this many entries, the newest (default {DEFAULT_LIMIT}, at most {MAX_LIMIT})"),
    ),
)


class AuditFailed(Exception):  # noqa: N818 - reads as what happened
    """The audit row could not be written; the request must not be forwarded."""


class AuditTrail:
    """Records requests to nodes in ``table`` and answers ``Audit``."""

    def __init__(
        self,
        table: AuditTable,
        retention: float,
        counters: Counters,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.table = table
        self.retention = retention
        self.counters = counters
        self.clock = clock
        self.throttled = ThrottledLog(log)
        self._pruned_at = 0.0

    def record(
        self,
        who: str,
        fingerprint: str,
        type: str,
        params: Mapping[str, str],
        node: str,
        outcome: str | None = None,
    ) -> int:
        """Write one entry durably and return its id; raises AuditFailed when it could not be written.

        ``outcome`` given here records a request refused before it reached the node.
        """
        now = self.clock()
        self._maybe_prune(now)
        row = AuditRow(0, now, who, fingerprint, type, dict(params), node, outcome, None, now if outcome else None)
        try:
            row_id = self.table.insert(row)
        except (sqlite3.Error, StoreError) as exc:
            self.counters["client-audit-failed"] += 1
            self.throttled.log(
                logging.ERROR, "client-audit-failed", "cannot write the audit trail: %s; refusing node requests", exc
            )
            raise AuditFailed(str(exc)) from None
        self.counters["client-audited"] += 1
        return row_id

    def finish(self, row_id: int, outcome: str, nbytes: int | None = None) -> None:
        """Record how entry ``row_id`` ended; a failure is counted and logged, never raised."""
        try:
            self.table.finish(row_id, outcome, nbytes, self.clock())
        except (sqlite3.Error, StoreError) as exc:
            self.counters["client-audit-failed"] += 1
            self.throttled.log(
                logging.ERROR, "client-audit-failed", "cannot record an outcome in the audit trail: %s", exc
            )

    def answer(self, params: Mapping[str, str]) -> list[dict[str, Any]]:
        """The ``Audit`` answer for ``params`` (since, node, limit); raises RequestError bad-request."""
        since = _number(params, "since", self.clock() - DEFAULT_SINCE)
        limit = _limit(params.get("limit", ""))
        return [row.as_dict() for row in self.table.select(since, params.get("node", ""), limit)]

    def _maybe_prune(self, now: float) -> None:
        if now - self._pruned_at < PRUNE_EVERY:
            return
        self._pruned_at = now
        try:
            pruned = self.table.prune(now - self.retention, MAX_ROWS)
        except (sqlite3.Error, StoreError) as exc:
            self.counters["client-audit-failed"] += 1
            self.throttled.log(logging.ERROR, "client-audit-failed", "cannot prune the audit trail: %s", exc)
            return
        if pruned:
            log.info("pruned %d audit entries older than %g s", pruned, self.retention)


def _limit(text: str) -> int:
    if not text.strip():
        return DEFAULT_LIMIT
    if not text.strip().isdigit() or int(text) > MAX_LIMIT:
        raise RequestError(Code.BAD_REQUEST, f"Audit limit must be an integer 0..{MAX_LIMIT}, not {text!r}")
    return int(text)


def _number(params: Mapping[str, str], key: str, default: float) -> float:
    text = params.get(key)
    if text is None or not text.strip():
        return default
    try:
        value = float(text)
    except ValueError:
        raise RequestError(Code.BAD_REQUEST, f"Audit {key} must be a number, not {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise RequestError(Code.BAD_REQUEST, f"Audit {key} must be a finite number, not {text!r}")
    return value
