"""``labscope agent`` command line: flags, config file, and one-line errors with exit status 2."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from node_agent.cli import build_parser, main, parse_age, resolve_config
from node_agent.outbox import Outbox
from tests.conftest import REPO, labscope_cmd


def run_agent(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(labscope_cmd("agent", *args), capture_output=True, text=True, timeout=30, cwd=REPO)


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got: {text!r}"
    assert "Traceback" not in text
    return lines[0]


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


# --------------------------------------------------- real processes, end to end


@pytest.mark.e2e
def test_bad_flag_is_one_line_exit_2():
    result = run_agent("--collector", "tcp://127.0.0.1:5555", "--bogus")
    assert result.returncode == 2
    assert "--bogus" in one_line(result.stderr)


@pytest.mark.e2e
def test_malformed_endpoint_is_one_line_naming_it():
    result = run_agent("--collector", "tcp//x")
    assert result.returncode == 2
    assert "tcp//x" in one_line(result.stderr)


@pytest.mark.e2e
def test_config_unknown_key_names_file_and_key(tmp_path):
    path = write_config(tmp_path, '[agent]\ncollector = "tcp://127.0.0.1:5555"\nspeed = 3\n')
    result = run_agent("--config", str(path))
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert str(path) in line and "speed" in line


@pytest.mark.e2e
def test_help_explains_every_flag():
    result = run_agent("--help")
    assert result.returncode == 0
    for flag in (
        "--collector",
        "--node-id",
        "--interval",
        "--probes-dir",
        "--data-dir",
        "--config",
        "--log-level",
        "--outbox-max-mb",
        "--outbox-max-age",
        "--watch-dir",
        "--watch-interval",
        "--serve-dir",
        "--handlers-dir",
    ):
        assert flag in result.stdout


@pytest.mark.e2e
def test_bad_outbox_max_age_is_one_line_exit_2():
    result = run_agent("--collector", "tcp://127.0.0.1:5555", "--outbox-max-age", "soon")
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert "--outbox-max-age" in line and "soon" in line


@pytest.mark.e2e
def test_data_dir_of_another_node_is_one_line_exit_2(tmp_path):
    Outbox.open(tmp_path / "data", "alpha").close()
    result = run_agent("--collector", "tcp://127.0.0.1:5555", "--node-id", "beta", "--data-dir", str(tmp_path / "data"))
    assert result.returncode == 2
    assert one_line(result.stderr) == (
        f"labscope agent: error: data dir {tmp_path / 'data'} belongs to node alpha; "
        "give --node-id alpha or another --data-dir"
    )


@pytest.mark.e2e
def test_data_dir_in_use_is_one_line_exit_1(tmp_path):
    holder = Outbox.open(tmp_path / "data", "n1")  # holds the folder's lock, as a running agent does
    try:
        result = run_agent(
            "--collector", "tcp://127.0.0.1:5555", "--node-id", "n1", "--data-dir", str(tmp_path / "data")
        )
    finally:
        holder.close()
    assert result.returncode == 1
    assert "in use by another agent" in one_line(result.stderr)


@pytest.mark.e2e
def test_unwritable_data_dir_is_one_line_exit_1(tmp_path):
    (tmp_path / "file").write_text("a file where a folder should be")
    result = run_agent("--collector", "tcp://127.0.0.1:5555", "--data-dir", str(tmp_path / "file" / "data"))
    assert result.returncode == 1
    line = one_line(result.stderr)
    assert str(tmp_path / "file" / "data") in line and "cannot create it" in line


# ------------------------------------------------------------- in process


def fails(capsys, *argv: str) -> str:
    """Run main(argv) expecting exit status 2; returns its one stderr line."""
    status: object
    try:
        status = main(list(argv))
    except SystemExit as exc:  # argparse errors exit from inside parse_args
        status = exc.code
    assert status == 2
    return one_line(capsys.readouterr().err)


def test_invalid_toml_names_file(tmp_path, capsys):
    path = write_config(tmp_path, "[agent\ncollector = \n")
    line = fails(capsys, "--config", str(path))
    assert str(path) in line and "TOML" in line


def test_missing_config_file(tmp_path, capsys):
    assert "no such file" in fails(capsys, "--config", str(tmp_path / "nope.toml"))


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('[agent]\ncollector = "tcp//x"\n', ("collector", "tcp//x")),
        ('[agent]\ncollector = "tcp://*:5555"\n', ("collector", "*")),
        ('[agent]\ncollector = "tcp://h:1"\ninterval = "fast"\n', ("interval",)),
        ('[agent]\ncollector = "tcp://h:1"\ninterval = 0\n', ("interval", "greater than 0")),
        ('[agent]\ncollector = "tcp://h:1"\nheartbeat_interval = -1\n', ("heartbeat_interval",)),
        ('[agent]\ncollector = "tcp://h:1"\nbatch_delay = -0.1\n', ("batch_delay",)),
        ('[agent]\ncollector = "tcp://h:1"\nlog_level = "loud"\n', ("log_level", "loud")),
        ('[agent]\ncollector = "tcp://h:1"\nprobes_dirs = "p"\n', ("probes_dirs",)),
        ('[agent]\ncollector = "tcp://h:1"\nprobes_dirs = [1]\n', ("probes_dirs",)),
        ('[agent]\ncollector = "tcp://h:1"\nnode_id = " "\n', ("node_id",)),
        ('[agnet]\ncollector = "tcp://h:1"\n', ("agnet",)),
        ('[agent]\ncollector = "tcp://h:1"\noutbox_max_mb = 0\n', ("outbox_max_mb",)),
        ('[agent]\ncollector = "tcp://h:1"\noutbox_max_mb = "big"\n', ("outbox_max_mb",)),
        ('[agent]\ncollector = "tcp://h:1"\noutbox_max_age = "a week"\n', ("outbox_max_age", "a week")),
        ('[agent]\ncollector = "tcp://h:1"\noutbox_max_age = -5\n', ("outbox_max_age",)),
        ('[agent]\ncollector = "tcp://h:1"\noutbox_max_age = true\n', ("outbox_max_age",)),
        ('[agent]\ncollector = "tcp://h:1"\nwatch_dirs = "w"\n', ("watch_dirs",)),
        ('[agent]\ncollector = "tcp://h:1"\nserve_dirs = [1]\n', ("serve_dirs",)),
        ('[agent]\ncollector = "tcp://h:1"\nhandlers_dirs = [true]\n', ("handlers_dirs",)),
        ('[agent]\ncollector = "tcp://h:1"\nwatch_interval = 0\n', ("watch_interval", "greater than 0")),
    ],
)
def test_bad_config_values_are_one_line(tmp_path, capsys, text, words):
    path = write_config(tmp_path, text)
    line = fails(capsys, "--config", str(path))
    assert str(path) in line
    for word in words:
        assert word in line


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (("--collector", "tcp://*:5555"), ("*",)),
        (("--collector", "tcp://h:70000"), ("70000",)),
        (("--collector", "tcp://h:1", "--interval", "0"), ("--interval",)),
        (("--collector", "tcp://h:1", "--interval", "x"), ("--interval",)),
        (("--collector", "tcp://h:1", "--log-level", "loud"), ("loud",)),
        ((), ("collector",)),
        (("--collector", "tcp://h:1", "--outbox-max-age", "0"), ("--outbox-max-age",)),
        (("--collector", "tcp://h:1", "--outbox-max-age", "3w"), ("--outbox-max-age", "3w")),
        (("--collector", "tcp://h:1", "--outbox-max-age", "-1d"), ("--outbox-max-age",)),
        (("--collector", "tcp://h:1", "--outbox-max-mb", "0"), ("--outbox-max-mb",)),
        (("--collector", "tcp://h:1", "--outbox-max-mb", "nan"), ("--outbox-max-mb",)),
        (("--collector", "tcp://h:1", "--outbox-max-mb", "lots"), ("--outbox-max-mb", "lots")),
    ],
)
def test_bad_flags_are_one_line(capsys, argv, words):
    line = fails(capsys, *argv)
    for word in words:
        assert word in line


def test_missing_probes_dir_is_one_line(tmp_path, capsys):
    line = fails(capsys, "--collector", "tcp://h:1", "--probes-dir", str(tmp_path / "none"))
    assert str(tmp_path / "none") in line


@pytest.mark.parametrize(
    ("flag", "what"), [("--watch-dir", "watched"), ("--serve-dir", "serve"), ("--handlers-dir", "handlers")]
)
def test_missing_file_folders_are_one_line(tmp_path, capsys, flag, what):
    line = fails(capsys, "--collector", "tcp://h:1", flag, str(tmp_path), flag, str(tmp_path / "none"))
    assert f"{what} folder {tmp_path / 'none'}: no such directory" in line


def test_file_folders_from_flags_and_config(tmp_path):
    for name in ("w1", "w2", "s1", "h1", "flagserve"):
        (tmp_path / name).mkdir()
    path = write_config(
        tmp_path,
        '[agent]\ncollector = "tcp://c:1"\nwatch_dirs = ["w1", "w2"]\n'
        'serve_dirs = ["s1"]\nhandlers_dirs = ["h1"]\nwatch_interval = 0.25\n',
    )
    config = resolve_config(build_parser().parse_args(["--config", str(path)]))
    assert config.watch_dirs == [tmp_path / "w1", tmp_path / "w2"] and config.watch_interval == 0.25
    assert config.serve_dirs == [tmp_path / "s1"] and config.handlers_dirs == [tmp_path / "h1"]
    config = resolve_config(
        build_parser().parse_args(
            ["--config", str(path), "--serve-dir", str(tmp_path / "flagserve"), "--watch-interval", "2"]
        )
    )
    assert config.serve_dirs == [tmp_path / "flagserve"] and config.watch_interval == 2.0
    assert config.watch_dirs == [tmp_path / "w1", tmp_path / "w2"]


def test_flags_override_config_and_paths_follow_the_config_file(tmp_path):
    (tmp_path / "probes").mkdir()
    (tmp_path / "flagprobes").mkdir()
    path = write_config(
        tmp_path,
        '[agent]\ncollector = "tcp://c:1"\nnode_id = "from-file"\ninterval = 2\n'
        'probes_dirs = ["probes"]\ndata_dir = "state"\nlog_level = "debug"\n'
        "batch_delay = 0.01\nheartbeat_interval = 3\n",
    )
    config = resolve_config(build_parser().parse_args(["--config", str(path)]))
    assert (config.collector, config.node_id, config.interval) == ("tcp://c:1", "from-file", 2.0)
    assert config.probes_dirs == [tmp_path / "probes"] and config.data_dir == tmp_path / "state"
    assert (config.log_level, config.batch_delay, config.heartbeat_interval) == ("debug", 0.01, 3.0)
    args = build_parser().parse_args(
        [
            "--config",
            str(path),
            "--collector",
            "tcp://d:2",
            "--node-id",
            "flag",
            "--interval",
            "0.5",
            "--probes-dir",
            str(tmp_path / "flagprobes"),
            "--log-level",
            "warning",
        ]
    )
    config = resolve_config(args)
    assert (config.collector, config.node_id, config.interval, config.log_level) == (
        "tcp://d:2",
        "flag",
        0.5,
        "warning",
    )
    assert config.probes_dirs == [tmp_path / "flagprobes"]
    assert config.batch_delay == 0.01  # not given as a flag: the file's value stays


def test_defaults():
    config = resolve_config(build_parser().parse_args(["--collector", "tcp://c:1"]))
    assert config.node_id == socket.gethostname()
    assert config.interval == 1.0 and config.batch_delay == 0.005 and config.heartbeat_interval == 1.0
    assert config.data_dir == Path.home() / ".local/state/labscope" / f"agent-{socket.gethostname()}"
    assert config.probes_dirs == [] and config.log_level == "info"
    assert config.watch_dirs == config.serve_dirs == config.handlers_dirs == [] and config.watch_interval == 1.0
    assert config.outbox_max_bytes == 256 * 2**20 and config.outbox_max_age == 7 * 86400


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("3600", 3600.0),
        ("90s", 90.0),
        ("30m", 1800.0),
        ("1.5h", 5400.0),
        ("7d", 604800.0),
        (" 2 d ", 172800.0),
        (45, 45.0),
        (0.5, 0.5),
    ],
)
def test_ages(text, seconds):
    assert parse_age(text) == seconds


def test_outbox_bounds_from_config_and_flags(tmp_path):
    path = write_config(tmp_path, '[agent]\ncollector = "tcp://c:1"\noutbox_max_mb = 0.5\noutbox_max_age = "2h"\n')
    config = resolve_config(build_parser().parse_args(["--config", str(path)]))
    assert (config.outbox_max_bytes, config.outbox_max_age) == (512 * 1024, 7200.0)
    path = write_config(tmp_path, '[agent]\ncollector = "tcp://c:1"\noutbox_max_age = 600\n')
    config = resolve_config(build_parser().parse_args(["--config", str(path), "--outbox-max-mb", "1.5"]))
    assert (config.outbox_max_bytes, config.outbox_max_age) == (int(1.5 * 2**20), 600.0)
    config = resolve_config(build_parser().parse_args(["--config", str(path), "--outbox-max-age", "90s"]))
    assert config.outbox_max_age == 90.0


def test_malloc_settings_apply_on_glibc():
    import platform

    from node_agent.cli import keep_malloc_arenas

    assert keep_malloc_arenas() is (platform.libc_ver()[0] == "glibc")
