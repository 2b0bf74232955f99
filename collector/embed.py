"""``Collector(ticket)``: a collector as a component of another program.

:meth:`Collector.start` runs the collector in an OS thread of its own with a
gevent hub of its own, and returns once it is ready (data folder locked,
modules started, sockets bound: :attr:`Collector.endpoints` known). The
program around it needs no gevent and is not monkey-patched: the collector
uses gevent's primitives explicitly (``zmq.green`` sockets, ``gevent.sleep``,
gevent events and pools), and its other threads (distributions, observers) are
real ones. :meth:`Collector.stop` returns when every socket is closed and
every file flushed. ``labscope collector`` is :meth:`Collector.run`: the same
collector in the main thread, with signal handlers. See docs/embedding.md.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from types import TracebackType

import gevent

from collector.config import CollectorTicket
from collector.native import Gate, start_thread
from collector.server import Collector as Server
from collector.server import Endpoints
from messages.errors import LabscopeError

__all__ = ["Collector", "Endpoints"]

log = logging.getLogger(__name__)

START_TIMEOUT = 120.0  # seconds start() waits for the collector to be ready


class Collector:
    """A collector driven by a :class:`CollectorTicket` (every field has a default: ``Collector()`` works)."""

    def __init__(self, ticket: CollectorTicket | None = None) -> None:
        self.ticket = ticket if ticket is not None else CollectorTicket()
        self.server: Server | None = None
        self.exit_status = 0
        self._hub: gevent.hub.Hub | None = None
        self._error: BaseException | None = None
        self._ready = Gate()
        self._finished = Gate()
        self._started = False
        self._cancelled = False

    @property
    def endpoints(self) -> Endpoints:
        """Where agents and clients connect (``tcp://127.0.0.1:PORT`` for a wildcard bind); after start()."""
        if self.server is None or self.server.endpoints is None:
            raise LabscopeError("the collector has not started: call start() first")
        return self.server.endpoints

    @property
    def running(self) -> bool:
        """True from a successful start() until the collector has stopped (by stop() or a crashed loop)."""
        return self._ready.is_open and self._error is None and not self._finished.is_open

    # ------------------------------------------------------------ embedded

    def start(self, timeout: float = START_TIMEOUT) -> Collector:
        """Start the collector in its own thread; returns (self) once it is ready.

        Raises what the collector's start-up raised (a LabscopeError subclass for
        what the operator must fix: a bad ticket, a data folder in use, a port
        taken); the thread is gone by then.
        """
        if self._started:
            raise LabscopeError("this collector was started already; make a new Collector(ticket)")
        self._started = True
        start_thread(self._main)
        if not self._ready.wait(timeout):
            self._cancelled = True  # the thread stops the collector as soon as it is up, and ends
            raise LabscopeError(f"the collector was not ready within {timeout:g} s")
        if self._error is not None:
            self._finished.wait()
            raise self._error
        return self

    def stop(self, timeout: float | None = None) -> bool:
        """Stop the collector and wait until every socket is closed and every file flushed.

        Returns False when it did not finish within ``timeout`` s (None: wait
        as long as it takes). Stopping twice, or a collector that never
        started, is harmless.
        """
        if not self._started:
            return True
        hub, server = self._hub, self.server
        if hub is not None and server is not None and not self._finished.is_open:
            hub.loop.run_callback_threadsafe(server.stop)
        return self._finished.wait(timeout)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the collector has stopped (stop() from another thread, or a crashed loop); True when it has."""
        return self._finished.wait(timeout)

    def config_changed(self, name: str, who: str) -> None:
        """Tell the observers that config file ``name`` was changed by ``who``; from any thread."""
        hub, server = self._hub, self.server
        if hub is not None and server is not None:
            hub.loop.run_callback_threadsafe(server.config_changed, name, who)

    def __enter__(self) -> Collector:
        """``with Collector(ticket) as collector:`` starts it (unless started) and stops it at the end."""
        return self if self._started else self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        """Stop the collector."""
        self.stop()

    def _main(self) -> None:
        """The collector's thread: its own hub, start, serve until stopped, shut down, free the hub."""
        try:
            self._serve(signals=False)
        except BaseException as exc:  # handed to start() in the host's thread, raised there
            self._error = exc
        finally:
            self._ready.open()
            # The hub goes before stop() may return: a program that exits right after stop() must not
            # find this thread still switching greenlets while the interpreter finalizes (a SIGSEGV in
            # greenlet's switch, 1 in 3 exits once the collector grew the sites' code).
            _destroy_hub()
            self._finished.open()

    # ------------------------------------------------------------ main program

    def run(self, ready: Callable[[], None] | None = None) -> int:
        """Run the collector in this thread until stopped (SIGINT/SIGTERM in the main thread); the exit status.

        ``ready`` is called once, as soon as the collector is up (``labscope collector`` freezes
        its start-up objects for the garbage collector then: collector/gctune.py).
        """
        self._started = True
        try:
            return self._serve(signals=threading.current_thread() is threading.main_thread(), ready=ready)
        finally:
            self._finished.open()

    def _serve(self, signals: bool, ready: Callable[[], None] | None = None) -> int:
        self.server = server = Server(self.ticket)
        try:
            server.start()
        except BaseException:
            server.shutdown()
            raise
        self._hub = gevent.get_hub()
        if self._cancelled:
            server.stop()  # start() gave up waiting: serve_forever() returns at once and shuts down
        self._ready.open()
        if ready is not None:
            ready()
        self.exit_status = server.serve_forever(signals=signals)
        return self.exit_status


def _destroy_hub() -> None:
    """Free the thread's hub and its loop (their file descriptors) as the thread ends."""
    try:
        gevent.get_hub().destroy(destroy_loop=True)
    except Exception as exc:  # nothing left to run on it; a failure here only leaks a loop
        log.debug("could not destroy the collector thread's hub: %s", exc)
