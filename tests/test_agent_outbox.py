"""The agent's outbox: numbering, cumulative ACKs, overflow, window, frame limits, rewind."""

from __future__ import annotations

from messages import Envelope, Kind
from node_agent.outbox import MAX_FRAME_BYTES, MAX_FRAME_ENVELOPES, Outbox


def report(size: int = 10) -> Envelope:
    return Envelope(kind=Kind.REPORT, node="n", type="T", payload=b"x" * size)


def fill(box: Outbox, count: int, size: int = 10) -> None:
    for _ in range(count):
        box.add(report(size))


def test_numbers_from_one_and_acks_are_cumulative():
    box = Outbox()
    assert [box.add(report()) for _ in range(5)] == [1, 2, 3, 4, 5]
    assert box.ack(3) == 3
    assert len(box) == 2 and box.first_seq == 4 and box.last_seq == 5
    assert box.ack(2) == 0  # an old ACK changes nothing
    held = box.get(4)
    assert held is not None and held.seq == 4 and box.get(3) is None


def test_overflow_drops_oldest_and_counts():
    box = Outbox(capacity=3)
    fill(box, 5)
    assert len(box) == 3 and box.first_seq == 3 and box.stats.dropped == 2
    frame = box.next_frame(window=100)
    assert [e.seq for e in frame] == [3, 4, 5]


def test_window_limits_in_flight_and_acks_open_it():
    box = Outbox()
    fill(box, 10)
    frame = box.next_frame(window=4)
    assert [e.seq for e in frame] == [1, 2, 3, 4]
    box.mark_sent(frame)
    assert box.in_flight == 4 and box.unsent == 6
    assert box.next_frame(window=4) == []
    box.ack(2)
    frame = box.next_frame(window=4)
    assert [e.seq for e in frame] == [5, 6]


def test_frame_holds_at_most_256_envelopes():
    box = Outbox()
    fill(box, 600)
    sizes = []
    while frame := box.next_frame(window=1000):
        box.mark_sent(frame)
        sizes.append(len(frame))
    assert sizes == [MAX_FRAME_ENVELOPES, MAX_FRAME_ENVELOPES, 600 - 2 * MAX_FRAME_ENVELOPES]


def test_frame_holds_at_most_one_mebibyte_but_always_one_report():
    box = Outbox()
    fill(box, 5, size=300_000)
    box.add(report(2 * MAX_FRAME_BYTES))
    counts = []
    while frame := box.next_frame(window=1000):
        assert len(frame) == 1 or sum(e.ByteSize() for e in frame) <= MAX_FRAME_BYTES
        box.mark_sent(frame)
        counts.append(len(frame))
    assert counts == [3, 2, 1]


def test_rewind_resends_unacked_oldest_first_and_counts_resends():
    box = Outbox()
    fill(box, 6)
    box.mark_sent(box.next_frame(window=100))
    box.ack(2)
    box.rewind()
    frame = box.next_frame(window=100)
    assert [e.seq for e in frame] == [3, 4, 5, 6]
    box.mark_sent(frame)
    assert box.stats.resent == 4 and box.stats.sent == 6


def test_ack_beyond_last_numbers_on():
    box = Outbox()
    fill(box, 2)
    box.ack(10)
    assert len(box) == 0
    assert box.add(report()) == 11


def test_empty_outbox_has_nothing_to_send():
    box = Outbox()
    assert box.first_seq == 1 and box.unsent == 0 and box.in_flight == 0
    assert box.next_frame(window=10) == []
