"""The collector's security set-up: CURVE with its key ring and ZAP, or the plain mode's one warning.

``--curve-secret`` turns CURVE on for both endpoints (docs/security.md);
:func:`start_curve` loads the collector's certificate and the allow folders and
binds the ZAP handler, all before the endpoints bind (a CURVE server with no ZAP
handler would accept any client key). Without it, :func:`warn_if_exposed` says
once at start-up that anyone who can reach a non-loopback endpoint can read and
command the nodes.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from typing import Any

import zmq

from collector.config import CollectorConfig
from collector.keyring import KeyRing
from collector.refusals import Refusals
from collector.zap import ZapServer
from messages.keys import Certificate, load

__all__ = ["EXPOSED", "Curve", "is_loopback", "start_curve", "warn_if_exposed"]

log = logging.getLogger(__name__)

EXPOSED = (
    "CURVE is off (no --curve-secret) and the collector listens beyond loopback (agents %s, clients %s): "
    "anyone who can reach these ports can read every node's data and command the nodes; see docs/security.md"
)


@dataclass
class Curve:
    """What a CURVE collector runs: its own certificate, the allow lists and the ZAP handler."""

    certificate: Certificate
    keyring: KeyRing
    zap: ZapServer


def start_curve(config: CollectorConfig, context: zmq.Context[Any], refusals: Refusals) -> Curve | None:
    """Load the certificate and allow folders and start ZAP on ``context``; None without ``curve_secret``."""
    if config.curve_secret is None:
        return None
    certificate = load(config.curve_secret, secret=True)
    keyring = KeyRing(config.allow_agents, config.allow_viewers, config.allow_operators)
    zap = ZapServer(context, keyring, refusals)
    zap.start()
    log.info(
        "CURVE on both endpoints; the collector's public key is %s (%s)",
        certificate.public.decode(),
        certificate.fingerprint,
    )
    return Curve(certificate, keyring, zap)


def warn_if_exposed(config: CollectorConfig) -> bool:
    """Log the plain mode's one warning unless CURVE is on or both endpoints are loopback; True when it warned."""
    if config.curve_secret is not None or (is_loopback(config.listen_agents) and is_loopback(config.listen_clients)):
        return False
    log.warning(EXPOSED, config.listen_agents, config.listen_clients)
    return True


def is_loopback(endpoint: str) -> bool:
    """Whether a bind endpoint is reachable from this host only: 127.0.0.0/8, ::1, localhost, ipc://, inproc://."""
    transport, _, rest = endpoint.partition("://")
    if transport in ("ipc", "inproc"):
        return True
    host = rest.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # "*", an interface name, a host name: not provably loopback
        return False
