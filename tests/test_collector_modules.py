"""Module loading without sockets: discovery, validation, start order, failure isolation."""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path

import pytest

from collector.addons import Report
from collector.config import CollectorConfig
from collector.counters import Counters
from collector.host import ModuleHost
from collector.registry import NodeRegistry
from messages.errors import ConfigError, DependencyError, ModuleError

STARTED: list[str] = []


def write_module(folder: Path, stem: str, body: str) -> Path:
    """Write a module file ``stem.py`` whose class body is ``body``."""
    path = folder / f"{stem}.py"
    path.write_text(
        "from collector.addons import Aggregator\n"
        "from tests.test_collector_modules import STARTED\n\n"
        f"class M(Aggregator):\n{textwrap.indent(textwrap.dedent(body), '    ')}\n"
        "    def on_startup(self):\n        STARTED.append(self.name)\n"
    )
    return path


def make_host(tmp_path: Path, **config: object) -> ModuleHost:
    STARTED.clear()
    cfg = CollectorConfig(modules_dirs=[tmp_path], data_dir=tmp_path / "data", **config)  # type: ignore[arg-type]
    return ModuleHost(cfg, NodeRegistry(), Counters())


def test_start_order_follows_depends(tmp_path: Path) -> None:
    write_module(tmp_path, "c_last", "depends = 'b_middle'\n")
    write_module(tmp_path, "b_middle", "depends = ('a_first', 'nodes')\n")
    write_module(tmp_path, "a_first", "pass\n")
    host = make_host(tmp_path)
    host.load()
    mine = [name for name in STARTED if name in ("a_first", "b_middle", "c_last")]
    assert mine == ["a_first", "b_middle", "c_last"]
    names = [r.name for r in host.running]
    assert names.index("nodes") < names.index("b_middle")


def test_cycle_names_every_module_in_it(tmp_path: Path) -> None:
    write_module(tmp_path, "alpha", "depends = 'beta'\n")
    write_module(tmp_path, "beta", "depends = 'alpha'\n")
    write_module(tmp_path, "gamma", "depends = 'alpha'\n")
    with pytest.raises(DependencyError) as info:
        make_host(tmp_path).load()
    assert info.value.modules == ["alpha", "beta"]
    assert "cycle" in str(info.value)
    assert STARTED == []


def test_missing_dependency_is_named(tmp_path: Path) -> None:
    write_module(tmp_path, "needy", "depends = 'ghost'\n")
    with pytest.raises(DependencyError) as info:
        make_host(tmp_path).load()
    assert "needy depends on ghost" in str(info.value)


def test_import_failure_takes_down_only_its_dependents(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "broken.py").write_text("raise RuntimeError('boom at import')\n")
    write_module(tmp_path, "child", "depends = 'broken'\n")
    write_module(tmp_path, "grandchild", "depends = 'child'\n")
    write_module(tmp_path, "healthy", "pass\n")
    caplog.set_level(logging.INFO)
    host = make_host(tmp_path)
    host.load()
    running = {r.name for r in host.running}
    assert {"healthy", "nodes", "systemstats"} <= running
    assert not running & {"broken", "child", "grandchild"}
    assert "boom at import" in caplog.text and "child" in caplog.text


def test_on_startup_failure_disables_dependents(tmp_path: Path) -> None:
    (tmp_path / "fails.py").write_text(
        "from collector.addons import Aggregator\n\n"
        "class F(Aggregator):\n    def on_startup(self):\n        raise ValueError('nope')\n"
    )
    write_module(tmp_path, "after", "depends = 'fails'\n")
    host = make_host(tmp_path)
    host.load()
    running = {r.name for r in host.running}
    assert "fails" not in running and "after" not in running
    assert host.counters["module-error:fails"] == 1


def test_two_modules_claiming_one_request_type(tmp_path: Path) -> None:
    for stem in ("one", "two"):
        write_module(tmp_path, stem, "requesttypes = 'Same'\ndef processREQUEST(self, msg):\n    return {}\n")
    with pytest.raises(ModuleError) as info:
        make_host(tmp_path).load()
    assert "one and two" in str(info.value) and "'Same'" in str(info.value)


def test_two_modules_claiming_one_update_type(tmp_path: Path) -> None:
    write_module(tmp_path, "mine", "updatetype = 'NodeList'\ndef getUpdateMessage(self):\n    return None\n")
    with pytest.raises(ModuleError) as info:
        make_host(tmp_path).load()
    assert "mine" in str(info.value) and "nodes" in str(info.value)


def test_disable_module_and_unknown_name_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    everything = make_host(tmp_path)
    everything.load()
    host = make_host(tmp_path, disable_modules=["systemstats", "nosuch"])
    host.load()
    assert [r.name for r in host.running] == [r.name for r in everything.running if r.name != "systemstats"]
    assert "systemstats" in {r.name for r in everything.running}
    assert "nosuch" in caplog.text


