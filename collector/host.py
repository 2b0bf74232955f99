"""The module host: starts aggregator modules, routes work to them, and contains their failures.

It is the ``self.collector`` every module sees (the CollectorAPI). A module
that raises is logged with its name and counted; it never stops the collector
or another module.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import gevent
import msgpack
from google.protobuf.message import DecodeError, Message

from collector import loader, settings
from collector.addons import Aggregator, NodeRecord, ReadFigures, Report, Request, RequestError
from collector.config import CollectorConfig
from collector.counters import Counters
from collector.lifecycle import Lifecycle, accepts_exc_info
from collector.observer import event_call
from collector.registry import NodeRegistry
from collector.store import Store
from collector.stores.base import Store as Parts
from collector.stores.memory import MemoryStore
from messages import Encoding, Envelope, Event
from messages.codec import message_class
from messages.errors import BadPayloadError, Code, ConfigError
from messages.logs import ThrottledLog
from messages.payloads import batch_checker

R = TypeVar("R")

log = logging.getLogger(__name__)

# Report type of events, both from agents and from the collector itself.
EVENT_TYPE = "Event"

# Request types the collector answers itself; no module may claim them.
RESERVED_REQUESTS = ("CollectorStats", "Distributions", "Audit")
# Update types the collector pushes itself (Distributions: only when distributions are configured).
RESERVED_UPDATES = ("Distributions",)

PROTOBUF = Encoding.PROTOBUF
# What a module raises when a report's payload is bad (not the module's fault): counted as bad-report.
BAD_PAYLOAD = (BadPayloadError, DecodeError)
NOTHING_CHECKED: frozenset[str] = frozenset()  # deliver's default: parse every payload of a known schema
# Frames whose payloads one parse checks: a pass's 512 at once build a ~1 MB upb arena that the heap
# hands back to the kernel after each pass, and page faults made that parse 3x slower (issue 14).
CHECK_FRAMES = 32


class Fanout(Protocol):
    """What puts data into the distributions' queues (collector/dist_host.py ``Fanout``)."""

    def publish(self, code: str, value: Any, time: float | None, node: str | None) -> None:
        """Offer one point."""

    def publish_many(self, node: str, names: Sequence[str], values: Sequence[Any], time: float | None = None) -> None:
        """Offer the points ``NODE/NAME`` of one sample."""

    def publish_read(
        self, node: str, names: Sequence[str], read: ReadFigures, data: bytes, time: float | None = None
    ) -> None:
        """Offer the points ``NODE/NAME`` of one sample whose values ``read(data)`` gives."""

    def feed(self, report: Report) -> None:
        """Offer one applied report."""


@dataclass
class Running:
    """A started module and what it is routed."""

    name: str
    module: Aggregator
    updatetype: str | None
    update_interval: float


