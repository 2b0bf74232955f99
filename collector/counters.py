"""Counters of what the collector received, dropped and survived.

Bad input is counted, and logged at most once a second per kind of problem
(:class:`ThrottledLog`, from messages/logs.py), so a flood of garbage cannot
flood the log.
"""

from __future__ import annotations

from collections import Counter

from messages.limits import MAX_CREDIT, saturate
from messages.logs import ThrottledLog

__all__ = [
    "AGENTS",
    "BOTH",
    "CLIENTS",
    "COUNTERS",
    "DISTRIBUTIONS",
    "MODULES",
    "OBSERVERS",
    "SITES",
    "Counters",
    "ThrottledLog",
]

AGENTS, CLIENTS, MODULES, DISTRIBUTIONS = "agents endpoint", "clients endpoint", "modules", "distributions"
OBSERVERS = "observers"
SITES = "sites and top (docs/sites.md)"
BOTH = "both endpoints"

# Every counter the collector keeps (answered by CollectorStats), with where it counts and what.
# One scheme: agents-endpoint counters have plain names, clients-endpoint ones start with
# ``client-``. docs/protocol.md's counter table is generated from this (labscope/protodoc.py), and
# tests/test_protocol_doc.py checks that every name the collector's code counts is listed here.
COUNTERS: dict[str, tuple[str, str]] = {
    "frames": (AGENTS, "ZeroMQ messages received (a two-part CHUNK counts once)"),
    "envelopes": (AGENTS, "envelopes in the frames that decoded"),
    "reports": (AGENTS, "new REPORTs applied (duplicates excluded; unrouted ones included)"),
    "duplicates": (AGENTS, "REPORTs at or below the node's acknowledged seq: acknowledged again and dropped"),
    "gap-reports": (AGENTS, "sequence numbers nodes skipped (reports never received)"),
    "unrouted": (AGENTS, "REPORTs of a type no module takes: acknowledged, journaled, not processed"),
    "bad-frame": (AGENTS, "frames that are not a Batch, and bad multi-part messages: dropped"),
    "empty": (AGENTS, "frames with no envelopes: dropped"),
    "oversized": (AGENTS, "frames larger than max_frame_bytes: dropped"),
    "unknown-kind": (AGENTS, "envelopes of kind 0 or a kind the agents endpoint does not take: dropped"),
    "hello-required": (AGENTS, "envelopes from a connection that has not said HELLO (answered hello-required)"),
    "bad-hello": (AGENTS, "HELLOs without a NodeInfo naming a node, or a SITE:NODE id at a top (answered bad-hello)"),
    "duplicate-node": (AGENTS, "HELLOs refused because the node id is live through another agent"),
    "stale-answer": (AGENTS, "agents' RESPONSE / ERROR / CHUNK for no pending request: dropped"),
    "send-failed": (AGENTS, "frames to agents that could not be sent (peer gone or its queue full)"),
    "nodes-lost": (AGENTS, "nodes declared lost after node_timeout of silence"),
    "liveness-deferred": (
        AGENTS,
        "lost-node checks that measured silence only up to when ingest last read every frame waiting (it was behind)",
    ),
    "ingest-passes": (AGENTS, "passes of the ingest loop (each ends with one journal commit and the ACKs)"),
    "out-of-range": (AGENTS, "envelopes refused for a number outside its bounds (answered ERROR out-of-range)"),
    "nodes-refused": (AGENTS, "HELLOs of new nodes refused because max_nodes nodes are known (answered ERROR busy)"),
    "journal-failed": (AGENTS, "journal commits, snapshots or prunes that failed (ACKs held until one succeeds)"),
    "store-failed": (AGENTS, "node registry saves to the configured store that failed (docs/stores.md)"),
    "client-frames": (CLIENTS, "ZeroMQ messages received"),
    "client-envelopes": (CLIENTS, "envelopes in the frames that decoded"),
    "client-bad-frame": (
        CLIENTS,
        "frames that are not a Batch, and messages of more than one part (answered ERROR bad-frame)",
    ),
    "client-empty": (CLIENTS, "frames with no envelopes (answered ERROR bad-frame)"),
    "client-oversized": (CLIENTS, "frames larger than max_frame_bytes (answered ERROR bad-frame)"),
    "client-unknown-kind": (CLIENTS, "envelopes of a kind clients may not send: dropped"),
    "client-requests": (CLIENTS, "REQUESTs received"),
    "client-node-requests": (CLIENTS, "REQUESTs forwarded to an agent (or refused for that node)"),
    "client-subscribe-refused": (CLIENTS, "SUBSCRIBEs answered with ERROR (unknown type, no types)"),
    "client-out-of-range": (
        CLIENTS,
        f"REQUESTs and CREDITs refused for a credit outside 1..{MAX_CREDIT} (answered ERROR bad-request)",
    ),
    "client-stale-credit": (CLIENTS, "CREDITs for no running stream (e.g. sent after the last chunk)"),
    "client-send-failed": (CLIENTS, "frames to clients that could not be sent (client gone or its queue full)"),
    "auth-refused": (
        BOTH,
        "peers refused for their CURVE key (docs/security.md): unknown at the handshake, a node id the key may "
        "not claim, a connection's key changed, a key removed while connected, a viewer asking an operator's action",
    ),
    "auth-refused:REASON": (
        BOTH,
        "auth-refused, for REASON: unknown-key, wrong-node, key-mismatch, key-removed, operator-only, "
        "or at a site top-not-operator, no-requester (docs/sites.md)",
    ),
    "client-throttled": (
        CLIENTS,
        "REQUESTs refused because the client was over client_request_rate / client_request_burst (answered ERROR busy)",
    ),
    "client-streams-refused": (
        CLIENTS,
        "stream REQUESTs (carrying a credit) refused because the client had client_max_streams running "
        "(answered ERROR busy)",
    ),
    "client-audited": (CLIENTS, "requests to nodes written to the audit trail (docs/security.md)"),
    "client-audit-failed": (
        CLIENTS,
        "audit trail writes that failed (a request whose entry could not be written is answered ERROR busy, "
        "never forwarded)",
    ),
    "updates": (MODULES, "updates the modules produced and the collector published"),
    "module-error": (MODULES, "exceptions raised by modules, all modules together"),
    "module-error:NAME": (MODULES, "exceptions raised by module NAME (also a module that failed to start)"),
    "bad-report": (
        MODULES,
        "REPORTs whose payload did not decode: acknowledged and journaled, reached no "
        "module (per node and type in CollectorStats bad_reports)",
    ),
    "bad-report:TYPE": (MODULES, "bad-report, for report type TYPE"),
    "bad-report-replayed": (MODULES, "journaled bad reports skipped again while replaying the journal after a restart"),
    "dist-sent": (DISTRIBUTIONS, "items the distributions delivered (sendUpdate returned True), all together"),
    "dist-dropped": (
        DISTRIBUTIONS,
        "items the distributions dropped, all together, for every reason (queue-full, collapsed, error, shutdown; "
        "by reason in the Distributions answer)",
    ),
    "dist-dropped:NAME": (DISTRIBUTIONS, "dist-dropped, for distribution NAME"),
    "dist-errors": (DISTRIBUTIONS, "exceptions the distributions raised, in any method, all together"),
    "dist-errors:NAME": (DISTRIBUTIONS, "dist-errors, for distribution NAME (by method in the Distributions answer)"),
    "dist-gap": (
        DISTRIBUTIONS,
        "reports a durable distribution had not passed on when the journal pruned them past journal_hold",
    ),
    "history-dropped": (
        MODULES,
        "samples the store's history part lost (its writer's queue full, or a batch the backend failed to write "
        "three times; docs/stores.md)",
    ),
    "history-late": (
        MODULES,
        "values older than their series' open bucket (a late sample counts once per series): kept in the raw tier, "
        "left out of the 1m/1h buckets",
    ),
    "observer-errors": (OBSERVERS, "exceptions observers raised (docs/observers.md), all observers together"),
    "observer-slow": (OBSERVERS, "observer calls that took longer than a second (the collector went on meanwhile)"),
    "observer-dropped": (
        OBSERVERS,
        "events dropped because observer_queue events were waiting for slow observers",
    ),
    "site-published": (SITES, "a site's heartbeat and node status messages published on NATS"),
    "site-publish-failed": (SITES, "a site's failed attempts to reach NATS or to publish there (retried)"),
    "ingest-reports": (SITES, "the top's new reports from the sites' stream (also counted in reports)"),
    "ingest-duplicates": (SITES, "the top's reports from the stream at or below their node's last seq: dropped"),
    "ingest-out-of-range": (SITES, "the top's reports from the stream with a seq or time out of bounds: dropped"),
    "ingest-fetched": (SITES, "messages the top fetched from the stream"),
    "ingest-skipped": (SITES, "messages in the stream (or on the site subjects) that hold no site report: dropped"),
    "ingest-other-site": (SITES, "reports of sites not in ingest_sites: acknowledged and dropped"),
    "ingest-reanchors": (
        SITES,
        "times the top re-created its consumer at the first uncommitted message (an older one was still pending)",
    ),
    "ingest-stream-gap": (SITES, "stream messages gone (stream limits) before the top read them"),
    "ingest-errors": (SITES, "failures talking to NATS (retried every second)"),
    "site-messages": (SITES, "heartbeats and node status messages the top received from its sites"),
    "sites-lost": (SITES, "times a site fell silent past ingest_site_timeout (its nodes shown lost)"),
    "site-cmd-requests": (
        SITES,
        "node requests down the tree: at the top, sent to a site over NATS; at a site, taken from its top",
    ),
    "site-cmd-unsent": (SITES, "the top's commands not sent (NATS away, or its queue full): the request times out"),
    "site-cmd-stale": (SITES, "answers from a site to a request the top no longer waits for: dropped"),
    "site-cmd-bad-answer": (SITES, "answers from a site that do not decode: dropped"),
    "site-cmd-publish-failed": (SITES, "commands or answers NATS refused (too large, connection down)"),
    "site-cmd-bad": (SITES, "a site's commands from the top that do not decode or hold a bad CREDIT: refused"),
    "site-cmd-dropped": (
        SITES,
        "commands (at a site: no reply subject, or its queue full) or answers (at the top: its queue full) dropped",
    ),
    "site-cmd-stale-credit": (SITES, "CREDITs from the top for a stream the site no longer runs"),
}


class Counters(Counter[str]):
    """Named event counts (``frames``, ``reports``, ``bad-frame``, ``module-error:NAME``, ...; see COUNTERS)."""

    def snapshot(self) -> dict[str, int]:
        """A plain dict copy, sorted by name; a count beyond 2^64-1 (gaps a hostile node claims) saturates."""
        return {name: saturate(count) for name, count in sorted(self.items())}
