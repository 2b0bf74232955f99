"""messages/stream.py without sockets: credit accounting, the trailer, the hold-back chunker, two-part headers.

And the promise of issue 10: the stream rules are written once. No file outside
messages/ defines the stream constants again or hashes a stream with SHA-256,
and messages/stream.py stands on nothing but messages/.
"""

from __future__ import annotations

import ast
import hashlib
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import xxhash

from messages import Envelope, Kind
from messages.codec import envelope, pack, pack_one
from messages.limits import DEFAULT_CREDIT, MAX_CREDIT
from messages.stream import (
    CHUNK_BYTES,
    SHA256,
    STALL_TIMEOUT,
    TWO_PART_MIN,
    XXH3_128,
    CreditAccount,
    Digest,
    Piece,
    Take,
    UnknownDigestError,
    chunk_stream,
    digest_param,
    pieces,
    request_digest,
    two_part_header,
)
from tests.conftest import REPO

# ------------------------------------------------------------------------- constants


def test_constants_are_the_protocols() -> None:
    assert (DEFAULT_CREDIT, MAX_CREDIT) == (8, 64)
    assert (CHUNK_BYTES, TWO_PART_MIN, STALL_TIMEOUT) == (1 << 20, 64 << 10, 60.0)


def test_take_compares_equal_to_its_wire_words() -> None:
    assert Take.OK == "ok" and Take.CANCELLED == "cancelled" and Take.STALLED == "stalled"


# ------------------------------------------------------------------------- credit


def test_credit_is_used_one_chunk_at_a_time_then_says_wait() -> None:
    account = CreditAccount(2)
    assert [account.try_take() for _ in range(3)] == [Take.OK, Take.OK, Take.WAIT]
    assert account.credit == 0 and not account.ready


def test_a_grant_adds_credit_but_never_beyond_the_maximum() -> None:
    account = CreditAccount()
    assert account.credit == DEFAULT_CREDIT
    account.grant(3)
    assert account.credit == DEFAULT_CREDIT + 3
    for _ in range(100):
        account.grant(MAX_CREDIT)
    assert account.credit == MAX_CREDIT


def test_a_grant_of_zero_cancels_even_with_credit_left() -> None:
    account = CreditAccount(5)
    account.grant(0)
    assert account.cancelled and account.ready
    assert account.try_take() == Take.CANCELLED and account.credit == 5


def test_cancel_wakes_a_stream_without_credit() -> None:
    account = CreditAccount(0)
    assert account.try_take() == Take.WAIT and not account.ready
    account.cancel()
    assert account.ready and account.try_take() == Take.CANCELLED
    account.grant(4)  # a CREDIT after the cancel changes nothing
    assert account.try_take() == Take.CANCELLED


def test_a_negative_grant_is_a_bug_not_a_cancel() -> None:
    with pytest.raises(ValueError):
        CreditAccount().grant(-1)


# ------------------------------------------------------------------------- trailer


def test_trailer_of_nothing_and_of_bytes() -> None:
    assert Digest().params() == {"size": "0", "sha256": hashlib.sha256(b"").hexdigest()}
    digest = Digest()
    digest.update(b"hello ")
    digest.update(memoryview(b"world"))
    assert digest.size == 11
    assert digest.params() == {"size": "11", "sha256": hashlib.sha256(b"hello world").hexdigest()}


def received(data: bytes) -> Digest:
    digest = Digest()
    digest.update(data)
    return digest


def test_check_accepts_the_senders_trailer() -> None:
    sent = received(b"payload").params()
    assert received(b"payload").check(sent) is None


def test_check_names_a_wrong_size() -> None:
    reason = received(b"payload").check({"size": "8", "sha256": received(b"payload").hexdigest()})
    assert reason == "received 7 bytes, the sender sent 8"


def test_check_names_a_wrong_digest() -> None:
    reason = received(b"payload").check({"size": "7", "sha256": received(b"pay1oad").hexdigest()})
    assert reason == "the SHA-256 of the bytes received does not match the sender's"


@pytest.mark.parametrize("size", ["", "-7", "7.0", " 7", "seven", "\u0037\u0661", "9" * 5000])
def test_check_refuses_a_size_that_is_no_plain_decimal(size: str) -> None:
    reason = received(b"payload").check({"size": size})
    assert reason is not None and reason.startswith("received 7 bytes") and len(reason) < 80


