"""Drop-in probes: loading from files, validation, and how getReport results become REPORTs."""

from __future__ import annotations

import logging
from pathlib import Path

import msgpack
import pytest

from messages import Encoding, Envelope, Kind, NodeInfo
from messages.codec import decode_payload
from messages.errors import ModuleError
from node_agent.addons import Probe
from node_agent.loader import load_probe_file, load_probes, probe_files
from node_agent.runner import ERROR_LOG_INTERVAL, ScheduledProbe, report_envelope

PROBES = Path(__file__).resolve().parent / "fixtures" / "probes"
GOOD = {"counter", "typed", "failing"}
BAD = {"broken_import.py", "no_probe.py", "bad_interval.py"}


def test_probe_files_skip_underscore_files():
    names = {p.name for p in probe_files([PROBES])}
    assert "_private.py" not in names
    assert {"counter.py", "typed.py"} <= names


def test_good_probes_load_and_bad_files_are_skipped_with_their_path(caplog):
    caplog.set_level(logging.ERROR, logger="node_agent.loader")
    loaded = load_probes([PROBES])
    assert {p.name for p in loaded} == GOOD
    for bad in BAD:
        assert any(str(PROBES / bad) in r.getMessage() for r in caplog.records), bad
    counter = next(p for p in loaded if p.name == "counter")
    assert counter.probe.reporttype == "Counter" and counter.probe.interval == 0.1


def test_name_defaults_to_file_stem():
    loaded = load_probe_file(PROBES / "typed.py")
    assert loaded.name == "typed" and isinstance(loaded.probe, Probe)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


PROBE_HEAD = "from node_agent.addons import Probe\n"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("def broken(:\n", "SyntaxError"),
        ("raise ValueError('nope')\n", "ValueError: nope"),
        ("import sys\nsys.exit(3)\n", "SystemExit"),
        ("x = 1\n", "no subclass"),
        (
            PROBE_HEAD + "class A(Probe):\n    reporttype = 'A'\nclass B(Probe):\n    reporttype = 'B'\n",
            "more than one",
        ),
        (PROBE_HEAD + "class A(Probe):\n    pass\n", "reporttype"),
        (PROBE_HEAD + "class A(Probe):\n    reporttype = 5\n", "reporttype"),
        (PROBE_HEAD + "class A(Probe):\n    reporttype = 'A'\n    interval = -1\n", "interval"),
        (PROBE_HEAD + "class A(Probe):\n    reporttype = 'A'\n    interval = True\n", "interval"),
        (
            PROBE_HEAD + "class A(Probe):\n    reporttype = 'A'\n    def __init__(self):\n        1 / 0\n",
            "ZeroDivision",
        ),
    ],
)
def test_bad_probe_file_raises_module_error_naming_file(tmp_path, text, reason):
    path = write(tmp_path, "bad.py", text)
    with pytest.raises(ModuleError) as info:
        load_probe_file(path)
    assert info.value.module == str(path)
    assert reason in str(info.value)


def test_imported_probe_classes_are_not_counted(tmp_path):
    # A file may import another Probe subclass; only the one it defines is its probe.
    path = write(
        tmp_path,
        "mine.py",
        PROBE_HEAD + "from node_agent.sysprobe import SystemStatsProbe\nclass Mine(Probe):\n    reporttype = 'Mine'\n",
    )
    assert load_probe_file(path).probe.reporttype == "Mine"


