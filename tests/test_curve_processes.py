"""Real `labscope query`, `watch`, `agent` and `simulate` processes against a CURVE server in the test."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
import zmq

from messages import Kind
from messages.keys import ENV_SECRET, ENV_SERVER_KEY, REFUSED_KEY, REQUIRES_CURVE, generate
from tests.conftest import ProcessGroup, labscope_cmd, wait_for
from tests.curve import curve_server

pytestmark = pytest.mark.e2e

REFUSAL_LIMIT = 10.0


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in (ENV_SERVER_KEY, ENV_SECRET)}
    return subprocess.run(
        labscope_cmd(*args), capture_output=True, text=True, timeout=timeout, env={**environ, **(env or {})}
    )


def test_query_with_an_unknown_key_prints_one_line_and_exits_1(zmq_context: zmq.Context, tmp_path: Path) -> None:
    with curve_server(zmq_context, tmp_path / "srv") as server:
        generate(tmp_path / "me", "viewer")
        flags = [
            "--curve-server-key",
            str(server.public_file),
            "--curve-secret",
            str(tmp_path / "me/viewer.key_secret"),
        ]
        started = time.monotonic()
        done = run("query", "--collector", server.endpoint, "--timeout", "30", "NodeList", *flags)
        assert time.monotonic() - started < REFUSAL_LIMIT + 5  # the process's start-up on top
        assert done.returncode == 1
        assert done.stderr == f"labscope query: error: {server.endpoint}: {REFUSED_KEY}\n"
        assert done.stdout == ""


def test_query_without_keys_is_told_the_collector_requires_curve(zmq_context: zmq.Context, tmp_path: Path) -> None:
    with curve_server(zmq_context, tmp_path / "srv") as server:
        done = run("query", "--collector", server.endpoint, "--timeout", "30", "NodeList")
        assert done.returncode == 1
        assert done.stderr == f"labscope query: error: {server.endpoint}: {REQUIRES_CURVE}\n"


def test_query_and_watch_with_an_allowed_key_from_the_environment(zmq_context: zmq.Context, tmp_path: Path) -> None:
    with curve_server(zmq_context, tmp_path / "srv") as server:
        server.allow(generate(tmp_path / "me", "viewer"))
        env = {ENV_SERVER_KEY: str(server.public_file), ENV_SECRET: str(tmp_path / "me/viewer.key_secret")}
        done = run("query", "--collector", server.endpoint, "NodeList", env=env)
        assert done.returncode == 0, done.stderr
        assert '"ok": true' in done.stdout
        # watch gets no update from this server: it times out (exit 1), it is not refused.
        done = run("watch", "--collector", server.endpoint, "NodeList", "--timeout", "1", env=env)
        assert done.returncode == 1 and "no NodeList update" in done.stderr


def test_half_given_keys_are_a_usage_error(tmp_path: Path) -> None:
    done = run("query", "--collector", "tcp://127.0.0.1:9", "NodeList", "--curve-secret", str(tmp_path / "x"))
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "pass --curve-server-key" in done.stderr
    done = run("agent", "--collector", "tcp://127.0.0.1:9", "--curve-server-key", str(tmp_path / "nope.key"))
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "pass --curve-secret" in done.stderr


def agent_flags(server_key: Path, secret: Path) -> tuple[str, ...]:
    return ("--curve-server-key", str(server_key), "--curve-secret", str(secret))


@pytest.mark.timeout(90)
def test_an_allowed_agent_reports_with_its_key(zmq_context: zmq.Context, tmp_path: Path, procs: ProcessGroup) -> None:
    with curve_server(zmq_context, tmp_path / "srv") as server:
        node = generate(tmp_path / "agents", "n1")
        server.allow(node)
        procs.agent(server.endpoint, "n1", *agent_flags(server.public_file, node.path))
        wait_for(lambda: any(e.kind == Kind.REPORT for e in server.seen), 20, what="a REPORT")
        assert set(server.user_ids) == {node.public.decode()}


@pytest.mark.timeout(120)
def test_a_refused_agent_says_so_once_keeps_running_and_gets_in_once_allowed(
    zmq_context: zmq.Context, tmp_path: Path, procs: ProcessGroup
) -> None:
    with curve_server(zmq_context, tmp_path / "srv") as server:
        node = generate(tmp_path / "agents", "n1")
        config = tmp_path / "agent.toml"  # the keys from the agent's config file, relative to it
        config.write_text(
            '[agent]\ncurve_server_key = "srv/collector.key"\ncurve_secret = "agents/n1.key_secret"\n'
            'log_level = "debug"\n'
        )
        agent = procs.agent(server.endpoint, "n1", "--config", str(config))
        log_path = tmp_path / "agent-n1-1.log"

        def refusals() -> list[str]:
            return [line for line in log_path.read_text().splitlines() if "refused this agent" in line]

        wait_for(refusals, REFUSAL_LIMIT, what="the refusal in the agent's log")
        # A few HELLO retries (each a new socket, each refused again) go by: still one line.
        wait_for(lambda: "saying HELLO again" in log_path.read_text(), 20, what="a HELLO retry")
        assert agent.poll() is None
        lines = refusals()
        assert len(lines) == 1, lines
        assert "ERROR" in lines[0] and REFUSED_KEY in lines[0] and node.fingerprint in lines[0]
        assert "Traceback" not in log_path.read_text()
        assert server.seen == []
        server.allow(node)  # as an operator adding n1.key to the allow folder
        wait_for(lambda: any(e.kind == Kind.REPORT for e in server.seen), 30, what="a REPORT once allowed")
        assert agent.poll() is None
        assert set(server.user_ids) == {node.public.decode()}


@pytest.mark.timeout(60)
def test_simulate_gives_every_agent_the_key(zmq_context: zmq.Context, tmp_path: Path) -> None:
    with curve_server(zmq_context, tmp_path / "srv") as server:
        key = generate(tmp_path / "sim", "sim-0001", ("sim-0002", "sim-0003"))
        server.allow(key)
        flags = agent_flags(server.public_file, key.path)
        done = run("simulate", "--collector", server.endpoint, "--agents", "3", "--duration", "1.5", *flags)
        assert done.returncode == 0, done.stderr
        assert {e.node for e in server.seen if e.kind == Kind.HELLO} == {"sim-0001", "sim-0002", "sim-0003"}
        assert set(server.user_ids) == {key.public.decode()}


@pytest.mark.timeout(60)
def test_a_refused_simulate_says_so_in_one_line(zmq_context: zmq.Context, tmp_path: Path) -> None:
    with curve_server(zmq_context, tmp_path / "srv") as server:
        key = generate(tmp_path / "sim", "sim")
        flags = agent_flags(server.public_file, key.path)
        done = run("simulate", "--collector", server.endpoint, "--agents", "2", "--duration", "1", *flags)
        assert done.returncode == 1
        assert done.stderr == f"labscope simulate: error: {server.endpoint}: {REFUSED_KEY}\n"


@pytest.mark.timeout(60)
def test_a_plain_agent_of_a_curve_collector_is_told_it_requires_curve(
    zmq_context: zmq.Context, tmp_path: Path, procs: ProcessGroup
) -> None:
    with curve_server(zmq_context, tmp_path / "srv") as server:
        agent = procs.agent(server.endpoint, "n1")
        log_path = tmp_path / "agent-n1-1.log"
        wait_for(lambda: REQUIRES_CURVE in log_path.read_text(), REFUSAL_LIMIT, what="the refusal in the agent's log")
        assert "no CURVE key" in log_path.read_text()
        assert agent.poll() is None


@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    ("command", "args"),
    [
        ("watch", ["NodeList", "--timeout", "30"]),
        ("fetch", ["n1:/etc/hostname", "-o", "OUT", "--timeout", "30"]),
        ("top", ["--duration", "30"]),
        ("gui", ["--screenshot", "OUT", "--timeout", "30"]),
    ],
)
def test_every_client_command_says_a_refusal_in_one_line(
    zmq_context: zmq.Context, tmp_path: Path, command: str, args: list[str]
) -> None:
    if command == "gui":
        pytest.importorskip("PySide6")
    with curve_server(zmq_context, tmp_path / "srv") as server:
        generate(tmp_path / "me", "viewer")
        flags = [
            "--curve-server-key",
            str(server.public_file),
            "--curve-secret",
            str(tmp_path / "me/viewer.key_secret"),
        ]
        out = tmp_path / "out.bin"
        argv = [str(out) if a == "OUT" else a for a in args]
        done = run(command, "--collector", server.endpoint, *argv, *flags, env={"QT_QPA_PLATFORM": "offscreen"})
        assert done.returncode == 1, done.stderr
        assert done.stderr == f"labscope {command}: error: {server.endpoint}: {REFUSED_KEY}\n"
        assert not out.exists()
