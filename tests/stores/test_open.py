"""Choosing a store by name: built-in names, ``package.module:Class`` drop-ins, and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from collector.stores import open_store
from messages.errors import ConfigError


def test_bad_names_and_args_are_one_line_config_errors(tmp_path: Path) -> None:
    for name in ("nosuch", "nosuch.module:Class", "collector.stores.base:StoreError", "collector.stores:Nope"):
        with pytest.raises(ConfigError) as info:
            open_store(name, {}, tmp_path)
        assert "\n" not in str(info.value) and name in str(info.value)
    with pytest.raises(ConfigError, match="store_args"):
        open_store("memory", {"colour": "red"}, tmp_path)
    dropin = open_store("tests.stores.dropin:DropInStore", {"label": "x"}, tmp_path)
    assert getattr(dropin, "label") == "x"


def test_an_unreachable_postgresql_skips_in_one_line_and_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.stores import conftest

    monkeypatch.setattr(conftest, "PG_DSN", "host=127.0.0.1 port=1 dbname=test connect_timeout=2")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception) as skipped:
        conftest.need_postgresql()
    assert "\n" not in str(skipped.value.msg) and "no PostgreSQL" in str(skipped.value.msg)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        conftest.need_postgresql()
