"""Sites and the top collector: names, qualified node ids, subjects and the site status messages.

A **site** is a collector (one testbed) whose reports go into a NATS JetStream
stream through the ``nats`` distribution in reports mode; a **top** collector
ingests that stream (collector/ingest.py). At the top a node id is qualified by
its site: ``SITE:NODE``. A site name is one NATS subject token:
``^[A-Za-z0-9_-]{1,64}$`` (no dots, no ``:``).

Besides its reports, a site publishes (core NATS, outside the stream) on

- ``PREFIX.SITE.heartbeat``: ``{"site", "time", "interval", "nodes"}`` every
  ``site_heartbeat`` seconds;
- ``PREFIX.SITE.nodes``: ``{"site", "time", "nodes": [NODE STATUS, ...]}``
  whenever a node joins, is lost or its backlog changes, and with every
  heartbeat (a top that starts late learns the state within one period).

Both are JSON (UTF-8), readable with ``nats sub 'labscope.*.nodes'``. See docs/sites.md.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from typing import Any

from collector.addons import NodeRecord
from messages.errors import ConfigError

__all__ = [
    "NODE_FIELDS",
    "client_callbacks",
    "SITE_PATTERN",
    "check_site",
    "heartbeat_message",
    "heartbeat_subject",
    "nodes_message",
    "nodes_subject",
    "parse_status",
    "qualify",
    "servers",
    "split_qualified",
    "wire_size",
]

SITE_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_STREAM_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_PREFIX = re.compile(r"^[A-Za-z0-9_-]{1,64}(\.[A-Za-z0-9_-]{1,64})*$")
_URL = re.compile(r"^(nats|tls)://[^\s,]+$")

# The node fields a site tells the top (NodeStatus names; docs/sites.md).
NODE_FIELDS = ("node", "status", "backlog", "last_seq", "last_seen", "hostname", "os", "cpu_count", "memory_total")


def check_site(name: str, where: str = "site") -> str:
    """``name`` when it is a valid site name; ConfigError naming ``where`` and the rule otherwise."""
    if not isinstance(name, str) or not SITE_PATTERN.match(name):
        raise ConfigError(f"{where} {name!r}: a site name is 1 to 64 letters, digits, '_' or '-' (no dots)")
    return name


def qualify(site: str, node: str) -> str:
    """The node id of ``node`` of ``site`` at the top: ``SITE:NODE``."""
    return f"{site}:{node}"


def split_qualified(node: str) -> tuple[str, str] | None:
    """``(SITE, NODE)`` of a qualified node id, or None when ``node`` is not one."""
    site, sep, rest = node.partition(":")
    if not sep or not rest or not SITE_PATTERN.match(site):
        return None
    return site, rest


def wire_size(data: bytes, headers: dict[str, str]) -> int:
    """What a NATS server counts against its max_payload: the body plus the headers block, if any.

    The block is ``NATS/1.0\\r\\n``, one ``Key: Value\\r\\n`` per header and a closing ``\\r\\n``. nats-py
    checks the body alone; the server refuses a message over its max_payload with its headers
    (seen: a site's answer never reached the top, whose request timed out: docs/sites.md).
    """
    if not headers:
        return len(data)
    lines = sum(len(key.encode()) + len(value.encode()) + 4 for key, value in headers.items())
    return len(data) + len("NATS/1.0\r\n") + lines + 2


def servers(url: str) -> list[str]:
    """The server URLs of a comma-separated list (a NATS cluster's members, any order)."""
    return [part.strip() for part in url.split(",") if part.strip()]


def client_callbacks(logger: logging.Logger, who: str) -> dict[str, Any]:
    """nats-py connection callbacks that log one line each (its default logs a traceback per failed reconnect)."""

    async def error(exc: Exception) -> None:
        logger.debug("%s: NATS: %s: %s", who, type(exc).__name__, exc)

    async def disconnected() -> None:
        logger.info("%s: NATS connection lost; reconnecting", who)

    async def reconnected() -> None:
        logger.info("%s: NATS connection back", who)

    return {"error_cb": error, "disconnected_cb": disconnected, "reconnected_cb": reconnected}


def heartbeat_subject(prefix: str, site: str) -> str:
    """Where site ``site`` publishes its heartbeat."""
    return f"{prefix}.{site}.heartbeat"


def nodes_subject(prefix: str, site: str) -> str:
    """Where site ``site`` publishes its node status."""
    return f"{prefix}.{site}.nodes"


def heartbeat_message(site: str, now: float, interval: float, nodes: int) -> bytes:
    """A heartbeat's JSON body."""
    return json.dumps({"site": site, "time": now, "interval": interval, "nodes": nodes}).encode()


def nodes_message(site: str, now: float, records: Iterable[NodeRecord]) -> bytes:
    """The site's node status as JSON: every node, sorted by id."""
    nodes = [_node_entry(record) for record in sorted(records, key=lambda r: r.node)]
    return json.dumps({"site": site, "time": now, "nodes": nodes}).encode()


def _node_entry(record: NodeRecord) -> dict[str, Any]:
    info = record.info
    return {
        "node": record.node,
        "status": record.status,
        "backlog": record.backlog,
        "last_seq": record.last_seq,
        "last_seen": record.last_seen,
        "hostname": info.hostname,
        "os": info.os,
        "cpu_count": info.cpu_count,
        "memory_total": info.memory_total,
    }


def parse_status(body: bytes) -> dict[str, Any] | None:
    """A heartbeat or nodes message decoded and checked, or None when it is not one."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("site"), str) or not SITE_PATTERN.match(data["site"]):
        return None
    nodes = data.get("nodes")
    if isinstance(nodes, list) and not all(_good_entry(entry) for entry in nodes):
        return None
    return data


def _good_entry(entry: Any) -> bool:
    return (
        isinstance(entry, dict)
        and isinstance(entry.get("node"), str)
        and bool(entry["node"])
        and entry.get("status") in ("live", "lost")
    )


# ------------------------------------------------------------ ticket keys

# ticket key -> what its value must be; checked by :func:`check_key` (collector/config.py).
KEYS = ("site", "ingest_nats", "ingest_stream", "ingest_prefix", "ingest_sites", "ingest_durable")


def check_key(key: str, value: Any, where: str) -> Any:
    """One of :data:`KEYS` checked; raises ConfigError naming ``where`` (file and section, or flags)."""
    if key == "site":
        return check_site(value, f"{where} site") if value else ""
    if key == "ingest_sites":
        if not isinstance(value, list):
            raise ConfigError(f'{where} ingest_sites must be a list of site names, e.g. ["lab1", "lab2"]')
        return [check_site(name, f"{where} ingest_sites:") for name in value]
    if key == "ingest_nats":
        bad = [url for url in servers(value) if not _URL.match(url)]
        if bad or (value and not servers(value)):
            raise ConfigError(f"{where} ingest_nats {value!r}: expected nats://HOST:PORT[,nats://HOST:PORT...]")
        return value
    pattern = _PREFIX if key == "ingest_prefix" else _STREAM_NAME
    if not isinstance(value, str) or not pattern.match(value):
        raise ConfigError(f"{where} {key} {value!r}: letters, digits, '_' and '-' only (1 to 64)")
    return value


def site_list(text: str) -> list[str]:
    """An argparse ``type=`` for ``--ingest-sites a,b``: the names, unchecked (the ticket checks them)."""
    return [name.strip() for name in text.split(",") if name.strip()]
