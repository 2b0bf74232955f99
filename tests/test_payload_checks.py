"""Many reports' payloads checked in one parse (messages/payloads.py) say what parsing each one says."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from messages import Files, Kind, NodeInfo, Samples, SystemStats
from messages.codec import envelope, pack
from messages.payloads import batch_checker
from tests.fuzz.strategies import EXAMPLES


def frame_of(payload: bytes, schema: str = "labscope.SystemStats") -> bytes:
    """A one-envelope frame whose REPORT declares ``schema`` and carries ``payload`` as it is."""
    env = envelope(Kind.REPORT, "SystemStats", payload, node="n1", seq=1, time=1.0)
    env.schema = schema
    return pack([env])


def parses(cls: type[SystemStats] | type[Samples], payload: bytes) -> bool:
    try:
        cls.FromString(payload)
    except Exception:  # upb's DecodeError
        return False
    return True


GOOD = st.builds(
    lambda t, cpu, per_cpu: SystemStats(time=t, cpu_percent=cpu, cpu_percent_per_cpu=per_cpu).SerializeToString(),
    st.floats(),
    st.floats(),
    st.lists(st.floats(), max_size=4),
)


@st.composite
def payloads(draw: st.DrawFn) -> bytes:
    """A SystemStats payload, sometimes with bytes changed or cut: valid or not, as it comes."""
    data = bytearray(draw(GOOD))
    if data and draw(st.booleans()):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        del data[draw(st.integers(0, len(data))) :]
    return bytes(data)


@EXAMPLES
@given(st.lists(payloads(), min_size=1, max_size=6))
def test_one_parse_of_the_joined_frames_says_what_parsing_each_payload_says(batch: list[bytes]) -> None:
    joined = b"".join(frame_of(payload) for payload in batch)
    assert batch_checker(SystemStats)(joined) == all(parses(SystemStats, payload) for payload in batch)


def test_a_bad_payload_anywhere_fails_the_check() -> None:
    good = [SystemStats(time=float(i), cpu_percent=1.0).SerializeToString() for i in range(5)]
    check = batch_checker(SystemStats)
    assert check(b"".join(frame_of(p) for p in good))
    for at in range(len(good) + 1):
        batch = good[:at] + [b"\xff\xff\xff"] + good[at:]
        assert not check(b"".join(frame_of(p) for p in batch)), at


def test_the_check_of_each_schema_is_made_once_and_checks_that_schema() -> None:
    assert batch_checker(Samples) is batch_checker(Samples)
    assert batch_checker(Samples) is not batch_checker(SystemStats)
    not_utf8 = NodeInfo(node="n1").SerializeToString().replace(b"n1", b"\xc3\x28")  # a string field must be UTF-8
    assert not parses(NodeInfo, not_utf8)  # type: ignore[arg-type]
    assert not batch_checker(NodeInfo)(frame_of(not_utf8, "labscope.NodeInfo"))
    files = Files(files=[]).SerializeToString()
    assert batch_checker(Files)(frame_of(files, "labscope.Files"))


def test_other_envelope_fields_are_left_alone() -> None:
    """Every field but the payload is skipped: a HELLO, an ERROR or params around the reports change nothing."""
    hello = envelope(Kind.HELLO, "NodeInfo", NodeInfo(node="n1"), node="n1", seq=1)
    error = envelope(Kind.ERROR, node="n1", error_code="busy", error="x" * 300, params={"a": "b"})
    stats = envelope(Kind.REPORT, "SystemStats", SystemStats(time=1.0), node="n1", seq=2)
    check = batch_checker(SystemStats)
    assert check(pack([error]) + pack([stats]))
    # a HELLO's payload is checked as the schema too (its group is the caller's to choose): the same answer
    assert check(pack([hello]) + pack([stats])) == parses(SystemStats, hello.payload)


def test_a_checked_payload_is_parsed_once_by_the_first_module_that_reads_it() -> None:
    from collector.addons import Report
    from messages import Encoding

    data = SystemStats(time=5.0, cpu_percent=3.0).SerializeToString()
    first = Report("n1", "SystemStats", 1, 5.0, data, Encoding.PROTOBUF, "labscope.SystemStats")
    assert first.parsed is None  # checked by the collector, not parsed
    decoded = first.decode()
    assert decoded.cpu_percent == 3.0 and first.parsed is decoded and first.message(SystemStats) is decoded
    second = Report("n1", "SystemStats", 2, 5.0, data, Encoding.PROTOBUF, "labscope.SystemStats")
    assert second.message(SystemStats) is second.decode()
