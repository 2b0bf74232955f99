"""The samples module without sockets."""

from __future__ import annotations

import pytest

from collector.addons import Report, Request, RequestError
from collector.testing import StubCollector, attach
from messages import Encoding, Samples
from modules.samples import SamplesModule


def new(collector: StubCollector | None = None) -> SamplesModule:
    """A samples module attached to a stub collector, as the collector starts it."""
    return attach(SamplesModule(), collector or StubCollector())


def feed(module: SamplesModule, node: str, seq: int, values: list[float]) -> None:
    data = Samples(time=float(seq), names=[f"m{i}" for i in range(len(values))], values=values)
    module.processReport(
        Report(node, "Samples", seq, float(seq), data.SerializeToString(), Encoding.PROTOBUF, "labscope.Samples")
    )


def test_latest_batch_per_node_and_counts() -> None:
    module = new()
    feed(module, "a", 1, [1.0, 2.0])
    feed(module, "a", 2, [3.0, 4.0, 5.0])
    feed(module, "b", 1, [9.0])
    latest = module.processREQUEST(Request("Samples", {"node": "a"}))
    assert list(latest.values) == [3.0, 4.0, 5.0] and latest.names[2] == "m2"
    assert module.counts == {"a": 5, "b": 1}


def test_errors() -> None:
    module = new()
    with pytest.raises(RequestError) as missing:
        module.processREQUEST(Request("Samples", {}))
    assert missing.value.code == "bad-request"
    with pytest.raises(RequestError) as unknown:
        module.processREQUEST(Request("Samples", {"node": "zz"}))
    assert unknown.value.code == "not-found"


def test_snapshot_round_trip_through_msgpack() -> None:
    import msgpack

    module = new()
    feed(module, "a", 1, [1.0, 2.0])
    state = msgpack.unpackb(msgpack.packb(module.snapshot(), use_bin_type=True), raw=False)
    fresh = new()
    fresh.restore(state)
    assert list(fresh.processREQUEST(Request("Samples", {"node": "a"})).values) == [1.0, 2.0]
    assert fresh.counts == {"a": 2}


def test_named_values_are_published_as_node_name_points() -> None:
    stub = StubCollector()
    module = new(stub)
    feed(module, "a", 1, [1.5, 2.5])
    unnamed = Samples(time=9.0, values=[7.0])
    module.processReport(
        Report("a", "Samples", 2, 9.0, unnamed.SerializeToString(), Encoding.PROTOBUF, "labscope.Samples")
    )
    assert [(p.code, p.value, p.time, p.node) for p in stub.published] == [
        ("a/m0", 1.5, 1.0, "a"),
        ("a/m1", 2.5, 1.0, "a"),
    ]  # values without names are not published


def send(module: SamplesModule, node: str, seq: int, t: float, names: list[str], values: list[float]) -> None:
    data = Samples(time=t, names=names, values=values)
    module.processReport(
        Report(node, "Samples", seq, t, data.SerializeToString(), Encoding.PROTOBUF, "labscope.Samples")
    )


def test_named_values_go_to_the_history_tiers_by_name() -> None:
    module = new()
    t0 = 1_700_000_040.0  # a whole minute
    for i in range(24):  # two minutes, every 5 s
        send(module, "a", i + 1, t0 + 5 * i, ["temp", "fan"], [20.0 + i, 1000.0 - i])
    send(module, "a", 99, t0, [], [7.0])  # unnamed values are not recorded
    minute = module.processREQUEST(Request("SamplesHistory", {"node": "a"}))
    assert minute["resolution"] == "1m" and sorted(minute["series"]) == ["fan", "temp"]
    temp = minute["series"]["temp"]
    assert temp == {
        "time": [t0, t0 + 60],
        "min": [20.0, 32.0],
        "avg": [25.5, 37.5],
        "max": [31.0, 43.0],
        "count": [12.0, 12.0],
    }
    raw = module.processREQUEST(
        Request("SamplesHistory", {"node": "a", "name": "fan", "resolution": "raw", "since": str(t0 + 100)})
    )
    assert list(raw["series"]) == ["fan"] and raw["series"]["fan"]["avg"] == [979.0, 978.0, 977.0]
    hour = module.processREQUEST(Request("SamplesHistory", {"node": "a", "resolution": "1h", "until": str(t0)}))
    assert hour["series"]["temp"] == {
        "time": [t0 - t0 % 3600],
        "min": [20.0],
        "avg": [31.5],
        "max": [43.0],
        "count": [24.0],
    }


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"resolution": "auto"}, "resolution='auto' is not one of raw, 1m, 1h"),
        ({"since": "x"}, "since='x'"),
        ({}, "node"),
    ],
)
def test_bad_history_params(params: dict[str, str], words: str) -> None:
    module = new()
    send(module, "a", 1, 1000.0, ["temp"], [1.0])
    with pytest.raises(RequestError) as info:
        module.processREQUEST(Request("SamplesHistory", {"node": "a", **params} if params else {}))
    assert info.value.code == "bad-request" and words in info.value.reason
