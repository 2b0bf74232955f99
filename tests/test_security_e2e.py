"""Issue 12's scenario with nothing played by hand: a CURVE collector, real agents, real client commands.

A listed agent appears; an unlisted one never does and is counted; a listed key
claiming another node id is refused; a plain client and a client with an unknown
key are told so in one line within 10 s; a viewer can query but not fetch; an
operator's fetch works and is in the audit trail; a key file added to the agents'
folder lets a new agent in without a restart.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from messages.keys import ENV_SECRET, ENV_SERVER_KEY, REFUSED_KEY, REQUIRES_CURVE, generate, load
from tests.conftest import CollectorProcess, ProcessGroup, labscope_cmd, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

REFUSAL_LIMIT = 10.0  # seconds within which a refused client must have said so (issue 12)


class Lab:
    """The collector's keys, its allow folders, and every peer's secret certificate."""

    def __init__(self, root: Path) -> None:
        self.secrets = root / "secrets"
        self.allow = {role: root / f"allow-{role}" for role in ("agents", "viewers", "operators")}
        for folder in self.allow.values():
            folder.mkdir(parents=True)
        generate(self.secrets, "collector")

    def key(self, name: str, role: str | None) -> tuple[str, ...]:
        """A new key pair named ``name``, listed for ``role`` (None: nowhere); the flags that use it."""
        generate(self.secrets, name)
        if role is not None:
            shutil.copy(self.secrets / f"{name}.key", self.allow[role])
        return self.flags(name)

    def flags(self, name: str) -> tuple[str, ...]:
        return (
            "--curve-server-key",
            str(self.secrets / "collector.key"),
            "--curve-secret",
            str(self.secrets / f"{name}.key_secret"),
        )

    def collector_flags(self) -> tuple[str, ...]:
        flags = ["--curve-secret", str(self.secrets / "collector.key_secret")]
        for role, folder in self.allow.items():
            flags += [f"--allow-{role}", str(folder)]
        return tuple(flags)


def labscope(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a labscope client command without any CURVE variables from the test's environment."""
    env = {k: v for k, v in os.environ.items() if k not in (ENV_SERVER_KEY, ENV_SECRET)}
    return subprocess.run(labscope_cmd(*args), capture_output=True, text=True, timeout=timeout, env=env)


def query(collector: CollectorProcess, flags: tuple[str, ...], *request: str) -> object:
    done = labscope("query", "--collector", collector.clients, *flags, *request)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def live_nodes(collector: CollectorProcess, flags: tuple[str, ...]) -> set[str]:
    answer = query(collector, flags, "NodeList")
    assert isinstance(answer, dict)
    return {n["node"] for n in answer.get("nodes", []) if n.get("status") == "live"}


def counters(collector: CollectorProcess, flags: tuple[str, ...]) -> dict[str, int]:
    answer = query(collector, flags, "CollectorStats")
    assert isinstance(answer, dict)
    return dict(answer["counters"])


def test_a_curve_testbed_from_agents_to_audit(procs: ProcessGroup, tmp_path: Path) -> None:
    lab = Lab(tmp_path / "lab")
    serve = tmp_path / "serve"
    serve.mkdir()
    (serve / "result.csv").write_bytes(b"run,value\n1,42\n" * 1000)
    n1, n2 = lab.key("n1", "agents"), lab.key("n2", "agents")
    stranger = lab.key("n9", None)
    viewer, operator = lab.key("vera", "viewers"), lab.key("otto", "operators")
    collector = procs.collector(*lab.collector_flags())

    procs.agent(collector.agents, "n1", "--serve-dir", str(serve), *n1)
    procs.agent(collector.agents, "n9", *stranger)  # not listed
    procs.agent(collector.agents, "n5", *n2)  # listed as n2, claims n5
    wait_for(lambda: "n1" in live_nodes(collector, viewer), 30, what="the listed agent n1 live")
    wait_for(
        lambda: (
            counters(collector, viewer).get("auth-refused:wrong-node", 0) >= 1
            and counters(collector, viewer).get("auth-refused:unknown-key", 0) >= 1
        ),
        30,
        what="the unlisted agent and the wrong node id refused and counted",
    )
    assert live_nodes(collector, viewer) == {"n1"}

    for flags, line in (((), REQUIRES_CURVE), (lab.key("mallory", None), REFUSED_KEY)):
        started = time.monotonic()
        done = labscope("query", "--collector", collector.clients, "--timeout", "30", *flags, "NodeList")
        assert (done.returncode, done.stdout) == (1, "")
        assert done.stderr == f"labscope query: error: {collector.clients}: {line}\n"
        assert time.monotonic() - started < REFUSAL_LIMIT + 5  # the command's own start-up on top

    fetched = tmp_path / "fetched.csv"
    done = labscope("fetch", "--collector", collector.clients, *viewer, "-o", str(fetched), "n1:result.csv")
    assert done.returncode == 1 and "forbidden" in done.stderr and not fetched.exists(), done.stderr
    assert done.stderr.count("\n") == 1
    done = labscope("fetch", "--collector", collector.clients, *operator, "-o", str(fetched), "n1:result.csv")
    assert done.returncode == 0, done.stderr
    assert fetched.read_bytes() == (serve / "result.csv").read_bytes()

    audit = query(collector, operator, "Audit", "node=n1")
    assert isinstance(audit, list)
    entries = [(e["who"], e["fingerprint"], e["type"], e["outcome"], e["bytes"]) for e in audit]
    otto = load(lab.secrets / "otto.key").fingerprint
    assert ("otto", otto, "NodeFile", "ok", fetched.stat().st_size) in entries, entries
    assert all(who != "vera" for who, *_ in entries), "the viewer's refused fetch never reached the node"
    done = labscope("query", "--collector", collector.clients, *viewer, "Audit")
    assert done.returncode == 1 and "forbidden" in done.stderr, done.stderr

    shutil.copy(lab.secrets / "n9.key", lab.allow["agents"])  # let n9 in: no restart
    wait_for(lambda: "n9" in live_nodes(collector, viewer), 30, what="n9 live once its key is listed")
    assert collector.popen.poll() is None
