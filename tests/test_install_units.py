"""``labscope install-units``: the systemd units it prints and writes, checked by parsing them,
by ``systemd-analyze verify`` and by running their ExecStart lines as real processes."""

from __future__ import annotations

import configparser
import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from labscope import cli, units_cmd
from labscope.units import AGENT_UNIT, COLLECTOR_UNIT
from messages import Batch
from messages.keys import ENV_SECRET, ENV_SERVER_KEY, generate
from tests.conftest import labscope_cmd, wait_for
from tests.journal_rows import journal_batches

# The venv's console script: systemd-analyze verify wants an ExecStart binary that exists.
LABSCOPE = str(Path(sys.executable).parent / "labscope")
HARDENING = {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "PrivateTmp": "yes"}
NAMES = (COLLECTOR_UNIT, AGENT_UNIT)


def install(*args: str) -> int:
    """Run ``labscope install-units ARGS`` in this process (argparse exits raise SystemExit)."""
    try:
        return cli.main(["install-units", *args])
    except SystemExit as exc:
        return int(exc.code or 0)


def parse(text: str) -> configparser.ConfigParser:
    """A unit file as configparser reads it: sections, keys in their case, no interpolation."""
    unit = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",), comment_prefixes=("#",))
    unit.optionxform = str  # type: ignore[assignment, method-assign]
    unit.read_string(text)
    return unit


def split_printed(text: str) -> dict[str, str]:
    """The units of ``--print``'s output, by name: each starts with the comment ``# NAME: written by``."""
    parts = re.split(r"^# (\S+\.service): written by", text, flags=re.MULTILINE)
    pairs = zip(parts[1::2], parts[2::2], strict=True)
    return {name: f"# {name}: written by{body.rstrip()}\n" for name, body in pairs}


def exec_start(unit: configparser.ConfigParser) -> list[str]:
    return shlex.split(unit["Service"]["ExecStart"])


def flag(args: list[str], name: str) -> str:
    assert name in args, f"{name} missing from ExecStart {args}"
    return args[args.index(name) + 1]


@pytest.fixture
def printed(capsys: pytest.CaptureFixture[str]) -> dict[str, configparser.ConfigParser]:
    assert install("--print", "--exec", LABSCOPE) == 0
    return {name: parse(text) for name, text in split_printed(capsys.readouterr().out).items()}


# ------------------------------------------------------------ printing


def test_print_gives_both_units_hardened_and_restarting(printed: dict[str, configparser.ConfigParser]) -> None:
    assert list(printed) == list(NAMES)
    for name, unit in printed.items():
        service = unit["Service"]
        assert {key: service.get(key) for key in HARDENING} == HARDENING, name
        assert service["User"] == service["Group"] == "labscope"
        assert service["Restart"] == "on-failure" and service["RestartSec"] == "5s"
        assert service["RestartPreventExitStatus"] == "2"  # a usage error does not mend by restarting
        assert service["KillSignal"] == "SIGTERM"  # both handle it as a clean stop, exit status 0
        assert int(service["TimeoutStopSec"]) >= 15
        assert service["CapabilityBoundingSet"] == ""
        args = exec_start(unit)
        assert args[0] == LABSCOPE
        assert flag(args, "--config") == "/etc/labscope/labscope.toml"
        # The data folder is the StateDirectory systemd makes and gives to the user.
        assert flag(args, "--data-dir") == "%S/" + service["StateDirectory"]
        assert unit["Install"]["WantedBy"] == "multi-user.target"
    assert printed[COLLECTOR_UNIT]["Service"]["ProtectHome"] == "yes"
    assert printed[AGENT_UNIT]["Service"]["ProtectHome"] == "read-only"  # watched folders may be in /home


def test_the_agent_is_one_instance_per_node_with_its_outbox_in_its_own_state_directory(
    printed: dict[str, configparser.ConfigParser],
) -> None:
    service = printed[AGENT_UNIT]["Service"]
    args = exec_start(printed[AGENT_UNIT])
    assert args[1] == "agent" and flag(args, "--node-id") == "%i"
    assert service["StateDirectory"] == "labscope/agent-%i"
    assert printed[COLLECTOR_UNIT]["Service"]["StateDirectory"] == "labscope/collector"
    assert "labscope-collector.service" in printed[AGENT_UNIT]["Unit"]["After"].split()


