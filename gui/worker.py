"""Socket work off the GUI thread: one thread owns one :class:`gui.client.Client`.

The GUI never touches a socket. It asks the :class:`Worker` for subscriptions
and requests (thread-safe, never blocking), and the worker answers through Qt
signals, which Qt queues onto the GUI thread because they are emitted from the
worker's own thread. When the collector is gone the worker keeps trying (the
client's heartbeats and lease renewals go out by themselves) and reports the
connection state; requests asked for meanwhile wait until it is back. A
collector that refuses the CURVE handshake (``keys``) is said at once
(``auth_refused``, state ``auth-refused``), and the worker tries again with a new
socket every ``auth_retry`` seconds: a key added to the collector's allow folder
lets the GUI in without a restart.

The worker also saves files: :meth:`Worker.transfer` streams a request's answer
(``File`` from the files module, ``NodeFile`` from an agent) into a temporary
file beside the target, reports progress by signal, and renames it into place
only once it is complete and verified (:func:`stream_to_file`).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import zmq
from google.protobuf.message import DecodeError
from PySide6 import QtCore

from gui.atomic import atomic_file
from gui.client import Client, RequestFailed, SubscriptionRefused
from messages import CollectorInfo, Files
from messages.errors import CHECKSUM, AuthRefused, LabscopeError, TransferCancelled
from messages.keys import ClientKeys
from messages.stream import Digest

__all__ = [
    "AUTH_REFUSED",
    "CONNECTED",
    "CONNECTING",
    "RECONNECTING",
    "REFUSED",
    "Transfer",
    "TransferCancelled",
    "Worker",
    "connection_state",
    "stream_to_file",
    "unwrap_files",
]

log = logging.getLogger(__name__)

CONNECTING = "connecting"
CONNECTED = "connected"
RECONNECTING = "reconnecting"
REFUSED = "refused"
AUTH_REFUSED = "auth-refused"  # the collector refused the CURVE handshake (see Worker.auth_reason)

REFUSED_AFTER = 5.0  # seconds without any answer before a first connection counts as refused
REQUEST_TIMEOUT = 3.0  # short, so a collector that dies mid-request stalls the worker only briefly
HELLO_TIMEOUT = 2.0
POLL = 0.05  # seconds one pass waits for updates; bounds how late a command or stop() is seen
MAX_UPDATES_PER_PASS = 500
MAX_REQUESTS_PER_PASS = 4
# Seconds a transfer waits for its next piece; an agent gets node_request_timeout (30 s) to answer at all.
TRANSFER_TIMEOUT = 20.0
AUTH_RETRY = 5.0  # seconds between handshakes while the collector refuses our key


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


@dataclass(frozen=True, slots=True)
class Transfer:
    """A file to save: the answer to REQUEST ``type`` with ``params``, written to ``target``.

    ``size`` is the expected size in bytes, for the progress bar (0: unknown
    until the end). ``files_name`` is set for a files module's ``File``
    request: a small file comes back as one ``labscope.Files`` RESPONSE
    holding the file ``files_name``, not as raw CHUNKs.
    """

    tag: str
    type: str
    params: dict[str, str] = field(default_factory=dict)
    target: str = ""
    size: int = 0
    files_name: str = ""


def unwrap_files(data: bytes, name: str) -> bytes:
    """The file bytes of a one-piece answer to ``File``.

    A files module answers a small file with a ``labscope.Files`` holding it;
    when ``data`` is such a message with one file named ``name``, its bytes are
    returned (RequestFailed ``checksum`` when they disagree with its ``size``).
    Anything else is a one-chunk stream of the file itself and returned as is.
    """
    try:
        files = Files.FromString(data)
    except DecodeError:
        return data
    if len(files.files) != 1 or files.files[0].name != name:
        return data
    piece = files.files[0]
    if piece.size and piece.size != len(piece.data):
        raise RequestFailed(
            CHECKSUM, f"received {len(piece.data)} bytes of {name!r}, the module sent {piece.size}", "File"
        )
    return piece.data


class _Sink:
    """Writes pieces to an open file, hashing them and reporting the running total."""

    def __init__(self, handle: IO[bytes], progress: Callable[[int], None]) -> None:
        self.handle = handle
        self.progress = progress
        self.digest = Digest()

    def write(self, data: bytes) -> None:
        """Append ``data`` and report the bytes written so far."""
        self.handle.write(data)
        self.digest.update(data)
        self.progress(self.digest.size)


def stream_to_file(
    client: Client,
    spec: Transfer,
    progress: Callable[[int], None],
    cancelled: Callable[[], bool] = lambda: False,
    timeout: float = TRANSFER_TIMEOUT,
) -> tuple[int, str]:
    """Stream ``spec``'s answer into ``spec.target``; returns (bytes written, SHA-256 hex).

    The bytes go to a temporary file in the target's folder, which replaces the
    target only when the answer is complete and verified (the client checks a
    stream's size and SHA-256). On any failure or a cancel the temporary file
    is removed and the target left as it was. ``progress`` gets the bytes
    written so far after each piece. Raises RequestFailed, ClientTimeout,
    TransferCancelled or OSError.
    """
    with atomic_file(Path(spec.target)) as handle:
        sink = _Sink(handle, progress)
        _receive(client.stream(spec.type, spec.params, timeout=timeout), spec, sink, cancelled)
    return sink.digest.size, sink.digest.hexdigest()


def _receive(stream: Iterator[bytes], spec: Transfer, sink: _Sink, cancelled: Callable[[], bool]) -> None:
    held: bytes | None = None  # a File answer's first piece may be a whole labscope.Files: decide at the end
    try:
        for count, piece in enumerate(stream):
            if cancelled():
                raise TransferCancelled(f"cancelled after {sink.digest.size} bytes")
            if count == 0 and spec.files_name:
                held = piece
                continue
            if held is not None:
                sink.write(held)
                held = None
            sink.write(piece)
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()  # a stream cut short sends the sender a cancel CREDIT
    if held is not None:
        sink.write(unwrap_files(held, spec.files_name))


class Worker(QtCore.QObject):
    """Owns the collector connection in a background thread; talks to the GUI by signals.

    Signals: ``info_changed(CollectorInfo)`` after each (re)connection that
    brought a different CollectorInfo; ``update_received(Update)``;
    ``response_received(tag, Response)`` and ``request_failed(tag, reason)``
    for :meth:`request`; ``state_changed(state, last_heard)`` with one of the
    module's state names and the epoch time the collector was last heard
    (0 when never). For :meth:`transfer`: ``transfer_progress(tag, bytes
    written, expected size or 0)``, then ``transfer_finished(tag, path, size,
    sha256 hex)`` or ``transfer_failed(tag, reason)``. ``subscription_refused(reason)``
    when the collector refuses a subscription; the worker then subscribes to
    the types it does push. ``auth_refused(reason)`` when the collector refuses
    the handshake (one line, e.g. "the collector did not accept this client's
    key"), with state ``auth-refused``; ``keys`` make it a CURVE client.

    A transfer holds the thread until it ends: updates arriving meanwhile are
    buffered by the client and delivered afterwards (the client keeps the
    lease and heartbeats going while it waits for pieces).
    """

    info_changed = QtCore.Signal(object)
    update_received = QtCore.Signal(object)
    response_received = QtCore.Signal(str, object)
    request_failed = QtCore.Signal(str, str)
    state_changed = QtCore.Signal(str, float)
    # object, not int: Qt's int is 32 bits and files are larger than 2 GiB.
    transfer_progress = QtCore.Signal(str, object, object)
    transfer_finished = QtCore.Signal(str, str, object, str)
    transfer_failed = QtCore.Signal(str, str)
    subscription_refused = QtCore.Signal(str)
    auth_refused = QtCore.Signal(str)

    def __init__(
        self,
        endpoint: str,
        parent: QtCore.QObject | None = None,
        *,
        refused_after: float = REFUSED_AFTER,
        keys: ClientKeys | None = None,
        auth_retry: float = AUTH_RETRY,
    ) -> None:
        super().__init__(parent)
        self.endpoint = endpoint
        self.refused_after = refused_after
        self.keys = keys
        self.auth_retry = auth_retry
        self.auth_reason = ""  # why the collector refused our handshake, while it does
        self.state = CONNECTING
        self.last_heard = 0.0
        self._types: tuple[str, ...] = ()
        self._subscribe_to: tuple[str, ...] | None = None
        self._commands: queue.SimpleQueue[_Request | Transfer] = queue.SimpleQueue()
        self._pending: list[_Request | Transfer] = []
        self._cancelled: set[str] = set()
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

    def transfer(self, spec: Transfer) -> None:
        """Save ``spec``'s answer to its target; progress and outcome come back as transfer_* signals."""
        self._cancelled.discard(spec.tag)
        self._commands.put(spec)

    def cancel(self, tag: str) -> None:
        """Cancel transfer ``tag`` (taken up before its next piece is written, or before it starts)."""
        self._cancelled.add(tag)

    @property
    def running(self) -> bool:
        """Whether the worker thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    # ------------------------------------------------------------ worker thread

    def _run(self) -> None:
        context = zmq.Context()
        client = Client(self.endpoint, context=context, keys=self.keys)
        try:
            while not self._stop.is_set():
                try:
                    self._pass(client)
                except AuthRefused as exc:
                    client.close()
                    self._auth_refused(exc)
                    client = Client(self.endpoint, context=context, keys=self.keys)
        except Exception:  # the GUI must learn that its connection died, not just lose updates
            log.exception("the collector worker failed")
            self.state_changed.emit(REFUSED, self.last_heard)
        finally:
            client.close()
            context.term()

    def _auth_refused(self, exc: AuthRefused) -> None:
        """Say the refusal (once per reason), then wait before the next handshake (libzmq will not retry)."""
        if exc.reason != self.auth_reason or self.state != AUTH_REFUSED:
            log.info("collector %s", exc)  # the status bar says it; the log only at info
            self.auth_reason = exc.reason
            self.state = AUTH_REFUSED
            self.auth_refused.emit(exc.reason)
            self.state_changed.emit(AUTH_REFUSED, self.last_heard)
        self._types = ()  # the new client subscribes again
        self._stop.wait(self.auth_retry)

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

    def _ask(self, client: Client, item: _Request | Transfer) -> None:
        if isinstance(item, Transfer):
            self._transfer(client, item)
            return
        try:
            response = client.request(item.type, item.params, timeout=REQUEST_TIMEOUT)
        except LabscopeError as exc:
            log.debug("request %s %s failed: %s", item.type, item.params, exc)
            self.request_failed.emit(item.tag, str(exc))
            return
        self.response_received.emit(item.tag, response)

    def _transfer(self, client: Client, spec: Transfer) -> None:
        def progress(done: int) -> None:
            self.transfer_progress.emit(spec.tag, done, spec.size)

        def cancelled() -> bool:
            return self._stop.is_set() or spec.tag in self._cancelled

        try:
            if cancelled():
                raise TransferCancelled("cancelled before it started")
            size, digest = stream_to_file(client, spec, progress, cancelled)
        except (LabscopeError, OSError) as exc:
            log.info("saving %s %s to %s failed: %s", spec.type, spec.params, spec.target, exc)
            self.transfer_failed.emit(spec.tag, str(exc))
            return
        finally:
            self._cancelled.discard(spec.tag)
        log.info("saved %s %s to %s (%s bytes)", spec.type, spec.params, spec.target, size)
        self.transfer_finished.emit(spec.tag, spec.target, size, digest)

    def _pump_updates(self, client: Client) -> None:
        try:
            self._emit_updates(client)
        except SubscriptionRefused as refused:
            self._refused(client, refused)

    def _refused(self, client: Client, refused: SubscriptionRefused) -> None:
        """Tell the GUI in one line, and keep the types the collector does push."""
        log.warning("collector %s: %s", self.endpoint, refused)
        self.subscription_refused.emit(str(refused))
        rest = [t for t in refused.types if t not in refused.unknown]
        if refused.unknown and rest:
            client.subscribe(rest)

    def _emit_updates(self, client: Client) -> None:
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
        state = connection_state(
            client.last_heard is not None, client.connected(), time.monotonic() - self._started, self.refused_after
        )
        if self.state == AUTH_REFUSED and state != CONNECTED:
            return  # still refused: say that, not "nothing answers"
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
