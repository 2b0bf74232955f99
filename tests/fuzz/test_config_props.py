"""Config parsing under random input: a bad file, key, value or flag is one ConfigError line, never a traceback.

The collector's TOML (``[collector]``, ``[modules.NAME]``, ``[distributions.NAME]``)
and flags (collector/config.py) and the agent's ``[agent]`` section and flags
(node_agent/cli.py) take random keys and values: known keys with values of
every TOML type (NaN and infinities included), unknown and hostile keys, and
files that are not TOML or not UTF-8. The outcome is a config, a ConfigError
whose message is one line, or argparse's usage error (exit status 2).
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from collector.config import SCHEMA, parse_args
from messages.errors import ConfigError
from node_agent.cli import CONFIG_SCHEMA, build_parser, resolve_config
from tests.fuzz.strategies import HOSTILE

FRESH = itertools.count()
SETTINGS = settings(
    max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

SCALARS = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.floats(),
    st.sampled_from([0, -1, 0.0, math.nan, math.inf, -math.inf, True, False]),
    HOSTILE,
    st.sampled_from(["tcp://*:5555", "tcp://127.0.0.1:0", "ipc://x", "info", "full", "jsonl", "~nosuchuser/x", "7d"]),
)
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=3), st.dictionaries(HOSTILE, SCALARS, max_size=2))


def toml_value(value: Any) -> str:
    """``value`` written as TOML (tomllib reads, the standard library does not write)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{toml_value(str(k))} = {toml_value(v)}" for k, v in value.items()) + "}"


def toml(sections: dict[str, dict[str, Any]]) -> str:
    lines = []
    for section, values in sections.items():
        lines.append(f"[{toml_value(section)}]")
        lines.extend(f"{toml_value(key)} = {toml_value(value)}" for key, value in values.items())
    return "\n".join(lines) + "\n"


def sections(keys: list[str], names: list[str]) -> st.SearchStrategy[dict[str, dict[str, Any]]]:
    """Config files: the known section with known and random keys, sub-tables, and unknown sections."""
    table = st.dictionaries(st.sampled_from(keys) | HOSTILE, VALUES, max_size=4)
    subtables = st.dictionaries(
        st.sampled_from(["jsonl", "events", "a b", "x\ny"]) | HOSTILE,
        st.dictionaries(st.sampled_from(["type", "mode", "codes", "queue_max", "keep", "cpu_limit"]) | HOSTILE, VALUES),
        max_size=2,
    )
    return st.fixed_dictionaries(
        {names[0]: table},
        optional={"modules": subtables, "distributions": subtables, "x\nz": table, "other": table},
    )


def write(tmp_path: Path, text: str | bytes) -> str:
    path = tmp_path / f"config-{next(FRESH)}.toml"
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return str(path)


def one_line(exc: ConfigError) -> None:
    assert "\n" not in str(exc) and str(exc), repr(str(exc))


@SETTINGS
@given(sections(list(SCHEMA), ["collector"]))
@example({"collector": {"update_interval": math.nan}})  # accepted before the fix
@example({"collector": {"retention": math.inf}})
@example({"collector": {"a\nb": 1}})  # a two-line message before the fix
@example({"x\nz": {}})
@example({"collector": {}, "distributions": {"x\ny": {"type": "jsonl"}}})
def test_collector_config_files_give_a_config_or_one_line(tmp_path: Path, data: dict[str, dict[str, Any]]) -> None:
    try:
        config = parse_args(["--config", write(tmp_path, toml(data))])
    except ConfigError as exc:
        one_line(exc)
        return
    for key, expected in SCHEMA.items():
        value = getattr(config, key)
        if expected == (int, float) or expected is int:
            assert math.isfinite(value) and value > 0, (key, value)


@SETTINGS
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
@example(b'[collector]\nalias = "\xff"\n')  # not UTF-8: UnicodeDecodeError before the fix
def test_config_files_that_are_not_toml_give_one_line(tmp_path: Path, blob: bytes) -> None:
    path = write(tmp_path, blob)
    for parse in (lambda: parse_args(["--config", path]), lambda: agent(["--config", path])):
        try:
            parse()
        except ConfigError as exc:
            one_line(exc)


