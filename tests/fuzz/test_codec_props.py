"""The envelope codec under random input: only ProtocolError comes out, and pack -> unpack round-trips.

Every frame an agent or a client sends goes through :func:`messages.codec.unpack`
(and a two-part CHUNK's header through :func:`messages.stream.two_part_header`),
every payload a module reads through :func:`messages.codec.decode_payload`.
"""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from messages import Batch, Encoding, Envelope, Kind, SystemStats
from messages.codec import (
    SINGLE_LIMIT,
    Serialized,
    decode_payload,
    encode_payload,
    envelope,
    envelope_frame,
    is_single,
    pack,
    pack_one,
    unpack,
    unpack_singles,
)
from messages.errors import BadPayloadError, ProtocolError
from messages.stream import two_part_header
from tests.fuzz.strategies import ENCODINGS, EXAMPLES, HOSTILE, envelopes

SCHEMAS = st.one_of(
    st.sampled_from(["", "labscope.SystemStats", "labscope.Files", "labscope.Event", "labscope.NodeInfo"]), HOSTILE
)


@EXAMPLES
@given(st.binary(max_size=512), st.integers(0, 600))
def test_random_frames_raise_only_protocol_error(frame: bytes, limit: int) -> None:
    try:
        envs = unpack(frame, limit)
    except ProtocolError as exc:
        assert exc.code in {"oversized", "bad-frame", "empty"}
        return
    assert len(frame) <= limit and len(envs) >= 1


@EXAMPLES
@given(st.lists(envelopes(), min_size=1, max_size=4))
def test_pack_unpack_round_trips(envs: list[Envelope]) -> None:
    assert list(unpack(pack(envs))) == envs
    assert list(unpack(pack_one(envs[0]))) == envs[:1]


