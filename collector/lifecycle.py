"""The module lifecycle after ``on_startup``: ``main()`` greenlets, the shutdown signal and the grace period.

Every module that defines ``main(self)`` gets one greenlet, spawned once every
module has started (so ``main`` may ask any dependency for data). ``main``
loops on ``self.wait_for_shutdown(seconds)``, which is True once the collector
is stopping. On shutdown the signal is set and each ``main`` has the grace
period (``module_grace``, 5 s by default) to return; one that does not is
abandoned: logged as an error naming the module, counted, and killed.
``on_shutdown(exc_info)`` then gets what ``main`` raised (a ``sys.exc_info()``
tuple) or None; the host calls it, in reverse start order.
"""

from __future__ import annotations

import inspect
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import gevent
import gevent.event

from collector.addons import Aggregator, ExcInfo
from collector.greenwait import wait_event

__all__ = ["KILL_WAIT", "ExcInfo", "Lifecycle", "ShutdownSignal", "accepts_exc_info", "has_main"]

KILL_WAIT = 0.5  # seconds an abandoned main() gets to unwind from GreenletExit before it is left behind


class ShutdownSignal:
    """Set once when the collector starts to stop; ``wait`` is cooperative (a gevent Event)."""

    def __init__(self) -> None:
        self._event = gevent.event.Event()
        self.set_at: float | None = None  # monotonic time of set()

    def set(self) -> None:
        """Tell every waiter the collector is stopping (idempotent)."""
        if self.set_at is None:
            self.set_at = time.monotonic()
        self._event.set()

    def is_set(self) -> bool:
        """True once :meth:`set` was called."""
        return bool(self._event.is_set())

    def wait(self, seconds: float | None = None) -> bool:
        """True as soon as the signal is set; False when ``seconds`` passed first (None: wait for it)."""
        return wait_event(self._event, seconds)  # never Event.wait(timeout): see collector/greenwait.py


def has_main(module: Aggregator) -> bool:
    """True when ``module``'s class overrides ``main`` with a method (the base class's does nothing)."""
    main = getattr(type(module), "main", None)
    return callable(main) and main is not Aggregator.main


def accepts_exc_info(method: Callable[..., Any]) -> bool:
    """True when a bound ``on_shutdown`` takes an argument: the classic ``on_shutdown(self)`` takes none."""
    try:
        parameters = inspect.signature(method).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return any(p.kind in positional or p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters)


@dataclass
class MainLoop:
    """One module's ``main`` greenlet and how it ended."""

    name: str
    greenlet: gevent.Greenlet
    exc_info: ExcInfo | None = None
    abandoned: bool = False


class Lifecycle:
    """Runs the modules' ``main`` greenlets and stops them within the grace period.

    ``failed(name, exc)`` is called when a ``main`` raises (the host logs and
    counts it as a module error); ``abandoned(name, grace)`` when one ignores
    the shutdown past the grace period.
    """

    def __init__(
        self,
        grace: float,
        failed: Callable[[str, BaseException], None],
        abandoned: Callable[[str, float], None],
    ) -> None:
        self.grace = grace
        self.signal = ShutdownSignal()
        self.loops: dict[str, MainLoop] = {}
        self._failed = failed
        self._abandoned = abandoned
        self._stopped = False

    def start(self, modules: Iterable[tuple[str, Aggregator]]) -> None:
        """Spawn ``main`` for every module that has one, in the order given."""
        for name, module in modules:
            if has_main(module) and name not in self.loops:
                loop = MainLoop(name, gevent.Greenlet(self._run, name, module.main))
                self.loops[name] = loop
                loop.greenlet.start()

    def _run(self, name: str, main: Callable[[], Any]) -> None:
        try:
            main()
        except gevent.GreenletExit:
            raise
        except BaseException as exc:  # isolation: even sys.exit() in a module must not end the collector
            self.loops[name].exc_info = sys.exc_info()  # type: ignore[assignment]  # set inside except
            self._failed(name, exc)

    def stop(self) -> None:
        """Set the signal and wait for every ``main`` to return, abandoning those past the grace period."""
        self.signal.set()
        if self._stopped:
            return
        self._stopped = True
        started = self.signal.set_at or time.monotonic()
        running = [loop.greenlet for loop in self.loops.values()]
        gevent.joinall(running, timeout=max(0.0, started + self.grace - time.monotonic()))
        for loop in self.loops.values():
            if not loop.greenlet.dead:
                self._abandon(loop)

    def _abandon(self, loop: MainLoop) -> None:
        loop.abandoned = True
        reason = TimeoutError(f"main() did not return within {self.grace:g} s of the shutdown; abandoned")
        loop.exc_info = (TimeoutError, reason, None)
        self._abandoned(loop.name, self.grace)
        loop.greenlet.kill(block=True, timeout=KILL_WAIT)  # GreenletExit at its next wait; it may ignore that too

    def exc_info(self, name: str) -> ExcInfo | None:
        """What module ``name``'s ``main`` ended with (None: returned, or no main)."""
        loop = self.loops.get(name)
        return loop.exc_info if loop is not None else None
