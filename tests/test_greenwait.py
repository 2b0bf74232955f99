"""Several greenlets waiting with timeouts on one Event all wake when it is set (collector/greenwait.py)."""

from __future__ import annotations

import gevent
import gevent.event
import pytest

from collector.greenwait import wait_event

pytestmark = pytest.mark.timeout(60)


def stuck_waiters(trials: int, waiters: int) -> int:
    """Trials in which a greenlet looping on wait_event(event, 0.01) was still asleep 1 s after the set."""
    stuck = 0
    for _ in range(trials):
        event = gevent.event.Event()

        def loop() -> None:
            while not wait_event(event, 0.01):
                pass

        greenlets = [gevent.spawn(loop) for _ in range(waiters)]
        gevent.sleep(0.05)
        event.set()
        gevent.joinall(greenlets, timeout=1)
        stuck += not all(g.dead for g in greenlets)
        gevent.killall(greenlets, block=False)
    return stuck


def test_every_waiter_wakes_when_the_event_is_set() -> None:
    assert stuck_waiters(30, 3) == 0


def test_timeouts_and_a_set_event() -> None:
    event = gevent.event.Event()
    assert wait_event(event, 0.01) is False
    assert wait_event(event, 0) is False
    event.set()
    assert wait_event(event, 0) is True and wait_event(event, None) is True
