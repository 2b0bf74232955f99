"""The collector's allow lists without sockets: the key ring, the CURVE flags' checks, roles and refusals."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pytest

from collector.config import parse_args
from collector.counters import Counters
from collector.keyring import KeyRing
from collector.peers import OPERATOR, VIEWER, Peer, needs_operator, plain_peer
from collector.refusals import WRONG_NODE, Refusals
from collector.security import is_loopback
from messages.errors import ConfigError, KeyFileError
from messages.keys import Certificate, generate


@pytest.fixture
def folders(tmp_path: Path) -> dict[str, Path]:
    made = {name: tmp_path / name for name in ("secrets", "agents", "viewers", "operators")}
    for folder in made.values():
        folder.mkdir()
    return made


def allow(folders: dict[str, Path], folder: str, name: str, nodes: tuple[str, ...] = ()) -> Certificate:
    """Generate ``name`` among the secrets and copy its public file into the allow ``folder``."""
    cert = generate(folders["secrets"], name, nodes)
    shutil.copy(folders["secrets"] / f"{name}.key", folders[folder])
    return cert


def ring(folders: dict[str, Path]) -> KeyRing:
    return KeyRing(folders["agents"], folders["viewers"], folders["operators"])


def key(cert: Certificate) -> str:
    return cert.public.decode()


def test_agent_keys_claim_their_name_and_metadata_nodes(folders: dict[str, Path]) -> None:
    n1 = allow(folders, "agents", "n1")
    rack = allow(folders, "agents", "rack", nodes=("n3", "n4"))
    keys = ring(folders)
    assert keys.agent(key(n1)).nodes == ("n1",)  # type: ignore[union-attr]
    entry = keys.agent(key(rack))
    assert entry is not None and entry.nodes == ("rack", "n3", "n4") and entry.fingerprint == rack.fingerprint
    assert keys.client(key(n1)) is None, "an agent key is no client key"


def test_one_agent_key_under_two_names_may_claim_both(folders: dict[str, Path]) -> None:
    n1 = allow(folders, "agents", "n1")
    shutil.copy(folders["agents"] / "n1.key", folders["agents"] / "n2.key")
    assert ring(folders).agent(key(n1)).nodes == ("n1", "n2")  # type: ignore[union-attr]


def test_an_operator_is_also_a_viewer_and_the_stronger_role_wins(folders: dict[str, Path]) -> None:
    viewer = allow(folders, "viewers", "victor")
    both = allow(folders, "viewers", "olga")
    shutil.copy(folders["viewers"] / "olga.key", folders["operators"])
    keys = ring(folders)
    assert keys.client(key(viewer)).role == VIEWER  # type: ignore[union-attr]
    assert keys.client(key(both)).role == OPERATOR  # type: ignore[union-attr]
    assert keys.agent(key(both)) is None


def test_bad_files_are_logged_once_with_their_path_and_skipped(
    folders: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    good = allow(folders, "agents", "n1")
    (folders["agents"] / "broken.key").write_text('curve\n    public-key = "not a key"\n')
    (folders["agents"] / "binary.key").write_bytes(b"\xff\xfe\x00garbage")
    shutil.copy(folders["secrets"] / "n1.key_secret", folders["agents"])  # not a .key file: ignored
    caplog.set_level(logging.WARNING, logger="collector.keyring")
    keys = ring(folders)
    assert list(keys.agents) == [key(good)]
    keys.reload()
    keys.reload()
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 2, warned
    assert any(str(folders["agents"] / "broken.key") in w for w in warned)
    assert any(str(folders["agents"] / "binary.key") in w for w in warned)


def test_a_missing_folder_is_logged_not_fatal(folders: dict[str, Path], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="collector.keyring")
    keys = KeyRing(folders["agents"] / "gone", None, None)
    assert keys.agents == {} and keys.clients == {}
    assert "gone" in caplog.text


def test_reload_sees_added_changed_and_removed_files(folders: dict[str, Path]) -> None:
    keys = ring(folders)
    assert not keys.reload_if_changed()
    n5 = allow(folders, "agents", "n5")
    assert keys.reload_if_changed() and keys.agent(key(n5)) is not None
    assert not keys.reload_if_changed()
    (folders["agents"] / "n5.key").unlink()
    assert keys.reload_if_changed() and keys.agent(key(n5)) is None
    calls: list[int] = []
    keys.listeners.append(lambda: calls.append(1))
    v = allow(folders, "viewers", "v")
    path = folders["viewers"] / "v.key"
    os.utime(path, ns=(0, 10**9))  # same folder listing, another mtime: still seen
    keys.reload_if_changed()
    assert keys.client(key(v)) is not None and calls


def test_curve_flags_go_together_and_are_checked(folders: dict[str, Path]) -> None:
    generate(folders["secrets"], "collector")
    secret = str(folders["secrets"] / "collector.key_secret")
    config = parse_args(["--curve-secret", secret, "--allow-viewers", str(folders["viewers"])])
    assert config.curve_secret == Path(secret) and config.allow_viewers == folders["viewers"]
    assert config.allow_agents is None
    with pytest.raises(ConfigError, match="--allow-agents needs --curve-secret"):
        parse_args(["--allow-agents", str(folders["agents"])])
    with pytest.raises(ConfigError, match="would let nobody in"):
        parse_args(["--curve-secret", secret])
    with pytest.raises(ConfigError, match="not a folder"):
        parse_args(["--curve-secret", secret, "--allow-agents", str(folders["agents"] / "nope")])
    with pytest.raises(KeyFileError, match="holds no secret key"):
        parse_args(
            ["--curve-secret", str(folders["secrets"] / "collector.key"), "--allow-agents", str(folders["agents"])]
        )


def test_curve_config_keys(folders: dict[str, Path], tmp_path: Path) -> None:
    generate(folders["secrets"], "collector")
    toml = tmp_path / "c.toml"
    toml.write_text(
        f'[collector]\ncurve_secret = "{folders["secrets"] / "collector.key_secret"}"\n'
        f'allow_operators = "{folders["operators"]}"\nallow_viewers = ""\n'
    )
    config = parse_args(["--config", str(toml)])
    assert config.allow_operators == folders["operators"] and config.allow_viewers is None


@pytest.mark.parametrize(
    ("endpoint", "loopback"),
    [
        ("tcp://127.0.0.1:5555", True),
        ("tcp://127.3.4.5:*", True),
        ("tcp://[::1]:5555", True),
        ("tcp://localhost:5555", True),
        ("ipc:///tmp/x", True),
        ("inproc://x", True),
        ("tcp://*:5555", False),
        ("tcp://0.0.0.0:5555", False),
        ("tcp://10.0.0.1:5555", False),
        ("tcp://eth0:5555", False),
    ],
)
def test_is_loopback(endpoint: str, loopback: bool) -> None:
    assert is_loopback(endpoint) is loopback


def test_roles() -> None:
    assert needs_operator("ProcessList", True) and needs_operator("Audit", False)
    assert not needs_operator("NodeList", False)
    plain = plain_peer("10.0.0.7")
    assert plain.operator and plain.describe() == "10.0.0.7"
    assert Peer("victor", "SHA256:ab", VIEWER).describe() == "victor (SHA256:ab)"


def test_refusals_count_every_time_and_log_and_raise_an_event_once_per_key_per_minute() -> None:
    counters, events = Counters(), []
    now = [0.0]
    refusals = Refusals(counters, lambda *a, **k: events.append((a, k)))
    refusals.throttled.clock = lambda: now[0]
    for _ in range(3):
        refusals.refuse(WRONG_NODE, "SHA256:aa", "agent: n1 may not claim n2", node="n2")
    refusals.refuse(WRONG_NODE, "SHA256:bb", "another key")
    assert counters["auth-refused"] == 4 and counters["auth-refused:wrong-node"] == 4
    assert len(events) == 2 and events[0][0][:2] == ("auth-refused", "n2")
    assert events[0][1]["reason"] == "wrong-node" and events[0][1]["fingerprint"] == "SHA256:aa"
    now[0] = 61.0
    refusals.refuse(WRONG_NODE, "SHA256:aa", "again")
    assert len(events) == 3