def test_curve_keys_come_from_the_key_folder_through_credentials(printed: dict[str, configparser.ConfigParser]) -> None:
    collector, agent = printed[COLLECTOR_UNIT], printed[AGENT_UNIT]
    assert collector["Service"]["LoadCredential"] == "collector.key_secret:/etc/labscope/keys/collector.key_secret"
    args = exec_start(collector)
    assert flag(args, "--curve-secret") == "%d/collector.key_secret"
    for role in ("agents", "viewers", "operators"):
        assert flag(args, f"--allow-{role}") == f"/etc/labscope/keys/{role}"
    assert collector["Service"]["ExecReload"] == "/bin/kill -HUP $MAINPID"  # SIGHUP reloads the allow folders
    assert agent["Service"]["LoadCredential"] == "%i.key_secret:/etc/labscope/keys/%i.key_secret"
    args = exec_start(agent)
    assert flag(args, "--curve-server-key") == "/etc/labscope/keys/collector.key"
    assert flag(args, "--curve-secret") == "%d/%i.key_secret"


def test_no_curve_leaves_keys_out(capsys: pytest.CaptureFixture[str]) -> None:
    assert install("--print", "--exec", LABSCOPE, "--no-curve") == 0
    for name, text in split_printed(capsys.readouterr().out).items():
        unit = parse(text)
        assert "LoadCredential" not in unit["Service"] and "ExecReload" not in unit["Service"], name
        assert not [arg for arg in exec_start(unit) if arg.startswith(("--curve", "--allow"))], name


def test_user_config_keys_and_prefix_reach_the_units(capsys: pytest.CaptureFixture[str]) -> None:
    args = (
        "--print",
        "--user",
        "lab-mon",
        "--prefix",
        "/opt/labscope",
        "--config",
        "/srv/lab.toml",
        "--keys",
        "/srv/k",
    )
    assert install(*args) == 0
    units = {name: parse(text) for name, text in split_printed(capsys.readouterr().out).items()}
    for unit in units.values():
        assert unit["Service"]["User"] == unit["Service"]["Group"] == "lab-mon"
        assert exec_start(unit)[0] == "/opt/labscope/bin/labscope"
        assert flag(exec_start(unit), "--config") == "/srv/lab.toml"
    assert flag(exec_start(units[AGENT_UNIT]), "--curve-server-key") == "/srv/k/collector.key"


def test_paths_are_escaped_for_systemd(capsys: pytest.CaptureFixture[str]) -> None:
    config = '/etc/lab scope/50%$x "q".toml'
    assert install("--print", "--exec", "/opt/my tools/labscope", "--config", config, "--no-curve") == 0
    unit = parse(split_printed(capsys.readouterr().out)[COLLECTOR_UNIT])
    args = exec_start(unit)
    # systemd turns %% into % and $$ into $ after splitting the line as shlex does.
    unescaped = [arg.replace("%%", "%").replace("$$", "$") for arg in args]
    assert unescaped[0] == "/opt/my tools/labscope" and flag(unescaped, "--config") == config
    assert "%S/labscope/collector" in args  # our own specifiers stay specifiers


def test_the_default_command_is_this_installations_labscope() -> None:
    command = units_cmd.this_labscope()
    if Path(LABSCOPE).is_file():
        assert command == (LABSCOPE,)
    else:  # no console script: the interpreter runs the package
        assert command[1:] == ("-m", "labscope") and Path(command[0]).parent == Path(LABSCOPE).parent


# ------------------------------------------------------------ writing


def test_print_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(units_cmd, "DEFAULT_DIR", tmp_path)
    assert install("--print") == 0
    assert list(tmp_path.iterdir()) == []


def test_write_then_refuse_to_overwrite_then_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert install("--print", "--exec", LABSCOPE) == 0
    expected = split_printed(capsys.readouterr().out)
    assert install("--dir", str(tmp_path), "--exec", LABSCOPE) == 0
    out = capsys.readouterr().out
    for name in NAMES:
        path = tmp_path / name
        assert path.read_text() == expected[name]
        assert path.stat().st_mode & 0o777 == 0o644
        assert f"wrote {path}" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(NAMES)  # no temporary file left behind

    (tmp_path / COLLECTOR_UNIT).write_text("mine\n")
    (tmp_path / AGENT_UNIT).unlink()
    assert install("--dir", str(tmp_path), "--exec", LABSCOPE) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [
        f"labscope install-units: error: {tmp_path / COLLECTOR_UNIT} exists; pass --force to overwrite it "
        "(nothing was written)"
    ]
    assert (tmp_path / COLLECTOR_UNIT).read_text() == "mine\n"
    assert not (tmp_path / AGENT_UNIT).exists()  # all or nothing

    assert install("--dir", str(tmp_path), "--exec", LABSCOPE, "--force") == 0
    for name in NAMES:
        assert (tmp_path / name).read_text() == expected[name]


