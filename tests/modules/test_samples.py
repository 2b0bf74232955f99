"""The samples module without sockets."""

from __future__ import annotations

import pytest

from collector.addons import Report, Request, RequestError
from messages import Encoding, Samples
from modules.samples import SamplesModule


def feed(module: SamplesModule, node: str, seq: int, values: list[float]) -> None:
    data = Samples(time=float(seq), names=[f"m{i}" for i in range(len(values))], values=values)
    module.processReport(
        Report(node, "Samples", seq, float(seq), data.SerializeToString(), Encoding.PROTOBUF, "labscope.Samples")
    )


def test_latest_batch_per_node_and_counts() -> None:
    module = SamplesModule()
    feed(module, "a", 1, [1.0, 2.0])
    feed(module, "a", 2, [3.0, 4.0, 5.0])
    feed(module, "b", 1, [9.0])
    latest = module.processREQUEST(Request("Samples", {"node": "a"}))
    assert list(latest.values) == [3.0, 4.0, 5.0] and latest.names[2] == "m2"
    assert module.counts == {"a": 5, "b": 1}


def test_errors() -> None:
    module = SamplesModule()
    with pytest.raises(RequestError) as missing:
        module.processREQUEST(Request("Samples", {}))
    assert missing.value.code == "bad-request"
    with pytest.raises(RequestError) as unknown:
        module.processREQUEST(Request("Samples", {"node": "zz"}))
    assert unknown.value.code == "not-found"


def test_snapshot_round_trip_through_msgpack() -> None:
    import msgpack

    module = SamplesModule()
    feed(module, "a", 1, [1.0, 2.0])
    state = msgpack.unpackb(msgpack.packb(module.snapshot(), use_bin_type=True), raw=False)
    fresh = SamplesModule()
    fresh.restore(state)
    assert list(fresh.processREQUEST(Request("Samples", {"node": "a"})).values) == [1.0, 2.0]
    assert fresh.counts == {"a": 2}
