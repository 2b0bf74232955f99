"""Socket work off the GUI thread: one thread owns one :class:`gui.client.Client`.

The GUI never touches a socket. It asks the :class:`Worker` for subscriptions
and requests (thread-safe, never blocking), and the worker answers through Qt
signals, which Qt queues onto the GUI thread because they are emitted from the
worker's own thread. When the collector is gone the worker keeps trying (the
client's heartbeats and lease renewals go out by themselves) and reports the
connection state; requests asked for meanwhile wait until it is back.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

import zmq
from PySide6 import QtCore

from gui.client import Client
from messages import CollectorInfo
from messages.errors import LabscopeError

__all__ = ["CONNECTED", "CONNECTING", "RECONNECTING", "REFUSED", "Worker", "connection_state"]

log = logging.getLogger(__name__)

CONNECTING = "connecting"
CONNECTED = "connected"
RECONNECTING = "reconnecting"
REFUSED = "refused"

REFUSED_AFTER = 5.0  # seconds without any answer before a first connection counts as refused
REQUEST_TIMEOUT = 3.0  # short, so a collector that dies mid-request stalls the worker only briefly
HELLO_TIMEOUT = 2.0
POLL = 0.05  # seconds one pass waits for updates; bounds how late a command or stop() is seen
MAX_UPDATES_PER_PASS = 500
MAX_REQUESTS_PER_PASS = 4


def connection_state(ever_heard: bool, connected: bool, waited: float, refused_after: float = REFUSED_AFTER) -> str:
    """The state shown to the user.

    ``connected`` while the collector answers; ``reconnecting`` once it has
    answered before but fell silent; before any answer ``connecting`` for
    ``refused_after`` seconds, then ``refused`` (nothing answers there).
    """
    if connected:
        return CONNECTED
    if ever_heard:
        return RECONNECTING
    return CONNECTING if waited < refused_after else REFUSED


@dataclass(frozen=True, slots=True)
class _Request:
    tag: str
    type: str
    params: dict[str, str]


class Worker(QtCore.QObject):
    """Owns the collector connection in a background thread; talks to the GUI by signals.

    Signals: ``info_changed(CollectorInfo)`` after each (re)connection that
    brought a different CollectorInfo; ``update_received(Update)``;
    ``response_received(tag, Response)`` and ``request_failed(tag, reason)``
    for :meth:`request`; ``state_changed(state, last_heard)`` with one of the
    module's state names and the epoch time the collector was last heard
    (0 when never).
    """

    info_changed = QtCore.Signal(object)
    update_received = QtCore.Signal(object)
    response_received = QtCore.Signal(str, object)
    request_failed = QtCore.Signal(str, str)
    state_changed = QtCore.Signal(str, float)

    def __init__(self, endpoint: str, parent: QtCore.QObject | None = None, *,
                 refused_after: float = REFUSED_AFTER) -> None:
        super().__init__(parent)
        self.endpoint = endpoint
        self.refused_after = refused_after
        self.state = CONNECTING
        self.last_heard = 0.0
        self._types: tuple[str, ...] = ()
        self._subscribe_to: tuple[str, ...] | None = None
        self._commands: queue.SimpleQueue[_Request] = queue.SimpleQueue()
        self._pending: list[_Request] = []
        self._info: CollectorInfo | None = None
        self._hello_at = 0.0  # monotonic time of the last HELLO sent to learn CollectorInfo
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = time.monotonic()

    # ------------------------------------------------------------ GUI side

    def start(self) -> None:
        """Start the worker thread (once)."""
        if self._thread is None:
            self._started = time.monotonic()
            self._thread = threading.Thread(target=self._run, name="labscope-worker", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = REQUEST_TIMEOUT + 2.0) -> None:
        """Ask the thread to end and wait for it; the socket is closed by the thread itself."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("the collector worker did not stop within %s s", timeout)

    def subscribe(self, types: Iterable[str]) -> None:
        """Replace the subscribed update types (taken up by the thread within one pass)."""
        self._subscribe_to = tuple(dict.fromkeys(types))

    def request(self, tag: str, type: str, params: dict[str, str] | None = None) -> None:
        """Send REQUEST ``type``; the answer comes back as response_received/request_failed with ``tag``."""
        self._commands.put(_Request(tag, type, dict(params or {})))

    @property
    def running(self) -> bool:
        """Whether the worker thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    # ------------------------------------------------------------ worker thread

    def _run(self) -> None:
        context = zmq.Context()
        client = Client(self.endpoint, context=context)
        try:
            while not self._stop.is_set():
                self._pass(client)
        except Exception:  # the GUI must learn that its connection died, not just lose updates
            log.exception("the collector worker failed")
            self.state_changed.emit(REFUSED, self.last_heard)
        finally:
            client.close()
            context.term()

    def _pass(self, client: Client) -> None:
        self._take_subscription(client)
        self._take_requests(client)
        self._pump_updates(client)
        self._refresh_state(client)

    def _take_subscription(self, client: Client) -> None:
        wanted = self._subscribe_to
        if wanted is not None and wanted != self._types:
            self._types = wanted
            client.subscribe(wanted)

    def _take_requests(self, client: Client) -> None:
        while True:
            try:
                self._pending.append(self._commands.get_nowait())
            except queue.Empty:
                break
        if self.state != CONNECTED:
            return  # kept until the collector answers again; the GUI stays responsive meanwhile
        batch, self._pending = self._pending[:MAX_REQUESTS_PER_PASS], self._pending[MAX_REQUESTS_PER_PASS:]
        for item in batch:
            self._ask(client, item)

    def _ask(self, client: Client, item: _Request) -> None:
        try:
            response = client.request(item.type, item.params, timeout=REQUEST_TIMEOUT)
        except LabscopeError as exc:
            log.debug("request %s %s failed: %s", item.type, item.params, exc)
            self.request_failed.emit(item.tag, str(exc))
            return
        self.response_received.emit(item.tag, response)

    def _pump_updates(self, client: Client) -> None:
        update = client.next_update(POLL)
        count = 0
        while update is not None and count < MAX_UPDATES_PER_PASS:
            self.update_received.emit(update)
            count += 1
            update = client.next_update(0)
        if update is not None:
            self.update_received.emit(update)

    def _refresh_state(self, client: Client) -> None:
        self.last_heard = client.last_heard or 0.0
        state = connection_state(client.last_heard is not None, client.connected(),
                                 time.monotonic() - self._started, self.refused_after)
        if state == CONNECTED and (state != self.state or self._info_overdue()):
            self._learn_info(client)
        if state == self.state:
            return
        log.info("collector %s: %s", self.endpoint, state)
        self.state = state
        self.state_changed.emit(state, self.last_heard)

    def _info_overdue(self) -> bool:
        return self._info is None and time.monotonic() - self._hello_at > HELLO_TIMEOUT

    def _learn_info(self, client: Client) -> None:
        # A collector that came back may be another one: new alias, new module set.
        self._hello_at = time.monotonic()
        try:
            info = client.hello(timeout=HELLO_TIMEOUT)
        except LabscopeError as exc:
            log.debug("HELLO after connecting failed: %s", exc)
            return
        if info != self._info:
            self._info = CollectorInfo()
            self._info.CopyFrom(info)
            self.info_changed.emit(self._info)
