"""``labscope demo``: a collector and a few local agents in a temporary folder, shown live.

The demo starts ``labscope collector`` on random loopback ports, waits for its
``collector.json``, starts ``--agents`` agents against it and shows a table of
the nodes (gui.table) fed by the client's NodeList and SystemStatsSummary
updates: a live display on a terminal, plain lines otherwise. It stops on
Ctrl-C (or SIGTERM), or after ``--duration`` seconds, then prints a summary.

Everything it started is stopped with it (SIGTERM, a bounded wait, then
SIGKILL) and the temporary folder is removed, also on errors. Children write
to log files in that folder; when one dies early its last log lines are shown
and the demo exits 1.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from rich.console import Console

from gui.client import Client, Update
from gui.top import TopState, View, open_view, take_updates
from labscope.children import Children, DemoFailure, labscope_args, local_collector_args, wait_collector
from messages import NodeList
from messages.errors import LabscopeError
from messages.options import Parser, positive_float, run_command, setup_logging

PROG = "labscope demo"
REFRESH = 1.0  # seconds between redraws of the live table
NODE_LIST_STALE = 3.0  # ask for NodeList when no NodeList update came for this long
UPDATE_TYPES = ("NodeList", "SystemStatsSummary")

log = logging.getLogger(__name__)


def start_testbed(children: Children, folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Start the collector and the agents; returns the collector's endpoints."""
    data_dir = folder / "collector"
    collector = children.start(
        "collector",
        local_collector_args(data_dir),
    )
    endpoints = wait_collector(collector, data_dir)
    for k in range(1, args.agents + 1):
        children.start(
            f"agent-{k}",
            labscope_args(
                "agent",
                "--collector",
                endpoints["agents"],
                "--node-id",
                f"demo-node-{k}",
                "--data-dir",
                str(folder / f"agent-{k}"),
                "--interval",
                f"{args.interval:g}",
            ),
        )
    for child in children.children:
        say(f"started {child.name} (pid {child.popen.pid})")
    say(f"collector: agents {endpoints['agents']}, clients {endpoints['clients']}; files in {folder}")
    return endpoints


def say(line: str) -> None:
    """One line of the demo's own on stdout."""
    sys.stdout.write(f"{PROG}: {line}\n")
    sys.stdout.flush()


@dataclass
class DemoState(TopState):
    """What ``top`` shows, plus what the demo's summary needs."""

    seen: set[str] = field(default_factory=set)
    ever_live: set[str] = field(default_factory=set)
    node_list_at: float = 0.0  # monotonic time of the last NodeList
    watched: float = 0.0  # seconds the testbed was shown

    def apply(self, update: Update) -> None:
        """Take in one UPDATE, remembering every node it names."""
        if isinstance(update.payload, NodeList):
            self.take_node_list(update.payload)
        else:
            super().apply(update)
            if self.summary is not None:
                self.seen.update(item.node for item in self.summary.nodes)

    def take_node_list(self, node_list: NodeList) -> None:
        """Remember the latest NodeList and every node it names."""
        self.node_list = node_list
        self.node_list_at = time.monotonic()
        self.seen.update(status.node for status in node_list.nodes)
        self.ever_live.update(status.node for status in node_list.nodes if status.status == "live")


def refresh_node_list(client: Client, state: DemoState) -> None:
    """Ask for NodeList when its updates have gone quiet (e.g. nothing changed)."""
    if time.monotonic() - state.node_list_at < NODE_LIST_STALE:
        return
    try:
        response = client.request("NodeList", timeout=2.0)
    except LabscopeError as exc:
        log.debug("NodeList request failed: %s", exc)
        state.node_list_at = time.monotonic()  # do not retry at once
        return
    if isinstance(response.payload, NodeList):
        state.take_node_list(response.payload)


