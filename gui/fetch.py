"""``labscope fetch --collector EP NODE:PATH [-o FILE]``: stream a file from a node.

PATH is absolute inside one of the agent's ``--serve-dir`` folders, or
relative to the first one. The file streams through the collector with credit
flow control (bounded memory everywhere), is written to a temporary name next
to the output, checked against the size and SHA-256 the agent sends, and only
then renamed: a failed fetch leaves no file. A progress bar shows on a terminal.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from gui.atomic import atomic_file
from gui.client import Client, RequestFailed
from messages.errors import ConfigError
from messages.keys import add_curve_args, client_keys
from messages.options import Parser, add_collector_arg, positive_float, run_command

PROG = "labscope fetch"


def build_parser() -> Parser:
    """The ``labscope fetch`` argument parser."""
    parser = Parser(
        prog=PROG,
        description="Fetch a file from a node's serve folders through the collector. "
        "The file is verified (size and SHA-256) and renamed into place only when complete.",
    )
    add_collector_arg(parser)
    parser.add_argument(
        "source",
        metavar="NODE:PATH",
        help="node id and path (absolute inside a serve folder, or relative to the agent's first one); "
        "or NODE alone, with PATH after it (a top collector's SITE:NODE: docs/sites.md)",
    )
    parser.add_argument("path", nargs="?", metavar="PATH", help="the path, when the first argument is the node id")
    parser.add_argument("-o", "--output", metavar="FILE", help="where to write (default: PATH's name, here)")
    parser.add_argument(
        "--timeout",
        type=positive_float,
        default=30.0,
        metavar="S",
        help="give up when nothing arrives for S seconds (default 30)",
    )
    add_curve_args(parser)
    return parser


def split_source(text: str) -> tuple[str, str]:
    """``NODE:PATH`` -> (node, path); ConfigError when either part is missing."""
    node, sep, path = text.partition(":")
    if not sep or not node or not path:
        raise ConfigError(f"{text!r} is not NODE:PATH (e.g. node-7:/var/log/run.log)")
    return node, path


def fetch(client: Client, node: str, path: str, output: Path, timeout: float, show: bool) -> int:
    """Stream ``node:path`` into ``output`` through a temporary file; returns the bytes written."""
    written = 0
    with atomic_file(output) as handle, _progress(show, output.name) as advance:
        # stream_views: the file takes memoryviews, so no chunk is copied on the way to it.
        for chunk in client.stream_views("NodeFile", {"node": node, "path": path}, timeout=timeout):
            handle.write(chunk)
            written += len(chunk)
            advance(len(chunk))
    return written


@contextlib.contextmanager
def _progress(show: bool, name: str) -> Iterator[Any]:
    if not show:
        yield lambda n: None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, transient=True) as progress:
        task = progress.add_task(name, total=None)
        yield lambda n: progress.advance(task, n)


def run(argv: list[str]) -> int:
    """Fetch one file; one line on failure."""
    args = build_parser().parse_args(argv)
    node, path = (args.source, args.path) if args.path else split_source(args.source)
    output = Path(args.output) if args.output else Path(Path(path).name or "fetched")
    keys = client_keys(args.curve_server_key, args.curve_secret)
    with Client(args.collector, keys=keys) as client:
        try:
            size = fetch(client, node, path, output, args.timeout, sys.stderr.isatty())
        except RequestFailed as exc:
            sys.stderr.write(f"{PROG}: error: {node}:{path}: {exc.code}: {exc.reason}\n")
            return 1
    sys.stderr.write(f"{PROG}: {node}:{path} -> {output} ({size} bytes, verified)\n")
    return 0


def main(argv: list[str]) -> int:
    """Entry point of ``labscope fetch``."""
    return run_command(PROG, lambda: run(argv))
