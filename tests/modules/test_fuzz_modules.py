"""Every built-in module under random reports and requests, as the collector would hand them over.

A report carries random bytes (or a valid payload) with each encoding and
schema; a request random and hostile parameters. The collector parses a
payload that names a known schema before any module sees it (collector/host.py
``deliver``), so the reports here go through the same step. Only the
documented exceptions may come out: BadPayloadError / DecodeError from
``processReport`` (a counted ``bad-report``), RequestError from
``processREQUEST``. Afterwards the module still answers, pushes its update and
snapshots.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import msgpack
from google.protobuf.message import DecodeError, Message
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from collector.addons import Aggregator, BadPayloadError, Report, Request, RequestError
from collector.testing import StubCollector, attach
from messages import Code, Encoding, Event, File, Files, Samples, SystemStats
from messages.codec import message_class
from modules.events import EventsModule
from modules.files import FilesModule
from modules.nodes import Nodes
from modules.samples import SamplesModule
from modules.systemstats import SystemStatsModule
from tests.fuzz.strategies import ENCODINGS, FEW, HOSTILE, params

BAD_PAYLOAD = (BadPayloadError, DecodeError)
FRESH = itertools.count()
REQUEST_CODES = {Code.BAD_REQUEST, Code.NOT_FOUND}
NODES = st.sampled_from(["n1", "n2", "", "..", "a/b"]) | HOSTILE

VALID = {
    "SystemStats": (SystemStats(time=1.7e9, cpu_percent=12.5, load1=0.5), "labscope.SystemStats"),
    "Samples": (Samples(time=1.7e9, names=["a", "b"], values=[1.0, 2.0]), "labscope.Samples"),
    "Event": (Event(time=1.7e9, node="n1", kind="gap", message="m", attrs={"k": "v"}), "labscope.Event"),
    "FileOutput": (
        Files(files=[File(name="logs/a.txt", modtime=1.7e9, data=b"x", size=1, last=True)]),
        "labscope.Files",
    ),
}

MSGPACK_MAPS = st.dictionaries(
    st.sampled_from(["time", "node", "kind", "severity", "message", "attrs"]) | st.text(max_size=4),
    st.none()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=8)
    | st.binary(max_size=8)
    | st.lists(st.integers(-(2**63), 2**63), max_size=2)
    | st.dictionaries(st.text(max_size=3), st.integers(-(2**63), 2**63), max_size=2),
    max_size=6,
)


@st.composite
def reports(draw: st.DrawFn, type: str) -> Report:
    """A report of ``type``: valid, random bytes, or a msgpack map, under any encoding and schema."""
    message, schema = VALID[type]
    data = draw(
        st.one_of(
            st.just(message.SerializeToString()),
            st.binary(max_size=128),
            MSGPACK_MAPS.map(lambda m: msgpack.packb(m, use_bin_type=True)),
        )
    )
    encoding = draw(st.sampled_from([Encoding.PROTOBUF, Encoding.MSGPACK]) | ENCODINGS)
    schema = draw(st.sampled_from([schema, "", "labscope.NodeInfo", "no.Such"]))
    time = draw(st.floats(0.0, 32503680000.0) | st.floats())
    return Report(draw(NODES), type, draw(st.integers(1, 2**63 - 1)), time, data, encoding, schema)


def deliver(module: Aggregator, report: Report) -> bool:
    """What collector/host.py does with one report: pre-parse a known schema, then processReport.

    True when the module applied it, False when it was a counted bad report.
    """
    if report.encoding == Encoding.PROTOBUF and report.schema:
        cls = message_class(report.schema)
        if cls is not None:
            try:
                report.parsed = cls.FromString(report.data)
            except DecodeError:
                return False
    try:
        module.processReport(report)
    except BAD_PAYLOAD:
        return False
    return True


def ask(module: Aggregator, type: str, request_params: dict[str, str]) -> Any:
    """processREQUEST; a RequestError must carry a documented code."""
    try:
        return module.processREQUEST(Request(type, request_params))
    except RequestError as exc:
        assert exc.code in REQUEST_CODES, exc
        return None


def still_well(module: Aggregator, stub: StubCollector) -> None:
    """The module answers its update and its snapshot survives msgpack (the store's encoding)."""
    if module.updatetype:
        update = module.getUpdateMessage()
        assert update is None or isinstance(update, (Message, list, dict, bytes))
        if isinstance(update, list):
            msgpack.packb(update, use_bin_type=True)
    state = module.snapshot()
    if state is not None:
        module.restore(msgpack.unpackb(msgpack.packb(state, use_bin_type=True), raw=False, strict_map_key=False))


def stub_with_nodes(tmp_path: Path) -> StubCollector:
    stub = StubCollector(tmp_path)
    stub.add_node("n1")
    stub.add_node("n2")
    return stub


@FEW
@given(st.lists(reports("SystemStats"), max_size=6), st.lists(params, max_size=4))
def test_systemstats_takes_any_report_and_request(items: list[Report], asks: list[dict[str, str]]) -> None:
    stub = stub_with_nodes(Path("/nonexistent-unused"))
    attach(Nodes(), stub)
    module = attach(SystemStatsModule(), stub, history=3)
    for report in items:
        deliver(module, report)
    for request_params in asks:
        for type in ("SystemStats", "SystemStatsHistory"):
            answer = ask(module, type, request_params)
            assert answer is None or isinstance(answer, Message)
    still_well(module, stub)
    for node in {r.node for r in items}:
        answer = ask(module, "SystemStatsHistory", {"node": node})
        assert answer is None or len(answer.samples) <= 3


@FEW
@given(st.lists(reports("Samples"), max_size=6), st.lists(params, max_size=4))
def test_samples_takes_any_report_and_request(items: list[Report], asks: list[dict[str, str]]) -> None:
    stub = stub_with_nodes(Path("/nonexistent-unused"))
    module = attach(SamplesModule(), stub)
    for report in items:
        deliver(module, report)
    for request_params in asks:
        answer = ask(module, "Samples", request_params)
        assert answer is None or isinstance(answer, Samples)
    still_well(module, stub)
    assert set(module.counts) == set(module.latest)


@FEW
@given(st.lists(reports("Event"), max_size=6), st.lists(params, max_size=4))
@example([Report("n1", "Event", 1, 1.0, b"\x81\x91\x01\x02", Encoding.MSGPACK, "")], [])  # unhashable map key
def test_events_takes_any_report_and_request(items: list[Report], asks: list[dict[str, str]]) -> None:
    stub = stub_with_nodes(Path("/nonexistent-unused"))
    module = attach(EventsModule(), stub, keep=4)
    applied = sum(deliver(module, report) for report in items)
    for request_params in asks:
        answer = ask(module, "Events", request_params)
        assert answer is None or isinstance(answer, list)
    events = module.processREQUEST(Request("Events", {}))
    assert len(events) == min(applied, 4)
    for item in events:
        assert set(item) == {"time", "node", "kind", "severity", "message", "attrs"}
        assert isinstance(item["time"], float) and all(isinstance(v, str) for v in item["attrs"].values())
    msgpack.packb(events, use_bin_type=True)
    still_well(module, stub)


@FEW
@given(st.lists(params, max_size=6))
def test_nodes_answers_any_request(asks: list[dict[str, str]]) -> None:
    stub = stub_with_nodes(Path("/nonexistent-unused"))
    module = attach(Nodes(), stub)
    for request_params in asks:
        answer = ask(module, "NodeList", request_params)
        assert answer is None or len(answer.nodes) in (1, 2)
    still_well(module, stub)


def test_epoch_params_refuse_non_finite_numbers() -> None:
    for text in ("nan", "inf", "-inf", "1e999", "x"):
        try:
            Request("Events", {"since": text}).epoch_param("since")
        except RequestError as exc:
            assert exc.code == Code.BAD_REQUEST
        else:
            raise AssertionError(f"since={text} was taken")
    assert math.isfinite(Request("Events", {"since": "1e300"}).epoch_param("since") or 0.0)


@settings(FEW, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(reports("FileOutput"), max_size=5), st.lists(params, max_size=4))
def test_files_takes_any_report_and_request(tmp_path: Path, items: list[Report], asks: list[dict[str, str]]) -> None:
    stub = stub_with_nodes(tmp_path / str(next(FRESH)))  # a fresh store per example
    module = attach(FilesModule(), stub)
    for report in items:
        deliver(module, report)
    for request_params in asks:
        for type in ("FileList", "File", "FileStats"):
            ask(module, type, request_params)
    still_well(module, stub)
    assert module.processREQUEST(Request("FileStats", {}))["files"] == len(module.listing())