def _unwritable(tmp_path: Path) -> Path:
    """A folder this process cannot write to: a read-only one, or /proc/self for root."""
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    return folder if not os.access(folder, os.W_OK) else Path("/proc/self")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dir", "{tmp}/missing"], "--dir {tmp}/missing: no such folder (create it, or use --print)"),
        (["--dir", "{ro}"], "--dir {ro}: not writable (run as root, or choose another --dir)"),
        (["--exec", "bin/labscope"], "'bin/labscope': the labscope the units start must be an absolute path"),
        (["--prefix", "opt"], "'opt/bin/labscope': the labscope the units start must be an absolute path"),
        (["--user", "Root Admin"], "--user 'Root Admin': not a system user name"),
        (["--config", "etc/x.toml"], "--config 'etc/x.toml': give an absolute path (systemd starts in /)"),
        (["--config", "/etc/x\nExecStartPre=/bin/sh"], "a path in a systemd unit cannot hold a newline"),
        (["--keys", "/etc/my keys"], "--keys '/etc/my keys': a key folder for LoadCredential= cannot hold spaces"),
        (["--print", "--dir", "{tmp}"], "argument --dir: not allowed with argument --print"),
        (["--keys", "/k", "--no-curve"], "argument --no-curve: not allowed with argument --keys"),
        (["--exec", "/a", "--prefix", "/b"], "argument --prefix: not allowed with argument --exec"),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_bad_input_is_one_line_and_exit_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    names = {"tmp": str(tmp_path), "ro": str(_unwritable(tmp_path))}
    args = [arg.format(**names) for arg in args]
    if "--dir" not in args and "--print" not in args:
        args += ["--dir", str(tmp_path)]
    assert install(*args) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("labscope install-units: error: "), lines
    assert message.format(**names) in lines[0]
    assert not [p for p in tmp_path.rglob("*.service")]


# ------------------------------------------------------------ systemd-analyze


def systemd_analyze() -> str:
    """The systemd-analyze binary; skip (fail under CI=true) without it."""
    binary = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"
    if not os.access(binary, os.X_OK):
        reason = "systemd-analyze not installed (apt-get install systemd)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI=true: a skip is a failure)")
        pytest.skip(reason)
    return binary


@pytest.mark.e2e
@pytest.mark.parametrize("curve", [True, False], ids=["curve", "no-curve"])
def test_systemd_analyze_verify_accepts_the_written_units(tmp_path: Path, curve: bool) -> None:
    binary = systemd_analyze()
    assert install("--dir", str(tmp_path), "--exec", LABSCOPE, *([] if curve else ["--no-curve"])) == 0
    # A template is verified as an instance; systemd-analyze finds the template file beside it.
    units = [str(tmp_path / COLLECTOR_UNIT), str(tmp_path / "labscope-agent@node-7.service")]
    done = subprocess.run([binary, "verify", *units], capture_output=True, text=True, timeout=60)
    # verify exits 0 on an unknown key or a bad value (it only warns): any output at all is a failure.
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


