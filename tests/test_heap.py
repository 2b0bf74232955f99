"""messages/heap.py: with the thresholds raised, a freed answer of megabytes stays mapped for the next one."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e  # each test runs fresh interpreters: the thresholds are per process

PROBE = """
import json, sys, psutil
from messages.heap import keep_freed_heap
kept = keep_freed_heap() if sys.argv[1] == "tuned" else False
me = psutil.Process()
answer = b"\x01" * (8 * 2**20)  # every page written (bytes(n) would calloc untouched pages)
held = me.memory_info().rss
del answer
print(json.dumps({"kept": kept, "given_back": held - me.memory_info().rss}))
"""


def probe(mode: str, **env: str) -> dict[str, object]:
    """Run the probe in a fresh interpreter; what keep_freed_heap said and how many bytes the free gave back."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, mode],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}, **env},
    )
    return dict(json.loads(done.stdout))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt thresholds are glibc's")
def test_freed_megabytes_stay_mapped_only_when_tuned() -> None:
    plain, tuned = probe("plain"), probe("tuned")
    assert plain["kept"] is False and tuned["kept"] is True
    assert int(plain["given_back"]) > 6 * 2**20  # glibc's default: the block was mmap-ed and goes back at once
    assert int(tuned["given_back"]) < 2**20  # tuned: kept for the next answer


def test_glibc_variables_win() -> None:
    assert probe("tuned", MALLOC_TRIM_THRESHOLD_="131072")["kept"] is False
