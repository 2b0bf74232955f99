"""The complete examples in docs/modules.md are real: they load, run, and their own test passes.

Each example is the fenced ``python`` block right after a marker line
``<!-- example: KIND (FILENAME) -->``; it is written to FILENAME in a temporary
folder and loaded the way the collector or agent loads it.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from collector import loader
from collector.addons import Aggregator, Report, Request, RequestError
from collector.testing import StubCollector, attach
from messages import Encoding
from messages.codec import decode_payload, encode_payload
from node_agent.addons import Probe
from tests.conftest import ProcessGroup, labscope_cmd, wait_for

DOC = Path(__file__).resolve().parent.parent / "docs" / "modules.md"
EXAMPLE = re.compile(r"<!-- example: (\w+) \(([\w.]+)\) -->\s*```python\n(.*?)\n```", re.DOTALL)


def examples() -> dict[str, tuple[str, str]]:
    """kind -> (file name, source) for every marked example in the doc."""
    found: dict[str, tuple[str, str]] = {}
    for kind, filename, source in EXAMPLE.findall(DOC.read_text()):
        assert kind not in found, f"two examples of kind {kind!r} in {DOC}"
        found[kind] = (filename, source + "\n")
    return found


def write_example(kind: str, folder: Path) -> Path:
    filename, source = examples()[kind]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / filename
    path.write_text(source)
    return path


def import_path(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def only_subclass(module: ModuleType, base: type) -> Any:
    classes = [
        c
        for c in vars(module).values()
        if isinstance(c, type) and issubclass(c, base) and c is not base and c.__module__ == module.__name__
    ]
    assert len(classes) == 1, classes
    return classes[0]


@pytest.fixture
def scratch_modules() -> Iterator[None]:
    """Undo the sys.modules / sys.path changes an example import makes."""
    saved_modules, saved_path = dict(sys.modules), list(sys.path)
    yield
    for name in set(sys.modules) - set(saved_modules):
        del sys.modules[name]
    sys.path[:] = saved_path


def test_doc_has_the_three_examples() -> None:
    found = examples()
    assert set(found) == {"aggregator", "probe", "test"}
    assert found["aggregator"][0] == "uptime.py"
    assert found["test"][0] == "test_uptime.py"


@pytest.fixture
def aggregator(tmp_path: Path, scratch_modules: None) -> Aggregator:
    module = import_path(write_example("aggregator", tmp_path / "mods"), "doc_example_uptime_module")
    return attach(only_subclass(module, Aggregator)(), StubCollector(tmp_path))


@pytest.fixture
def probe(tmp_path: Path) -> Probe:
    # Imported here so a broken agent loader fails only the probe tests.
    from node_agent.loader import load_probe_file

    return load_probe_file(write_example("probe", tmp_path / "probes")).probe


def test_aggregator_takes_a_report_and_answers(aggregator: Aggregator) -> None:
    data, encoding, schema = encode_payload({"uptime": 42.5, "boot_time": 1.0})
    aggregator.processReport(Report("n1", "Uptime", 1, 1000.0, data, encoding, schema))
    answer = aggregator.processREQUEST(Request("Uptime", {"node": "n1"}))
    assert answer == {"uptime": 42.5, "time": 1000.0, "reboots": 0}
    sent = decode_payload(*encode_payload(aggregator.getUpdateMessage()))
    assert sent == {"n1": answer}
    assert aggregator.getUpdateMessage() is None
    with pytest.raises(RequestError) as info:
        aggregator.processREQUEST(Request("Uptime"))
    assert info.value.code == "bad-request"


def test_probe_report_is_encodable(probe: Probe) -> None:
    now = time.time()
    value = probe.getReport(now)
    data, encoding, _ = encode_payload(value)
    assert encoding == Encoding.MSGPACK
    decoded = decode_payload(data, encoding)
    assert 0 < decoded["uptime"] <= now
    assert decoded["boot_time"] + decoded["uptime"] == pytest.approx(now)


def test_probe_feeds_the_aggregator(probe: Probe, aggregator: Aggregator) -> None:
    assert probe.reporttype in (aggregator.reporttype,)
    now = time.time()
    for seq, t in enumerate((now, now + 5), start=1):
        data, encoding, schema = encode_payload(probe.getReport(t))
        aggregator.processReport(Report("n1", probe.reporttype, seq, t, data, encoding, schema))
    answer = aggregator.processREQUEST(Request("Uptime", {"node": "n1"}))
    assert answer["reboots"] == 0
    assert answer["uptime"] == pytest.approx(now + 5 - probe.getReport(0)["boot_time"])


def test_collector_loader_accepts_the_aggregator(tmp_path: Path, scratch_modules: None) -> None:
    folder = tmp_path / "mods"
    write_example("aggregator", folder)
    write_example("test", folder)  # test_*.py beside a module must be skipped, as the doc says
    found = [c for c in loader.discover([folder]) if c.source == str(folder / "uptime.py")]
    assert len(found) == 1
    candidate = found[0]
    assert candidate.error is None, candidate.error
    assert (candidate.name, candidate.reporttypes, candidate.requesttypes, candidate.updatetype) == (
        "uptime",
        ("Uptime",),
        ("Uptime",),
        "Uptimes",
    )
    assert not any("test_uptime" in c.source for c in loader.discover([folder]))


def test_the_docs_own_module_test_passes(tmp_path: Path, scratch_modules: None) -> None:
    folder = tmp_path / "mods"
    write_example("aggregator", folder)
    test_file = write_example("test", folder)
    sys.path.insert(0, str(folder))
    sys.modules.pop("uptime", None)
    module = import_path(test_file, "doc_example_test_uptime")
    tests = [obj for name, obj in vars(module).items() if name.startswith("test_") and callable(obj)]
    assert len(tests) >= 3
    for test in tests:
        test()


def query(collector: str, *args: str) -> Any:
    """``labscope query --collector EP ARGS`` as the doc shows it; the JSON answer, or None on failure."""
    done = subprocess.run(
        labscope_cmd("query", "--collector", collector, "--timeout", "2", *args),
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    return json.loads(done.stdout) if done.returncode == 0 else None


@pytest.mark.e2e
@pytest.mark.timeout(90)
def test_examples_run_in_a_real_collector_and_agent(procs: ProcessGroup, tmp_path: Path) -> None:
    """The doc's "Run it": the module in --modules-dir, the probe in --probes-dir, then a query."""
    modules_dir, probes_dir = tmp_path / "mods", tmp_path / "probes"
    write_example("aggregator", modules_dir)
    write_example("probe", probes_dir)
    collector = procs.collector("--modules-dir", str(modules_dir))
    procs.agent(collector.agents, "n1", "--probes-dir", str(probes_dir), interval=0.5)
    answer = wait_for(
        lambda: query(collector.clients, "Uptime", "node=n1"), timeout=30, interval=0.5, what="an Uptime answer for n1"
    )
    assert answer["reboots"] == 0
    assert answer["uptime"] > 0
