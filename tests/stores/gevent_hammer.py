"""Run as a script: a store used from gevent greenlets (in a process patched as the collector patches it)
and from real OS threads at once; prints a JSON summary. ``python -m tests.stores.gevent_hammer BACKEND ARGS_JSON``."""

from __future__ import annotations

from gevent import monkey

monkey.patch_all(thread=False, queue=False)  # as collector/cli.py does

import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402

from collector.audit_table import AuditRow  # noqa: E402
from collector.stores import open_store  # noqa: E402

GREENLETS = 4
THREADS = 4
EACH = 30


def work(store, who: str, errors: list[str]) -> None:
    try:
        for i in range(EACH):
            store.events.append({"time": time.time(), "node": who, "kind": "k", "message": f"{who} {i}", "attrs": {}})
            store.blobs.put("shared", f"{who}:{i}".encode())
            store.metadata.put(f"{who}/{i}", str(i))
            store.audit.insert(AuditRow(0, time.time(), who, "", "Ping", {}, who))
            gevent.sleep(0)
    except Exception as exc:  # reported in the summary
        errors.append(f"{who}: {type(exc).__name__}: {exc}")


def ticker(stop: threading.Event, ticks: list[float]) -> None:
    """A greenlet that must keep running while the others wait on the store: the loop is not blocked."""
    while not stop.is_set():
        ticks.append(time.monotonic())
        gevent.sleep(0.01)


def main() -> None:
    backend, args = sys.argv[1], json.loads(sys.argv[2])
    store = open_store(backend, args, Path(tempfile.mkdtemp()))
    errors: list[str] = []
    stop, ticks = threading.Event(), []
    tick = gevent.spawn(ticker, stop, ticks)
    threads = [threading.Thread(target=work, args=(store, f"thread{t}", errors)) for t in range(THREADS)]
    for thread in threads:
        thread.start()
    gevent.joinall([gevent.spawn(work, store, f"green{g}", errors) for g in range(GREENLETS)])
    while any(t.is_alive() for t in threads):
        gevent.sleep(0.05)
    stop.set()
    tick.join()
    store.flush()
    total = (GREENLETS + THREADS) * EACH
    summary = {
        "errors": errors,
        "total": total,
        "events": len(store.events.recent(limit=total + 10)),
        "versions": [v.version for v in store.blobs.versions("shared")],
        "metadata": len(store.metadata.keys()),
        "audit": len(store.audit.select(0.0, "", total + 10)),
        "ticks": len(ticks),
    }
    store.close()
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
