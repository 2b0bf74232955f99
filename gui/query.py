"""``labscope query``: send one request to a collector and print the answer.

The response's payload is printed as JSON (protobuf fields named as in the
.proto file, bytes as base64); ``--raw`` writes the payload bytes untouched.
An ERROR answer or no answer in time is one line on stderr and exit status 1;
a bad flag, endpoint or parameter is one line and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys

from gui.client import Client, Response
from messages.jsonify import to_jsonable
from messages.keys import add_curve_args, client_keys
from messages.options import Parser, add_collector_arg, positive_float, run_command, setup_logging

PROG = "labscope query"


def build_parser() -> Parser:
    """The argument parser of ``labscope query``."""
    parser = Parser(prog=PROG, description="Send one request to a collector and print the response as JSON.")
    add_collector_arg(parser)
    parser.add_argument("type", metavar="TYPE", help="request type, e.g. NodeList or CollectorStats")
    parser.add_argument("params", nargs="*", metavar="key=value", help="request parameters, e.g. node=n1")
    parser.add_argument("--raw", action="store_true", help="write the payload bytes untouched instead of JSON")
    parser.add_argument(
        "--timeout", type=positive_float, default=10.0, metavar="S", help="seconds to wait for the answer (default 10)"
    )
    add_curve_args(parser)
    return parser


def parse_params(parser: Parser, items: list[str]) -> dict[str, str]:
    """Turn ``key=value`` words into a dict; a word without a key is a usage error (exit 2)."""
    params: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"parameter {item!r} is not key=value")
        params[key] = value
    return params


def write_response(response: Response, raw: bool) -> None:
    """Print ``response`` as indented JSON, or its payload bytes with ``raw``."""
    if raw:
        sys.stdout.buffer.write(response.data)
        sys.stdout.buffer.flush()
        return
    sys.stdout.write(json.dumps(to_jsonable(response.payload), indent=2) + "\n")
    sys.stdout.flush()


def run(args: argparse.Namespace, params: dict[str, str]) -> int:
    """Send the request and print the answer; errors propagate as LabscopeErrors."""
    keys = client_keys(args.curve_server_key, args.curve_secret)
    with Client(args.collector, keys=keys) as client:
        response = client.request(args.type, params, timeout=args.timeout)
    write_response(response, args.raw)
    return 0


def main(argv: list[str]) -> int:
    """Entry point of ``labscope query``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    params = parse_params(parser, args.params)
    setup_logging("warning")
    return run_command(PROG, lambda: run(args, params))