def watch(client: Client, children: Children, state: DemoState, view: View, duration: float | None) -> None:
    """Show the testbed with ``labscope top``'s view until ``duration`` s have passed or Ctrl-C."""
    start = time.monotonic()
    end = None if duration is None else start + duration
    next_draw = 0.0
    try:
        while end is None or time.monotonic() < end:
            children.check()
            remaining = REFRESH if end is None else end - time.monotonic()
            take_updates(client, state, max(0.0, min(0.2, remaining)))
            if time.monotonic() >= next_draw:
                refresh_node_list(client, state)
                state.observe(client)
                view.show(state)
                next_draw = time.monotonic() + REFRESH
    except KeyboardInterrupt:
        pass
    state.watched = time.monotonic() - start


def summary_lines(state: DemoState) -> list[str]:
    """The end-of-demo summary: nodes seen, live at the end, each node's last sequence number."""
    nodes = list(state.node_list.nodes) if state.node_list else []
    live = [status.node for status in nodes if status.status == "live"]
    seen = sorted(state.seen)
    lines = [
        f"summary after watching for {state.watched:.1f} s",
        f"nodes seen: {len(seen)} ({', '.join(seen) or 'none'})",
        f"live at the end: {len(live)} ({', '.join(sorted(live)) or 'none'})",
    ]
    for status in sorted(nodes, key=lambda s: s.node):
        lines.append(
            f"  {status.node:<16} {status.status:<5} reports up to seq {status.last_seq}, "
            f"gaps {status.gaps}, reconnects {status.reconnects}"
        )
    listed = {status.node for status in nodes}
    lines += [f"  {node:<16} gone  (no longer listed)" for node in seen if node not in listed]
    return lines


def final_state(client: Client, state: DemoState) -> None:
    """One last NodeList, so the summary reflects the end and not the last update."""
    state.node_list_at = 0.0
    refresh_node_list(client, state)


def show_testbed(endpoints: dict[str, Any], children: Children, args: argparse.Namespace) -> DemoState:
    """Connect a client, show the live table, and return what was learned."""
    state = DemoState(str(endpoints["clients"]))
    with Client(str(endpoints["clients"])) as client:
        client.hello(timeout=10.0)
        client.subscribe(UPDATE_TYPES)
        with open_view(Console()) as view:
            watch(client, children, state, view, args.duration)
        children.check()
        final_state(client, state)
    return state


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C, so the children are stopped and the folder removed."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(args: argparse.Namespace) -> int:
    """Run the demo; returns 0, or 1 after printing a child's last log lines."""
    try:
        with sigterm_as_interrupt(), tempfile.TemporaryDirectory(prefix="labscope-demo-") as tmp:
            with Children(Path(tmp)) as children:
                endpoints = start_testbed(children, Path(tmp), args)
                state = show_testbed(endpoints, children, args)
    except DemoFailure as exc:
        sys.stderr.write(f"{PROG}: error: {exc}\n" + "".join(f"    {line}\n" for line in exc.tail))
        return 1
    for line in summary_lines(state):
        say(line)
    return 0


def build_parser() -> Parser:
    """The argument parser of ``labscope demo``."""
    parser = Parser(
        prog=PROG,
        description="Start a collector and local agents in a temporary folder and show the nodes live until Ctrl-C.",
    )
    parser.add_argument(
        "--duration",
        type=positive_float,
        default=None,
        metavar="N",
        help="stop by itself after N seconds and print a summary",
    )
    parser.add_argument("--agents", type=_agent_count, default=3, metavar="K", help="agents to start (default 3)")
    parser.add_argument(
        "--interval",
        type=positive_float,
        default=1.0,
        metavar="S",
        help="seconds between the agents' samples (default 1)",
    )
    return parser


def _agent_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= 50:
        raise argparse.ArgumentTypeError(f"{text!r} must be between 1 and 50")
    return value


def main(argv: list[str]) -> int:
    """Entry point of ``labscope demo``."""
    args = build_parser().parse_args(argv)
    setup_logging("warning")
    return run_command(PROG, lambda: run(args))
