"""ZAP (ZeroMQ's authentication protocol) for the collector's two CURVE endpoints, served on its gevent loop.

pyzmq's ``zmq.auth.thread.ThreadAuthenticator`` does not work in the collector
(measured: under ``patch_all(thread=False, queue=False)`` its thread's asyncio
loop never answers), so this module runs pyzmq's own
``zmq.auth.base.Authenticator`` from a greenlet instead: the authenticator binds
its plain REP socket on ``inproc://zeromq.zap.01`` of the collector's context,
and :meth:`ZapServer.run` reads it with NOBLOCK, parks on the socket's FD when
it would block, and drives ``handle_zap_message`` (a coroutine that never
suspends, since the key check is synchronous) to its end.

Each endpoint has its ZAP domain (``zap_domain`` on its socket): ``agents``
admits the keys of the agents' allow folder, ``clients`` those of the viewers'
and operators'. A key in neither is refused during the handshake and never
sends a frame.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

import zmq
from gevent.socket import wait_read
from zmq.auth.base import Authenticator

from collector.keyring import KeyEntry, KeyRing
from collector.refusals import UNKNOWN_KEY, Refusals, safe_fingerprint
from messages.keys import Certificate

__all__ = ["AGENTS_DOMAIN", "CLIENTS_DOMAIN", "ZapServer", "serve_curve"]

log = logging.getLogger(__name__)

AGENTS_DOMAIN = "agents"
CLIENTS_DOMAIN = "clients"
WAKE_INTERVAL = 1.0  # seconds parked on the FD before looking again (an edge-triggered FD can be missed)


def serve_curve(sock: zmq.Socket[Any], certificate: Certificate, domain: str) -> None:
    """Make ``sock`` a CURVE server with the collector's key pair, authenticated in ZAP ``domain`` (before bind)."""
    assert certificate.secret is not None
    sock.curve_secretkey = certificate.secret
    sock.curve_publickey = certificate.public
    sock.curve_server = True
    sock.zap_domain = domain.encode()


class ZapServer(Authenticator):
    """Answers the ZAP requests of both endpoints from the key ring; refusals go to ``refusals``."""

    def __init__(self, context: zmq.Context[Any], keyring: KeyRing, refusals: Refusals) -> None:
        super().__init__(context, log=log)
        self.keyring = keyring
        self.refusals = refusals
        self.running = True
        self._address = ""  # the peer address of the request being answered, for the refusal's log line
        self._lookups: dict[str, Callable[[str], KeyEntry | None]] = {
            AGENTS_DOMAIN: keyring.agent,
            CLIENTS_DOMAIN: keyring.client,
        }

    def start(self) -> None:
        """Bind the ZAP socket and register the two domains; call before the endpoints bind."""
        super().start()
        for domain in self._lookups:
            self.configure_curve_callback(domain, self)

    def callback(self, domain: str, key: bytes) -> bool:
        """Whether the Z85 public ``key`` may connect to the endpoint of ``domain`` (pyzmq's provider API)."""
        public = key.decode("ascii", "replace")
        lookup = self._lookups.get(domain)
        if lookup is not None and lookup(public) is not None:
            return True
        self.refusals.refuse(
            UNKNOWN_KEY,
            safe_fingerprint(key),
            f"a {domain.rstrip('s')} connection from {self._address or 'an unknown address'} "
            f"with a key in no allow folder of the {domain} endpoint",
            address=self._address,
        )
        return False

    def run(self) -> None:
        """Answer ZAP requests until :meth:`stop`; runs in its own greenlet."""
        sock = self.zap_socket
        while self.running:
            try:
                msg = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                _park(sock)
                continue
            self._address = msg[3].decode("utf-8", "replace") if len(msg) > 3 else ""
            _finish(self.handle_zap_message(msg))

    def stop(self) -> None:
        """Close the ZAP socket (after the greenlet running :meth:`run` was killed)."""
        self.running = False
        super().stop()


class _QuietError(Exception):
    """Nothing arrived while parked: look at the socket again."""


def _park(sock: zmq.Socket[Any]) -> None:
    try:
        wait_read(sock.FD, WAKE_INTERVAL, timeout_exc=_QuietError())
    except _QuietError:
        pass


def _finish(coro: Coroutine[Any, Any, None]) -> None:
    """Run a coroutine that never suspends (pyzmq's handler with a synchronous callback) to its end."""
    try:
        coro.send(None)
    except StopIteration:
        return
    coro.close()
    log.error("a ZAP request was left unanswered: pyzmq's handler suspended, which labscope does not expect")