@EXAMPLES
@given(st.lists(envelopes(), min_size=1, max_size=3), st.data())
def test_mangled_frames_raise_only_protocol_error(envs: list[Envelope], data: st.DataObject) -> None:
    frame = bytearray(pack(envs))
    for _ in range(data.draw(st.integers(1, 4))):
        frame[data.draw(st.integers(0, len(frame) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(frame)))
    try:
        unpack(bytes(frame[:cut]))
    except ProtocolError:
        pass


@EXAMPLES
@given(st.binary(max_size=256))
def test_two_part_header_of_random_bytes_is_a_chunk_header_or_none(frame: bytes) -> None:
    header = two_part_header(frame)
    assert header is None or (header.kind == Kind.CHUNK and not header.payload)


@EXAMPLES
@given(envelopes())
def test_two_part_header_accepts_exactly_empty_chunks(env: Envelope) -> None:
    header = two_part_header(pack_one(env))
    assert (header is not None) == (env.kind == Kind.CHUNK and not env.payload)


@EXAMPLES
@given(st.binary(max_size=256), ENCODINGS, SCHEMAS)
@example(b"\x81\x91\x01\x02", Encoding.MSGPACK, "")  # a map keyed by an array: TypeError before the fix
@example(b"\x81\x80\x01", Encoding.MSGPACK, "")  # a map keyed by a map
@example(b"", 4, "")  # an unknown encoding: a ProtocolError("bad-encoding") that modules did not expect
def test_decode_payload_raises_only_protocol_errors(data: bytes, encoding: int, schema: str) -> None:
    try:
        decode_payload(data, encoding, schema)
    except BadPayloadError:
        pass


def test_unhashable_msgpack_map_key_is_a_bad_payload() -> None:
    """Regression: msgpack maps keyed by an array or a map raised TypeError, which modules turned into errors."""
    with pytest.raises(BadPayloadError):
        decode_payload(b"\x81\x91\x01\x02", Encoding.MSGPACK)


MSGPACK_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False) | st.text() | st.binary(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@EXAMPLES
@given(st.lists(MSGPACK_VALUES, max_size=4) | st.dictionaries(st.text(max_size=8), MSGPACK_VALUES, max_size=4))
def test_msgpack_payloads_round_trip(value: object) -> None:
    data, encoding, schema = encode_payload(value)
    assert encoding == Encoding.MSGPACK
    assert decode_payload(data, encoding, schema) == msgpack.unpackb(data, raw=False)


@EXAMPLES
@given(st.floats(), st.floats(), st.lists(st.floats(), max_size=8))
def test_protobuf_payloads_round_trip(time: float, cpu: float, per_cpu: list[float]) -> None:
    stats = SystemStats(time=time, cpu_percent=cpu, cpu_percent_per_cpu=per_cpu)
    data, encoding, schema = encode_payload(stats)
    decoded = decode_payload(data, encoding, schema)
    assert decoded.SerializeToString() == stats.SerializeToString()


@EXAMPLES
@given(st.lists(envelopes(), max_size=5))
def test_pack_writes_the_batch_protobuf_writes(envs: list[Envelope]) -> None:
    """The same Batch; not always the same bytes, as protobuf writes a map's entries (params) in no set order."""
    assert Batch.FromString(pack(envs)) == Batch(envelopes=envs)


@pytest.mark.parametrize("size", [0, 100, 200, 20_000, 3_000_000])
def test_pack_frames_payloads_of_every_length_class(size: int) -> None:
    """Lengths that take one to four varint bytes, up to a week of history buckets (2.8 MB)."""
    env = envelope(Kind.RESPONSE, "x", payload=bytes(range(256)) * (size // 256) + b"z" * (size % 256), request_id=7)
    assert pack_one(env) == Batch(envelopes=[env]).SerializeToString()
    assert list(unpack(pack_one(env))) == [env]


@pytest.mark.parametrize(
    "payload", [None, b"", b"raw", {"a": [1, 2]}, SystemStats(cpu_percent=5.0), b"\x00" * 3_000_000]
)
def test_envelope_frame_is_the_frame_of_the_envelope(payload: object) -> None:
    fields = {"request_id": 9, "time": 1.5, "params": {"k": "v"}, "error": "é"}
    framed = unpack(envelope_frame(Kind.RESPONSE, "SystemStatsHistory", payload, **fields))
    assert list(framed) == [envelope(Kind.RESPONSE, "SystemStatsHistory", payload, **fields)]


def test_a_serialized_message_in_parts_is_framed_as_the_message() -> None:
    stats = SystemStats(cpu_percent=5.0, load1=0.5, cpu_percent_per_cpu=[1.0, 2.0])
    data = stats.SerializeToString()
    wire = Serialized([data[:3], memoryview(data)[3:7], data[7:]], "labscope.SystemStats")
    assert wire.data == data and wire.message() == stats
    fields = {"request_id": 3, "time": 2.5}
    framed = unpack(envelope_frame(Kind.RESPONSE, "SystemStats", wire, **fields))
    assert list(framed) == [envelope(Kind.RESPONSE, "SystemStats", stats, **fields)]


@EXAMPLES
@given(st.floats(), st.lists(st.floats(), max_size=8))
def test_serialized_messages_travel_as_the_message_would(cpu: float, per_cpu: list[float]) -> None:
    stats = SystemStats(cpu_percent=cpu, cpu_percent_per_cpu=per_cpu)
    wire = Serialized(stats.SerializeToString(), "labscope.SystemStats")
    assert encode_payload(wire) == encode_payload(stats)
    assert wire.message().SerializeToString() == stats.SerializeToString()


def test_a_serialized_message_of_an_unknown_schema_does_not_parse() -> None:
    with pytest.raises(BadPayloadError):
        Serialized(b"", "labscope.NoSuchMessage").message()


def test_unknown_encoding_is_a_bad_payload() -> None:
    """Regression: an unknown encoding raised a plain ProtocolError, which the collector counted as a module error."""
    with pytest.raises(BadPayloadError):
        decode_payload(b"x", 4)


def test_batch_of_no_envelopes_is_empty() -> None:
    with pytest.raises(ProtocolError) as caught:
        unpack(Batch().SerializeToString())
    assert caught.value.code == "empty"


# ------------------------------------------------------------ frames of one envelope, parsed together


@EXAMPLES
@given(st.lists(envelopes(), min_size=1, max_size=4))
def test_a_frame_is_single_exactly_when_it_holds_one_envelope(envs: list[Envelope]) -> None:
    frame = pack(envs)
    assert is_single(frame) == (len(envs) == 1 and len(frame) < SINGLE_LIMIT)


def test_every_frame_length_up_to_the_limit_is_told_single_by_its_first_bytes() -> None:
    # The envelope's length prefix grows from one to two bytes at 128: the lengths either side of that jump.
    for size in range(0, SINGLE_LIMIT + 8):
        frame = pack([Envelope(payload=b"x" * size)])
        assert is_single(frame) == (len(frame) < SINGLE_LIMIT), size
        assert not is_single(frame + b"\x0a\x00")  # a second (empty) envelope after it
        assert not is_single(frame[:-1])


def test_a_length_written_with_a_needless_extra_byte_is_not_single() -> None:
    # Protobuf allows a varint padded with 0x80 bytes; such a frame still parses, one by one.
    inner = Envelope(kind=Kind.REPORT, node="n1", seq=1).SerializeToString()
    padded = b"\x0a" + bytes((len(inner) | 0x80, 0x00)) + inner
    assert not is_single(padded)
    assert list(unpack(padded)) == [Envelope.FromString(inner)]


@EXAMPLES
@given(st.lists(envelopes(), min_size=1, max_size=6))
def test_single_frames_parsed_together_are_the_frames_parsed_one_by_one(envs: list[Envelope]) -> None:
    frames = [pack([env]) for env in envs]
    assume(all(len(frame) < SINGLE_LIMIT for frame in frames))
    assert all(is_single(frame) for frame in frames)
    assert unpack_singles(frames) == [env for frame in frames for env in unpack(frame)]


@EXAMPLES
@given(st.lists(envelopes(), min_size=2, max_size=5), st.data())
def test_one_bad_single_frame_makes_the_joined_parse_give_up(envs: list[Envelope], data: st.DataObject) -> None:
    frames = [pack([env]) for env in envs]
    bad = data.draw(st.integers(0, len(frames) - 1))
    inner = envs[bad].SerializeToString()
    assume(inner and len(frames[bad]) < SINGLE_LIMIT)
    # the same one-envelope head, then bytes that never parse (a varint that never ends)
    frames[bad] = frames[bad][: len(frames[bad]) - len(inner)] + b"\xff" * len(inner)
    assert is_single(frames[bad])
    with pytest.raises(ProtocolError):
        unpack(frames[bad])
    assert unpack_singles(frames) is None
