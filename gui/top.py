"""``labscope top``: a collector's nodes as a live table in the terminal, for operators on SSH.

The table is the GUI's nodes view (gui/table.py), fed by the same
subscriptions (NodeList + SystemStatsSummary) and redrawn in place with
rich's Live display; its title names the collector's alias and the
connection state. When the output is not a terminal it prints plain lines
instead, one block per refresh. It never exits because the collector went
away: it says so and waits for it. Ctrl-C ends it (exit 0), as does
``--duration``. A collector that pushes only one of the two update types
(a module disabled) is shown with what it has, and a line says what is missing.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

from rich.console import Console
from rich.live import Live
from rich.table import Table

from gui.client import Client, SubscriptionRefused, Update
from gui.table import node_rows, node_table, plain_lines
from messages import NodeList, SystemStatsSummary
from messages.keys import add_curve_args, client_keys
from messages.options import Parser, add_collector_arg, positive_float, run_command, setup_logging

__all__ = ["TopState", "build_parser", "main", "render", "title"]

PROG = "labscope top"
UPDATE_TYPES = ("NodeList", "SystemStatsSummary")
DEFAULT_REFRESH = 1.0

log = logging.getLogger(__name__)


@dataclass
class TopState:
    """What ``top`` shows: the latest payloads and the connection."""

    endpoint: str
    alias: str = ""
    connected: bool = False
    ever_connected: bool = False
    node_list: NodeList | None = None
    summary: SystemStatsSummary | None = None
    notice: str = ""

    def apply(self, update: Update) -> None:
        """Take in one UPDATE (other types are ignored)."""
        if isinstance(update.payload, NodeList):
            self.node_list = update.payload
        elif isinstance(update.payload, SystemStatsSummary):
            self.summary = update.payload

    def observe(self, client: Client) -> None:
        """Read the connection state and the collector's alias off the client."""
        self.connected = client.connected()
        self.ever_connected = self.ever_connected or self.connected
        if client.info is not None and client.info.alias:
            self.alias = client.info.alias


def connection_word(state: TopState) -> str:
    """``connected``, ``reconnecting`` or ``connecting`` (nothing answered yet)."""
    if state.connected:
        return "connected"
    return "reconnecting" if state.ever_connected else "connecting"


def title(state: TopState) -> str:
    """The table's title: the collector and the connection state."""
    name = f"{state.alias} ({state.endpoint})" if state.alias else state.endpoint
    return f"{name} - {connection_word(state)}"


def render(state: TopState, now: float | None = None) -> Table:
    """The table to show now; its caption has the clock (or says it waits for nodes)."""
    table = node_table(state.node_list, state.summary, now=now, title=title(state))
    if not table.caption:
        clock = time.strftime("%H:%M:%S", time.localtime(time.time() if now is None else now))
        table.caption = f"labscope top - {clock} - Ctrl-C to stop"
    if state.notice:
        table.caption = f"{table.caption}\n{state.notice}"
    return table


class View(Protocol):
    """Where top shows the table."""

    def show(self, state: TopState) -> None:
        """Show the current state."""


class LiveView:
    """Redraws the table in place (a terminal)."""

    def __init__(self, live: Live) -> None:
        self.live = live

    def show(self, state: TopState) -> None:
        """Redraw now."""
        self.live.update(render(state), refresh=True)


class PlainView:
    """Prints one block of plain lines per refresh (output that is not a terminal)."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def show(self, state: TopState) -> None:
        """Print the title and one line per node."""
        lines = plain_lines(node_rows(state.node_list, state.summary)) or ["(waiting for nodes)"]
        clock = time.strftime("%H:%M:%S")
        notice = [state.notice] if state.notice else []
        self.console.out("\n".join([f"[{clock}] {title(state)}", *notice, *lines]), highlight=False)
        self.console.file.flush()


@contextmanager
def open_view(console: Console) -> Iterator[View]:
    """A LiveView on a terminal, a PlainView otherwise."""
    if not console.is_terminal:
        yield PlainView(console)
        return
    with Live(console=console, auto_refresh=False, transient=False, screen=False) as live:
        yield LiveView(live)


def take_updates(client: Client, state: TopState, timeout: float) -> None:
    """Wait up to ``timeout`` s for updates and apply every one that is ready."""
    try:
        update = client.next_update(timeout)
        while update is not None:
            state.apply(update)
            update = client.next_update(0)
    except SubscriptionRefused as refused:
        keep_known(client, state, refused)


def keep_known(client: Client, state: TopState, refused: SubscriptionRefused) -> None:
    """Subscribe to the types the collector does push and say which it lacks; with none left, raise."""
    rest = [t for t in refused.types if t not in refused.unknown]
    if not refused.unknown or not rest:
        raise refused
    state.notice = f"{refused.reason}: showing the rest"
    client.subscribe(rest)


def watch(client: Client, view: View, state: TopState, refresh: float, duration: float | None) -> None:
    """Show the nodes every ``refresh`` s until ``duration`` s have passed (forever when None)."""
    end = None if duration is None else time.monotonic() + duration
    next_draw = 0.0
    while end is None or time.monotonic() < end:
        wait = max(0.0, next_draw - time.monotonic())
        if end is not None:
            wait = min(wait, max(0.0, end - time.monotonic()))
        take_updates(client, state, wait)
        if time.monotonic() >= next_draw:
            state.observe(client)
            view.show(state)
            next_draw = time.monotonic() + refresh


def run(args: argparse.Namespace, console: Console | None = None) -> int:
    """Connect, subscribe and show the nodes; Ctrl-C ends quietly."""
    state = TopState(args.collector)
    keys = client_keys(args.curve_server_key, args.curve_secret)
    with Client(args.collector, keys=keys) as client:
        client.subscribe(UPDATE_TYPES)  # also says HELLO, so the alias arrives with the first answer
        try:
            with open_view(console or Console()) as view:
                watch(client, view, state, args.refresh, args.duration)
        except KeyboardInterrupt:
            pass
    return 0


def build_parser() -> Parser:
    """The argument parser of ``labscope top``."""
    parser = Parser(
        prog=PROG,
        description="Show a collector's nodes as a live table in the terminal "
        "(plain lines when the output is not a terminal). Ctrl-C stops it.",
    )
    add_collector_arg(parser)
    parser.add_argument(
        "--refresh",
        type=positive_float,
        default=DEFAULT_REFRESH,
        metavar="S",
        help=f"seconds between redraws (default {DEFAULT_REFRESH:g})",
    )
    parser.add_argument(
        "--duration",
        type=positive_float,
        default=None,
        metavar="S",
        help="stop by itself after S seconds (default: until Ctrl-C)",
    )
    add_curve_args(parser)
    return parser


def main(argv: list[str]) -> int:
    """Entry point of ``labscope top``."""
    args = build_parser().parse_args(argv)
    setup_logging("warning")
    return run_command(PROG, lambda: run(args))
