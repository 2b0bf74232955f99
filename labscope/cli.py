"""``labscope SUBCOMMAND ...``: find the subcommand and hand it the rest of the arguments.

Each entry names the module whose ``main(argv) -> int`` runs the subcommand; the
module is imported only when that subcommand is chosen.
"""

from __future__ import annotations

import importlib
import sys

from messages import __version__

# name -> (module with main(argv), one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "collector": ("collector.cli", "run the collector: ingest agents' reports, serve clients"),
    "agent": ("node_agent.cli", "run a node agent: stream this node's reports to a collector"),
    "query": ("gui.query", "send one request to a collector and print the response as JSON"),
    "watch": ("gui.watch", "print a collector's updates of one type as JSON lines"),
    "demo": ("labscope.demo", "start a collector and three local agents and show them live"),
    "gui": ("gui.gui_cmd", "the desktop GUI: nodes, plots, events and every module's updates"),
    "top": ("gui.top", "the nodes of a collector as a live table in the terminal"),
    "fetch": ("gui.fetch", "fetch a file from a node through the collector, verified"),
    "simulate": ("node_agent.simulate", "simulate many agents in one process to size a collector"),
    "bench": ("labscope.bench", "measure throughput, latency and cost against raw pyzmq on this machine"),
    "keys": ("labscope.keys_cmd", "make and show CURVE key pairs for the collector, agents and clients"),
    "install-units": ("labscope.units_cmd", "print or write the systemd units of the collector and the agents"),
}


def usage() -> str:
    """The top-level help text listing every subcommand."""
    lines = [
        "usage: labscope SUBCOMMAND [options]   (labscope SUBCOMMAND --help for its options)",
        "",
        "labscope watches a lab testbed live: node agents stream reports to a collector of",
        "drop-in aggregator modules; clients query it and watch its updates.",
        "",
        "subcommands:",
    ]
    lines += [f"  {name:<13} {text}" for name, (_, text) in SUBCOMMANDS.items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Dispatch to a subcommand; unknown or missing subcommands exit 2 with one line."""
    args = sys.argv[1:] if argv is None else argv
    if not args:
        sys.stderr.write(usage())
        return 2
    if args[0] in ("-h", "--help", "help"):
        sys.stdout.write(usage())
        return 0
    if args[0] == "--version":
        sys.stdout.write(f"labscope {__version__}\n")
        return 0
    if args[0] not in SUBCOMMANDS:
        sys.stderr.write(
            f"labscope: error: unknown subcommand {args[0]!r}; choose from {', '.join(SUBCOMMANDS)} "
            "(see 'labscope --help')\n"
        )
        return 2
    module = importlib.import_module(SUBCOMMANDS[args[0]][0])
    return int(module.main(args[1:]))
