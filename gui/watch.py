"""``labscope watch``: print a collector's updates of one type as JSON lines.

Each update is one line ``{"type": ..., "time": ..., "payload": ...}``,
flushed at once so the output can be piped. ``--count N`` stops after N
updates (exit 0); ``--timeout S`` gives up with exit 1 when no update arrives
for S seconds; Ctrl-C and a closed pipe end quietly with exit 0. A TYPE the
collector refuses (no module pushes it) is one line naming it and the known
types, exit 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from gui.client import Client, SubscriptionRefused, Update
from messages.errors import NoUpdates
from messages.jsonify import to_jsonable
from messages.keys import add_curve_args, client_keys
from messages.options import USAGE_EXIT, Parser, add_collector_arg, positive_float, run_command, setup_logging

PROG = "labscope watch"
_POLL = 1.0  # seconds per wait when no --timeout bounds it


def positive_int(text: str) -> int:
    """An argparse ``type=`` for a count of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def build_parser() -> Parser:
    """The argument parser of ``labscope watch``."""
    parser = Parser(prog=PROG, description="Subscribe to one update type and print each update as a JSON line.")
    add_collector_arg(parser)
    parser.add_argument("type", metavar="TYPE", help="update type, e.g. NodeList ('*' for every type)")
    parser.add_argument("--count", type=positive_int, default=None, metavar="N", help="stop after N updates")
    parser.add_argument(
        "--timeout",
        type=positive_float,
        default=None,
        metavar="S",
        help="exit 1 when no update arrives for S seconds (default: wait forever)",
    )
    add_curve_args(parser)
    return parser


def update_line(update: Update) -> str:
    """One JSON line for ``update``."""
    return json.dumps({"type": update.type, "time": update.time, "payload": to_jsonable(update.payload)})


def wait_update(client: Client, args: argparse.Namespace) -> Update:
    """The next update; raises NoUpdates after ``args.timeout`` s of silence."""
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    while True:
        wait = _POLL if deadline is None else max(0.0, deadline - time.monotonic())
        update = client.next_update(wait)
        if update is not None:
            return update
        if deadline is not None and time.monotonic() >= deadline:
            raise NoUpdates(args.type, args.collector, args.timeout)


def run(args: argparse.Namespace) -> int:
    """Subscribe and print updates until the count is reached."""
    printed = 0
    keys = client_keys(args.curve_server_key, args.curve_secret)
    with Client(args.collector, keys=keys) as client:
        client.subscribe([args.type])
        while args.count is None or printed < args.count:
            sys.stdout.write(update_line(wait_update(client, args)) + "\n")
            sys.stdout.flush()
            printed += 1
    return 0


def run_quietly(args: argparse.Namespace) -> int:
    """:func:`run`, with Ctrl-C and a closed output pipe as a normal end (exit 0), a refused TYPE exit 2."""
    try:
        return run(args)
    except SubscriptionRefused as exc:  # the TYPE argument names nothing this collector pushes
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        return USAGE_EXIT
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): keep Python's flush at exit from failing too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def main(argv: list[str]) -> int:
    """Entry point of ``labscope watch``."""
    args = build_parser().parse_args(argv)
    setup_logging("warning")
    return run_command(PROG, lambda: run_quietly(args))