def test_invalid_attributes_refused_with_file_name(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_module(tmp_path, "badattr", "reporttype = 42\n")
    host = make_host(tmp_path)
    host.load()
    assert "badattr" not in {r.name for r in host.running}
    assert "badattr.py" in caplog.text and "reporttype" in caplog.text


def test_classic_module_beside_the_builtin_files_module_is_a_conflict() -> None:
    fixtures = Path(__file__).parent / "fixtures" / "modules"
    cfg = CollectorConfig(modules_dirs=[fixtures], data_dir=Path("/nonexistent"))
    with pytest.raises(ModuleError, match="classic_fileprocessor and files|files and classic_fileprocessor"):
        ModuleHost(cfg, NodeRegistry(), Counters()).load()


def test_classic_module_loads_with_no_arg_init() -> None:
    fixtures = Path(__file__).parent / "fixtures" / "modules"
    cfg = CollectorConfig(modules_dirs=[fixtures], data_dir=Path("/nonexistent"), disable_modules=["files"])
    host = ModuleHost(cfg, NodeRegistry(), Counters())
    host.load()
    assert host.request_routes["FileList"].name == "classic_fileprocessor"
    assert host.report_routes["FileOutput"][0].module.collector is host


def test_raising_module_does_not_stop_others(tmp_path: Path) -> None:
    fixtures = Path(__file__).parent / "fixtures" / "modules"
    cfg = CollectorConfig(modules_dirs=[fixtures], data_dir=tmp_path, disable_modules=["files"])
    host = ModuleHost(cfg, NodeRegistry(), Counters())
    host.load()
    for seq in (1, 2, 3):
        assert host.deliver(Report("n1", "ProbeData", seq, 0.0, b"\x80", 2))
    assert host.answer("CounterStats", {}) == {"n1": {"count": 3, "seqs": [1, 2, 3]}}
    host.deliver(Report("n1", "SystemStats", 4, 0.0, b"", 1, "labscope.SystemStats"))
    assert host.counters["module-error:raising"] == 1
    assert host.answer("CounterStats", {})["n1"]["seqs"] == [1, 2, 3, 4]


def test_module_config_unknown_key_and_module(tmp_path: Path) -> None:
    host = make_host(tmp_path, modules={"systemstats": {"histroy": 3}})
    with pytest.raises(ConfigError, match="unknown key 'histroy' in \\[modules.systemstats\\]"):
        host.load()
    host = make_host(tmp_path, modules={"nosuch": {}})
    with pytest.raises(ConfigError, match="no module named 'nosuch'"):
        host.load()


def test_collector_emits_events_for_nodes_and_module_errors(tmp_path: Path) -> None:
    (tmp_path / "eventlog.py").write_text(
        "from collector.addons import Aggregator\nfrom messages import Event\n\n"
        "class EventLog(Aggregator):\n    reporttype = 'Event'\n"
        "    def __init__(self):\n        self.seen = []\n"
        "    def processReport(self, msg):\n        e = Event.FromString(msg.data)\n"
        "        self.seen.append((e.kind, e.node, e.attrs.get('module', '')))\n"
    )
    (tmp_path / "faulty.py").write_text(
        "from collector.addons import Aggregator\n\n"
        "class Faulty(Aggregator):\n    reporttype = 'Boom'\n"
        "    def processReport(self, msg):\n        raise KeyError('x')\n"
    )
    from collector.addons import NodeRecord

    host = make_host(tmp_path)
    host.load()
    record = NodeRecord(node="n9")
    host.node_joined(record)
    host.deliver(Report("n9", "Boom", 1, 0.0, b""))
    host.deliver(Report("n9", "Boom", 2, 0.0, b""))  # within a second: counted, no second event
    host.node_left(record)
    log = next(r.module for r in host.running if r.name == "eventlog")
    assert log.seen == [("joined", "n9", ""), ("module-error", "", "faulty"), ("lost", "n9", "")]
    assert host.counters["module-error:faulty"] == 2


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ({"history": "300"}, r"\[modules.systemstats\] history: expected an integer .* got '300'"),
        ({"history": True}, r"\[modules.systemstats\] history: expected an integer"),
    ],
)
def test_module_config_value_of_the_wrong_type(tmp_path: Path, section: dict, expected: str) -> None:
    host = make_host(tmp_path, modules={"systemstats": section})
    with pytest.raises(ConfigError, match=expected):
        host.load()


def test_classic_class_attribute_is_a_setting_applied_before_init(tmp_path: Path) -> None:
    (tmp_path / "classic.py").write_text(
        "from collector.addons import Aggregator\n\n"
        "class Classic(Aggregator):\n    storagedir = '/tmp/dir'\n    limit = 2.5\n"
        "    def __init__(self):\n        self.seen_at_init = self.storagedir\n"
    )
    target = str(tmp_path / "store")
    host = make_host(tmp_path, modules={"classic": {"storagedir": target, "limit": 4}})
    host.load()
    module = next(r.module for r in host.running if r.name == "classic")
    assert module.seen_at_init == target
    assert (module.storagedir, module.limit, module.name) == (target, 4, "classic")
    assert type(module).__name__ == "Classic"
    with pytest.raises(ConfigError, match=r"\[modules.classic\] storagedir: expected a string"):
        make_host(tmp_path, modules={"classic": {"storagedir": 7}}).load()


@pytest.mark.parametrize(
    ("method", "nearest"),
    [
        ("on_node_leave", "on_node_left"),
        ("processRequest", "processREQUEST"),
        ("getUpdateMesage", "getUpdateMessage"),
        ("on_start", "on_startup"),
    ],
)
def test_misspelled_hook_is_refused_naming_file_and_nearest_hook(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, method: str, nearest: str
) -> None:
    write_module(tmp_path, "typo", f"def {method}(self, *args):\n    pass\n")
    write_module(tmp_path, "fine", "def getFileList(self):\n    pass\n")  # a helper, not hook-like
    host = make_host(tmp_path)
    host.load()
    running = {r.name for r in host.running}
    assert "typo" not in running and "fine" in running
    assert "typo.py" in caplog.text and f"{method}()" in caplog.text and f"did you mean {nearest}()" in caplog.text
