"""The module lifecycle in the module host, without sockets: main() after every on_startup, known nodes
replayed to on_node_joined, on_shutdown(exc_info) after main in reverse start order, the grace period,
and every failure contained and counted."""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path

import gevent
import pytest

from collector.addons import NodeRecord
from collector.config import CollectorConfig, parse_args
from collector.counters import Counters
from collector.host import ModuleHost
from collector.registry import NodeRegistry
from messages.errors import ConfigError

CALLS: list[str] = []  # what the modules written below did, in order


def write_module(folder: Path, stem: str, body: str) -> None:
    """A module ``stem`` whose hooks append ``stem:hook`` to CALLS; ``body`` adds or replaces methods."""
    (folder / f"{stem}.py").write_text(
        "import gevent\n"
        "from collector.addons import Aggregator\n"
        "from tests.test_module_lifecycle import CALLS\n\n"
        f"class M(Aggregator):\n"
        "    def on_startup(self):\n        CALLS.append(f'{self.name}:on_startup')\n"
        "    def on_node_joined(self, node):\n        CALLS.append(f'{self.name}:joined {node.node} {node.status}')\n"
        f"{textwrap.indent(textwrap.dedent(body), '    ')}\n"
    )


LOOPING_MAIN = """
def main(self):
    CALLS.append(f'{self.name}:main')
    while not self.wait_for_shutdown(0.01):
        pass
    CALLS.append(f'{self.name}:main done')
def on_shutdown(self, exc_info):
    CALLS.append(f'{self.name}:on_shutdown {exc_info and exc_info[0].__name__}')
"""


def make_host(tmp_path: Path, known: tuple[str, ...] = (), **config: object) -> ModuleHost:
    """A host over ``tmp_path``'s modules only (built-ins disabled), with ``known`` nodes restored as lost."""
    CALLS.clear()
    registry = NodeRegistry()
    registry.restore([NodeRecord(node=node, status="lost") for node in known])
    builtins = ["nodes", "systemstats", "samples", "events", "files", "churn"]
    cfg = CollectorConfig(modules_dirs=[tmp_path], data_dir=tmp_path / "data", disable_modules=builtins, **config)  # type: ignore[arg-type]
    host = ModuleHost(cfg, registry, Counters())
    host.load()
    return host


def run(host: ModuleHost) -> None:
    """Start as the collector does and let the mains run one turn."""
    host.begin()
    gevent.sleep(0.05)  # the passage of time is the point: the mains get to run before the shutdown


@pytest.mark.timeout(20)
def test_order_startup_replay_main_then_shutdown_in_reverse(tmp_path: Path) -> None:
    write_module(tmp_path, "a_base", LOOPING_MAIN)
    write_module(tmp_path, "b_user", "depends = 'a_base'\n" + LOOPING_MAIN)
    write_module(tmp_path, "c_plain", "def on_shutdown(self):\n    CALLS.append('c_plain:on_shutdown')\n")
    host = make_host(tmp_path, known=("n2", "n1"))
    run(host)
    host.shutdown()
    order = [r.name for r in host.running]
    assert order == ["a_base", "c_plain", "b_user"]  # depends first, then name order
    assert CALLS[:3] == [f"{m}:on_startup" for m in order]
    joined = [c for c in CALLS if "joined" in c]
    assert joined == [f"{m}:joined {n} lost" for n in ("n1", "n2") for m in order]
    assert CALLS.index("a_base:main") > CALLS.index(joined[-1])  # every main after every on_startup and the replay
    tail = CALLS[-3:]
    assert tail == ["b_user:on_shutdown None", "c_plain:on_shutdown", "a_base:on_shutdown None"]
    assert max(CALLS.index("a_base:main done"), CALLS.index("b_user:main done")) < CALLS.index(tail[0])
    assert host.counters["module-error"] == 0


