"""Generate docs/protocol.md's reference tables from the code: request and update types, counters.

The request and update types come from the descriptions the code itself
carries (``request_specs`` / ``update_spec`` of the built-in modules and agent
handlers, the collector's own ``COLLECTOR_REQUESTS``; see messages/specs.py),
the counters from ``collector.counters.COUNTERS``. Each table sits in
docs/protocol.md between ``<!-- begin generated: NAME -->`` and
``<!-- end generated -->``; ``make docs`` (``python -m labscope.protodoc
docs/protocol.md``) rewrites them, ``--check`` exits 1 when they are stale, and
tests/test_protocol_doc.py fails on a stale doc.

This lives in ``labscope/``, the one package allowed to know collector,
modules and node_agent at once.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from collector import loader
from collector.config import CollectorConfig
from collector.counters import COUNTERS
from collector.server import COLLECTOR_REQUESTS, COLLECTOR_UPDATES
from messages.specs import CHUNKS, ON_CHANGE, PROTOBUF, Param, Payload, RequestSpec, UpdateSpec
from node_agent.handlers import BUILTIN_HANDLERS

__all__ = ["BLOCKS", "Answerer", "answerers", "main", "module_answerers", "render", "rewrite", "stale_blocks"]

DOC = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"
BEGIN = "<!-- begin generated: {name} -->"
END = "<!-- end generated -->"
DEFAULT_INTERVAL = CollectorConfig.update_interval


@dataclass(frozen=True)
class Answerer:
    """Who answers some request types and pushes at most one update type, as the docs name it."""

    who: str
    requests: dict[str, RequestSpec]
    update: tuple[str, UpdateSpec, float | None] | None = None  # type, spec, the class's update_interval


def answerers() -> list[Answerer]:
    """The collector itself, every built-in module that describes itself, and the agent's built-in handlers."""
    builtin = [c for c in loader.discover([]) if not c.source.startswith("entry point")]
    return [
        *collector_answerers(),
        *module_answerers(builtin),
        *(Answerer("agent (forwarded by `node=ID`)", dict(h.request_specs)) for h in BUILTIN_HANDLERS),
    ]


def collector_answerers() -> list[Answerer]:
    """The collector itself: its own requests with its first update type, then one per further update type."""
    updates: list[tuple[str, UpdateSpec, float | None]] = [(n, s, None) for n, s in COLLECTOR_UPDATES.items()]
    found = [Answerer("collector", dict(COLLECTOR_REQUESTS), updates[0] if updates else None)]
    return found + [Answerer("collector", {}, update) for update in updates[1:]]


def module_answerers(candidates: Iterable[loader.Candidate]) -> list[Answerer]:
    """The modules among ``candidates`` that describe themselves; classic modules are left out."""
    found = []
    for candidate in candidates:
        cls = candidate.cls
        if cls is None:
            continue  # a broken file is the loader's to report
        update = None
        if cls.update_spec is not None and candidate.updatetype:
            update = (candidate.updatetype, cls.update_spec, cls.update_interval)
        if cls.request_specs or update:
            found.append(Answerer(f"module `{candidate.name}`", dict(cls.request_specs), update))
    return found


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _param(param: Param) -> str:
    need = " (required)" if param.required else ""
    return f"`{param.name}`{need}: {param.meaning}"


def _payload(payload: Payload) -> str:
    if payload.encoding == PROTOBUF:
        text = f"PROTOBUF `{payload.shape}`"
    elif payload.encoding == CHUNKS:
        text = f"CHUNKs (RAW): {payload.shape}"
    else:
        text = f"{payload.encoding}: {payload.shape}" if payload.shape else payload.encoding
    return f"{text} ({payload.when})" if payload.when else text


def _sent(spec: UpdateSpec, interval: float | None) -> str:
    every = (
        f"every `update_interval` (default {DEFAULT_INTERVAL:g} s)"
        if interval is None
        else "right after the ingest pass that changed it"
        if interval == 0
        else f"every {interval:g} s"
    )
    if spec.sent == ON_CHANGE:
        return f"on change: checked {every}" if interval != 0 else f"on change: {every}"
    return f"periodic: {every}"


