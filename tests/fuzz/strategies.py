"""Hypothesis strategies shared by the property tests: hostile strings, envelopes, payloads."""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st

from messages import Encoding, Envelope, Kind

__all__ = ["ENCODINGS", "EXAMPLES", "FEW", "HOSTILE", "envelopes", "params"]

# Every property here runs in-process against plain objects: small counts keep the whole suite to seconds.
EXAMPLES = settings(max_examples=200, deadline=None, database=None)
FEW = settings(max_examples=60, deadline=None, database=None)

ENCODINGS = st.sampled_from([Encoding.NONE, Encoding.PROTOBUF, Encoding.MSGPACK, Encoding.RAW, 4, 99, -1])

# Strings an attacker would try first, then anything at all (protobuf strings are valid UTF-8, so no surrogates).
HOSTILE = st.one_of(
    st.sampled_from(
        [
            "",
            ".",
            "..",
            "/",
            "../../etc/passwd",
            "/etc/passwd",
            "a/../../b",
            "a\x00b",
            "\\..\\x",
            "~root",
            "nan",
            "inf",
            "-1",
            "1e999",
            "9" * 40,
            "\u202e\u0000",
            "é/../ü",
            "a" * 5000,
        ]
    ),
    st.text(st.characters(exclude_categories=("Cs",)), max_size=64),
    st.text("./\\~\x00ab", max_size=24),
)

params = st.dictionaries(
    st.one_of(st.sampled_from(["node", "since", "filename", "credit", "path", "name", "size"]), HOSTILE),
    HOSTILE,
    max_size=6,
)

kinds = st.one_of(st.sampled_from(list(Kind.values())), st.integers(-(2**31), 2**31 - 1))
uint64 = st.integers(0, 2**64 - 1)


@st.composite
def envelopes(draw: st.DrawFn) -> Envelope:
    """Any envelope the wire can carry: every field drawn, unknown kinds and encodings included."""
    return Envelope(
        kind=draw(kinds),  # type: ignore[arg-type]
        node=draw(HOSTILE),
        seq=draw(uint64),
        time=draw(st.floats(allow_nan=False)),
        type=draw(HOSTILE),
        payload=draw(st.binary(max_size=256)),
        encoding=draw(st.integers(-(2**31), 2**31 - 1)),  # type: ignore[arg-type]
        schema=draw(HOSTILE),
        request_id=draw(uint64),
        params=draw(params),
        error_code=draw(HOSTILE),
        error=draw(HOSTILE),
        last=draw(st.booleans()),
    )