def test_check_skips_what_the_sender_left_out() -> None:
    assert received(b"payload").check({}) is None
    assert received(b"payload").check({"size": "7"}) is None


# ------------------------------------------------------------------------- the digest a stream is checked with


def test_the_fast_digest_is_xxh3_128_of_the_bytes() -> None:
    digest = Digest(XXH3_128)
    digest.update(b"hello ")
    digest.update(memoryview(b"world"))
    assert digest.params() == {"size": "11", "xxh3_128": xxhash.xxh3_128(b"hello world").hexdigest()}
    assert digest.announcement() == {"digest": "xxh3_128"} and Digest().announcement() == {}


def test_a_requester_with_xxhash_asks_for_it() -> None:
    assert request_digest() == XXH3_128  # the test environment installs labscope[fast]


@pytest.mark.parametrize(
    ("params", "used"),
    [({}, SHA256), ({"digest": "xxh3_128"}, XXH3_128), ({"digest": "sha256"}, SHA256), ({"digest": "md5"}, SHA256)],
)
def test_a_sender_uses_the_asked_digest_when_it_has_it_else_sha256(params: dict[str, str], used: str) -> None:
    assert digest_param(params) == used


def test_a_receiver_takes_the_digest_the_first_chunk_names() -> None:
    assert Digest.announced({}).name == SHA256
    assert Digest.announced({"digest": "xxh3_128", "size": "3"}).name == XXH3_128
    with pytest.raises(UnknownDigestError, match="with 'crc-1', which this process cannot compute"):
        Digest.announced({"digest": "crc-1"})


def test_a_wrong_fast_digest_is_named() -> None:
    got = Digest(XXH3_128)
    got.update(b"payload")
    sent = Digest(XXH3_128)
    sent.update(b"pay1oad")
    assert got.check(sent.params()) == "the XXH3-128 digest of the bytes received does not match the sender's"
    # Announced, so required: a trailer without it (say, only a SHA-256) is refused, not taken unchecked.
    assert (
        got.check({"size": "7", "sha256": "0" * 64}) == "the final chunk carries no xxh3_128, which the first announced"
    )


def test_a_fast_stream_names_its_digest_on_the_first_chunk() -> None:
    data = [b"A" * 5, b"B" * 5, b"C" * 3]
    got = list(chunk_stream(data, size=13, digest=XXH3_128))
    trailer = {"size": "13", "xxh3_128": xxhash.xxh3_128(b"".join(data)).hexdigest()}
    assert [p.params for p in got] == [{"digest": "xxh3_128", "size": "13"}, {}, trailer]
    (only,) = chunk_stream([b"ten bytes!"], size=10, digest=XXH3_128)
    assert only.params == {"digest": "xxh3_128", "size": "10", "xxh3_128": xxhash.xxh3_128(b"ten bytes!").hexdigest()}


# ------------------------------------------------------------------------- chunker


def test_pieces_cut_large_chunks_and_skip_empty_ones() -> None:
    chunks = [b"", b"abcdefghij", bytearray(b"kl"), memoryview(b""), b"m" * 7]
    assert list(pieces(chunks, limit=4)) == [b"abcd", b"efgh", b"ij", b"kl", b"mmmm", b"mmm"]
    assert all(type(p) is bytes for p in pieces(chunks, limit=4))


def test_an_empty_answer_is_one_empty_last_chunk() -> None:
    assert list(chunk_stream([], size=0)) == [Piece(0, b"", True, received(b"").params())]
    assert list(chunk_stream([b"", b""])) == [Piece(0, b"", True, received(b"").params())]


def test_a_one_piece_answer_is_one_chunk_carrying_data_last_and_trailer() -> None:
    (only,) = chunk_stream([b"ten bytes!"], size=10)
    assert only == Piece(0, b"ten bytes!", True, received(b"ten bytes!").params())


def test_many_pieces_hold_one_back_so_the_last_carries_data() -> None:
    data = [b"A" * 5, b"B" * 5, b"C" * 3]
    got = list(chunk_stream(data, size=13))
    assert [p.seq for p in got] == [0, 1, 2]
    assert [p.data for p in got] == data
    assert [p.last for p in got] == [False, False, True]
    assert [p.params for p in got] == [{"size": "13"}, {}, received(b"".join(data)).params()]


