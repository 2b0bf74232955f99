"""The web page's routes: the page and its assets, the JSON API, the node stream and config edits.

Built on Falcon (docs/web.md says why). Requests and responses are passed to
each responder explicitly: nothing here relies on thread-local state, which
gevent (with threads left unpatched) would share between greenlets.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from importlib import resources
from typing import Any

import falcon

from collector.audit import AuditFailed, AuditTrail
from collector.web.auth import Authorizer
from collector.web.configfiles import MAX_BYTES, ConfigFile, ConfigFiles, EditRefused
from collector.web.stream import NodeFeed
from collector.web.views import WebSource

__all__ = ["Assets", "ConfigChanged", "ConfigItem", "ConfigList", "Headers", "Json", "Stream", "WebParts", "make_app"]

log = logging.getLogger(__name__)

# The hook an accepted edit calls with the file's name and who edited it ("web:ADDRESS").
ConfigChanged = Callable[[str, str], None]

_TYPES = {".html": "text/html; charset=utf-8", ".css": "text/css; charset=utf-8", ".js": "text/javascript"}
_CSP = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"


class WebParts:
    """Everything the routes use: what to show, the files, the token, the audit trail and the edit hook."""

    def __init__(
        self,
        source: WebSource,
        files: ConfigFiles,
        authorizer: Authorizer,
        audit: AuditTrail,
        on_config_changed: ConfigChanged,
    ) -> None:
        self.source = source
        self.files = files
        self.authorizer = authorizer
        self.audit = audit
        self.on_config_changed = on_config_changed
        self.feed = NodeFeed(source.nodes)


def _assets() -> dict[str, tuple[bytes, str]]:
    """The page's files, shipped in the package, read once: name -> (bytes, content type)."""
    folder = resources.files("collector.web") / "static"
    found: dict[str, tuple[bytes, str]] = {}
    for item in folder.iterdir():
        suffix = "." + item.name.rpartition(".")[2]
        if item.is_file() and suffix in _TYPES:
            found[item.name] = (item.read_bytes(), _TYPES[suffix])
    return found


class Headers:
    """Middleware: the page loads only its own files; API answers are never cached."""

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: object, ok: bool) -> None:
        """Add the security and caching headers to every response."""
        resp.set_header("Content-Security-Policy", _CSP)
        resp.set_header("X-Content-Type-Options", "nosniff")
        resp.set_header("Referrer-Policy", "no-referrer")
        if req.path.startswith("/api/"):
            resp.set_header("Cache-Control", "no-store")


class Assets:
    """``/`` and ``/static/NAME``: the files shipped in the package (a name outside them is 404)."""

    def __init__(self) -> None:
        self.files = _assets()

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str = "index.html") -> None:
        """Serve one shipped file."""
        found = self.files.get(name)
        if found is None:
            raise falcon.HTTPNotFound(title="not found", description=f"no asset {name!r}")
        resp.data, resp.content_type = found


class Json:
    """A read-only JSON view: ``GET`` answers ``view()``."""

    def __init__(self, view: Callable[[], Any]) -> None:
        self.view = view

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Answer the view as JSON."""
        resp.media = self.view()


class Stream:
    """``/api/stream``: the node table as server-sent events (``event: nodes``, data = the /api/nodes list)."""

    def __init__(self, feed: NodeFeed) -> None:
        self.feed = feed

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Start one listener's stream, or 503 when too many browsers listen already."""
        if self.feed.full():
            raise falcon.HTTPServiceUnavailable(
                title="too many streams", description="too many pages are streaming; try again later", retry_after=5
            )
        resp.content_type = "text/event-stream"
        resp.set_header("Cache-Control", "no-store")
        resp.set_header("X-Accel-Buffering", "no")
        resp.stream = self.feed.events()


class ConfigList:
    """``GET /api/config``: the extra config files and whether editing is on."""

    def __init__(self, parts: WebParts) -> None:
        self.parts = parts

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """List the files."""
        resp.media = {"editable": self.parts.authorizer.enabled, "files": self.parts.files.listing()}


class ConfigItem:
    """``GET`` and ``PUT /api/config/NAME``: one extra config file's text."""

    def __init__(self, parts: WebParts) -> None:
        self.parts = parts

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        """The file's text as it is on disk."""
        file = self._file(name)
        try:
            resp.data = file.path.read_bytes()
        except OSError as exc:
            raise falcon.HTTPInternalServerError(title="cannot read", description=f"{name}: {exc.strerror}") from None
        resp.content_type = "text/plain; charset=utf-8"

    def on_put(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        """Check, save atomically, audit and announce an edit (docs/web.md lists every answer)."""
        self._authorize(req)
        file = self._file(name)
        body = req.bounded_stream.read(MAX_BYTES + 1)
        who = f"web:{req.remote_addr}"
        row = self._audit(who, name)
        try:
            self.parts.files.save(file, body)
        except EditRefused as exc:
            self.parts.audit.finish(row, "bad-request")
            log.warning("config edit of %s by %s refused: %s", name, who, exc)
            raise falcon.HTTPBadRequest(title="edit refused", description=str(exc)) from None
        self.parts.audit.finish(row, "ok", len(body))
        log.info("config file %s (%s) edited by %s", name, file.path, who)
        self.parts.on_config_changed(name, who)
        resp.media = {"name": name, "saved": len(body)}

    def _authorize(self, req: falcon.Request) -> None:
        authorizer = self.parts.authorizer
        if not authorizer.enabled:
            raise falcon.HTTPForbidden(
                title="editing is off", description="the collector was started without --web-token-file"
            )
        if not authorizer.allows(req.get_header("Authorization")):
            raise falcon.HTTPUnauthorized(
                title="token needed",
                description="send Authorization: Bearer TOKEN (the token in the collector's --web-token-file)",
                challenges=["Bearer"],
            )

    def _file(self, name: str) -> ConfigFile:
        file = self.parts.files.get(name)
        if file is None:
            raise falcon.HTTPNotFound(title="not found", description=f"no extra config file named {name!r}")
        return file

    def _audit(self, who: str, name: str) -> int:
        try:
            return self.parts.audit.record(who, "", "ConfigEdit", {"name": name}, "")
        except AuditFailed as exc:
            raise falcon.HTTPServiceUnavailable(
                title="audit unavailable", description=f"the collector cannot write its audit trail: {exc}"
            ) from None


def make_app(parts: WebParts) -> falcon.App[falcon.Request, falcon.Response]:
    """The WSGI application serving the page, the API and the stream."""
    app = falcon.App(middleware=[Headers()], cors_enable=False)
    app.req_options.strip_url_path_trailing_slash = True
    assets, source = Assets(), parts.source
    app.add_route("/", assets)
    app.add_route("/static/{name}", assets)
    views: dict[str, Callable[[], Any]] = {
        "nodes": source.nodes,
        "modules": source.modules,
        "distributions": source.distributions,
        "events": source.events,
        "stats": source.summary,
    }
    for name, view in views.items():
        app.add_route(f"/api/{name}", Json(view))
    app.add_route("/api/stream", Stream(parts.feed))
    app.add_route("/api/config", ConfigList(parts))
    app.add_route("/api/config/{name}", ConfigItem(parts))
    return app
