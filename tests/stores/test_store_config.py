"""``store`` and ``store_args`` in the config file and the flags; the drop-in example of docs/stores.md runs."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from collector.config import parse_args
from collector.stores import open_store
from collector.stores.null import NullEvents
from messages.errors import ConfigError

DOC = Path(__file__).resolve().parents[2] / "docs" / "stores.md"


def config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return str(path)


def test_the_file_and_the_flags_fill_store_and_store_args(tmp_path: Path) -> None:
    path = config(tmp_path, '[collector]\nstore = "postgresql"\n[collector.store_args]\ndsn = "host=x"\nschema = "s"\n')
    parsed = parse_args(["--config", path])
    assert (parsed.store, parsed.store_args) == ("postgresql", {"dsn": "host=x", "schema": "s"})
    parsed = parse_args(["--config", path, "--store-arg", "schema=t", "--store-arg", "pool_size=3"])
    assert parsed.store_args == {"dsn": "host=x", "schema": "t", "pool_size": "3"}
    assert parse_args([]).store == "sqlite" and parse_args([]).store_args == {}
    assert parse_args(["--store", "memory"]).store == "memory"


@pytest.mark.parametrize(
    ("text", "flags", "message"),
    [
        ('[collector]\nstore = "mongo"\n', [], r"\[collector\] store 'mongo': not a backend name"),
        ("[collector]\nstore_args = 3\n", [], "store_args must be dict"),
        ("", ["--store", "x.y:Z"], "--store: store 'x.y:Z': cannot import x.y"),
        ("", ["--store-arg", "novalue"], "expected KEY=VALUE"),
    ],
)
def test_bad_store_settings_are_one_line(tmp_path: Path, text: str, flags: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        parse_args(["--config", config(tmp_path, text), *flags])
    assert "\n" not in str(caught.value)


def test_the_drop_in_example_of_the_doc_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    section = DOC.read_text().split("## Writing a drop-in backend", 1)[1]
    source = re.search(r"```python\n(.*?)\n```", section, re.DOTALL)
    assert source is not None
    (tmp_path / "quiet_store.py").write_text(source.group(1) + "\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        store = open_store("quiet_store:QuietStore", {"label": "lab"}, tmp_path)
        assert isinstance(store.events, NullEvents) and getattr(store, "label") == "lab"
        store.metadata.put("k", "v")
        assert store.metadata.get("k") == "v"
    finally:
        sys.modules.pop("quiet_store", None)
