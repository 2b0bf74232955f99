"""The wire contract: generated code is fresh, the codec round-trips, bad frames raise ProtocolError."""

from __future__ import annotations

from pathlib import Path

import pytest

import messages
from messages import Encoding, Envelope, Kind, SystemStats
from messages.codec import decode_payload, encode_payload, envelope, pack, unpack
from messages.errors import ProtocolError
from messages.jsonify import to_jsonable

HERE = Path(messages.__file__).resolve().parent


def test_generated_code_matches_the_proto(tmp_path: Path) -> None:
    from messages.generate import generate

    generate(tmp_path)
    for name in ("labscope_pb2.py", "labscope_pb2.pyi"):
        fresh = (tmp_path / name).read_text()
        assert fresh == (HERE / name).read_text(), f"{name} is stale: run make proto"


def test_upb_backend_is_in_use() -> None:
    from google.protobuf.internal import api_implementation

    assert api_implementation.Type() == "upb"


def test_standard_payloads_importable_from_the_package() -> None:
    files = messages.Files()
    files.files.add(name="a", modtime=1.5, data=b"x")
    assert messages.Files.FromString(files.SerializeToString()).files[0].data == b"x"


@pytest.mark.parametrize(
    ("value", "encoding"),
    [
        (None, Encoding.NONE),
        (b"\x00raw", Encoding.RAW),
        ({"a": [1, 2]}, Encoding.MSGPACK),
        ([1, "two"], Encoding.MSGPACK),
        (SystemStats(cpu_percent=12.5), Encoding.PROTOBUF),
    ],
)
def test_payload_round_trip(value: object, encoding: int) -> None:
    data, got_encoding, schema = encode_payload(value)
    assert got_encoding == encoding
    assert decode_payload(data, got_encoding, schema) == value


def test_unencodable_payload_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="cannot send a set"):
        encode_payload({1, 2})


def test_unknown_schema_decodes_as_bytes() -> None:
    assert decode_payload(b"\x08\x01", Encoding.PROTOBUF, "nosuch.Message") == b"\x08\x01"


def test_batch_round_trip_keeps_order() -> None:
    frame = pack([envelope(Kind.REPORT, "T", {"n": n}, node="a", seq=n) for n in (1, 2, 3)])
    assert [(e.seq, decode_payload(e.payload, e.encoding)) for e in unpack(frame)] == [
        (1, {"n": 1}),
        (2, {"n": 2}),
        (3, {"n": 3}),
    ]


@pytest.mark.parametrize(
    ("frame", "code"),
    [(b"\xff\xff\xff", "bad-frame"), (b"", "empty"), (b"x" * 101, "oversized")],
)
def test_bad_frames_raise_protocol_error(frame: bytes, code: str) -> None:
    with pytest.raises(ProtocolError) as info:
        unpack(frame, max_bytes=100)
    assert info.value.code == code


def test_bad_msgpack_payload_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        decode_payload(b"\xc1", Encoding.MSGPACK)


def test_jsonify_keeps_64_bit_integers_as_numbers() -> None:
    stats = SystemStats()
    stats.memory.total = 2**40 + 3
    stats.disks.add(mountpoint="/", total=2**45 + 1)
    data = to_jsonable(stats)
    assert data["memory"]["total"] == 2**40 + 3
    assert data["disks"][0]["total"] == 2**45 + 1
    assert to_jsonable({"b": b"\x01\x02"}) == {"b": "AQI="}
    env = Envelope(kind=Kind.REPORT, params={"k": "v"})
    assert to_jsonable(env)["params"] == {"k": "v"}