@pytest.mark.e2e
def test_systemd_analyze_verify_notices_a_missing_executable(tmp_path: Path) -> None:
    """The check above can fail: a unit whose ExecStart does not exist is refused."""
    binary = systemd_analyze()
    assert install("--dir", str(tmp_path), "--exec", str(tmp_path / "no-such-labscope")) == 0
    done = subprocess.run(
        [binary, "verify", str(tmp_path / COLLECTOR_UNIT)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0 and "no-such-labscope" in done.stderr


@pytest.mark.e2e
def test_systemd_analyze_security_rates_both_units_well_exposed_below_3(tmp_path: Path) -> None:
    binary = systemd_analyze()
    assert install("--dir", str(tmp_path), "--exec", LABSCOPE) == 0
    for unit in (COLLECTOR_UNIT, "labscope-agent@node-7.service"):
        command = [binary, "security", "--offline=yes", "--no-pager", str(tmp_path / unit)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
        if "--offline" in done.stderr:
            pytest.skip("this systemd-analyze has no --offline security review (systemd < 250)")
        match = re.search(r"Overall exposure level for \S+: (\d+\.\d)", done.stdout)
        assert match is not None, done.stdout[-2000:] + done.stderr
        assert float(match.group(1)) <= 3.0, done.stdout


# ------------------------------------------------------------ the ExecStart lines, run for real


def expand(value: str, unit: str, root: Path, node: str) -> str:
    """What systemd makes of the specifiers our units use: %S, %d, %i and %%."""
    table = {"S": str(root / "state"), "d": str(root / "credentials" / unit), "i": node, "%": "%"}
    return re.sub(r"%(.)", lambda m: table[m.group(1)], value)


class ServiceRun:
    """Starts a unit's ExecStart as systemd would: specifiers expanded, StateDirectory and credentials made."""

    def __init__(self, units: Path, root: Path) -> None:
        self.units, self.root = units, root
        self.popens: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, node: str = "") -> subprocess.Popen[bytes]:
        unit = parse((self.units / name).read_text())["Service"]
        instance = name.replace("@.", f"@{node}.")
        state = Path(expand("%S/" + unit["StateDirectory"], instance, self.root, node))
        state.mkdir(parents=True, exist_ok=True)
        ident, _, source = expand(unit["LoadCredential"], instance, self.root, node).partition(":")
        credentials = Path(expand("%d", instance, self.root, node))
        credentials.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, credentials / ident)
        args = [expand(arg, instance, self.root, node) for arg in shlex.split(unit["ExecStart"])]
        env = {k: v for k, v in os.environ.items() if k not in (ENV_SERVER_KEY, ENV_SECRET)}
        with open(self.root / f"{instance}.log", "wb") as log:
            popen = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
        self.popens.append(popen)
        return popen

    def log(self, instance: str) -> str:
        return (self.root / f"{instance}.log").read_text(errors="replace")

    def stop_all(self) -> None:
        for popen in self.popens:
            if popen.poll() is None:
                popen.kill()
                popen.wait(10)


@pytest.fixture
def services(tmp_path: Path) -> Iterator[ServiceRun]:
    run = ServiceRun(tmp_path / "units", tmp_path)
    (tmp_path / "units").mkdir()
    yield run
    run.stop_all()


def make_keys(keys: Path, node: str) -> Path:
    """The key folder of docs/deploy.md: the collector's pair, the node's, an operator's; the operator's secret."""
    generate(keys, "collector")
    generate(keys, node)
    for role in ("agents", "viewers", "operators"):
        (keys / role).mkdir()
    shutil.copy(keys / f"{node}.key", keys / "agents")
    generate(keys / "people", "otto")
    shutil.copy(keys / "people" / "otto.key", keys / "operators")
    return keys / "people" / "otto.key_secret"


NODE = "node-7"


class Lab:
    """docs/deploy.md in small: keys, one config file, the written units, a collector and one agent run from them."""

    def __init__(self, root: Path, services: ServiceRun) -> None:
        self.root, self.services = root, services
        self.keys, self.config = root / "keys", root / "labscope.toml"
        operator = make_keys(self.keys, NODE)
        self.client = ["--curve-server-key", str(self.keys / "collector.key"), "--curve-secret", str(operator)]
        self.config.write_text(
            '[collector]\nlisten_agents = "tcp://127.0.0.1:*"\nlisten_clients = "tcp://127.0.0.1:*"\n'
        )
        flags = ["--exec", LABSCOPE, "--config", str(self.config), "--keys", str(self.keys)]
        assert install("--dir", str(services.units), *flags) == 0
        self.data_dir = root / "state" / "labscope" / "collector"
        self.outbox = root / "state" / "labscope" / f"agent-{NODE}" / "outbox.sqlite3"
        self.bound: dict[str, str] = {}

    def start_collector(self) -> subprocess.Popen[bytes]:
        """Start the collector's unit and wait until it has bound its endpoints."""
        popen = self.services.start(COLLECTOR_UNIT)
        info = self.data_dir / "collector.json"
        what = f"the collector to start: {self.services.log(COLLECTOR_UNIT)[-2000:]}"
        wait_for(lambda: popen.poll() is None and info.exists(), 30, what=what)
        self.bound = json.loads(info.read_text())
        return popen

    def fix_endpoints(self) -> None:
        """One file serves the whole testbed: the ports the collector bound, and the agent's [agent] section."""
        self.config.write_text(
            f'[collector]\nlisten_agents = "{self.bound["agents"]}"\nlisten_clients = "{self.bound["clients"]}"\n'
            f'\n[agent]\ncollector = "{self.bound["agents"]}"\ninterval = 0.2\n'
        )

    def node(self) -> dict[str, Any]:
        """The node's NodeList entry ({} before it has said HELLO), through `labscope query` with CURVE."""
        command = labscope_cmd("query", "--collector", self.bound["clients"], *self.client, "NodeList")
        done = subprocess.run(command, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        return next((n for n in json.loads(done.stdout).get("nodes", []) if n["node"] == NODE), {})

    def stop(self, popen: subprocess.Popen[bytes], unit: str) -> None:
        """What systemctl stop does: the unit's KillSignal; a clean stop exits 0."""
        popen.send_signal(getattr(signal, parse((self.services.units / unit).read_text())["Service"]["KillSignal"]))
        assert popen.wait(15) == 0, self.services.log(unit.replace("@.", f"@{NODE}."))

    def unsent(self) -> dict[int, bytes]:
        """The reports waiting in the agent's outbox: seq -> payload."""
        with contextlib.closing(sqlite3.connect(f"file:{self.outbox}?mode=ro", uri=True)) as db:
            return dict(db.execute("SELECT seq, payload FROM outbox ORDER BY seq"))

    def backlog(self) -> set[int]:
        """The sequence numbers in the agent's outbox that the collector's journal lacks."""
        return set(self.unsent()) - set(self.journaled())

    def journaled(self) -> dict[int, bytes]:
        """The node's reports in the collector's journal: seq -> payload."""
        found: dict[int, bytes] = {}
        for batch in journal_batches(self.data_dir / "collector.sqlite3", NODE):
            found.update((envelope.seq, envelope.payload) for envelope in Batch.FromString(batch).envelopes)
        return found


@pytest.fixture
def testbed(tmp_path: Path, services: ServiceRun) -> Lab:
    return Lab(tmp_path, services)


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_the_units_exec_start_runs_a_collector_and_an_agent_that_stop_cleanly_on_kill_signal(
    testbed: Lab, services: ServiceRun
) -> None:
    collector = testbed.start_collector()
    testbed.fix_endpoints()
    agent = services.start(AGENT_UNIT, NODE)
    agent_log = f"labscope-agent@{NODE}.service"
    wait_for(lambda: testbed.node().get("status") == "live", 30, 0.5, f"{NODE} live: {services.log(agent_log)}")
    assert testbed.outbox.is_file()  # in the agent's StateDirectory
    # systemctl stop: the agent first (ordered After= the collector), then the collector.
    testbed.stop(agent, AGENT_UNIT)
    testbed.stop(collector, COLLECTOR_UNIT)
    assert not (testbed.data_dir / "collector.json").exists()  # removed by the collector's clean shutdown


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_an_upgrade_as_deploy_md_says_loses_nothing(testbed: Lab, services: ServiceRun) -> None:
    """Restart the collector, and the agent while it holds a backlog: every report arrives, none missing."""
    collector = testbed.start_collector()
    testbed.fix_endpoints()
    agent = services.start(AGENT_UNIT, NODE)
    wait_for(lambda: testbed.node().get("status") == "live", 30, 0.5, f"{NODE} live")

    testbed.stop(collector, COLLECTOR_UNIT)  # the collector's upgrade: the agent keeps sampling
    wait_for(lambda: len(testbed.backlog()) >= 10, 30, what="10 reports in the outbox the collector does not have")
    testbed.stop(agent, AGENT_UNIT)  # the agent's upgrade, its backlog unsent
    held = testbed.unsent()
    assert len(testbed.backlog()) >= 10

    services.start(AGENT_UNIT, NODE)  # the same units, the same StateDirectories
    testbed.start_collector()

    def delivered() -> bool:
        journal = testbed.journaled()
        return all(journal.get(seq) == payload for seq, payload in held.items())

    wait_for(delivered, 60, 0.5, "every report the agent held, in the collector's journal with its payload")
    wait_for(lambda: testbed.node().get("status") == "live", 30, 0.5, f"{NODE} live again")
    assert int(testbed.node().get("gaps", 0)) == 0
    wait_for(lambda: not set(testbed.unsent()) & set(held), 30, what="the backlog acknowledged and gone")
