"""Embedding: docs/embedding.md's example, a plain Python program, runs a collector a real agent reports to.

The program runs in a process of its own (it is the program that must not be monkey-patched); it
starts a collector with a ticket, its observer sees the agent's node join and, once the agent is
killed, lost; then ``with`` stops the collector, and a second collector starts on the same data
folder at once (the first released it).
"""

from __future__ import annotations

import os
import re
import select
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ProcessGroup

DOC = Path(__file__).resolve().parent.parent / "docs" / "embedding.md"
EXAMPLE = re.compile(r"<!-- example: embedding \(([\w.]+)\) -->\s*```python\n(.*?)\n```", re.DOTALL)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

# Run after the example's main(): a second collector on the same data folder, and nothing patched.
WRAPPER = """\
import sys
from pathlib import Path

import embed_demo
from collector import Collector, CollectorTicket

embed_demo.main(sys.argv[1])
loopback = "tcp://127.0.0.1:*"
ticket = CollectorTicket(listen_agents=loopback, listen_clients=loopback, data_dir=Path(sys.argv[1]))
second = Collector(ticket).start()
import gevent.monkey

patched = [name for name in ("socket", "threading", "time", "select", "os") if gevent.monkey.is_module_patched(name)]
assert not patched, patched
second.stop()
print("restarted", flush=True)
"""


def write_program(folder: Path) -> Path:
    (found,) = EXAMPLE.findall(DOC.read_text())
    filename, source = found
    (folder / filename).write_text(source + "\n")
    wrapper = folder / "run_embedded.py"
    wrapper.write_text(WRAPPER)
    return wrapper


def read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    """The program's next line of output; fails the test after ``timeout`` s or when it exited."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, f"no output within {timeout} s"
    line = proc.stdout.readline()
    assert line, f"the program exited ({proc.wait(5)}) without the expected line"
    return line.strip()


def test_a_plain_program_embeds_a_collector_that_a_real_agent_reports_to(tmp_path: Path, procs: ProcessGroup) -> None:
    wrapper = write_program(tmp_path)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    cmd = [sys.executable, str(wrapper), str(tmp_path / "data")]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=tmp_path, env=env) as program:
        try:
            first = read_line(program, 30)
            assert first.startswith("agents tcp://127.0.0.1:"), first
            agent = procs.agent(first.split()[1], "embedded-node")
            assert read_line(program, 30) == "joined embedded-node"
            agent.kill()
            agent.wait(10)
            assert read_line(program, 30) == "lost embedded-node"
            assert read_line(program, 30) == "stopped"
            assert read_line(program, 30) == "restarted"
            assert program.wait(20) == 0
        finally:
            if program.poll() is None:
                program.kill()
