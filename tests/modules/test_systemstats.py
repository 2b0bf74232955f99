"""The ``systemstats`` module, without sockets: reports in, requests and summaries out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgpack
import pytest

from collector.addons import Figures, Report, Request, RequestError, as_names
from collector.settings import defaults
from collector.stores import open_store
from collector.testing import StubCollector, attach
from messages import ConfigError, Encoding, SystemStats, SystemStatsHistory, SystemStatsSummary
from messages.codec import Serialized, decode_payload, encode_payload
from modules import systemstats
from modules.nodes import Nodes
from modules.systemstats import (
    DEFAULT_HISTORY,
    POINT_NAMES,
    SystemStatsModule,
    choose_resolution,
    point_values,
)
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
    """Send the module a request as the collector would; an answer in wire form comes back parsed, as clients get it."""
    answer = module.processREQUEST(Request(type, params))
    return answer.message() if isinstance(answer, Serialized) else answer


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


def test_a_sample_is_filed_at_its_reports_time_or_its_own_when_the_report_has_none(
    stats: SystemStatsModule, collector: StubCollector
) -> None:
    stats.processReport(report("n1", 1, sample(1000.0), time=1010.0))  # the report's time wins
    stats.processReport(report("n2", 1, sample(2000.0), time=0.0))  # no report time: the sample's own
    assert stats.snapshot()["n1"][0] == 1010.0 and stats.snapshot()["n2"][0] == 2000.0
    assert ask(stats, "SystemStats", node="n1").time == 1000.0  # the answer is the sample exactly as sent
    history = ask(stats, "SystemStatsHistory", node="n1", since="1009", resolution="raw")
    assert [s.time for s in history.samples] == [1000.0] and history.samples[0] == sample(1000.0)


def test_a_checked_payload_is_not_parsed_again(stats: SystemStatsModule) -> None:
    """What the collector delivered under the SystemStats schema it checked first (ModuleHost.check_payloads)."""
    msg = report("n1", 1, sample(1000.0))
    stats.processReport(msg)
    assert msg.parsed is None  # nothing parsed on the loop; the bytes are kept
    unchecked = Report("n1", "SystemStats", 2, 0.0, sample(1001.0).SerializeToString())  # no schema: a probe's bytes
    stats.processReport(unchecked)
    assert isinstance(unchecked.parsed, SystemStats) and stats.snapshot()["n1"][0] == 1001.0


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


def test_hostnames_are_asked_again_only_after_a_join_or_their_ttl(
    stats: SystemStatsModule, collector: StubCollector, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[str] = []
    real_request = collector.request
    monkeypatch.setattr(collector, "request", lambda type, *a, **k: asked.append(type) or real_request(type, *a, **k))
    for seq in (1, 2, 3):
        stats.processReport(report("n1", seq, sample(1000.0 + seq)))
        assert stats.getUpdateMessage() is not None
    assert asked == ["NodeList"]  # thousands of nodes: one NodeList, not one a second
    collector.add_node("n3", hostname="gamma")
    stats.on_node_joined(collector.records["n3"])
    stats.processReport(report("n3", 1, sample(1004.0)))
    assert [s.hostname for s in stats.getUpdateMessage().nodes] == ["alpha", "gamma"]
    assert asked == ["NodeList", "NodeList"]
    monkeypatch.setattr(systemstats, "HOSTNAMES_TTL", 0.0)
    stats.processReport(report("n1", 4, sample(1005.0)))
    stats.getUpdateMessage()
    assert asked == ["NodeList"] * 3


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


def test_publishing_a_sample_leaves_its_figures_to_be_read_off_the_loop(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Regression: ``figures or Figures(...)`` asked the Figures its length, parsing every payload on the loop."""
    reads: list[bytes] = []
    taken: list[Any] = []

    def read(data: bytes) -> Any:
        reads.append(data)
        return point_values(data)

    class Distributions(StubCollector):
        def publish_many(self, node: str, names: Any, values: Any, time: float | None = None) -> None:
            taken.append(values)

    monkeypatch.setattr(systemstats, "point_values", read)
    stub = Distributions()
    stub.store = open_store("null", {}, tmp_path)  # no history writer thread to read the figures meanwhile
    stub.add_node("n1", hostname="alpha")
    attach(Nodes(), stub)
    module = attach(SystemStatsModule(), stub)
    msg = report("n1", 1, sample(1000.0))
    module.processReport(msg)
    assert len(taken) == 1 and type(taken[0]) is Figures and reads == []
    assert list(taken[0]) == list(point_values(msg.data)) and reads == [msg.data]  # read once, when a thread asks