@pytest.mark.timeout(20)
def test_main_that_raises_is_contained_and_its_exception_reaches_on_shutdown(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_module(
        tmp_path,
        "crashy",
        "def main(self):\n    raise KeyError('boom')\n"
        "def on_shutdown(self, exc_info):\n"
        "    CALLS.append(f'crashy:on_shutdown {exc_info[0].__name__} {exc_info[1]}')\n",
    )
    write_module(tmp_path, "steady", LOOPING_MAIN)
    host = make_host(tmp_path)
    run(host)
    assert host.counters["module-error:crashy"] == 1
    assert "module crashy raised in main: KeyError" in caplog.text
    assert "steady:main done" not in CALLS  # the other main runs on
    host.shutdown()
    assert "crashy:on_shutdown KeyError 'boom'" in CALLS and "steady:on_shutdown None" in CALLS


@pytest.mark.timeout(20)
def test_main_that_ignores_the_shutdown_is_abandoned_after_the_grace(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_module(
        tmp_path,
        "stubborn",
        "def main(self):\n    while True:\n        gevent.sleep(0.01)\n"
        "def on_shutdown(self, exc_info):\n    CALLS.append(f'stubborn:on_shutdown {exc_info[0].__name__}')\n",
    )
    write_module(tmp_path, "polite", LOOPING_MAIN)
    host = make_host(tmp_path, module_grace=0.3)
    run(host)
    caplog.set_level(logging.ERROR)
    host.shutdown()
    assert "module stubborn: main() ignored the shutdown for 0.3 s (module_grace); abandoned" in caplog.text
    assert host.counters["module-error:stubborn"] == 1 and host.counters["module-error:polite"] == 0
    assert "stubborn:on_shutdown TimeoutError" in CALLS and "polite:on_shutdown None" in CALLS
    assert host.lifecycle.loops["stubborn"].greenlet.dead  # killed at its next wait


@pytest.mark.timeout(20)
def test_node_hooks_failing_in_the_replay_are_contained_and_counted(tmp_path: Path) -> None:
    write_module(tmp_path, "a_bad", "def on_node_joined(self, node):\n    raise ValueError(node.node)\n")
    write_module(tmp_path, "b_good", "pass\n")
    host = make_host(tmp_path, known=("n1", "n2"))
    run(host)
    assert host.counters["module-error:a_bad"] == 2
    assert [c for c in CALLS if "joined" in c] == ["b_good:joined n1 lost", "b_good:joined n2 lost"]
    host.shutdown()


@pytest.mark.timeout(20)
def test_wait_for_shutdown_times_out_false_then_returns_true(tmp_path: Path) -> None:
    write_module(tmp_path, "idle", "pass\n")
    host = make_host(tmp_path)
    module = host.running[0].module
    assert module.wait_for_shutdown(0.01) is False
    gevent.spawn_later(0.05, host.stop_mains)
    assert module.wait_for_shutdown(10) is True
    assert module.wait_for_shutdown(0) is True
    host.shutdown()


def test_a_misspelled_on_shutdown_is_still_refused(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_module(tmp_path, "typo", "def on_shutdwn(self, exc_info):\n    pass\n")
    make_host(tmp_path)
    assert "did you mean on_shutdown()?" in caplog.text


def test_module_grace_is_configured_and_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert parse_args([]).module_grace == 5.0
    assert parse_args(["--module-grace", "1.5"]).module_grace == 1.5
    config = tmp_path / "collector.toml"
    config.write_text("[collector]\nmodule_grace = 0.5\n")
    assert parse_args(["--config", str(config)]).module_grace == 0.5
    for bad in ("0", "-1", '"5"'):
        config.write_text(f"[collector]\nmodule_grace = {bad}\n")
        with pytest.raises(ConfigError, match="module_grace"):
            parse_args(["--config", str(config)])
    with pytest.raises(SystemExit) as info:
        parse_args(["--module-grace", "0"])
    assert info.value.code == 2 and "--module-grace" in capsys.readouterr().err