def test_without_a_known_size_only_the_last_chunk_has_params() -> None:
    got = list(chunk_stream([b"x" * 10], limit=4))
    assert [(p.data, p.params) for p in got[:-1]] == [(b"xxxx", {}), (b"xxxx", {})]
    assert got[-1].data == b"xx" and got[-1].params == {"size": "10", "sha256": hashlib.sha256(b"x" * 10).hexdigest()}


def test_the_chunker_is_lazy_and_lets_the_senders_failure_through() -> None:
    pulled: list[int] = []

    def failing() -> Iterator[bytes]:
        for index in range(3):
            pulled.append(index)
            yield b"piece"
        raise OSError("disk gone")

    stream = chunk_stream(failing())
    assert next(stream).seq == 0 and pulled == [0, 1]  # one piece held back, no more
    with pytest.raises(OSError, match="disk gone"):
        list(stream)


# ------------------------------------------------------------------------- two-part headers


def header(**fields: object) -> Envelope:
    return envelope(Kind.CHUNK, "NodeFile", request_id=7, **fields)


def test_a_two_part_header_is_one_chunk_without_payload() -> None:
    got = two_part_header(pack_one(header(last=True, params={"size": "5"})))
    assert got is not None and (got.kind, got.request_id, got.last, got.params["size"]) == (Kind.CHUNK, 7, True, "5")


@pytest.mark.parametrize(
    "frame",
    [
        pack_one(envelope(Kind.CHUNK, "NodeFile", b"inline bytes", request_id=7)),  # payload in the header
        pack([header(), header(seq=1)]),  # two envelopes
        pack_one(envelope(Kind.RESPONSE, "NodeFile", request_id=7)),  # not a CHUNK
        b"\xff\xff not a batch",  # not a frame
        b"",  # no envelopes
    ],
    ids=["payload", "two-envelopes", "response", "garbage", "empty"],
)
def test_anything_else_is_no_two_part_header(frame: bytes) -> None:
    assert two_part_header(frame) is None


def test_an_oversized_header_frame_is_refused() -> None:
    frame = pack_one(header(params={"pad": "x" * 200}))
    assert two_part_header(frame) is not None and two_part_header(frame, max_bytes=100) is None


# ------------------------------------------------------------------------- written once

STREAM_CONSTANTS = {"DEFAULT_CREDIT", "MAX_CREDIT", "STALL_TIMEOUT", "CHUNK_BYTES", "MAX_CHUNK", "TWO_PART_MIN"}
# Files outside messages/ allowed to call hashlib.sha256, and why.
SHA256_ALLOWED = {
    "modules/files.py": "names a partial file after the hash of its node and path, not a stream",
    "collector/stores/base.py": "the digest kept with every blob version (docs/stores.md), not a stream",
}
PACKAGES = ("collector", "node_agent", "gui", "labscope", "modules")


def sources() -> Iterator[tuple[str, ast.Module]]:
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            yield path.relative_to(REPO).as_posix(), ast.parse(path.read_text(), str(path))


def assigned_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        targets = (
            node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        )
        for target in targets:
            names |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
    return names


def sha256_uses(tree: ast.Module) -> int:
    calls = sum(
        isinstance(n, ast.Attribute)
        and n.attr == "sha256"
        and isinstance(n.value, ast.Name)
        and n.value.id == "hashlib"
        for n in ast.walk(tree)
    )
    imports = sum(
        isinstance(n, ast.ImportFrom) and n.module == "hashlib" and any(a.name == "sha256" for a in n.names)
        for n in ast.walk(tree)
    )
    return calls + imports


def test_no_file_outside_messages_defines_the_stream_constants_again() -> None:
    again = {path: sorted(STREAM_CONSTANTS & assigned_names(tree)) for path, tree in sources()}
    assert {path: names for path, names in again.items() if names} == {}


def test_no_file_outside_messages_hashes_a_stream_itself() -> None:
    hashing = {path for path, tree in sources() if sha256_uses(tree)}
    assert hashing == set(SHA256_ALLOWED)


def imports_of(path: Path) -> set[str]:
    """Top-level packages ``path`` imports, outside the standard library."""
    tree = ast.parse(path.read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    return {m.split(".")[0] for m in imported} - set(sys.stdlib_module_names)


def test_the_stream_module_stands_on_messages_and_protobuf_alone() -> None:
    # And xxhash, the optional fast digest (labscope[fast]): imported only when installed.
    assert imports_of(REPO / "messages" / "stream.py") <= {"messages", "google", "xxhash"}
