"""Helpers for the web page's tests: a collector with --web, plain HTTP, a server-sent events reader."""

from __future__ import annotations

import json
import secrets
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import CollectorProcess, ProcessGroup


def free_port() -> int:
    """A TCP port nobody listens on right now, on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class WebCollector:
    """A collector process serving its web page, with its token and extra config files."""

    process: CollectorProcess
    url: str
    token: str
    files: dict[str, Path]

    def get(self, path: str) -> Any:
        """``GET /path`` answered 200 with JSON: the value."""
        with urllib.request.urlopen(self.url + path, timeout=10) as answer:
            return json.loads(answer.read())

    def text(self, path: str) -> str:
        """``GET /path`` answered 200: the body as text."""
        with urllib.request.urlopen(self.url + path, timeout=10) as answer:
            return str(answer.read().decode())

    def put(self, path: str, body: bytes, token: str | None = None) -> tuple[int, Any]:
        """``PUT /path`` with ``body`` (and ``Authorization: Bearer token`` when given): (status, JSON body)."""
        request = urllib.request.Request(self.url + path, data=body, method="PUT")
        if token is not None:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")


def web_collector(procs: ProcessGroup, tmp_path: Path, *extra: str, port: int = 0) -> WebCollector:
    """Start a collector with ``--web 127.0.0.1:PORT``, a token file and two extra config files."""
    token = secrets.token_urlsafe(24)
    token_file = tmp_path / "web.token"
    token_file.write_text(token + "\n")
    files = {"lab.toml": tmp_path / "lab.toml", "collector.toml": tmp_path / "collector.toml"}
    files["lab.toml"].write_text('[lab]\nname = "bench"\n')
    files["collector.toml"].write_text("[collector]\nnode_timeout = 5.0\n")
    process = procs.collector(
        "--web",
        f"127.0.0.1:{port}",
        "--web-token-file",
        str(token_file),
        "--config",
        str(files["collector.toml"]),
        "--extra-config-file",
        str(files["lab.toml"]),
        "--extra-config-file",
        str(files["collector.toml"]),
        *extra,
    )
    info = json.loads((process.data_dir / "collector.json").read_text())
    return WebCollector(process, info["web"], token, files)


def read_events(url: str, until: Any, timeout: float = 15) -> list[Any]:
    """Read ``event: nodes`` payloads from the SSE stream at ``url`` until ``until(payload)``; returns them all."""
    seen: list[Any] = []
    with urllib.request.urlopen(url, timeout=timeout) as stream:
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        event = ""
        for raw in stream:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                event = line[len("event: ") :]
            elif line.startswith("data: ") and event == "nodes":
                seen.append(json.loads(line[len("data: ") :]))
                if until(seen[-1]):
                    return seen
    raise AssertionError(f"the stream ended before the expected event; saw {seen!r}")