def test_same_stem_in_two_folders_are_separate_modules(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    write(one, "p.py", PROBE_HEAD + "class P(Probe):\n    name = 'p1'\n    reporttype = 'One'\n")
    write(two, "p.py", PROBE_HEAD + "class P(Probe):\n    name = 'p2'\n    reporttype = 'Two'\n")
    loaded = load_probes([one, two])
    assert [p.probe.reporttype for p in loaded] == ["One", "Two"]


def test_duplicate_and_reserved_names_are_skipped(tmp_path, caplog):
    write(tmp_path, "a.py", PROBE_HEAD + "class A(Probe):\n    name = 'same'\n    reporttype = 'A'\n")
    write(tmp_path, "b.py", PROBE_HEAD + "class B(Probe):\n    name = 'same'\n    reporttype = 'B'\n")
    write(tmp_path, "c.py", PROBE_HEAD + "class C(Probe):\n    name = 'SystemStats'\n    reporttype = 'C'\n")
    caplog.set_level(logging.ERROR, logger="node_agent.loader")
    loaded = load_probes([tmp_path], reserved={"SystemStats"})
    assert [p.name for p in loaded] == ["same"]
    assert any("b.py" in r.getMessage() for r in caplog.records)
    assert any("c.py" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------ getReport results


def make(result, reporttype="T", node="n", now=0.0) -> Envelope:
    env = report_envelope(result, reporttype, node, now)
    assert env is not None
    return env


def test_dict_and_list_are_msgpack_under_reporttype():
    env = make({"a": 1}, "T", "n1", 12.5)
    assert (env.kind, env.type, env.node, env.time, env.encoding) == (Kind.REPORT, "T", "n1", 12.5, Encoding.MSGPACK)
    assert msgpack.unpackb(env.payload) == {"a": 1}
    assert msgpack.unpackb(make([1, 2]).payload) == [1, 2]


def test_bytes_are_raw_untouched():
    env = make(b"\x00\xffdata")
    assert env.encoding == Encoding.RAW and env.payload == b"\x00\xffdata" and env.schema == ""


def test_protobuf_carries_its_schema():
    env = make(NodeInfo(node="x", cpu_count=3))
    assert env.encoding == Encoding.PROTOBUF and env.schema == "labscope.NodeInfo"
    assert decode_payload(env.payload, env.encoding, env.schema).cpu_count == 3


def test_type_data_pair_overrides_reporttype():
    env = make(("Other", {"k": "v"}))
    assert env.type == "Other" and msgpack.unpackb(env.payload) == {"k": "v"}
    assert report_envelope(("Other", None), "T", "n", 0.0) is None


def test_none_means_nothing_to_send():
    assert report_envelope(None, "T", "n", 0.0) is None


def test_unsendable_value_raises_type_error():
    with pytest.raises(TypeError):
        report_envelope(object(), "T", "n", 0.0)


class Flaky(Probe):
    reporttype = "Flaky"

    def __init__(self):
        self.fail = True

    def getReport(self, now):
        if self.fail:
            raise RuntimeError("boom")
        return {"ok": now}


def test_probe_errors_are_counted_and_logged_rate_limited(caplog):
    caplog.set_level(logging.ERROR, logger="node_agent.runner")
    probe = Flaky()
    scheduled = ScheduledProbe("flaky", probe, 1.0, start=0.0)
    for clock in (0.0, 1.0, 2.0):
        assert scheduled.run("n", 100.0 + clock, clock) is None
    assert scheduled.errors == 3
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "flaky" in lines[0] and "boom" in lines[0]
    scheduled.run("n", 0.0, ERROR_LOG_INTERVAL + 5)
    assert "2 more failures" in caplog.records[-1].getMessage()
    probe.fail = False
    env = scheduled.run("n", 123.0, ERROR_LOG_INTERVAL + 6)
    assert env is not None and msgpack.unpackb(env.payload) == {"ok": 123.0}


def test_unsendable_result_is_a_counted_probe_error(caplog):
    class Odd(Probe):
        reporttype = "Odd"

        def getReport(self, now):
            return {1, 2}

    scheduled = ScheduledProbe("odd", Odd(), 1.0, start=0.0)
    assert scheduled.run("n", 0.0, 0.0) is None
    assert scheduled.errors == 1


def test_schedule_skips_missed_runs():
    scheduled = ScheduledProbe("f", Flaky(), 1.0, start=10.0)
    scheduled.run("n", 0.0, 10.0)
    assert scheduled.next_due == 11.0
    scheduled.run("n", 0.0, 25.3)  # the process was stopped: no burst of catch-up runs
    assert scheduled.next_due == pytest.approx(26.3)
