"""Stores used from gevent greenlets and OS threads at once, in a process patched as the collector's is."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest

from tests.conftest import REPO
from tests.stores.conftest import PG_DSN, drop_schema, need_postgresql

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql", "memory"])
def test_greenlets_and_threads_share_a_store(backend: str) -> None:
    args: dict[str, str] = {}
    if backend == "postgresql":
        need_postgresql()
        args = {"dsn": PG_DSN, "schema": f"labscope_test_{uuid.uuid4().hex[:12]}"}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "tests.stores.gevent_hammer", backend, json.dumps(args)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=100,
            check=False,
        )
    finally:
        if "schema" in args:
            drop_schema(args["schema"])
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    total = summary["total"]
    assert summary["errors"] == []
    assert summary["events"] == total and summary["metadata"] == total and summary["audit"] == total
    assert summary["versions"] == list(range(1, total + 1))
    assert summary["ticks"] > 0  # the loop kept running
