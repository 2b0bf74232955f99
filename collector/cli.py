"""``labscope collector``: flags and config fill a CollectorTicket; the collector runs in this thread until stopped."""

from __future__ import annotations

import logging


def main(argv: list[str]) -> int:
    """Run the collector; exit 2 on a usage or module-set error, 1 on other failures."""
    # gevent patches the standard library first thing, and only in this entry point. Threads, their
    # locks and queue stay real: each distribution runs in an OS thread of its own (collector/dist_runner.py),
    # and libraries that start threads (MQTT, database clients) must get real ones. The collector's own
    # code and the built-in modules never rely on patching (they use gevent's primitives explicitly:
    # an embedded collector runs unpatched, collector/embed.py); the patch is for drop-in modules written
    # for a patched process (a plain time.sleep or socket that must yield to the loop).
    from gevent import monkey

    monkey.patch_all(thread=False, queue=False)

    from messages.options import run_command

    return run_command("labscope collector", lambda: _run(argv))


def _run(argv: list[str]) -> int:
    from collector.config import parse_args
    from collector.embed import Collector
    from collector.gctune import freeze_startup, tune_for_ingest
    from collector.malloc_tune import keep_chunk_buffers
    from messages.codec import check_protobuf_backend
    from messages.options import setup_logging

    ticket = parse_args(argv)
    setup_logging(ticket.log_level)
    check_protobuf_backend(logging.getLogger("collector"))
    tune_for_ingest()
    keep_chunk_buffers()
    return Collector(ticket).run(ready=freeze_startup)