FLAG_VALUES = HOSTILE | st.sampled_from(["0", "-1", "nan", "inf", "1e999", "2", "tcp://127.0.0.1:5555"])


@SETTINGS
@given(
    st.lists(
        st.tuples(
            st.sampled_from(
                ["--listen-agents", "--listen-clients", "--alias", "--update-interval", "--node-timeout", "--retention"]
                + ["--snapshot-interval", "--log-level", "--modules-dir", "--disable-module", "--data-dir"]
            ),
            FLAG_VALUES,
        ),
        max_size=4,
    )
)
def test_collector_flags_give_a_config_or_a_usage_error(flags: list[tuple[str, str]]) -> None:
    argv = [f"{flag}={value}" for flag, value in flags]
    try:
        parse_args(argv)
    except SystemExit as exc:
        assert exc.code == 2
    except ConfigError as exc:
        one_line(exc)


def agent(argv: list[str]) -> object:
    return resolve_config(build_parser().parse_args(argv))


@SETTINGS
@given(sections(list(CONFIG_SCHEMA), ["agent"]))
@example({"agent": {"collector": "tcp://127.0.0.1:5555", "serve_dirs": ["~nosuchuser/x"]}})  # RuntimeError before
@example({"agent": {"collector": "tcp://127.0.0.1:5555", "data_dir": "~nosuchuser"}})
@example({"agent": {"collector": "tcp://127.0.0.1:5555", "a\nb": 1}})
def test_agent_config_files_give_a_config_or_one_line(tmp_path: Path, data: dict[str, dict[str, Any]]) -> None:
    try:
        agent(["--config", write(tmp_path, toml(data)), "--data-dir", str(tmp_path / "agent")])
    except ConfigError as exc:
        one_line(exc)
    except SystemExit as exc:
        assert exc.code == 2


@SETTINGS
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["--node-id", "--interval", "--probes-dir", "--watch-dir", "--watch-interval"])
            | st.sampled_from(["--serve-dir", "--handlers-dir", "--outbox-max-mb", "--outbox-max-age", "--log-level"]),
            FLAG_VALUES | st.sampled_from(["~nosuchuser", "~nosuchuser/x"]),
        ),
        max_size=4,
    )
)
@example([("--serve-dir", "~nosuchuser/x")])  # RuntimeError before the fix
@example([("--serve-dir", "~\x00")])  # ValueError "embedded null byte" from expanduser() before the fix
@example([("--probes-dir", "a" * 5000)])  # OSError "File name too long" from is_dir() before the fix (found in CI)
@example([("--serve-dir", "a" * 5000)])  # OSError (file name too long) before the fix
@example([("--probes-dir", "no\nsuch")])  # a two-line message before the fix (found by a helper's run)
def test_agent_flags_give_a_config_or_a_usage_error(tmp_path: Path, flags: list[tuple[str, str]]) -> None:
    argv = ["--collector", "tcp://127.0.0.1:5555", "--data-dir", str(tmp_path / "agent")]
    argv += [f"{flag}={value}" for flag, value in flags]
    try:
        agent(argv)
    except SystemExit as exc:
        assert exc.code == 2
    except ConfigError as exc:
        one_line(exc)


def test_regressions_are_one_config_error_line(tmp_path: Path) -> None:
    """Regressions: each of these raised another exception, gave two lines, or was taken."""
    cases = [
        (parse_args, ["--config", write(tmp_path, b'[collector]\nalias = "\xff"\n')]),
        (parse_args, ["--config", write(tmp_path, "[collector]\nupdate_interval = nan\n")]),
        (parse_args, ["--config", write(tmp_path, '[collector]\n"a\\nb" = 1\n')]),
        (agent, ["--collector", "tcp://127.0.0.1:5555", "--serve-dir", "~nosuchuser/x"]),
    ]
    for parse, argv in cases:
        with pytest.raises(ConfigError) as caught:
            parse(argv)
        one_line(caught.value)
