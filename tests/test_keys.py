"""messages/keys.py and ``labscope keys``: key files, their errors, and where clients take their keys from."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import zmq.auth

from labscope import cli
from labscope.keys_cmd import main as keys_main
from messages.errors import KeyFileError
from messages.keys import ENV_SECRET, ENV_SERVER_KEY, client_keys, fingerprint, generate, load


@pytest.fixture(autouse=True)
def _no_key_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_SERVER_KEY, raising=False)
    monkeypatch.delenv(ENV_SECRET, raising=False)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ------------------------------------------------------------ messages/keys.py


def test_generate_writes_a_pyzmq_pair_with_a_private_secret_file(tmp_path: Path) -> None:
    cert = generate(tmp_path / "keys", "node-1")
    public, secret = tmp_path / "keys" / "node-1.key", tmp_path / "keys" / "node-1.key_secret"
    assert cert.path == secret and cert.name == "node-1"
    assert mode(secret) == 0o600 and mode(public) == 0o644
    # pyzmq reads both files back as the same pair.
    assert zmq.auth.load_certificate(public) == (cert.public, None)
    assert zmq.auth.load_certificate(secret) == (cert.public, cert.secret)
    assert cert.fingerprint == fingerprint(cert.public) and cert.fingerprint.startswith("SHA256:")
    assert len(cert.fingerprint) == len("SHA256:") + 16


def test_generate_refuses_to_overwrite_either_file(tmp_path: Path) -> None:
    generate(tmp_path, "a")
    before = (tmp_path / "a.key_secret").read_bytes()
    with pytest.raises(KeyFileError, match="exists; labscope never overwrites"):
        generate(tmp_path, "a")
    (tmp_path / "a.key").unlink()
    with pytest.raises(KeyFileError, match="a.key_secret exists"):
        generate(tmp_path, "a")
    assert (tmp_path / "a.key_secret").read_bytes() == before


@pytest.mark.parametrize("name", ["", ".hidden", "a/b", "..\\x"])
def test_generate_refuses_a_name_that_is_not_a_plain_file_name(tmp_path: Path, name: str) -> None:
    with pytest.raises(KeyFileError, match="not a plain file name"):
        generate(tmp_path, name)


def test_nodes_metadata_round_trips_through_both_files(tmp_path: Path) -> None:
    generate(tmp_path, "rack-1", ("n2", "n3"))
    for suffix in (".key", ".key_secret"):
        cert = load(tmp_path / f"rack-1{suffix}")
        assert cert.metadata == {"nodes": "n2 n3"}
        assert cert.nodes() == ("rack-1", "n2", "n3")
    assert load(tmp_path / "rack-1.key").secret is None


def test_load_errors_name_the_file_and_the_fix(tmp_path: Path) -> None:
    generate(tmp_path, "c")
    with pytest.raises(KeyFileError, match=r"missing.key does not exist \(make one with 'labscope keys generate"):
        load(tmp_path / "missing.key")
    junk = tmp_path / "junk.key"
    junk.write_text('curve\n    public-key = "short"\n')
    with pytest.raises(KeyFileError, match="junk.key is not a CURVE certificate: no valid public-key line"):
        load(junk)
    with pytest.raises(KeyFileError, match="holds no secret key: pass the NAME.key_secret file, not NAME.key"):
        load(tmp_path / "c.key", secret=True)
    with pytest.raises(KeyFileError, match="cannot read key file"):
        load(tmp_path)  # a folder
    with pytest.raises(KeyFileError, match="no home folder for ~no-such-user-labscope"):
        load("~no-such-user-labscope/keys/c.key")


def test_client_keys_none_when_nothing_is_given() -> None:
    assert client_keys(None, None) is None
    assert client_keys(None, None, {}) is None


@pytest.mark.parametrize(
    ("server", "secret", "missing"), [("S", None, "--curve-secret"), (None, "C", "--curve-server-key")]
)
def test_half_given_flags_are_a_usage_error(server: str | None, secret: str | None, missing: str) -> None:
    with pytest.raises(KeyFileError, match=f"pass {missing}"):
        client_keys(server, secret)


def test_client_keys_from_flags_then_environment_then_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server, mine, other = generate(tmp_path, "collector"), generate(tmp_path, "me"), generate(tmp_path, "other")
    config = {"curve_server_key": str(tmp_path / "collector.key"), "curve_secret": str(other.path)}
    keys = client_keys(None, None, config)
    assert keys is not None and keys.name == "other" and keys.server_public == server.public
    monkeypatch.setenv(ENV_SECRET, str(mine.path))
    keys = client_keys(None, None, config)
    assert keys is not None and (keys.name, keys.public, keys.secret) == ("me", mine.public, mine.secret)
    keys = client_keys(None, str(other.path), config)
    assert keys is not None and keys.name == "other" and keys.fingerprint == other.fingerprint


def test_client_keys_wants_the_secret_file_as_secret(tmp_path: Path) -> None:
    generate(tmp_path, "collector")
    generate(tmp_path, "me")
    with pytest.raises(KeyFileError, match="holds no secret key"):
        client_keys(str(tmp_path / "collector.key"), str(tmp_path / "me.key"))


# ------------------------------------------------------------ labscope keys


def test_keys_generate_then_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert keys_main(["generate", str(tmp_path / "k"), "n1", "--nodes", "n2, n3"]) == 0
    out = capsys.readouterr().out
    cert = load(tmp_path / "k" / "n1.key_secret")
    assert f"public:      {tmp_path / 'k' / 'n1.key'}" in out
    assert f"secret:      {tmp_path / 'k' / 'n1.key_secret'}" in out
    assert f"fingerprint: {cert.fingerprint}" in out
    assert mode(tmp_path / "k" / "n1.key_secret") == 0o600
    assert keys_main(["show", str(tmp_path / "k" / "n1.key")]) == 0
    shown = capsys.readouterr().out
    assert cert.public.decode() in shown and cert.fingerprint in shown
    assert "name:        n1" in shown and "nodes:       n2 n3" in shown and "node ids:    n1 n2 n3" in shown
    assert "no (public certificate)" in shown
    assert keys_main(["show", str(tmp_path / "k" / "n1.key_secret")]) == 0
    shown = capsys.readouterr().out
    assert cert.secret is not None and cert.secret.decode() not in shown  # never prints the secret key


def test_keys_generate_refuses_overwrite_with_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert keys_main(["generate", str(tmp_path), "n1"]) == 0
    capsys.readouterr()
    assert keys_main(["generate", str(tmp_path), "n1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("labscope keys: error: ") and "never overwrites" in err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], "required: ACTION"),
        (["generate", "dir"], "required: NAME"),
        (["rotate"], "invalid choice"),
        (["show"], "required: FILE"),
    ],
)
def test_keys_bad_usage_is_one_line_and_exit_2(argv: list[str], expected: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        keys_main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1 and expected in err


def test_keys_show_of_a_missing_or_bad_file_is_one_line(tmp_path: Path, capsys) -> None:
    assert keys_main(["show", str(tmp_path / "nope.key")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    (tmp_path / "bad.key").write_text("hello\n")
    assert keys_main(["show", str(tmp_path / "bad.key")]) == 2
    assert "is not a CURVE certificate" in capsys.readouterr().err


def test_keys_help_explains_and_is_listed(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        keys_main(["generate", "--help"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0 and "never overwrites" in out.lower() and "--nodes" in out
    assert "keys" in cli.SUBCOMMANDS
    assert cli.main(["keys", "show", "/nonexistent/x.key"]) == 2
