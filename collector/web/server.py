"""The web page's server: gevent's WSGI server in the collector's own hub, and its node feed.

:func:`start_web` returns once the port is bound; the server then answers
each connection in a greenlet of its own, beside the collector's loops.
"""

from __future__ import annotations

import ipaddress
import logging

import gevent
from gevent.pywsgi import LoggingLogAdapter, WSGIServer

from collector.audit import AuditTrail
from collector.config import CollectorConfig
from collector.web.app import ConfigChanged, WebParts, make_app
from collector.web.auth import Authorizer
from collector.web.configfiles import ConfigFiles
from collector.web.views import WebSource
from messages.errors import LabscopeError

__all__ = ["WebServer", "is_loopback", "split_listen", "start_web"]

log = logging.getLogger(__name__)

STOP_TIMEOUT = 1.0  # seconds open requests (streams) get to finish when the collector stops
MAX_CONNECTIONS = 64  # connections served at once (each a greenlet); more wait in the listen backlog


def split_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` (checked by collector/config.py) as a (host, port) pair; ``[v6]`` loses its brackets."""
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class WebServer:
    """The running page: the WSGI server and the greenlet refreshing the node feed."""

    def __init__(self, listen: str, parts: WebParts) -> None:
        self.parts = parts
        self.host, port = split_listen(listen)
        self.server = WSGIServer(
            (self.host, port),
            make_app(parts),
            spawn=MAX_CONNECTIONS,
            log=None,  # no access log: the page polls every few seconds
            error_log=LoggingLogAdapter(logging.getLogger("collector.web.wsgi"), logging.ERROR),
        )
        self.feed_greenlet: gevent.Greenlet | None = None

    def start(self) -> None:
        """Bind and start serving; raises LabscopeError when the address cannot be used."""
        try:
            self.server.start()
        except OSError as exc:
            raise LabscopeError(
                f"cannot serve the web page on {self.host}:{self.server.server_port}: {exc.strerror or exc}"
            ) from None
        self.feed_greenlet = gevent.spawn(self.parts.feed.run)
        if not is_loopback(self.host):
            log.warning(
                "the web page on %s is reachable beyond this host: anyone who reaches it reads the testbed's "
                "state (edits still need the token)",
                self.url,
            )
        log.info("web page on %s", self.url)

    @property
    def url(self) -> str:
        """The page's address as a browser on this host reaches it."""
        host, port = self.server.address[:2]
        shown = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
        return f"http://[{shown}]:{port}/" if ":" in shown else f"http://{shown}:{port}/"

    def stop(self) -> None:
        """Stop accepting, give open requests STOP_TIMEOUT seconds, stop the feed."""
        self.server.stop(timeout=STOP_TIMEOUT)
        if self.feed_greenlet is not None:
            self.feed_greenlet.kill()


def start_web(
    config: CollectorConfig, source: WebSource, audit: AuditTrail, on_config_changed: ConfigChanged
) -> WebServer:
    """Build the page from the collector's config and parts and start it; returns the running server.

    Raises ConfigError for an unusable token file, LabscopeError when the address cannot be used.
    """
    files = ConfigFiles(config.extra_config_files, config.config_path)
    parts = WebParts(source, files, Authorizer(config.web_token_file), audit, on_config_changed)
    server = WebServer(config.web_listen, parts)
    server.start()
    return server
