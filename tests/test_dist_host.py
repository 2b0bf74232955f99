"""Distributions in the collector without sockets: config sections, loading, routing, events, stats."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gevent
import pytest

from collector import dist_host
from collector.addons import Figures, Report
from collector.config import CollectorConfig, DistSection, dist_sections, parse_args
from collector.counters import Counters
from collector.dist import DistCore, Distribution
from collector.dist_host import DistributionHost, Fanout, matches
from collector.dist_runner import Runner
from collector.host import ModuleHost
from collector.registry import NodeRegistry
from messages import ConfigError

pytestmark = pytest.mark.timeout(30)


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


def config_file(tmp_path: Path, text: str) -> str:
    return str(write(tmp_path, "collector.toml", text))


def collector_config(tmp_path: Path, text: str, *flags: str) -> CollectorConfig:
    return parse_args(["--config", config_file(tmp_path, text), "--data-dir", str(tmp_path / "data"), *flags])


# ---------------------------------------------------------------- [distributions.NAME]


def test_a_section_gets_the_common_defaults_and_keeps_its_own_keys(tmp_path: Path) -> None:
    config = collector_config(
        tmp_path,
        '[distributions.a]\ntype = "jsonl"\npath = "x.jsonl"\n'
        '[distributions.b]\ntype = "custom"\ncodes = ["*/up"]\non_full = "collapse"\n',
    )
    a, b = config.distributions
    assert (a.name, a.type, a.codes, a.mode, a.queue_max, a.on_full, a.batch_max, a.cpu_limit) == (
        "a",
        "jsonl",
        ("*",),
        "points",
        10_000,
        "drop-oldest",
        1000,
        0.02,
    )
    assert a.values["path"] == "x.jsonl" and a.values["queue_max"] == 10_000
    assert (b.codes, b.on_full) == (("*/up",), "collapse")


BAD_SECTIONS = [
    ('[distributions.a]\ncodes = ["*"]\n', "[distributions.a] type: missing"),
    ('[distributions.a]\ntype = "../evil"\n', "[distributions.a] type must name a type"),
    ('[distributions.a]\ntype = "jsonl"\nqueue_max = "many"\n', "[distributions.a] queue_max must be an integer >= 1"),
    ('[distributions.a]\ntype = "jsonl"\nqueue_max = 0\n', "queue_max must be an integer >= 1, not 0"),
    ('[distributions.a]\ntype = "jsonl"\non_full = "panic"\n', 'on_full must be one of "drop-oldest", "collapse"'),
    ('[distributions.a]\ntype = "jsonl"\nmode = "all"\n', 'mode must be one of "points", "reports"'),
    ('[distributions.a]\ntype = "jsonl"\ncodes = "*"\n', "codes must be a non-empty list of glob patterns"),
    ('[distributions.a]\ntype = "jsonl"\ncpu_limit = 2\n', "cpu_limit must be a number in (0, 1]"),
    ('[distributions.a]\ntype = "jsonl"\nmode = "reports"\non_full = "collapse"\n', 'needs mode = "points"'),
    ('[distributions."a b"]\ntype = "jsonl"\n', "NAME may hold only"),
    ("[distributions]\na = 1\n", "[distributions] must hold tables"),
]


@pytest.mark.parametrize(("text", "expected"), BAD_SECTIONS)
def test_a_bad_section_is_one_line_naming_file_section_and_key(tmp_path: Path, text: str, expected: str) -> None:
    path = config_file(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        parse_args(["--config", path])
    message = str(caught.value)
    assert expected in message and message.startswith(f"config {path}: ") and "\n" not in message


def test_distributions_dirs_come_from_the_config_and_the_flag(tmp_path: Path) -> None:
    config = collector_config(
        tmp_path, '[collector]\ndistributions_dirs = ["a"]\n', "--distributions-dir", "b", "--distributions-dir", "c"
    )
    assert config.distributions_dirs == [Path("a"), Path("b"), Path("c")]
    assert dist_sections({}, None) == []


# ---------------------------------------------------------------- loading


def host_for(tmp_path: Path, text: str, *dirs: Path) -> tuple[DistributionHost, list[tuple[Any, ...]]]:
    flags = [arg for d in dirs for arg in ("--distributions-dir", str(d))]
    events: list[tuple[Any, ...]] = []
    host = DistributionHost(
        collector_config(tmp_path, text, *flags), lambda *args, **attrs: events.append((*args, attrs))
    )
    return host, events


def load_error(tmp_path: Path, text: str, *dirs: Path) -> str:
    host, _ = host_for(tmp_path, text, *dirs)
    with pytest.raises(ConfigError) as caught:
        host.load()
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_a_type_without_a_file_names_the_known_types(tmp_path: Path) -> None:
    message = load_error(tmp_path, '[distributions.out]\ntype = "kafka"\n')
    assert "[distributions.out] type: no distribution type 'kafka'" in message
    assert "dist_kafka.py" in message and "known types: custom, jsonl" in message


def test_a_missing_distributions_dir_is_a_config_error(tmp_path: Path) -> None:
    assert "--distributions-dir" in load_error(tmp_path, "", tmp_path / "nowhere")


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import no_such_library\n", "failed to import: ModuleNotFoundError"),
        ("def broken(:\n", "failed to import: SyntaxError"),
        ("x = 1\n", "exactly one dist.Distribution subclass (found: none)"),
        (
            "from collector import dist\nclass A(dist.Distribution): pass\nclass B(dist.Distribution): pass\n",
            "(found: A, B)",
        ),
    ],
)
def test_a_bad_drop_in_is_a_config_error_naming_the_file(tmp_path: Path, source: str, expected: str) -> None:
    path = write(tmp_path / "dists", "dist_bad.py", source)
    message = load_error(tmp_path, '[distributions.x]\ntype = "bad"\n', tmp_path / "dists")
    assert expected in message and str(path) in message and "[distributions.x] type" in message


def test_the_types_own_options_are_checked(tmp_path: Path) -> None:
    assert "unknown key 'pth' for type jsonl" in load_error(tmp_path, '[distributions.j]\ntype = "jsonl"\npth = 1\n')
    assert "[distributions.j] max_bytes: expected an integer" in load_error(
        tmp_path, '[distributions.j]\ntype = "jsonl"\nmax_bytes = "big"\n'
    )
    assert "[distributions.j] backups: expected at least 0" in load_error(
        tmp_path, '[distributions.j]\ntype = "jsonl"\nbackups = -1\n'
    )


def test_modes_and_feeds_the_type_does_not_offer_are_refused(tmp_path: Path) -> None:
    dists = tmp_path / "dists"
    write(
        dists,
        "dist_pointsonly.py",
        "from collector import dist\nclass P(dist.Distribution):\n    modes = ('points',)\n",
    )
    write(
        dists,
        "dist_durable.py",
        "from collector import dist\nclass D(dist.Distribution):\n    feed = 'tape'\n",
    )
    assert "type pointsonly supports points, not 'reports'" in load_error(
        tmp_path, '[distributions.p]\ntype = "pointsonly"\nmode = "reports"\n', dists
    )
    # The journal feed is offered now (tests/test_dist_journal.py); a feed that does not exist is refused.
    assert "asks for the 'tape' report feed, which does not exist" in load_error(
        tmp_path, '[distributions.d]\ntype = "durable"\nmode = "reports"\n', dists
    )


def test_configure_may_refuse_a_value_with_config_error(tmp_path: Path) -> None:
    write(
        tmp_path / "dists",
        "dist_picky.py",
        "from collector import dist\n"
        "class Picky(dist.Distribution):\n"
        "    def configure(self, config):\n"
        "        raise dist.ConfigError('url: expected http(s)://HOST')\n",
    )
    message = load_error(tmp_path, '[distributions.p]\ntype = "picky"\n', tmp_path / "dists")
    assert "[distributions.p]: url: expected http(s)://HOST" in message


def test_a_constructor_or_configure_that_raises_is_counted_not_fatal(tmp_path: Path) -> None:
    dists = tmp_path / "dists"
    write(
        dists,
        "dist_noinit.py",
        "from collector import dist\nclass N(dist.Distribution):\n"
        "    def __init__(self, core):\n        raise OSError('no device')\n",
    )
    write(
        dists,
        "dist_noconf.py",
        "from collector import dist\nclass C(dist.Distribution):\n"
        "    def configure(self, config):\n        raise KeyError('host')\n",
    )
    host, _ = host_for(tmp_path, '[distributions.a]\ntype = "noinit"\n[distributions.b]\ntype = "noconf"\n', dists)
    host.load()
    stats = host.stats()
    assert stats["a"]["last_error"] == "__init__: OSError: no device" and stats["a"]["errors"] == 1
    assert stats["b"]["errors_by_method"] == {"configure": 1}
    assert [len(f.points) for f in (host.fanout(),)] == [1]  # the one that could not be built gets nothing


def test_configure_gets_the_whole_section_and_the_type_defaults(tmp_path: Path) -> None:
    host, _ = host_for(tmp_path, '[distributions.j]\ntype = "jsonl"\nbackups = 2\ncodes = ["n1/*"]\n')
    host.load()
    dist = host.runners[0].dist
    assert dist is not None
    assert dist.config == {
        "type": "jsonl",
        "backups": 2,
        "codes": ["n1/*"],
        "mode": "points",
        "queue_max": 10_000,
        "on_full": "drop-oldest",
        "batch_max": 1000,
        "cpu_limit": 0.02,
        "path": "",
        "max_bytes": 64 * 2**20,
    }
    assert dist.core == DistCore("j", "jsonl", "points", host.config.alias, tmp_path / "data")


# ---------------------------------------------------------------- routing


def runner(name: str, *codes: str, mode: str = "points") -> Runner:
    sec = DistSection(name=name, type="t", codes=codes or ("*",), mode=mode)
    return Runner(sec, Distribution(DistCore(name, "t", mode)), lambda *a: None)


def codes_in(r: Runner) -> list[Any]:
    return [item[0] if item[0] is not None else (item[1], item[2], item[5]) for item in r.queue.items]


def loop_turn() -> None:
    """Let the loop run its callbacks once, as it does when an ingest pass yields: the Fanout flushes then."""
    gevent.sleep(0)


def test_points_go_only_where_the_codes_match() -> None:
    every, cpu, node = runner("every"), runner("cpu", "*/cpu_percent"), runner("node", "n1/*", "collector/*")
    fanout = Fanout([every, cpu, node])
    for code in ("n1/cpu_percent", "n2/cpu_percent", "n2/up", "collector/nodes_live"):
        fanout.publish(code, 1.0, 5.0, None)
    assert len(every.queue) == 0  # offered during the pass, queued when the loop turns
    loop_turn()
    assert codes_in(every) == ["n1/cpu_percent", "n2/cpu_percent", "n2/up", "collector/nodes_live"]
    assert codes_in(cpu) == ["n1/cpu_percent", "n2/cpu_percent"]
    assert codes_in(node) == ["n1/cpu_percent", "collector/nodes_live"]
    assert matches("N1/x", ("n1/*",)) is False  # case-sensitive


def test_a_pass_is_one_list_shared_by_the_distributions_that_take_everything() -> None:
    first, second, narrow = runner("first"), runner("second", "n9/*", "*"), runner("narrow", "n1/*")
    fanout = Fanout([first, second, narrow])
    for node in ("n1", "n2", "n1"):
        fanout.publish_many(node, ("cpu", "mem"), (1.0, 2.0), 2.0)
    loop_turn()
    fanout.publish("n3/up", 1, 3.0, None)
    loop_turn()
    assert [(len(kept), points) for kept, points in first.queue._lists] == [(3, 6), (1, 1)]
    assert all(a[0] is b[0] for a, b in zip(first.queue._lists, second.queue._lists, strict=True))
    assert [item[1] for item in narrow.queue.items] == ["n1", "n1"] and len(narrow.queue._lists) == 1
    assert (first.queue.offered, narrow.queue.offered) == (7, 4) == (len(first.queue), len(narrow.queue))


def test_what_the_last_pass_offered_is_queued_at_stop(tmp_path: Path) -> None:
    host, _ = host_for(tmp_path, '[distributions.a]\ntype = "custom"\n')
    host.load()
    fanout = host.fanout()
    fanout.publish("n1/x", 1.0, 2.0, None)  # no loop turn before the stop
    host.stop(timeout=0.1)
    assert codes_in(host.runners[0]) == ["n1/x"]


def test_a_sample_is_one_entry_with_the_names_each_distribution_takes() -> None:
    every, cpu, none = runner("every"), runner("cpu", "*/cpu"), runner("none", "*/disk")
    Fanout([every, cpu, none]).publish_many("n1", ("cpu", "mem"), (1.0, 2.0), 9.0)
    loop_turn()
    assert list(every.queue.items) == [(None, "n1", ("cpu", "mem"), (1.0, 2.0), 9.0, None)]
    assert list(cpu.queue.items) == [(None, "n1", ("cpu", "mem"), (1.0, 2.0), 9.0, (0,))]
    assert len(none.queue) == 0


def test_sample_routes_are_cached_per_node_and_names_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dist_host, "ROUTE_CACHE_MAX", 3)
    every, n1 = runner("every"), runner("n1", "n1/*")
    fanout = Fanout([every, n1])
    for node in ("n1", "n2", "n3", "n1", "n4", "n5", "n1"):
        fanout.publish_many(node, ["cpu", "mem"], [1.0, 2.0], 9.0)  # lists: kept as tuples
        loop_turn()
    assert [item[1] for item in every.queue.items] == ["n1", "n2", "n3", "n1", "n4", "n5", "n1"]
    assert [item[1] for item in n1.queue.items] == ["n1", "n1", "n1"]
    assert {type(item[2]) for item in every.queue.items} == {tuple} == {type(item[3]) for item in every.queue.items}
    routes = fanout._point_routes
    assert routes[0].everything and not routes[1].everything and 0 < len(routes[1]._taken) <= 3


def test_figures_reach_the_queue_unread() -> None:
    every = runner("every")
    read: list[bytes] = []
    figures = Figures(lambda data: read.append(data) or (1.0,), b"payload")
    Fanout([every]).publish_many("n1", ("cpu",), figures, 9.0)
    loop_turn()
    assert every.queue.items[0][3] is figures and read == []


def test_a_published_read_keeps_its_bytes_and_function_to_the_queue_and_through_a_filter() -> None:
    every, cpu = runner("every"), runner("cpu", "*/cpu")
    read: list[bytes] = []

    def values(data: bytes) -> tuple[float, ...]:
        read.append(data)
        return (1.0, 2.0)

    Fanout([every, cpu]).publish_read("n1", ["cpu", "mem"], values, b"payload", 9.0)
    loop_turn()
    assert every.queue.items == [(None, "n1", ("cpu", "mem"), b"payload", 9.0, None, values)]
    assert cpu.queue.items == [(None, "n1", ("cpu", "mem"), b"payload", 9.0, (0,), values)]
    assert (len(every.queue), len(cpu.queue), read) == (2, 1, [])


def test_reports_are_routed_by_node_and_type() -> None:
    every, stats = runner("every", mode="reports"), runner("stats", "*/SystemStats", mode="reports")
    fanout = Fanout([every, stats, runner("points")])
    reports = [Report("n1", "SystemStats", 1, 0.0, b""), Report("n1", "Event", 2, 0.0, b"")]
    for report in reports:
        fanout.feed(report)
    loop_turn()
    assert list(every.queue.items) == reports and list(stats.queue.items) == reports[:1]


def test_the_module_host_costs_nothing_without_distributions(tmp_path: Path) -> None:
    host = ModuleHost(CollectorConfig(data_dir=tmp_path), NodeRegistry(), Counters())
    assert not host.publishing()
    host.publish("n1/x", 1.0)
    host.publish_many("n1", ("x",), (1.0,))
    every = runner("every")
    fanout = Fanout([every])
    host.attach_distributions(fanout, points=True, reports=False)
    assert host.publishing()
    host.publish("n1/x", 2.0)
    host.publish("collector/up", 1, time=3.0, node="collector")
    host.publish_many("n1", ("y",), (4.0,), 5.0)
    loop_turn()
    assert [item[:2] for item in every.queue.items] == [("n1/x", 2.0), ("collector/up", 1), (None, "n1")]
    assert every.queue.items[1][2:] == (3.0, "collector")
    assert every.queue.items[2][2:] == (("y",), (4.0,), 5.0, None)
    host.attach_distributions(fanout, points=False, reports=False)  # detached: the points go nowhere again
    host.publish_many("n1", ("y",), (6.0,), 7.0)
    loop_turn()
    assert len(every.queue.items) == 3 and not host.publishing()


# ---------------------------------------------------------------- events and counters


def test_what_a_thread_reports_becomes_an_event_on_the_loop(tmp_path: Path) -> None:
    host, events = host_for(tmp_path, '[distributions.c]\ntype = "custom"\n')
    host.load()
    host.runners[0].notify("distribution-down", "warning", "distribution c (custom) is down: gone")
    assert events == []  # nothing happens in the thread that reported it
    assert host.drain_notices() == 1
    assert events == [
        (
            "distribution-down",
            "",
            "warning",
            "distribution c (custom) is down: gone",
            {"distribution": "c", "type": "custom"},
        )
    ]


def test_counters_sum_every_distribution(tmp_path: Path) -> None:
    host, _ = host_for(
        tmp_path, '[distributions.a]\ntype = "custom"\nqueue_max = 2\n[distributions.b]\ntype = "custom"\n'
    )
    host.load()
    a, b = host.runners
    for i in range(5):
        a.put((f"n/{i}", i, 0.0, None))
    b.stats.sent, b.stats.errors = 7, 2
    counters = Counters()
    host.count(counters)
    assert {k: v for k, v in counters.items() if k.startswith("dist-")} == {
        "dist-sent": 7,
        "dist-dropped": 3,
        "dist-errors": 2,
        "dist-dropped:a": 3,
        "dist-dropped:b": 0,
        "dist-errors:a": 0,
        "dist-errors:b": 2,
    }
    empty = Counters()
    DistributionHost(CollectorConfig(), lambda *a, **k: None).count(empty)
    assert empty == Counters()