class ModuleHost:
    """Loads modules in dependency order and calls them, one failure at a time."""

    def __init__(self, config: CollectorConfig, registry: NodeRegistry, counters: Counters) -> None:
        self.config = config
        self.registry = registry
        self.counters = counters
        self.throttled = ThrottledLog(log)
        self.running: list[Running] = []
        self.report_routes: dict[str, list[Running]] = {}
        self.request_routes: dict[str, Running] = {}
        self.bad_reports: collections.Counter[tuple[str, str]] = collections.Counter()  # (node, type) -> count
        self._schemas: dict[str, type[Message]] = {}
        self.own_updates: list[Running] = []  # the collector's own update types (Distributions)
        self.failed: dict[str, str] = {}  # module -> why it is not running (the web page shows it)
        # Where data points and applied reports go; None while no distribution takes them (it costs nothing).
        self._points: Fanout | None = None
        self._reports: Fanout | None = None
        # The observers' post (collector/observer_thread.py): (method, *args), never blocks.
        self.observe: Callable[..., None] = _nobody
        self.lifecycle = Lifecycle(config.module_grace, self._main_failed, self._main_abandoned)
        # The configured store (docs/stores.md), ``self.collector.store`` for modules; the collector sets it.
        self.store: Parts = MemoryStore()
        # True while recover() replays the journal into the modules (``self.collector.replaying``).
        self.replaying = False

    # ------------------------------------------------------------ start/stop

    def load(self) -> None:
        """Discover, validate, order and start every module.

        Raises DependencyError/ModuleError/ConfigError for start-up errors the
        operator must fix (exit status 2).
        """
        order = loader.start_order(loader.discover(self.config.modules_dirs), self.config.disable_modules)
        loader.check_conflicts(order, RESERVED_REQUESTS, RESERVED_UPDATES)
        self._check_module_config(order)
        failed: set[str] = set()
        for candidate in order:
            if not candidate.usable or failed.intersection(candidate.depends):
                if candidate.usable:
                    log.error("module %s not started: a dependency failed to start", candidate.name)
                    self.failed[candidate.name] = "a dependency failed to start"
                elif not candidate.disabled:
                    self.failed[candidate.name] = candidate.error or "could not be loaded"
                failed.add(candidate.name)
                continue
            if not self._start(candidate):
                self.failed.setdefault(candidate.name, "failed to start (see the collector's log)")
                failed.add(candidate.name)
        log.info("modules running in start order: %s", ", ".join(r.name for r in self.running) or "none")

    def _start(self, candidate: loader.Candidate) -> bool:
        assert candidate.cls is not None
        try:
            module = settings.with_classic_settings(candidate.cls, self._section(candidate.name))()
            module.name = candidate.name  # type: ignore[misc]  # instance name shadows the class default
            module.collector = self
            module.config = {**settings.defaults(candidate.cls), **self._section(candidate.name)}
            module.on_startup()
        except ConfigError as exc:
            # a bad [modules.NAME] value is the operator's to fix: exit 2 with one line naming the file
            raise ConfigError(f"config {self.config.config_path}: {exc}") from None
        except Exception as exc:  # a module's constructor or on_startup may raise anything
            log.error(
                "module %s (%s) failed to start: %s: %s",
                candidate.name,
                candidate.source,
                type(exc).__name__,
                exc,
                exc_info=log.isEnabledFor(logging.DEBUG),
            )
            self.counters[f"module-error:{candidate.name}"] += 1
            self.observe("module_failed", candidate.name, "on_startup", f"{type(exc).__name__}: {exc}")
            return False
        self._route(candidate, module)
        return True

    def _route(self, candidate: loader.Candidate, module: Aggregator) -> None:
        default = self.config.update_interval if module.update_interval is None else module.update_interval
        interval = module.config.get("update_interval", default)
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or interval < 0:
            raise ConfigError(
                f"config {self.config.config_path}: [modules.{candidate.name}] update_interval "
                f"must be a number of seconds >= 0 (0: push on change), not {interval!r}"
            )
        running = Running(candidate.name, module, candidate.updatetype, float(interval))
        self.running.append(running)
        for report_type in candidate.reporttypes:
            self.report_routes.setdefault(report_type, []).append(running)
        for request_type in candidate.requesttypes:
            self.request_routes[request_type] = running

    def _section(self, name: str) -> dict[str, Any]:
        return dict(self.config.modules.get(name, {}))

    def _check_module_config(self, order: list[loader.Candidate]) -> None:
        by_name = {c.name: c for c in order}
        path = self.config.config_path
        for name, values in self.config.modules.items():
            candidate = by_name.get(name)
            if candidate is None:
                raise ConfigError(
                    f"config {path}: [modules.{name}]: no module named {name!r} (known: {', '.join(sorted(by_name))})"
                )
            if candidate.cls is None:
                continue
            try:
                settings.check_section(name, candidate.cls, values)
            except ConfigError as exc:
                raise ConfigError(f"config {path}: {exc}") from None

    # ------------------------------------------------------------ recovery

    def snapshot_capable(self) -> list[Running]:
        """Running modules that override snapshot() and restore()."""
        return [
            r
            for r in self.running
            if type(r.module).snapshot is not Aggregator.snapshot and type(r.module).restore is not Aggregator.restore
        ]

    def take_snapshots(self, store: Store) -> int:
        """Save every snapshot-capable module's state as complete up to the store's last row."""
        saved = 0
        for running in self.snapshot_capable():
            ok, state = self._guard(running, "snapshot", running.module.snapshot)
            if not ok:
                continue
            try:
                store.save_snapshot(running.name, store.last_id, msgpack.packb(state, use_bin_type=True))
                saved += 1
            except (TypeError, ValueError) as exc:
                self._failed(running, "snapshot", exc)
        return saved

    def recover(self, store: Store) -> int:
        """Rebuild module state after a restart: restore snapshots, then replay the journal after them.

        Returns the number of reports replayed (counting each module that got one).
        """
        start = {r.name: self._restore(r, store) for r in self.running if self._takes_reports(r)}
        if not start:
            return 0
        self.replaying = True
        try:
            return self._replay(store, start)
        finally:
            self.replaying = False

    def _replay(self, store: Store, start: dict[str, int]) -> int:
        replayed = 0
        for row_id, env in store.replay(min(start.values())):
            targets = [r for r in self.report_routes.get(env.type, ()) if row_id > start[r.name]]
            if not targets:
                continue
            report = Report(env.node, env.type, env.seq, env.time, env.payload, env.encoding, env.schema)
            if self.payload_error(report) is not None:
                self.counters["bad-report-replayed"] += 1  # skipped now as it was when it arrived
                continue
            self._dispatch(targets, report, replaying=True)
            replayed += len(targets)
        return replayed

    def _takes_reports(self, running: Running) -> bool:
        return any(running in targets for targets in self.report_routes.values())

    def _restore(self, running: Running, store: Store) -> int:
        if running not in self.snapshot_capable():
            return 0
        snap = store.load_snapshot(running.name)
        if snap is None:
            return 0
        ok, _ = self._guard(
            running, "restore", running.module.restore, msgpack.unpackb(snap.state, raw=False, strict_map_key=False)
        )
        if not ok:
            log.error("module %s could not restore its snapshot; rebuilding it from the journal", running.name)
            return 0
        return snap.journal_id

    # ------------------------------------------------------------ lifecycle (collector/lifecycle.py)

    def begin(self) -> None:
        """After every on_startup and the journal replay: replay the known nodes, then spawn the mains.

        Each module gets ``on_node_joined`` for every node the registry knows
        (restored from the store: status ``lost`` until it says HELLO), in
        start order, node by node in id order; no ``joined`` event is emitted
        (nothing happened). Then every module's ``main`` starts in its greenlet.
        """
        for record in sorted(self.registry.records.values(), key=lambda r: r.node):
            for running in self.running:
                self._guard(running, "on_node_joined", running.module.on_node_joined, record)
        self.lifecycle.start((r.name, r.module) for r in self.running)

    def stop_mains(self) -> None:
        """Signal the shutdown and wait for every ``main`` (up to ``module_grace`` s; stragglers are abandoned)."""
        self.lifecycle.stop()

    def wait_for_shutdown(self, seconds: float | None = None) -> bool:
        """True once the collector is stopping; False when ``seconds`` passed first (see CollectorAPI)."""
        return self.lifecycle.signal.wait(seconds)

    def shutdown(self) -> None:
        """Stop the mains, then call every running module's on_shutdown in reverse start order."""
        self.stop_mains()
        for running in reversed(self.running):
            hook = running.module.on_shutdown
            if accepts_exc_info(hook):
                self._guard(running, "on_shutdown", hook, self.lifecycle.exc_info(running.name))
            else:
                self._guard(running, "on_shutdown", hook)

    def _by_name(self, name: str) -> Running:
        return next(r for r in self.running if r.name == name)

    def _main_failed(self, name: str, exc: BaseException) -> None:
        self._failed(self._by_name(name), "main", exc)

    def _main_abandoned(self, name: str, grace: float) -> None:
        running = self._by_name(name)
        log.error("module %s: main() ignored the shutdown for %g s (module_grace); abandoned", name, grace)
        self.counters["module-error"] += 1
        self.counters[f"module-error:{running.name}"] += 1
        message = f"module {name}: main() ignored the shutdown for {grace:g} s; abandoned"
        self.emit_event("module-error", "", "error", message, module=name, hook="main")

    # ------------------------------------------------------------ routing

    def _guard(self, running: Running, hook: str, call: Callable[..., Any], *args: Any) -> tuple[bool, Any]:
        try:
            return True, call(*args)
        except Exception as exc:  # isolation: a module's bug must not reach the collector
            self._failed(running, hook, exc)
            return False, exc

    def _failed(self, running: Running, hook: str, exc: BaseException) -> None:
        self.counters["module-error"] += 1
        self.counters[f"module-error:{running.name}"] += 1
        key = f"{running.name}.{hook}"
        if self.throttled.warning(key, "module %s raised in %s: %s: %s", running.name, hook, type(exc).__name__, exc):
            self.emit_event(
                "module-error",
                "",
                "error",
                f"module {running.name} raised in {hook}: {type(exc).__name__}: {exc}",
                module=running.name,
                hook=hook,
            )

    def check_payloads(self, envelopes: Sequence[Envelope], bodies: Sequence[bytes]) -> frozenset[str]:
        """The schemas whose payloads all parse among one-envelope frames: one parse per schema per
        :data:`CHECK_FRAMES` frames.

        ``bodies`` are the frames and ``envelopes`` what they hold
        (:func:`messages.codec.unpack_singles`). Hand the answer to :meth:`deliver`, which then
        parses none of those payloads again (messages/payloads.py says why that is the same
        check). Any schema whose group holds a bad payload is left out: its reports are parsed
        one by one, and only the bad one is a ``bad-report``.
        """
        schemas = {env.schema for env in envelopes}
        if len(schemas) == 1:
            schema = next(iter(schemas))
            return frozenset(schemas) if self._payloads_parse(schema, bodies) else NOTHING_CHECKED
        groups: dict[str, list[bytes]] = {}
        for env, body in zip(envelopes, bodies, strict=True):
            groups.setdefault(env.schema, []).append(body)
        return frozenset(schema for schema, group in groups.items() if self._payloads_parse(schema, group))

    def _payloads_parse(self, schema: str, bodies: Sequence[bytes]) -> bool:
        cls = self._schema_class(schema)
        if cls is None:
            return False
        check = batch_checker(cls)
        return all(check(b"".join(bodies[at : at + CHECK_FRAMES])) for at in range(0, len(bodies), CHECK_FRAMES))

    def deliver(self, report: Report, checked: frozenset[str] = NOTHING_CHECKED) -> bool:
        """Hand a report to every module whose reporttype matches; False when none does.

        A payload that does not decode (see :meth:`payload_error`) reaches no
        module: it is counted as a ``bad-report`` and raises one Event. A payload
        of a schema in ``checked`` (:meth:`check_payloads`) is known to parse: it
        is not parsed here, and the first module to read it parses it.
        Distributions in ``mode = "reports"`` get every applied report, routed
        or not, bad or not (as the journal keeps them).
        """
        if self._reports is not None:
            self._reports.feed(report)
        targets = self.report_routes.get(report.type)
        if not targets:
            return False
        if report.encoding == PROTOBUF and report.schema not in checked:
            # Hot path: the known schema's class from a dict and one parse, inline (payload_error says why).
            cls = self._schemas.get(report.schema)
            try:
                if cls is None:
                    raise DecodeError
                report.parsed = cls.FromString(report.data)
            except DecodeError:
                reason = self.payload_error(report)
                if reason is not None:
                    self._bad_report(report, reason)
                    return True
        self._dispatch(targets, report)
        return True

    def _dispatch(self, targets: list[Running], report: Report, replaying: bool = False) -> None:
        for running in targets:
            try:
                running.module.processReport(report)
            except BAD_PAYLOAD as exc:  # the module found the payload bad: no later module sees it
                self._bad_report(report, f"{running.name}: {exc}", replaying)
                return
            except Exception as exc:  # isolation: other modules still get the report
                self._failed(running, "processReport", exc)

    def payload_error(self, report: Report) -> str | None:
        """Why a report's declared protobuf payload does not parse, or None (parsed into ``report.parsed``).

        Only payloads that name a schema this collector knows are checked here;
        modules check the rest when they read them.
        """
        if report.encoding != PROTOBUF:
            return None
        cls = self._schema_class(report.schema)
        if cls is None:
            return None
        try:
            report.parsed = cls.FromString(report.data)
        except DecodeError as exc:
            return f"payload does not parse as {report.schema}: {exc}"
        return None

    def _schema_class(self, schema: str) -> type[Message] | None:
        """The protobuf class of a schema this collector knows (kept once found), or None."""
        cls = self._schemas.get(schema)
        if cls is None and schema:
            cls = message_class(schema)
            if cls is not None:
                self._schemas[schema] = cls
        return cls

    def _bad_report(self, report: Report, reason: str, replaying: bool = False) -> None:
        """Count a report whose payload does not decode; it was acknowledged and never applied."""
        if replaying:
            self.counters["bad-report-replayed"] += 1
            return
        self.counters["bad-report"] += 1
        self.counters[f"bad-report:{report.type}"] += 1
        self.bad_reports[(report.node, report.type)] += 1
        record = self.registry.records.get(report.node)
        if record is not None:
            record.bad_reports += 1
        self.throttled.warning(
            f"bad-report:{report.node}",
            "dropped %s report seq %d from node %s: %s",
            report.type,
            report.seq,
            report.node,
            reason,
        )
        self.emit_event(
            "bad-report",
            report.node,
            "warning",
            f"{report.type} report seq {report.seq} from node {report.node} was dropped: {reason}",
            type=report.type,
            seq=str(report.seq),
        )

    def answer(self, type: str, params: dict[str, str], request_id: int = 0) -> Any:
        """The answering module's return value; raises RequestError when it cannot answer."""
        running = self.request_routes.get(type)
        if running is None:
            known = ", ".join(sorted([*self.request_routes, *RESERVED_REQUESTS]))
            raise RequestError(Code.UNKNOWN_TYPE, f"no module answers request type {type!r} (known: {known})")
        try:
            return running.module.processREQUEST(Request(type, params, request_id))
        except RequestError:
            raise
        except Exception as exc:  # isolation: the client gets an ERROR, the collector goes on
            self._failed(running, "processREQUEST", exc)
            raise RequestError(
                Code.MODULE_ERROR, f"module {running.name} failed on {type}: {type_name(exc)}: {exc}"
            ) from exc

    def update(self, running: Running) -> Any:
        """The module's getUpdateMessage() result, or None when it has nothing or raised."""
        ok, value = self._guard(running, "getUpdateMessage", running.module.getUpdateMessage)
        return value if ok else None

    def updaters(self) -> list[Running]:
        """Running modules that feed an update type, and the collector's own updates."""
        return [r for r in self.running if r.updatetype] + self.own_updates

    def add_own_update(self, running: Running) -> None:
        """Push an update type the collector itself feeds (``running.module`` is a small Aggregator)."""
        self.own_updates.append(running)

    def attach_distributions(self, fanout: Fanout, points: bool, reports: bool) -> None:
        """Route data points (when ``points``) and applied reports (when ``reports``) to ``fanout``.

        With points, :meth:`publish_many` becomes the fanout's own (a module calls it once per
        report, and a call less there is a few percent of ingest with a distribution attached).
        """
        self._points = fanout if points else None
        self._reports = fanout if reports else None
        if points:
            self.publish_many = fanout.publish_many  # type: ignore[method-assign]
            self.publish_read = fanout.publish_read  # type: ignore[method-assign]
        else:
            vars(self).pop("publish_many", None)  # back to the methods, which offer to nobody
            vars(self).pop("publish_read", None)

    def node_joined(self, record: NodeRecord) -> None:
        """Tell every module, in start order, that a node joined; emit a ``joined`` event."""
        for running in self.running:
            self._guard(running, "on_node_joined", running.module.on_node_joined, record)
        self.emit_event("joined", record.node, "info", f"node {record.node} joined")

    def node_left(self, record: NodeRecord) -> None:
        """Tell every module, in start order, that a node was lost; emit a ``lost`` event."""
        for running in self.running:
            self._guard(running, "on_node_left", running.module.on_node_left, record)
        self.emit_event("lost", record.node, "warning", f"node {record.node} lost")

    def emit_event(self, kind: str, node: str, severity: str, message: str, **attrs: str) -> None:
        """Deliver an ``Event`` report (a labscope.Event) from the collector itself.

        Modules whose reporttype includes ``Event`` see these beside the
        Event reports agents send; observers hear of the kinds they have a
        method for (collector/observer.py ``event_call``).
        """
        call = event_call(kind, node, message, attrs)
        if call is not None:
            self.observe(call[0], *call[1])
        targets = self.report_routes.get(EVENT_TYPE)
        if not targets:
            return
        event = Event(time=time.time(), node=node, kind=kind, severity=severity, message=message, attrs=attrs)
        report = Report(
            node, EVENT_TYPE, 0, event.time, event.SerializeToString(), Encoding.PROTOBUF, Event.DESCRIPTOR.full_name
        )
        for running in targets:
            try:
                running.module.processReport(report)
            except Exception as exc:  # counted, but no event about an event: that could loop
                self.counters["module-error"] += 1
                self.counters[f"module-error:{running.name}"] += 1
                self.throttled.warning(f"{running.name}.event", "module %s raised on an event: %s", running.name, exc)

    def update_types(self) -> list[str]:
        """Every update type a running module (or the collector itself) feeds."""
        return sorted(r.updatetype for r in self.updaters() if r.updatetype)

    def request_types(self) -> list[str]:
        """Every request type answered, the collector's own included."""
        return sorted([*self.request_routes, *RESERVED_REQUESTS])

    # ------------------------------------------------------------ CollectorAPI

    def nodes(self) -> list[NodeRecord]:
        """Every node the collector has seen."""
        return list(self.registry.records.values())

    def node(self, node_id: str) -> NodeRecord | None:
        """One node's record, or None."""
        return self.registry.records.get(node_id)

    def request(self, type: str, node: str | None = None, **params: str) -> Any:
        """In-process request to another module (see CollectorAPI.request)."""
        if node is not None:
            params["node"] = node
        return self.answer(type, params)

    def data_dir(self, module: str) -> Path:
        """``<data-dir>/modules/<module>``, created on demand."""
        path = self.config.data_dir / "modules" / module
        path.mkdir(parents=True, exist_ok=True)
        return path

    def publish(self, code: str, value: Any, time: float | None = None, node: str | None = None) -> None:
        """Offer one data point to the distributions (see CollectorAPI.publish)."""
        if self._points is not None:
            self._points.publish(code, value, time, node)

    def publish_many(self, node: str, names: Sequence[str], values: Sequence[Any], time: float | None = None) -> None:
        """Offer one sample's points ``NODE/NAME`` to the distributions (see CollectorAPI.publish_many)."""
        if self._points is not None:
            self._points.publish_many(node, names, values, time)

    def publish_read(
        self, node: str, names: Sequence[str], read: ReadFigures, data: bytes, time: float | None = None
    ) -> None:
        """Offer one sample's points, read from ``data`` in the distributions' threads (CollectorAPI.publish_read)."""
        if self._points is not None:
            self._points.publish_read(node, names, read, data, time)

    def publishing(self) -> bool:
        """True when at least one distribution takes data points."""
        return self._points is not None

    def run_in_thread(self, fn: Callable[..., R], *args: Any) -> R:
        """``fn(*args)`` in the hub's thread pool; only the calling greenlet waits (see CollectorAPI)."""
        result: R = gevent.get_hub().threadpool.apply(fn, args)
        return result


def _nobody(method: str, *args: Any) -> None:
    """No observers: events go nowhere."""


def type_name(value: object) -> str:
    """The class name of an exception (or any value), for one-line messages."""
    return type(value).__name__