def _request_rows(found: Iterable[Answerer]) -> list[str]:
    rows = []
    for answerer in found:
        for name, spec in answerer.requests.items():
            params = "<br>".join(_param(p) for p in spec.params) or "—"
            answer = "<br>".join(_payload(p) for p in spec.answers)
            rows.append(
                (name, f"| `{name}` | {answerer.who} | {_cell(params)} | {_cell(answer)} | {_cell(spec.summary)} |")
            )
    return [row for _, row in sorted(rows)]


def _update_rows(found: Iterable[Answerer]) -> list[str]:
    rows = []
    for answerer in found:
        if answerer.update is None:
            continue
        name, spec, interval = answerer.update
        rows.append(
            (
                name,
                f"| `{name}` | {answerer.who} | {_cell(_payload(spec.payload))} | "
                f"{_cell(_sent(spec, interval))} | {_cell(spec.summary)} |",
            )
        )
    return [row for _, row in sorted(rows)]


def render_types() -> str:
    """The markdown of the request-types block: one table of requests, one of updates."""
    found = answerers()
    return "\n".join(
        [
            "Requests (`REQUEST{type, params}`; every answer echoes `type` and `request_id`):",
            "",
            "| type | answered by | parameters | answer payload | what it answers |",
            "|---|---|---|---|---|",
            *_request_rows(found),
            "",
            "Updates (`UPDATE{type, time, payload}` to subscribers; `CollectorInfo.update_intervals` has the "
            "running intervals):",
            "",
            "| type | pushed by | payload | sent | what it carries |",
            "|---|---|---|---|---|",
            *_update_rows(found),
        ]
    )


def render_counters() -> str:
    """The markdown of the counters block: every counter CollectorStats may return."""
    rows = [f"| `{name}` | {where} | {_cell(meaning)} |" for name, (where, meaning) in COUNTERS.items()]
    return "\n".join(["| counter | where | counts |", "|---|---|---|", *rows])


BLOCKS = {"request-types": render_types, "counters": render_counters}


def render(name: str) -> str:
    """The generated markdown of block ``name``."""
    return BLOCKS[name]()


def _pattern(name: str) -> re.Pattern[str]:
    return re.compile(re.escape(BEGIN.format(name=name)) + r"\n(.*?)\n?" + re.escape(END), re.DOTALL)


def rewrite(text: str) -> str:
    """``text`` with every generated block replaced by what the code generates now.

    Raises ValueError when a block's markers are missing.
    """
    for name in BLOCKS:
        found = _pattern(name).search(text)
        if found is None:
            raise ValueError(f"no '{BEGIN.format(name=name)}' ... '{END}' block")
        block = f"{BEGIN.format(name=name)}\n{render(name)}\n{END}"
        text = text[: found.start()] + block + text[found.end() :]
    return text


def stale_blocks(text: str) -> list[str]:
    """Names of the generated blocks whose text differs from what the code generates."""
    stale = []
    for name in BLOCKS:
        found = _pattern(name).search(text)
        if found is None or found.group(1).strip("\n") != render(name):
            stale.append(name)
    return stale


def main(argv: list[str] | None = None) -> int:
    """``python -m labscope.protodoc [--check] [DOC]``: rewrite (or check) the generated blocks."""
    parser = argparse.ArgumentParser(prog="python -m labscope.protodoc", description=__doc__.splitlines()[0])
    parser.add_argument("doc", nargs="?", type=Path, default=DOC, help="the protocol document (default: %(default)s)")
    parser.add_argument("--check", action="store_true", help="exit 1 when a generated block is stale")
    args = parser.parse_args(argv)
    text = args.doc.read_text()
    if args.check:
        stale = stale_blocks(text)
        if stale:
            sys.stderr.write(f"{args.doc}: stale generated block(s) {', '.join(stale)}: run make docs\n")
        return 1 if stale else 0
    try:
        fresh = rewrite(text)
    except ValueError as exc:
        sys.stderr.write(f"{args.doc}: {exc}\n")
        return 2
    if fresh != text:
        args.doc.write_text(fresh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
