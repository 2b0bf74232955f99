"""The web page's parts without a process: flags and config, the token, the files, atomic saves, the feed."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.config import DEFAULT_WEB_LISTEN, check_config_text, check_web_listen, parse_args
from collector.web.auth import Authorizer
from collector.web.configfiles import MAX_BYTES, ConfigFiles, EditRefused, write_atomically
from collector.web.server import is_loopback, split_listen
from collector.web.stream import NodeFeed
from messages.errors import ConfigError

TOKEN = "t0ken-of-enough-length"


def test_web_is_off_by_default_and_loopback_when_on(tmp_path: Path) -> None:
    assert parse_args([]).web is False
    config = parse_args(["--web"])
    assert config.web is True and config.web_listen == DEFAULT_WEB_LISTEN
    assert parse_args(["--web", "8080"]).web_listen == "127.0.0.1:8080"
    assert parse_args(["--web", ":8080"]).web_listen == "127.0.0.1:8080"
    assert parse_args(["--web", "0.0.0.0:80"]).web_listen == "0.0.0.0:80"
    assert parse_args(["--web", "[::1]:81"]).web_listen == "[::1]:81"


def test_web_keys_in_the_config_file(tmp_path: Path) -> None:
    extra = tmp_path / "lab.toml"
    extra.write_text("")
    path = tmp_path / "c.toml"
    path.write_text(f'[collector]\nweb = true\nweb_listen = ":9000"\nextra_config_files = ["{extra}"]\n')
    config = parse_args(["--config", str(path)])
    assert (config.web, config.web_listen, config.extra_config_files) == (True, "127.0.0.1:9000", [extra])
    assert parse_args(["--config", str(path), "--web", "9001"]).web_listen == "127.0.0.1:9001"


@pytest.mark.parametrize("text", ["", "host:", "a:b", "1.2.3.4:70000", "x y:1"])
def test_bad_web_addresses(text: str) -> None:
    with pytest.raises(ConfigError):
        check_web_listen(text)


def test_extra_files_must_exist_and_have_distinct_names(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "x.toml").write_text("")
    (tmp_path / "b" / "x.toml").write_text("")
    with pytest.raises(ConfigError, match="taken by"):
        parse_args(
            ["--extra-config-file", str(tmp_path / "a/x.toml"), "--extra-config-file", str(tmp_path / "b/x.toml")]
        )
    with pytest.raises(ConfigError, match="not a file"):
        parse_args(["--extra-config-file", str(tmp_path / "nope.toml")])


def test_the_token_file_must_hold_a_token(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("short\n")
    with pytest.raises(ConfigError, match="at least 16"):
        parse_args(["--web-token-file", str(token)])
    with pytest.raises(ConfigError, match="cannot read"):
        parse_args(["--web-token-file", str(tmp_path / "missing")])


def test_the_authorizer_wants_bearer_and_the_exact_token(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    auth = Authorizer(path)
    assert auth.enabled and auth.allows(f"Bearer {TOKEN}") and auth.allows(f"bearer {TOKEN}")
    for header in (None, "", TOKEN, f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer", f"Bearer {TOKEN[:-1]}"):
        assert not auth.allows(header), header
    off = Authorizer(None)
    assert not off.enabled and not off.allows(f"Bearer {TOKEN}")


def files_in(tmp_path: Path, own: Path | None = None) -> tuple[ConfigFiles, dict[str, Path]]:
    paths = {"a.toml": tmp_path / "a.toml", "b.json": tmp_path / "b.json"}
    paths["a.toml"].write_text("a = 1\n")
    paths["b.json"].write_text('{"b": 1}')
    return ConfigFiles([*paths.values(), *([own] if own else [])], str(own) if own else None), paths


def test_names_select_configured_files_only(tmp_path: Path) -> None:
    files, _ = files_in(tmp_path)
    assert [f["name"] for f in files.listing()] == ["a.toml", "b.json"]
    for name in ("../a.toml", str(tmp_path / "a.toml"), "c.toml", "", "."):
        assert files.get(name) is None


def test_a_bad_edit_leaves_the_file_untouched(tmp_path: Path) -> None:
    files, paths = files_in(tmp_path)
    cases = [("a.toml", b"a = [", "not valid TOML"), ("b.json", b"{", "not valid JSON"), ("a.toml", b"\xff", "UTF-8")]
    for name, body, reason in cases:
        file = files.get(name)
        assert file is not None
        with pytest.raises(EditRefused, match=reason):
            files.save(file, body)
    with pytest.raises(EditRefused, match="at most"):
        files.save(files.get("a.toml"), b"#" * (MAX_BYTES + 1))  # type: ignore[arg-type]
    assert paths["a.toml"].read_text() == "a = 1\n" and paths["b.json"].read_text() == '{"b": 1}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.toml", "b.json"]


def test_a_good_edit_replaces_the_file_and_keeps_its_mode(tmp_path: Path) -> None:
    files, paths = files_in(tmp_path)
    os.chmod(paths["a.toml"], 0o640)
    files.save(files.get("a.toml"), b"a = 2\n")  # type: ignore[arg-type]
    files.save(files.get("b.json"), b'{"b": 2}')  # type: ignore[arg-type]
    assert paths["a.toml"].read_text() == "a = 2\n" and json.loads(paths["b.json"].read_text()) == {"b": 2}
    assert paths["a.toml"].stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.toml", "b.json"]


def test_a_symlinked_file_is_edited_where_it_points(tmp_path: Path) -> None:
    target = tmp_path / "real.toml"
    target.write_text("x = 1\n")
    link = tmp_path / "link.toml"
    link.symlink_to(target)
    files = ConfigFiles([link], None)
    files.save(files.get("link.toml"), b"x = 2\n")  # type: ignore[arg-type]
    assert link.is_symlink() and target.read_text() == "x = 2\n"


def test_the_collectors_own_config_is_checked_with_its_schema(tmp_path: Path) -> None:
    own = tmp_path / "collector.toml"
    own.write_text("[collector]\n")
    files, _ = files_in(tmp_path, own)
    file = files.get("collector.toml")
    assert file is not None and file.own
    for body, reason in [
        (b"[collector]\nnode_timeout = 0\n", "node_timeout"),
        (b"[collector]\nbogus = 1\n", "bogus"),
        (b"[nonsense]\n", "unknown section"),
        (b'[distributions.x]\ntype = "jsonl"\nmode = "all"\n', "mode"),
        (b'[collector]\nweb_listen = "here"\n', "web_listen"),
    ]:
        with pytest.raises(EditRefused, match=reason):
            files.save(file, body)
    assert own.read_text() == "[collector]\n"
    files.save(file, b"[collector]\nnode_timeout = 9\nweb = true\n")
    assert check_config_text(own.read_text(), str(own)).node_timeout == 9


def test_write_atomically_leaves_no_temporary_file_on_failure(tmp_path: Path) -> None:
    path = tmp_path / "f.toml"
    path.write_text("old")
    with pytest.raises(TypeError):
        write_atomically(path, "not bytes")  # type: ignore[arg-type]
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["f.toml"]


def test_listen_addresses() -> None:
    assert split_listen("127.0.0.1:5557") == ("127.0.0.1", 5557)
    assert split_listen("[::1]:80") == ("::1", 80)
    assert is_loopback("127.0.0.2") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("lab-host")


def test_the_feed_sends_the_view_then_changes_only() -> None:
    view: list[dict] = [{"node": "n1", "status": "live"}]
    feed = NodeFeed(lambda: list(view))
    stream = feed.events(keepalive=0.01)
    assert next(stream) == b"retry: 2000\n\n"
    assert next(stream) == b'event: nodes\ndata: [{"node":"n1","status":"live"}]\n\n'
    assert feed.listeners == 1
    assert next(stream) == b": keepalive\n\n"  # nothing changed
    view[0]["status"] = "lost"
    feed.refresh()
    assert b'"lost"' in next(stream)
    stream.close()
    assert feed.listeners == 0


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.text(max_size=40), body=st.binary(max_size=200), header=st.one_of(st.none(), st.text(max_size=60)))
def test_wire_input_never_escapes_or_raises_unexpectedly(tmp_path: Path, name: str, body: bytes, header: str | None):
    """Any name selects a configured file or none; any body is saved or refused with the file untouched."""
    files, paths = files_in(tmp_path)
    file = files.get(name)
    assert file is None or name in paths
    target = files.get("a.toml")
    assert target is not None
    before = paths["a.toml"].read_bytes()
    try:
        files.save(target, body)
    except EditRefused:
        assert paths["a.toml"].read_bytes() == before
    else:
        assert paths["a.toml"].read_bytes() == body
    token = tmp_path / "token"
    token.write_text(TOKEN)
    if Authorizer(token).allows(header):  # never raises; yes only for the scheme and the exact token
        assert header is not None and header.split()[0].lower() == "bearer" and header.split()[1:] == [TOKEN]
