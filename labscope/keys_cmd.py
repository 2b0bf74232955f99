"""``labscope keys``: make and show CURVE key pairs (docs/security.md, "Keys and clients").

::

    labscope keys generate DIR NAME [--nodes "n1 n2"]   # DIR/NAME.key and DIR/NAME.key_secret
    labscope keys show FILE                             # public key, fingerprint, name, metadata

``generate`` never overwrites a key file (exit 2 with one line); the secret
file is written with mode 0600.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from messages.keys import Certificate, generate, load
from messages.options import Parser, run_command

__all__ = ["build_parser", "main"]

PROG = "labscope keys"


def build_parser() -> Parser:
    """The argument parser of ``labscope keys`` and its two actions."""
    parser = Parser(
        prog=PROG,
        description="Make and show CURVE key pairs for the collector, its agents and its clients. "
        "A pair is NAME.key (public: copy it into the collector's allow folder, or give the "
        "collector's to every client with --curve-server-key) and NAME.key_secret (secret: "
        "mode 0600, it never leaves its machine).",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", parser_class=Parser)
    actions.required = True
    make = actions.add_parser(
        "generate",
        help="write DIR/NAME.key and DIR/NAME.key_secret",
        description="Write a new key pair DIR/NAME.key and DIR/NAME.key_secret (pyzmq's certificate "
        "format; the secret file mode 0600) and print both paths and the fingerprint. Never overwrites. "
        "For an agent, NAME is its node id: the collector lets that key claim only that node id "
        "(and those listed with --nodes).",
    )
    make.add_argument("dir", metavar="DIR", help="the folder to write into (created when missing)")
    make.add_argument("name", metavar="NAME", help="the key's name: an agent's node id, or a person or host")
    make.add_argument(
        "--nodes",
        metavar="IDS",
        default="",
        help='more node ids an agent with this key may claim, separated by spaces or commas: "n1 n2"',
    )
    show = actions.add_parser(
        "show",
        help="print a key file's public key, fingerprint, name and metadata",
        description="Print a certificate's public key, its fingerprint (as the collector logs it), "
        "its name and its metadata (nodes). Takes NAME.key or NAME.key_secret; never prints a secret key.",
    )
    show.add_argument("file", metavar="FILE", help="a NAME.key or NAME.key_secret file")
    return parser


def describe(cert: Certificate) -> list[str]:
    """The lines ``keys show`` prints for ``cert`` (no secret key among them)."""
    lines = [
        f"file:        {cert.path}",
        f"name:        {cert.name}",
        f"public key:  {cert.public.decode()}",
        f"fingerprint: {cert.fingerprint}",
        f"secret:      {'yes (keep this file private)' if cert.secret else 'no (public certificate)'}",
    ]
    lines += [f"{key + ':':<12} {value}" for key, value in sorted(cert.metadata.items())]
    if len(cert.nodes()) > 1 or "nodes" in cert.metadata:
        lines.append(f"node ids:    {' '.join(cert.nodes())}")
    return lines


def _generate(args: argparse.Namespace) -> int:
    nodes = tuple(args.nodes.replace(",", " ").split())
    cert = generate(Path(args.dir), args.name, nodes)
    public = cert.path.with_name(cert.name + ".key")
    sys.stdout.write(
        f"public:      {public}\nsecret:      {cert.path} (mode 0600: keep it on this machine)\n"
        f"fingerprint: {cert.fingerprint}\n"
    )
    return 0


def _show(args: argparse.Namespace) -> int:
    sys.stdout.write("\n".join(describe(load(args.file))) + "\n")
    return 0


def main(argv: list[str]) -> int:
    """Entry point of ``labscope keys``; returns the exit status."""
    args = build_parser().parse_args(argv)
    action = _generate if args.action == "generate" else _show
    return run_command(PROG, lambda: action(args))
