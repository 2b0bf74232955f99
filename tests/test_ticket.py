"""CollectorTicket: every option has a default; the TOML config and the flags fill the same ticket."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

import collector
from collector.config import SCHEMA, CollectorConfig, CollectorTicket, default_data_dir, parse_args
from messages.errors import ConfigError


def test_the_embedding_names_are_exported_and_the_old_name_is_the_same_class() -> None:
    from collector import Collector, CollectorObserver
    from collector import CollectorTicket as exported

    assert exported is CollectorTicket is CollectorConfig
    assert Collector.__module__ == "collector.embed"
    assert CollectorObserver.__module__ == "collector.observer"
    assert set(collector.__all__) >= {"Collector", "CollectorTicket", "CollectorObserver"}
    with pytest.raises(AttributeError):
        _ = collector.NoSuchName  # type: ignore[attr-defined]


def test_an_empty_ticket_listens_on_loopback_and_keeps_its_state_per_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    ticket = CollectorTicket()
    assert (ticket.listen_agents, ticket.listen_clients) == ("tcp://127.0.0.1:5555", "tcp://127.0.0.1:5556")
    assert ticket.data_dir == Path.home() / ".local" / "state" / "labscope" / "collector"
    assert (ticket.store, ticket.store_args, ticket.observers) == ("sqlite", {}, [])
    assert ticket.alias and ticket.backlog_alert == 10_000 and ticket.observer_queue == 10_000
    assert parse_args([]) == CollectorTicket()  # no flags, no file: the ticket's defaults


def test_xdg_state_home_moves_the_default_data_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert default_data_dir() == tmp_path / "labscope" / "collector"
    monkeypatch.setenv("XDG_STATE_HOME", "relative")  # the XDG spec: a relative path is ignored
    assert default_data_dir() == Path.home() / ".local" / "state" / "labscope" / "collector"


def test_every_ticket_field_is_a_config_key_but_the_sections() -> None:
    names = {f.name for f in dataclasses.fields(CollectorTicket)}
    assert set(SCHEMA) == names - {"modules", "distributions", "config_path"}
    assert SCHEMA["node_timeout"] == (int, float) and SCHEMA["data_dir"] is str and SCHEMA["store_args"] is dict


# (TOML line, flags): each pair sets the same options.
SAME = [
    ('listen_agents = "tcp://127.0.0.1:*"', ["--listen-agents", "tcp://127.0.0.1:*"]),
    ('listen_clients = "tcp://[::1]:7000"', ["--listen-clients", "tcp://[::1]:7000"]),
    ('data_dir = "state"', ["--data-dir", "state"]),
    ('alias = "bench-3"', ["--alias", "bench-3"]),
    ("node_timeout = 2.5", ["--node-timeout", "2.5"]),
    ("update_interval = 0.5", ["--update-interval", "0.5"]),
    ("retention = 60", ["--retention", "60"]),
    ("snapshot_interval = 5", ["--snapshot-interval", "5"]),
    ("journal = false", ["--no-journal"]),
    ('log_level = "debug"', ["--log-level", "debug"]),
    ('modules_dirs = ["m1", "m2"]', ["--modules-dir", "m1", "--modules-dir", "m2"]),
    ('distributions_dirs = ["d"]', ["--distributions-dir", "d"]),
    ('disable_modules = ["files"]', ["--disable-module", "files"]),
    ('store = "memory"', ["--store", "memory"]),
    ('observers = ["w.py:W", "lab.watch:Pager"]', ["--observer", "w.py:W", "--observer", "lab.watch:Pager"]),
    ('site = "lab-1"', ["--site", "lab-1"]),
    ("site_heartbeat = 0.5", ["--site-heartbeat", "0.5"]),
    ('ingest_nats = "nats://a:4222,nats://b:4222"', ["--ingest-nats", "nats://a:4222,nats://b:4222"]),
    ('ingest_stream = "LAB"', ["--ingest-stream", "LAB"]),
    ('ingest_sites = ["a", "b"]', ["--ingest-sites", "a,b"]),
    ("ingest_site_timeout = 30", ["--ingest-site-timeout", "30"]),
]


@pytest.mark.parametrize(("line", "flags"), SAME)
def test_the_toml_config_and_the_flags_give_the_same_ticket(tmp_path: Path, line: str, flags: list[str]) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f"[collector]\n{line}\n")
    from_file = parse_args(["--config", str(path)])
    from_flags = parse_args(flags)
    from_flags.config_path = from_file.config_path
    assert from_file == from_flags
    assert from_file != CollectorTicket(config_path=str(path))  # the line did change something


def test_flags_override_the_file_and_repeatable_flags_add_to_its_lists(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[collector]\nnode_timeout = 9\nobservers = ["a.py:A"]\nstore_args = {dsn = "x"}\n')
    ticket = parse_args(["--config", str(path), "--node-timeout", "3", "--observer", "b.py:B"])
    assert ticket.node_timeout == 3.0
    assert ticket.observers == ["a.py:A", "b.py:B"]
    assert ticket.store_args == {"dsn": "x"}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("observers = [1]", "observers must be a list of strings"),
        ('observers = "a.py:A"', "observers must be list"),
        ("store_args = 3", "store_args must be dict"),
        ("backlog_alert = 0", "backlog_alert must be greater than 0"),
        ("observer_queue = 1.5", "observer_queue must be int"),
    ],
)
def test_bad_new_keys_are_one_clear_config_error(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f"[collector]\n{line}\n")
    with pytest.raises(ConfigError, match=message) as caught:
        parse_args(["--config", str(path)])
    assert str(path) in str(caught.value)


def test_every_flag_fills_a_ticket_field() -> None:
    from collector.config import _APPENDING, build_parser

    names = {f.name for f in dataclasses.fields(CollectorTicket)}
    dests = {action.dest for action in build_parser()._actions} - {"help", "config"}
    assert {_APPENDING.get(dest, dest) for dest in dests} <= names
