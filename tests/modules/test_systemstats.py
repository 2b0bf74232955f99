"""The ``systemstats`` module, without sockets: reports in, requests and summaries out."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from collector.addons import Report, Request, RequestError, as_names
from collector.settings import defaults
from collector.testing import StubCollector, attach
from messages import ConfigError, Encoding, SystemStats, SystemStatsHistory, SystemStatsSummary
from messages.codec import decode_payload, encode_payload
from modules.nodes import Nodes
from modules.systemstats import DEFAULT_HISTORY, SystemStatsModule
from tests.modules import report, sample


@pytest.fixture
def collector() -> StubCollector:
    stub = StubCollector()
    stub.add_node("n1", hostname="alpha")
    stub.add_node("n2", hostname="beta")
    return stub


@pytest.fixture
def stats(collector: StubCollector) -> SystemStatsModule:
    attach(Nodes(), collector)  # systemstats depends on nodes: it asks it for the hostnames
    return attach(SystemStatsModule(), collector)


def ask(module: SystemStatsModule, type: str, **params: str) -> Any:
    """Send the module a request as the collector would."""
    return module.processREQUEST(Request(type, params))


def test_declares_its_types() -> None:
    assert SystemStatsModule.name == "systemstats"
    assert as_names(SystemStatsModule.reporttype) == ("SystemStats",)
    assert as_names(SystemStatsModule.requesttypes) == ("SystemStats", "SystemStatsHistory")
    assert SystemStatsModule.updatetype == "SystemStatsSummary"
    assert as_names(SystemStatsModule.depends) == ("nodes",)
    assert defaults(SystemStatsModule) == {"history": DEFAULT_HISTORY} == {"history": 300}
    assert SystemStatsModule.options["history"].minimum == 1


def test_latest_sample_is_exactly_what_was_sent(stats: SystemStatsModule) -> None:
    first, second = sample(1000.0, cpu=10.0), sample(1001.0, cpu=55.5)
    stats.processReport(report("n1", 1, first))
    stats.processReport(report("n1", 2, second))
    answer = ask(stats, "SystemStats", node="n1")
    assert isinstance(answer, SystemStats)
    assert answer == second
    # uint64 byte counts above 2**53 survive untouched, through the wire encoding too
    data, encoding, schema = encode_payload(answer)
    decoded = decode_payload(data, encoding, schema)
    assert decoded.memory.total == 2**63 + 12345
    assert decoded.net_io_total.bytes_sent == 18_446_744_073_709_551_615
    assert decoded.SerializeToString() == second.SerializeToString()


def test_nodes_are_kept_apart(stats: SystemStatsModule) -> None:
    stats.processReport(report("n1", 1, sample(1000.0, cpu=1.0)))
    stats.processReport(report("n2", 1, sample(1000.0, cpu=2.0)))
    assert ask(stats, "SystemStats", node="n1").cpu_percent == 1.0
    assert ask(stats, "SystemStats", node="n2").cpu_percent == 2.0


def test_missing_time_falls_back_to_report_time(stats: SystemStatsModule) -> None:
    stats.processReport(report("n1", 1, sample(0.0), time=1234.5))
    assert ask(stats, "SystemStats", node="n1").time == 1234.5


@pytest.mark.parametrize("type", ["SystemStats", "SystemStatsHistory"])
def test_missing_node_is_bad_request(stats: SystemStatsModule, type: str) -> None:
    stats.processReport(report("n1", 1, sample(1000.0)))
    with pytest.raises(RequestError) as info:
        ask(stats, type)
    assert info.value.code == "bad-request"


@pytest.mark.parametrize("type", ["SystemStats", "SystemStatsHistory"])
@pytest.mark.parametrize("node", ["nope", "n2"])  # never seen / known node without samples
def test_unknown_node_is_not_found(stats: SystemStatsModule, type: str, node: str) -> None:
    stats.processReport(report("n1", 1, sample(1000.0)))
    with pytest.raises(RequestError) as info:
        ask(stats, type, node=node)
    assert info.value.code == "not-found"
    assert node in info.value.reason


def test_history_oldest_first_and_since_is_strict(stats: SystemStatsModule) -> None:
    for seq in range(1, 6):
        stats.processReport(report("n1", seq, sample(1000.0 + seq, cpu=float(seq))))
    whole = ask(stats, "SystemStatsHistory", node="n1")
    assert isinstance(whole, SystemStatsHistory)
    assert whole.node == "n1"
    assert [s.cpu_percent for s in whole.samples] == [1.0, 2.0, 3.0, 4.0, 5.0]
    recent = ask(stats, "SystemStatsHistory", node="n1", since="1003")
    assert [s.time for s in recent.samples] == [1004.0, 1005.0]
    assert list(ask(stats, "SystemStatsHistory", node="n1", since="2000").samples) == []


@pytest.mark.parametrize("since", ["yesterday", "nan", "inf"])
def test_bad_since_is_bad_request(stats: SystemStatsModule, since: str) -> None:
    stats.processReport(report("n1", 1, sample(1000.0)))
    with pytest.raises(RequestError) as info:
        ask(stats, "SystemStatsHistory", node="n1", since=since)
    assert info.value.code == "bad-request"


def test_history_bound_is_respected(collector: StubCollector) -> None:
    module = attach(SystemStatsModule(), collector, history=3)
    for seq in range(1, 11):
        module.processReport(report("n1", seq, sample(1000.0 + seq)))
    kept = ask(module, "SystemStatsHistory", node="n1")
    assert [s.time for s in kept.samples] == [1008.0, 1009.0, 1010.0]
    assert ask(module, "SystemStats", node="n1").time == 1010.0


def test_default_history_bound(stats: SystemStatsModule) -> None:
    for seq in range(1, DEFAULT_HISTORY + 21):
        stats.processReport(report("n1", seq, sample(float(seq))))
    kept = ask(stats, "SystemStatsHistory", node="n1").samples
    assert len(kept) == DEFAULT_HISTORY
    assert kept[0].time == 21.0


@pytest.mark.parametrize("bad", [0, -1, "300", 2.5, True])
def test_bad_history_option_refuses_to_start(collector: StubCollector, bad: object) -> None:
    with pytest.raises(ConfigError, match=r"\[modules.systemstats\] history"):
        attach(SystemStatsModule(), collector, history=bad)


def test_summary_one_line_per_node_with_hostnames(stats: SystemStatsModule) -> None:
    stats.processReport(report("n2", 1, sample(1000.0, cpu=20.0, mem_percent=61.5)))
    stats.processReport(report("n1", 1, sample(1000.5, cpu=10.0)))
    stats.processReport(report("n1", 2, sample(1001.5, cpu=11.0)))
    summary = stats.getUpdateMessage()
    assert isinstance(summary, SystemStatsSummary)
    assert [(s.node, s.hostname, s.time, s.cpu_percent) for s in summary.nodes] == [
        ("n1", "alpha", 1001.5, 11.0),
        ("n2", "beta", 1000.0, 20.0),
    ]
    beta = summary.nodes[1]
    assert (beta.memory_percent, beta.load1) == (61.5, 0.5)
    assert (beta.net_recv_rate, beta.net_send_rate) == (300.0, 150.0)
    assert (beta.disk_read_rate, beta.disk_write_rate) == (1024.5, 2048.25)


def test_summary_only_when_changed(stats: SystemStatsModule) -> None:
    assert stats.getUpdateMessage() is None  # nothing yet
    stats.processReport(report("n1", 1, sample(1000.0)))
    assert stats.getUpdateMessage() is not None
    assert stats.getUpdateMessage() is None
    stats.processReport(report("n1", 2, sample(1001.0, cpu=99.0)))
    again = stats.getUpdateMessage()
    assert again is not None
    assert again.nodes[0].cpu_percent == 99.0
    assert stats.getUpdateMessage() is None


def test_node_unknown_to_collector_has_empty_hostname(stats: SystemStatsModule) -> None:
    stats.processReport(report("stranger", 1, sample(1000.0)))
    summary = stats.getUpdateMessage()
    assert summary is not None
    assert [(s.node, s.hostname) for s in summary.nodes] == [("stranger", "")]


def test_lost_node_keeps_its_data_and_rejoin_refreshes_hostname(
    stats: SystemStatsModule, collector: StubCollector
) -> None:
    stats.processReport(report("n1", 1, sample(1000.0, cpu=42.0)))
    stats.getUpdateMessage()
    collector.records["n1"].status = "lost"
    stats.on_node_left(collector.records["n1"])
    assert ask(stats, "SystemStats", node="n1").cpu_percent == 42.0
    assert len(ask(stats, "SystemStatsHistory", node="n1").samples) == 1
    collector.add_node("n1", hostname="alpha-renamed")
    stats.on_node_joined(collector.records["n1"])
    summary = stats.getUpdateMessage()
    assert summary is not None
    assert summary.nodes[0].hostname == "alpha-renamed"


def test_rejoin_of_node_without_data_pushes_nothing(stats: SystemStatsModule, collector: StubCollector) -> None:
    stats.on_node_joined(collector.records["n2"])
    assert stats.getUpdateMessage() is None


def test_msgpack_payload_is_refused(stats: SystemStatsModule) -> None:
    bad = Report("n1", "SystemStats", 1, 1000.0, msgpack.packb({"cpu_percent": 1.0}), Encoding.MSGPACK)
    with pytest.raises(ValueError, match="labscope.SystemStats"):
        stats.processReport(bad)
    assert stats.getUpdateMessage() is None


def test_other_schema_is_refused(stats: SystemStatsModule) -> None:
    bad = Report("n1", "SystemStats", 1, 1000.0, b"", Encoding.PROTOBUF, "labscope.NodeInfo")
    with pytest.raises(ValueError):
        stats.processReport(bad)


def test_raw_serialized_stats_are_accepted(stats: SystemStatsModule) -> None:
    # a classic probe returns SerializeToString() bytes, which travel as RAW
    raw = Report("n1", "SystemStats", 1, 1000.0, sample(1000.0, cpu=7.0).SerializeToString(), Encoding.RAW)
    stats.processReport(raw)
    assert ask(stats, "SystemStats", node="n1").cpu_percent == 7.0


def test_snapshot_and_restore_keep_every_sample(stats: SystemStatsModule, collector: StubCollector) -> None:
    for seq, t in enumerate((1000.0, 1001.0, 1002.0), start=1):
        stats.processReport(report("n1", seq, sample(t, cpu=float(seq))))
    state = msgpack.unpackb(msgpack.packb(stats.snapshot(), use_bin_type=True), raw=False)
    fresh = attach(SystemStatsModule(), collector)
    fresh.restore(state)
    history = ask(fresh, "SystemStatsHistory", node="n1")
    assert [s.time for s in history.samples] == [1000.0, 1001.0, 1002.0]
    assert ask(fresh, "SystemStats", node="n1") == ask(stats, "SystemStats", node="n1")
    assert fresh.getUpdateMessage() is not None


def test_each_sample_publishes_seven_points_for_the_distributions(
    stats: SystemStatsModule, collector: StubCollector
) -> None:
    stats.processReport(report("n1", 1, sample(1000.0, cpu=33.0, mem_percent=44.0)))
    stats.processReport(report("n2", 1, sample(0.0), time=1234.0))  # no sample time: the report's
    assert collector.points("n1") == {
        "n1/cpu_percent": 33.0,
        "n1/mem_percent": 44.0,
        "n1/load1": 0.5,
        "n1/net_recv_rate": 300.0,
        "n1/net_send_rate": 150.0,
        "n1/disk_read_rate": 1024.5,
        "n1/disk_write_rate": 2048.25,
    }
    assert {p.time for p in collector.published if p.node == "n1"} == {1000.0}
    assert {p.time for p in collector.published if p.node == "n2"} == {1234.0}


def test_nothing_is_published_while_no_distribution_takes_points(
    stats: SystemStatsModule, collector: StubCollector
) -> None:
    collector.distributing = False
    stats.processReport(report("n1", 1, sample(1000.0)))
    assert collector.published == [] and ask(stats, "SystemStats", node="n1").time == 1000.0
