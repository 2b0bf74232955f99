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