def test_a_sample_sent_again_is_published_again_but_not_filed_again(
    stats: SystemStatsModule, collector: StubCollector
) -> None:
    stats.processReport(report("n1", 1, sample(1000.0, cpu=33.0)))
    stats.processReport(report("n1", 2, sample(1000.0, cpu=33.0)))  # the same time: through publish_read
    cpu = [p for p in collector.published if p.code == "n1/cpu_percent"]
    assert [(p.value, p.time) for p in cpu] == [(33.0, 1000.0), (33.0, 1000.0)]
    history = ask(stats, "SystemStatsHistory", node="n1")
    assert [s.time for s in history.samples] == [1000.0]


def test_nothing_is_published_while_no_distribution_takes_points(
    stats: SystemStatsModule, collector: StubCollector
) -> None:
    collector.distributing = False
    stats.processReport(report("n1", 1, sample(1000.0)))
    assert collector.published == [] and ask(stats, "SystemStats", node="n1").time == 1000.0


# ---------------------------------------------------------------- history tiers (the store's history part)

T0 = 1_700_000_040.0  # a whole minute


def feed(module: SystemStatsModule, node: str, times: list[float], first_seq: int = 1) -> list[float]:
    """One sample per time, cpu = a value that moves; returns the cpu values sent."""
    cpus = [float((i * 7) % 23) for i in range(len(times))]
    for seq, (t, cpu) in enumerate(zip(times, cpus, strict=True), start=first_seq):
        module.processReport(report(node, seq, sample(t, cpu=cpu)))
    return cpus


def buckets(times: list[float], values: list[float], width: float) -> list[tuple[float, float, float, float]]:
    found: dict[float, list[float]] = {}
    for t, v in zip(times, values, strict=True):
        found.setdefault(t - t % width, []).append(v)
    return [(s, min(vs), sum(vs) / len(vs), max(vs), float(len(vs))) for s, vs in sorted(found.items())]


def flat(rows: list[tuple[float, ...]]) -> list[float]:
    return [x for row in rows for x in row]


def series_rows(answer: SystemStatsHistory, name: str) -> list[tuple[float, float, float, float]]:
    (one,) = [s for s in answer.series if s.name == name]
    return list(zip(one.time, one.min, one.avg, one.max, one.count, strict=True))


def test_minute_and_hour_tiers_carry_min_avg_max_of_every_figure(stats: SystemStatsModule) -> None:
    times = [T0 + 5 * i for i in range(60)]  # five minutes
    cpus = feed(stats, "n1", times)
    minute = ask(stats, "SystemStatsHistory", node="n1", resolution="1m")
    assert minute.resolution == "1m" and minute.step == 60.0 and not minute.samples
    assert [s.name for s in minute.series] == sorted(POINT_NAMES)
    assert flat(series_rows(minute, "cpu_percent")) == pytest.approx(flat(buckets(times, cpus, 60.0)))
    assert series_rows(minute, "mem_percent") == [(T0 + 60 * i, 40.0, 40.0, 40.0, 12.0) for i in range(5)]
    assert series_rows(minute, "net_recv_rate")[0][1:] == (300.0, 300.0, 300.0, 12.0)
    hour = ask(stats, "SystemStatsHistory", node="n1", resolution="1h")
    assert hour.step == 3600.0 and flat(series_rows(hour, "cpu_percent")) == pytest.approx(
        flat(buckets(times, cpus, 3600.0))
    )
    window = ask(stats, "SystemStatsHistory", node="n1", resolution="1m", since=str(T0 + 60), until=str(T0 + 180))
    assert [t for t, *_ in series_rows(window, "load1")] == [T0 + 120, T0 + 180]


def test_raw_resolution_keeps_the_wire_contract(stats: SystemStatsModule) -> None:
    feed(stats, "n1", [T0 + i for i in range(10)])
    answer = ask(stats, "SystemStatsHistory", node="n1", resolution="raw", since=str(T0 + 6))
    assert answer.resolution == "raw" and not answer.series
    assert [s.time for s in answer.samples] == [T0 + 7, T0 + 8, T0 + 9]
    assert answer.samples[-1] == ask(stats, "SystemStats", node="n1")  # whole samples, as sent
    until = ask(stats, "SystemStatsHistory", node="n1", since=str(T0 + 2), until=str(T0 + 4))
    assert until.resolution == "raw" and [s.time for s in until.samples] == [T0 + 3, T0 + 4]


