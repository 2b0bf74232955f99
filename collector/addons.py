"""The aggregator module API: what a drop-in module sees and what it must provide.

A module is one ``.py`` file in a modules folder holding one subclass of
:class:`Aggregator`. The class *is* the contract: each hook's docstring below
says what it gets, what it returns and what it may raise. The collector owns
all concurrency: it never calls one module from two greenlets at once for
reports, so a module needs no locks.

The classic form works unchanged: a subclass may define ``__init__(self)``
with no arguments and never call ``super().__init__()``; the collector
attaches itself (``self.collector``, ``self.config``) after construction.

Sample config block (TOML, in the collector's ``--config`` file)::

    [modules.mymodule]
    # update_interval = 1.0      # seconds between getUpdateMessage() calls
    # any key listed in the class's ``options`` dict
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

from google.protobuf.message import DecodeError, Message

from messages import Encoding, NodeInfo
from messages.codec import decode_payload
from messages.errors import BadPayloadError, Code, ConfigError, RequestError
from messages.requests import RequestView
from messages.specs import Param, Payload, RequestSpec, UpdateSpec

if TYPE_CHECKING:
    from collector.stores.base import Store

__all__ = [
    "Aggregator",
    "BadPayloadError",
    "CollectorAPI",
    "ExcInfo",
    "Figures",
    "ReadFigures",
    "NodeRecord",
    "Option",
    "Param",
    "Payload",
    "Report",
    "Request",
    "RequestError",
    "RequestSpec",
    "UpdateSpec",
    "as_names",
]

M = TypeVar("M", bound=Message)
R = TypeVar("R")

# What ``on_shutdown`` gets when ``main`` ended with an exception: a ``sys.exc_info()`` tuple.
ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]


ReadFigures = Callable[[bytes], Sequence[Any]]  # what makes a sample's values from its bytes (Figures)


class Report:
    """One REPORT as a module sees it.

    Attributes: ``node`` (node id), ``type`` (report type), ``seq`` (the
    node's sequence number), ``time`` (sender's clock, epoch seconds),
    ``data`` (payload bytes, exactly as sent), ``encoding`` and ``schema``
    (how the payload is encoded; see :meth:`decode` and :meth:`message`).

    A payload that does not decode never reaches a module's state: the
    collector parses every payload that names a known protobuf schema before
    any module sees it, and a module that finds the payload bad (its own
    parse raises ``DecodeError``, or it raises :class:`BadPayloadError`)
    makes the report a counted ``bad-report`` rather than a module error.
    So read the payload first and change state after.
    """

    __slots__ = ("node", "type", "seq", "time", "data", "encoding", "schema", "parsed")

    def __init__(
        self, node: str, type: str, seq: int, time: float, data: bytes, encoding: int = 0, schema: str = ""
    ) -> None:
        self.node = node
        self.type = type
        self.seq = seq
        self.time = time
        self.data = data
        self.encoding = encoding
        self.schema = schema
        self.parsed: Message | None = None  # the payload as parsed by the collector, shared by every module

    def decode(self) -> Any:
        """The payload decoded: a protobuf message, a msgpack value, bytes or None.

        Raises BadPayloadError when it does not decode. A protobuf message is
        parsed once and shared by every module: read it, never change it.
        """
        if self.parsed is not None:
            return self.parsed
        value = decode_payload(self.data, self.encoding, self.schema)
        if isinstance(value, Message):
            self.parsed = value  # parsed once, shared with every later module (message() too)
        return value

    def message(self, cls: type[M]) -> M:
        """The payload as a ``cls`` protobuf message (parsed once; read it, never change it).

        A payload without a schema (e.g. a classic probe's bytes) is parsed as
        ``cls``. Raises BadPayloadError when the report declares another
        schema or another encoding, or the bytes do not parse.
        """
        parsed = self.parsed
        if type(parsed) is cls:
            return parsed
        name = cls.DESCRIPTOR.full_name
        if (self.schema and self.schema != name) or self.encoding == Encoding.MSGPACK:
            raise BadPayloadError(
                f"{self.type} report from {self.node} is not a {name} "
                f"(schema {self.schema!r}, encoding {self.encoding})"
            )
        try:
            message = cls.FromString(self.data)
        except DecodeError as exc:
            raise BadPayloadError(f"{self.type} report from {self.node} does not parse as {name}: {exc}") from None
        self.parsed = message
        return message

    def __repr__(self) -> str:
        return f"Report(node={self.node!r}, type={self.type!r}, seq={self.seq}, {len(self.data)} bytes)"


class Request(RequestView):
    """One REQUEST as a module sees it.

    ``type`` is the request type, ``node`` the ``node=`` parameter (or None),
    ``params`` every ``key=value`` parameter as strings. Parameters are also
    attributes (``msg.filename``); a missing one raises AttributeError.
    """

    def __init__(self, type: str, params: dict[str, str] | None = None, request_id: int = 0) -> None:
        super().__init__(type, params, request_id)
        self.node = self.params.get("node")

    def epoch_param(self, name: str) -> float | None:
        """Parameter ``name`` as epoch seconds (None when absent or empty).

        Raises RequestError ``bad-request`` when it is not a finite number.
        """
        text = self.params.get(name)
        if text is None or text == "":
            return None
        try:
            value = float(text)
        except ValueError:
            raise RequestError(Code.BAD_REQUEST, f"{name}={text!r} is not a number of epoch seconds") from None
        if not math.isfinite(value):
            raise RequestError(Code.BAD_REQUEST, f"{name}={text!r} is not a finite number of epoch seconds")
        return value


@dataclass(frozen=True)
class Option:
    """One ``options`` entry with checks beyond its type: ``options = {"keep": Option(1000, minimum=1)}``.

    A plain value in ``options`` is an Option with no bounds. The collector
    checks every ``[modules.NAME]`` value once, at start-up: its type must be
    the default's (an integer for an int, a number for a float, ...), within
    ``minimum``/``maximum`` when given, and one of ``choices`` when given; a
    wrong value stops the collector with one line (exit status 2).
    ``self.config`` holds the value (the default, or the configured one).
    """

    default: Any
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[Any, ...] = ()
    help: str = ""


@dataclass
class NodeRecord:
    """What the collector knows about one node.

    ``status`` is ``live`` or ``lost``; times are epoch seconds (collector clock).
    ``site`` is set at a top collector for the nodes of its sites (docs/sites.md).
    """

    node: str
    info: NodeInfo = field(default_factory=NodeInfo)
    first_seen: float = 0.0
    last_seen: float = 0.0
    status: str = "live"
    last_seq: int = 0
    reconnects: int = 0
    backlog: int = 0
    gaps: int = 0
    bad_reports: int = 0  # reports whose payload did not decode, since the collector started
    site: str = ""  # at a top collector: the site whose node this is (its id is SITE:NODE; docs/sites.md)


class CollectorAPI(Protocol):
    """What a module may ask of the collector (available as ``self.collector``)."""

    #: The configured store (docs/stores.md): ``events``, ``metadata`` (key -> text), ``blobs``
    #: (versioned bytes with SHA-256), ``probes`` (definitions pushed to agents), ``audit``, ``nodes``,
    #: ``snapshots``, ``history`` (series in tiers: record as data arrives, read with :meth:`run_in_thread`).
    #: Safe from any thread. A module keeps its own things under keys/names it prefixes
    #: with its name, e.g. ``self.collector.store.metadata.put("mymodule/threshold", "0.9")``.
    store: Store

    #: True while the journal is replayed into the modules after a restart: a report seen now was
    #: already seen before the restart, so side effects kept in the store must not be repeated.
    replaying: bool

    def nodes(self) -> list[NodeRecord]:
        """Every node the collector has seen, live or lost."""
        ...

    def node(self, node_id: str) -> NodeRecord | None:
        """One node's record, or None when unknown."""
        ...

    def request(self, type: str, node: str | None = None, **params: str) -> Any:
        """Ask another module (usually a dependency) for data, in-process.

        Returns what that module's processREQUEST returned; raises
        RequestError when no module answers ``type`` or the module fails.
        """
        ...

    def data_dir(self, module: str) -> Path:
        """A folder of the collector's data dir reserved for ``module`` (created on demand)."""
        ...

    def publish(self, code: str, value: Any, time: float | None = None, node: str | None = None) -> None:
        """Offer one data point to the distributions (docs/distributions.md); never blocks, never raises for them.

        ``code`` is ``NODE/METRIC`` (``collector/METRIC`` for the collector's
        own health); ``value`` is usually a number; ``time`` defaults to now
        (epoch s), ``node`` to the part of ``code`` before the first ``/``.
        Each distribution whose ``codes`` globs match the code queues it and
        sends it from its own thread. With no distribution taking the code
        this is one dictionary lookup.
        """
        ...

    def publish_many(self, node: str, names: Sequence[str], values: Sequence[Any], time: float | None = None) -> None:
        """Offer the points ``NODE/NAME`` of one sample at once: ``names[i]`` has ``values[i]``.

        The same as one :meth:`publish` per name, at a fraction of the cost on
        the ingest path (a distribution gets the sample as one queue entry and
        makes its points in its own thread): use it for the figures of one report.
        ``values`` is copied (a tuple is kept as it is); a :class:`Figures` is
        kept and read in the distribution's thread, which is cheaper still.
        """
        ...

    def publish_read(
        self, node: str, names: Sequence[str], read: ReadFigures, data: bytes, time: float | None = None
    ) -> None:
        """:meth:`publish_many` with ``values = Figures(read, data)``, without making the object on the loop.

        For a module that publishes every report's figures and keeps nothing
        else of them: ``read(data)`` runs in each distribution's thread that
        takes the sample (see :class:`Figures` for what ``read`` must be).
        """
        ...

    def publishing(self) -> bool:
        """True when at least one distribution takes data points: skip building points when False."""
        ...

    def wait_for_shutdown(self, seconds: float | None = None) -> bool:
        """Wait up to ``seconds`` (None: for ever); True once the collector is stopping, else False.

        Cooperative (a gevent Event): call it from ``main``, never from a hook
        the collector calls for reports, requests or updates.
        """
        ...

    def run_in_thread(self, fn: Callable[..., R], *args: Any) -> R:
        """Run ``fn(*args)`` in a worker OS thread and return what it returned (or raise what it raised).

        For blocking work in :meth:`Aggregator.processREQUEST`, such as reading
        ``store.history``: only the request's own greenlet waits, ingest goes on.
        ``fn`` must not touch the module's state (it runs beside the loop).
        """
        ...


class Figures(Sequence[Any]):
    """A sample's values made from bytes later, in the distribution's thread: ``read(data)``.

    Pass ``Figures(read, msg.data)`` as ``values`` to
    :meth:`CollectorAPI.publish_many` and the ingest path costs one small
    object: no parsing, no values to allocate. A distribution that takes the
    sample calls ``read(data)`` once (the result is kept) and makes its points
    from the sequence it returns. ``read`` must be a pure function of ``data``:
    it runs in another thread; if it raises, the sample's points are dropped
    and counted as the distribution's errors.
    """

    __slots__ = ("_values", "data", "read")

    def __init__(self, read: Callable[[bytes], Sequence[Any]], data: bytes) -> None:
        self.read = read
        self.data = data
        self._values: Sequence[Any] | None = None

    def values(self) -> Sequence[Any]:
        """The values, read from the bytes on first use."""
        if self._values is None:
            self._values = self.read(self.data)
        return self._values

    def __len__(self) -> int:
        return len(self.values())

    def __getitem__(self, index: Any) -> Any:
        return self.values()[index]


def as_names(value: str | Iterable[str] | None) -> tuple[str, ...]:
    """Normalize a classic ``'A'`` or ``('A', 'B')`` attribute into a tuple of names."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,) if value else ()
    return tuple(value)


class Aggregator:
    """Base class of every aggregator module; subclass it in one file.

    Class attributes (a string or a tuple of strings where plural):

    - ``name``: the module's name; defaults to the file's stem.
    - ``reporttype``: REPORT type(s) routed to :meth:`processReport`.
    - ``updatetype``: the UPDATE type :meth:`getUpdateMessage` feeds, or None.
    - ``requesttypes``: REQUEST type(s) routed to :meth:`processREQUEST`.
    - ``depends``: names of modules that must start first.
    - ``update_interval``: seconds between getUpdateMessage() calls (None: the
      collector's default, 1 s; 0: push on change, i.e. right after every ingest
      pass that delivered reports); ``[modules.NAME] update_interval`` overrides it.
    - ``options``: config keys this module accepts under ``[modules.NAME]``,
      with their defaults (a plain value, or an :class:`Option` with bounds);
      the merged values are in ``self.config``. Plain public class attributes
      (the classic ``storagedir = '/tmp/dir'``) are settings too: a configured
      value replaces them before the module is constructed.
    - ``request_specs``: optional, request type -> :class:`RequestSpec`
      (summary, parameters, answer payload) for each type in ``requesttypes``;
      ``update_spec``: optional :class:`UpdateSpec` of ``updatetype`` (payload,
      periodic or on change). A module that describes itself must describe every
      type it answers (checked when it loads); docs/protocol.md's table of
      request and update types is generated from these (``make docs``). Classic
      modules leave both unset and are simply absent from that table.

    Attached by the collector after construction: ``self.collector``
    (a :class:`CollectorAPI`) and ``self.config`` (dict).
    """

    name: ClassVar[str] = ""
    reporttype: ClassVar[str | tuple[str, ...]] = ()
    updatetype: ClassVar[str | None] = None
    requesttypes: ClassVar[str | tuple[str, ...]] = ()
    depends: ClassVar[str | tuple[str, ...]] = ()
    update_interval: ClassVar[float | None] = None
    options: ClassVar[dict[str, Any]] = {}
    request_specs: ClassVar[dict[str, RequestSpec]] = {}
    update_spec: ClassVar[UpdateSpec | None] = None

    collector: CollectorAPI
    config: dict[str, Any]

    @property
    def log(self) -> logging.Logger:
        """A logger named after the module."""
        return logging.getLogger(f"labscope.module.{self.name or type(self).__name__}")

    def positive_int_option(self, key: str) -> int:
        """The config value ``key`` (default from ``options``), checked to be an integer >= 1.

        Raises ConfigError naming ``[modules.NAME] key``, which stops the
        collector at start-up with that one line (exit status 2).
        """
        config: dict[str, Any] = getattr(self, "config", None) or self.options
        value = config.get(key, self.options.get(key))
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"[modules.{self.name}] {key}: expected a positive integer, got {value!r}")
        return value

    def processReport(self, msg: Report) -> None:
        """Digest one REPORT of a type listed in ``reporttype``.

        Called in per-node sequence order, never concurrently. Read the payload
        first (:meth:`Report.message` or :meth:`Report.decode`) and change state
        after: a payload that does not decode raises BadPayloadError (or
        protobuf's DecodeError), which makes the report a counted ``bad-report``
        that no later module sees. Any other exception is logged with the
        module's name and counted as a module error, and other modules still
        get the report.
        """

    def processREQUEST(self, msg: Request) -> Any:
        """Answer one REQUEST of a type listed in ``requesttypes``.

        Return a protobuf message, bytes (sent untouched, e.g. from
        ``SerializeToString()``), a dict or list (sent as msgpack), or None
        (an empty response). Raise :class:`RequestError` to answer with an
        ERROR; any other exception becomes an ERROR with code ``module-error``.
        """
        raise RequestError(Code.UNKNOWN_TYPE, f"module {self.name} does not answer {msg.type!r}")

    def getUpdateMessage(self) -> Any:
        """The payload to push to subscribers of ``updatetype`` now, or None when nothing changed.

        Called every update interval; return values as for processREQUEST.
        """
        return None

    def snapshot(self) -> Any:
        """Optional: the module's whole state as a msgpack-able value, for restart recovery.

        The collector calls it every snapshot interval, between ingest passes,
        and on shutdown. After a restart it calls :meth:`restore` with the
        latest snapshot and replays only the reports journaled after it. A
        module that does not override it is rebuilt by replaying the whole
        retained journal of its report types instead.
        """
        return None

    def restore(self, state: Any) -> None:
        """Optional: take back a state :meth:`snapshot` returned (called before any report).

        Make it all-or-nothing: if it raises, the module is rebuilt from the
        whole retained journal on top of whatever it left.
        """

    def on_startup(self) -> None:
        """Called once, after every dependency has started; raising disables this module and its dependents."""

    def main(self) -> None:
        """Optional: the module's own loop, run in a greenlet of its own once every module has started.

        Loop until :meth:`wait_for_shutdown` returns True, e.g.
        ``while not self.wait_for_shutdown(10): self.check()``. When it
        returns (or raises: logged and counted as a module error), the module
        stays in service; :meth:`on_shutdown` gets the exception at shutdown.
        A ``main`` still running ``module_grace`` seconds (default 5) after the
        shutdown began is abandoned: logged as an error naming the module and
        killed. Keep it cooperative (gevent): ``time.sleep`` or blocking I/O
        in it stalls the whole collector.
        """

    def wait_for_shutdown(self, seconds: float | None = None) -> bool:
        """Wait up to ``seconds`` (None: until the shutdown); True once the collector is stopping.

        Returns False when ``seconds`` passed first. Call it from :meth:`main` only.
        """
        return self.collector.wait_for_shutdown(seconds)

    def on_shutdown(self, exc_info: ExcInfo | None = None) -> None:
        """Called once when the collector stops, in reverse start order, after every ``main`` has ended.

        ``exc_info`` is what :meth:`main` raised (a ``sys.exc_info()`` tuple;
        a ``TimeoutError`` when it was abandoned), or None: it returned, or the
        module has no ``main``. The classic ``on_shutdown(self)``, with no
        parameter, is called without it.
        """

    def on_node_joined(self, node: NodeRecord) -> None:
        """A node is known: at start-up once per node the collector already knows, then on every (re)join.

        At start-up (after ``on_startup`` and the journal replay, before any
        ``main``) it is called for each node a previous run recorded, with
        status ``lost`` until that node says HELLO again; then for each node
        that says HELLO for the first time or comes back after being lost.
        """

    def on_node_left(self, node: NodeRecord) -> None:
        """A node was declared lost (silent past the node timeout) or said BYE; fires once per loss."""