@pytest.mark.parametrize(
    ("span", "tier"),
    [(300, "raw"), (2000, "raw"), (3600, "1m"), (6 * 3600, "1m"), (86400, "1m"), (7 * 86400, "1h"), (30 * 86400, "1h")],
)
def test_auto_picks_the_finest_tier_with_at_most_2000_points(span: int, tier: str) -> None:
    retention = {"raw": 3600.0, "1m": 30 * 86400.0, "1h": 2 * 365 * 86400.0}
    assert choose_resolution(T0 - span, T0, retention) == tier


def test_auto_skips_a_tier_whose_retention_no_longer_covers_since() -> None:
    assert choose_resolution(T0 - 600, T0, {"raw": 300.0, "1m": 86400.0}) == "1m"
    assert choose_resolution(T0 - 3600, T0, {"raw": 300.0, "1m": 600.0}) == "1h"


def test_auto_request_measures_the_window_up_to_the_latest_sample(stats: SystemStatsModule) -> None:
    feed(stats, "n1", [T0 + 10 * i for i in range(400)])  # 4000 s
    latest = T0 + 3990
    assert ask(stats, "SystemStatsHistory", node="n1", since=str(latest - 300)).resolution == "raw"
    answer = ask(stats, "SystemStatsHistory", node="n1", since=str(latest - 3600))
    assert answer.resolution == "1m" and len(answer.series[0].time) == 60


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"resolution": "5m"}, "resolution='5m' is not one of auto, raw, 1m, 1h"),
        ({"since": "2000", "until": "1000"}, "must be after since"),
        ({"since": "1000", "until": "1000"}, "must be after since"),
        ({"until": "nan"}, "until="),
        ({"until": "tomorrow"}, "until="),
    ],
)
def test_bad_history_params_are_bad_request(stats: SystemStatsModule, params: dict[str, str], words: str) -> None:
    feed(stats, "n1", [T0])
    with pytest.raises(RequestError) as info:
        ask(stats, "SystemStatsHistory", node="n1", **params)
    assert info.value.code == "bad-request"
    assert words in info.value.reason


def test_snapshot_holds_one_sample_per_node_whatever_the_history(stats: SystemStatsModule) -> None:
    for n in range(50):
        feed(stats, f"node-{n}", [T0 + i for i in range(20)])
    state = stats.snapshot()
    assert len(state) == 50
    assert all(t == T0 + 19 and isinstance(data, bytes) for t, data in state.values())


def test_restore_takes_the_last_sample_of_an_earlier_snapshot(collector: StubCollector) -> None:
    old = {"n1": [[T0, sample(T0).SerializeToString()], [T0 + 1, sample(T0 + 1, cpu=9.0).SerializeToString()]]}
    fresh = attach(SystemStatsModule(), collector)
    fresh.restore(old)
    assert ask(fresh, "SystemStats", node="n1").cpu_percent == 9.0


def test_history_outlives_the_module_in_a_sqlite_store(tmp_path: Path) -> None:
    collector = StubCollector(tmp_path)
    collector.store = open_store("sqlite", {}, tmp_path)
    attach(Nodes(), collector)
    first = attach(SystemStatsModule(), collector)
    times = [T0 + 7 * i for i in range(40)]
    cpus = feed(first, "n1", times[:25])
    collector.store.close()  # the collector stops: open buckets are written
    collector.store = open_store("sqlite", {}, tmp_path)
    second = attach(SystemStatsModule(), collector)
    cpus += feed(second, "n1", times[20:], first_seq=21)[5:]  # five samples sent again (a replay)
    answer = ask(second, "SystemStatsHistory", node="n1", resolution="1m")
    assert flat(series_rows(answer, "cpu_percent")) == pytest.approx(flat(buckets(times, cpus, 60.0)))
    assert len(ask(second, "SystemStatsHistory", node="n1", resolution="raw", since="0").samples) == 40
    collector.store.close()


def test_tier_answers_written_in_wire_form_equal_the_api_built_message() -> None:
    from array import array

    from collector.stores.history import Series
    from modules.systemstats import tier_answer

    one = Series(
        "cpu_percent", array("d", [60.0, 120.0]), [1.0, -2.5], array("d", [1.5, 0.0]), [2.0, 1e300], [3.0, 1.0]
    )
    empty = Series("naïve ✓", [], [], [], [], [])
    built = SystemStatsHistory(node="n1", resolution="1m", step=60.0)
    for s in (one, empty):
        built.series.add(
            name=s.name, time=list(s.time), min=list(s.min), avg=list(s.avg), max=list(s.max), count=list(s.count)
        )
    answer = tier_answer("n1", "1m", [one, empty])
    assert answer.schema == "labscope.SystemStatsHistory" and answer.message() == built
    assert encode_payload(answer) == (answer.data, Encoding.PROTOBUF, "labscope.SystemStatsHistory")
