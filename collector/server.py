"""The collector process: binds both sockets, starts the modules and runs the greenlets."""

from __future__ import annotations

import fcntl
import gc
import json
import logging
import os
import signal
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import gevent
import gevent.event
import zmq

from collector import dist_host
from collector.addons import NodeRecord
from collector.agent_keys import AgentKeys
from collector.agent_link import AgentLink, Mailbox
from collector.audit import AUDIT_SPEC, AuditTrail
from collector.client_link import ClientLink, ClientSender
from collector.config import CollectorConfig
from collector.core import Core
from collector.counters import Counters, ThrottledLog
from collector.dist_host import DistributionHost, DistributionsView
from collector.host import ModuleHost, Running
from collector.journal import Journal
from collector.observer import load_observers
from collector.observer_thread import ObserverThread
from collector.refusals import Refusals
from collector.registry import NodeRegistry
from collector.relay import Relay
from collector.security import Curve, start_curve, warn_if_exposed
from collector.store import NullStore, SQLiteStore, Store
from collector.stores import open_store
from collector.stores.base import Store as Parts
from collector.stores.base import StoreError
from collector.stores.memory import MemoryStore
from collector.updates import UpdateScheduler
from collector.zap import AGENTS_DOMAIN, CLIENTS_DOMAIN, serve_curve
from collector.zmq_context import new_context
from messages import CollectorInfo, __version__
from messages.errors import LabscopeError
from messages.specs import PERIODIC, Payload, RequestSpec, UpdateSpec

log = logging.getLogger(__name__)

ENDPOINTS_FILE = "collector.json"
LOCK_FILE = "collector.lock"
STORE_FILE = dist_host.STORE_FILE
HEALTH_INTERVAL = 1.0  # seconds between the collector's own collector/METRIC points (when distributions take points)

_DISTRIBUTIONS = (
    "map {NAME: {type, mode, codes, connected, queued, queue_max, on_full, offered, sent, "
    "dropped: {queue-full, collapsed, error, shutdown}, errors, errors_by_method: {method: count}, "
    "last_error, last_error_time, last_success, reconnects}}"
)

# The requests the collector answers itself (collector/host.py RESERVED_REQUESTS), described for docs/protocol.md.
COLLECTOR_REQUESTS = {
    "CollectorStats": RequestSpec(
        "the collector's own counters (see Counters), node counts, running modules and uptime",
        Payload.msgpack(
            "map {uptime: seconds, counters: {name: count}, nodes: {total, live}, "
            "modules: [names in start order], bad_reports: {node: {type: count}}, "
            "distributions: as the Distributions answer}"
        ),
    ),
    "Distributions": RequestSpec(
        "every configured distribution (docs/distributions.md): type, connected, queue, sent, dropped by reason, "
        "errors, last error, last success; an empty map when none is configured",
        Payload.msgpack(_DISTRIBUTIONS),
    ),
    "Audit": AUDIT_SPEC,
}

# The updates the collector pushes itself (collector/host.py RESERVED_UPDATES), described for docs/protocol.md.
COLLECTOR_UPDATES = {
    "Distributions": UpdateSpec(
        "as the Distributions answer; offered only when distributions are configured",
        Payload.msgpack(_DISTRIBUTIONS),
        sent=PERIODIC,
    ),
}


@dataclass(frozen=True)
class Endpoints:
    """Where a started collector listens, as a client on this host connects to it."""

    agents: str
    clients: str


class Collector:
    """One collector: modules, node registry, the agents' and the clients' sockets."""

    def __init__(self, config: CollectorConfig) -> None:
        self.config = config
        self.counters = Counters()
        self.registry = NodeRegistry()
        self.host = ModuleHost(config, self.registry, self.counters)
        self.dists = DistributionHost(config, self.host.emit_event)
        self.started = time.time()
        self.context: Any = None
        self.agents: AgentLink | None = None
        self.clients: ClientLink | None = None
        self.updates: UpdateScheduler | None = None
        self.journal: Journal | None = None
        self.greenlets: list[gevent.Greenlet] = []
        self.sockets: list[zmq.Socket[bytes]] = []
        self.stopped = gevent.event.Event()
        self.exit_status = 0
        self._lock: IO[str] | None = None
        self.journal_store: Store = NullStore()  # the local journal file (the ACK path): always here
        self.store: Parts = MemoryStore()  # the configured store (collector/stores): every other part
        self.throttled = ThrottledLog(log)
        self.refusals = Refusals(self.counters, self.host.emit_event)
        self.curve: Curve | None = None
        self.audit: AuditTrail | None = None
        self.ingest: Any = None  # a top collector's ingest from NATS (docs/sites.md)
        self.site: Any = None  # a site's heartbeat and node status on NATS
        self.top_commands: Any = None  # a top's node requests to its sites (docs/sites.md)
        self.site_commands: Any = None  # a site's node requests from its top
        self.web: Any = None  # the web page's server (collector/web/server.py WebServer) when --web is on
        self.endpoints: Endpoints | None = None  # set once the sockets are bound
        self.observers = ObserverThread([], config.observer_queue)
        self.host.observe = self.observers.post

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Lock the data dir, start the modules, bind the sockets and spawn the loops.

        Raises LabscopeError subclasses for anything the operator must fix.
        """
        self._lock_data_dir()
        self._start_observers()
        self.dists.load()  # first: a bad [distributions.NAME] stops the collector before anything starts
        if self.config.site or self.config.ingest_nats or self.config.ingest_sites:
            from collector.site_publisher import check_tiers

            check_tiers(self.config)
        self.journal_store = self._open_journal()
        self.store = open_store(self.config.store, self._store_args(), self.config.data_dir)
        log.info("store: %s", self.store.describe())
        self.journal_store.snapshots = self.store.snapshots
        self.registry.restore(self._known_nodes())
        self.host.store = self.store
        self.host.load()
        replayed = self.host.recover(self.journal_store)
        if self.journal_store.durable:
            log.info(
                "recovered %d nodes; replayed %d journaled reports into the modules",
                len(self.registry.records),
                replayed,
            )
        self._start_distributions()  # after the replay: what was replayed was distributed before the restart
        self.context = new_context()  # zero-copy receive off: a backlog does not pin decoder buffers
        self.curve = start_curve(self.config, self.context, self.refusals)  # ZAP first: it guards the binds below
        agent_sock = self._bind(zmq.Socket(self.context, zmq.ROUTER), self.config.listen_agents, AGENTS_DOMAIN)
        client_sock = self._bind(self.context.socket(zmq.ROUTER), self.config.listen_clients, CLIENTS_DOMAIN)
        warn_if_exposed(self.config)
        self._wire(agent_sock, client_sock)
        self._write_endpoints(agent_sock, client_sock)
        self.host.begin()  # replay the known nodes to the modules, then spawn their main() greenlets
        # Start-up objects (modules, protobuf descriptors) will never be garbage: keep them out of
        # every future collection, so full collections stay short and do not stall ingest.
        gc.freeze()
        assert self.endpoints is not None
        self.host.observe("collector_started", self.config.alias, self.endpoints.agents, self.endpoints.clients)

    def _start_observers(self) -> None:
        """Build the observers the ticket names (ConfigError for a bad one) and start their thread."""
        base = Path(self.config.config_path).parent if self.config.config_path else None
        self.observers.observers = load_observers(self.config.observers, base)
        self.observers.start()

    def _wire(self, agent_sock: zmq.Socket[bytes], client_sock: Any) -> None:
        """Build the links around the two sockets and spawn their loops and the modules' update loops."""
        core = Core(self.config, self.counters, self.registry, self.host, self.info)
        mailbox, sender = Mailbox(), ClientSender(client_sock, self.counters)
        audit = AuditTrail(self.store.audit, self.config.audit_retention, self.counters)
        if not audit.table.durable:
            log.warning("store %s: the audit trail is kept in memory only and lost on restart", self.store.name)
        relay = Relay(self.registry, self.config.node_request_timeout, mailbox.put, sender.send, audit)
        own: dict[str, Callable[[dict[str, str]], Any]] = {
            "CollectorStats": lambda params: self.stats(),
            "Distributions": lambda params: self.dists.stats(),
            "Audit": audit.answer,
        }
        keyring = self.curve.keyring if self.curve is not None else None
        self.clients = ClientLink(sender, core, relay, own, keyring, self.refusals)
        self.updates = UpdateScheduler(self.host, self.clients.publish, self.counters)
        self.journal = Journal(self.journal_store, self.host, self.registry, self.counters, self.config)
        self.journal.holds = self.dists.journal_holds
        self.journal.on_checkpoint = self.save_nodes
        keys = AgentKeys(keyring) if keyring is not None else None
        self.agents = agents = AgentLink(
            agent_sock, core, self.journal, relay, mailbox, self.updates.notify_ingest, keys, self.refusals
        )
        self.dists.set_pressure(agents.saturated)
        self._start_tiers(self.journal, relay)
        if self.curve is not None:
            self._spawn(self.curve.zap.run)
            self._spawn(self.curve.keyring.watch)
        self._spawn(self.agents.run)
        self._spawn(self.clients.run)
        for run, running in self.updates.loops():
            self._spawn(run, running)
        if self.host.publishing():
            self._spawn(self._publish_health)
        self.audit = audit
        self._start_web(audit)

    def _start_tiers(self, journal: Journal, relay: Relay) -> None:
        """A top collector's ingest and commands, a site's heartbeat, node status and commands (docs/sites.md)."""
        assert self.updates is not None
        if self.config.ingest_nats:
            from collector.ingest_link import IngestLink
            from collector.top_commands import TopCommands

            self.ingest = IngestLink(
                self.config, self.registry, self.host, self.counters, journal, self.updates.notify_ingest
            )
            self.ingest.view.on_lost = relay.node_lost
            self.ingest.start()
            self._spawn(self.ingest.run)
            top_key = self.curve.certificate.public.decode() if self.curve is not None else ""
            self.top_commands = TopCommands(self.config, relay, self.counters, top_key)
            relay.to_site = self.top_commands.send
            self._start_thread(self.top_commands)
        if self.config.site:
            from collector.site_publisher import SitePublisher
            from collector.site_responder import SiteResponder

            self.site = SitePublisher(self.config, self.registry, self.counters)
            self.site.start()
            self._spawn(self.site.watch)
            keyring = self.curve.keyring if self.curve is not None else None
            self.site_commands = SiteResponder(self.config, relay, self.counters, keyring, self.refusals)
            relay.to_client = self.site_commands.route
            self._start_thread(self.site_commands)

    def _start_thread(self, tier: Any) -> None:
        """Start a tier's NATS thread and spawn its greenlet."""
        tier.start()
        self._spawn(tier.run)

    def _start_web(self, audit: AuditTrail) -> None:
        """Serve the web page (docs/web.md) when ``web`` is on; Falcon is imported only then."""
        if not self.config.web:
            return
        from collector.web import check_installed

        check_installed()
        from collector.web.server import start_web
        from collector.web.views import WebSource

        source = WebSource(self.config.alias, self.registry, self.host, self.counters, self.stats, self.dists.stats)
        self.web = start_web(self.config, source, audit, self.on_config_changed)

    def on_config_changed(self, name: str, who: str) -> None:
        """Hook: an extra config file ``name`` was edited by ``who`` (``web:ADDRESS``) and saved.

        Emits a ``config-changed`` event and tells the observers (``config_changed``).
        """
        self.host.emit_event("config-changed", "", "info", f"config file {name} edited by {who}", name=name, who=who)
        self.config_changed(name, who)

    def _start_distributions(self) -> None:
        """Start the distributions' threads and route points and reports to them."""
        if not self.dists.runners:
            return
        self.dists.start()
        fanout = self.dists.fanout()
        self.host.attach_distributions(fanout, points=bool(fanout.points), reports=bool(fanout.reports))
        view = DistributionsView(self.dists.stats)
        self.host.add_own_update(Running("collector", view, view.updatetype, self.config.update_interval))

    def serve_forever(self, signals: bool = True) -> int:
        """Run until :meth:`stop` (SIGINT/SIGTERM when ``signals``) or a crashed loop; returns the exit status.

        ``signals`` only in the main thread: signal handlers work nowhere else.
        """
        if signals:
            for signum in (signal.SIGINT, signal.SIGTERM):
                gevent.signal_handler(signum, self.stop)
            if self.curve is not None:
                gevent.signal_handler(signal.SIGHUP, self.reload_keys)
        self.stopped.wait()
        self.shutdown()
        return self.exit_status

    def stop(self) -> None:
        """Ask the collector to shut down."""
        self.stopped.set()

    def config_changed(self, name: str, who: str) -> None:
        """Tell the observers that the config file ``name`` was changed by ``who``; call it on the loop."""
        self.host.observe("config_changed", name, who)

    def reload_keys(self) -> None:
        """Read the allow folders again (SIGHUP); without CURVE there are none."""
        if self.curve is not None:
            log.info("reloading the allow folders")
            self.curve.keyring.reload()

    def shutdown(self) -> None:
        """Stop the loops, tell the modules, close the sockets, release the data dir."""
        self.host.observe("collector_stopping", self.config.alias)
        self.host.stop_mains()  # first: a main() winding down may still ingest, ask modules and publish
        if self.agents is not None:
            self.agents.stop()
        for tier in (self.ingest, self.site, self.top_commands, self.site_commands):
            if tier is not None:
                tier.stop()
        if self.web is not None:
            self.web.stop()
        gevent.killall(self.greenlets, timeout=2)
        if self.journal is not None:
            self.journal.checkpoint()  # between passes now: module state matches the journal
        self.dists.stop()
        self.host.shutdown()
        for sock in self.sockets:
            sock.close(linger=0)  # the plain agents' socket is not tracked by the context's destroy()
        if self.curve is not None:
            self.curve.zap.stop()  # its plain socket too, or term() would wait for it
        if self.context is not None:
            self.context.term()
        (self.config.data_dir / ENDPOINTS_FILE).unlink(missing_ok=True)
        self.store.close()
        self.journal_store.close()
        if self._lock is not None:
            self._lock.close()
        self.observers.stop()
        log.info("collector stopped")

    def _spawn(self, run: Any, *args: Any) -> None:
        greenlet = gevent.spawn(run, *args)
        greenlet.link_exception(self._crashed)
        self.greenlets.append(greenlet)

    def _crashed(self, greenlet: gevent.Greenlet) -> None:
        log.critical("collector loop %s crashed: %r; stopping", greenlet, greenlet.exception)
        self.exit_status = 1
        self.stop()

    # ------------------------------------------------------------ sockets and files

    def _bind(self, sock: zmq.Socket[bytes], endpoint: str, role: str) -> zmq.Socket[bytes]:
        """Bind ``sock`` for ``role`` (also its ZAP domain); a CURVE server when CURVE is on."""
        self.sockets.append(sock)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, 4 * self.config.max_frame_bytes)
        if self.curve is not None:
            serve_curve(sock, self.curve.certificate, role)
        try:
            sock.bind(endpoint)
        except zmq.ZMQError as exc:
            raise LabscopeError(f"cannot listen for {role} on {endpoint}: {exc.strerror}") from None
        return sock

    def _open_journal(self) -> Store:
        if not self.config.journal:
            log.warning("journal off: reports are acknowledged before they reach the disk")
            return NullStore()
        return SQLiteStore(self.config.data_dir / STORE_FILE, self.config.journal_sync)

    def _store_args(self) -> dict[str, Any]:
        """The configured store_args; the sqlite store also gets ``journal_sync`` as its ``sync``."""
        args = dict(self.config.store_args)
        if self.config.store == "sqlite":
            args.setdefault("sync", self.config.journal_sync)
        return args

    def _known_nodes(self) -> list[NodeRecord]:
        """The nodes of the journal file and of the store; a node's higher last_seq wins (a new data dir)."""
        known = {r.node: r for r in self.store.nodes.load()}
        for record in self.journal_store.load_nodes():
            kept = known.get(record.node)
            if kept is None or record.last_seq >= kept.last_seq:
                known[record.node] = record
        return list(known.values())

    def save_nodes(self) -> None:
        """Write the node registry to the store (at every checkpoint: module state and journal agree then)."""
        try:
            self.store.nodes.save(list(self.registry.records.values()))
        except (StoreError, sqlite3.Error) as exc:
            self.counters["store-failed"] += 1
            self.throttled.warning("store-nodes", "store %s: saving the node registry failed: %s", self.store.name, exc)

    def _lock_data_dir(self) -> None:
        data_dir = self.config.data_dir
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
            self._lock = open(data_dir / LOCK_FILE, "a+")  # held open for the process's life
        except OSError as exc:
            raise LabscopeError(f"data dir {data_dir}: {exc.strerror}; give a writable --data-dir") from None
        try:
            fcntl.flock(self._lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise LabscopeError(
                f"data dir {data_dir} is in use by another collector; stop it or give another --data-dir"
            ) from None

    def _write_endpoints(self, agent_sock: zmq.Socket[bytes], client_sock: zmq.Socket[bytes]) -> None:
        self.endpoints = Endpoints(
            _connectable(agent_sock.getsockopt_string(zmq.LAST_ENDPOINT)),
            _connectable(client_sock.getsockopt_string(zmq.LAST_ENDPOINT)),
        )
        info = {
            "agents": self.endpoints.agents,
            "clients": self.endpoints.clients,
            "pid": os.getpid(),
            "alias": self.config.alias,
        }
        if self.web is not None:
            info["web"] = self.web.url
        path: Path = self.config.data_dir / ENDPOINTS_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(info))
        tmp.replace(path)
        log.info("collector %s ready: agents %s, clients %s", self.config.alias, info["agents"], info["clients"])

    # ------------------------------------------------------------ answers

    def info(self) -> CollectorInfo:
        """What the collector tells agents and clients in its HELLO."""
        return CollectorInfo(
            alias=self.config.alias,
            version=__version__,
            update_types=self.host.update_types(),
            request_types=self.host.request_types(),
            heartbeat_interval=self.config.heartbeat_interval,
            subscription_lease=self.config.subscription_lease,
            max_frame_bytes=self.config.max_frame_bytes,
            node_timeout=self.config.node_timeout,
            update_intervals={r.updatetype: r.update_interval for r in self.host.updaters() if r.updatetype},
        )

    def stats(self) -> dict[str, Any]:
        """The ``CollectorStats`` answer: counters, nodes, modules and distributions."""
        self.dists.count(self.counters)
        self.observers.count(self.counters)
        self._count_history()
        return {
            "uptime": time.time() - self.started,
            "counters": self.counters.snapshot(),
            "nodes": {
                "total": len(self.registry.records),
                "live": sum(r.status == "live" for r in self.registry.records.values()),
            },
            "modules": [r.name for r in self.host.running],
            "bad_reports": self._bad_reports(),
            "distributions": self.dists.stats(),
        }

    def _count_history(self) -> None:
        """Set ``history-dropped`` and ``history-late`` from the store's history part, once they counted."""
        history = self.store.history
        if history.dropped:
            self.counters["history-dropped"] = history.dropped
        if history.late:
            self.counters["history-late"] = history.late

    def health(self) -> dict[str, float]:
        """The collector's own figures, published as ``collector/METRIC`` points."""
        counters, records = self.counters, self.registry.records.values()
        self.dists.count(counters)
        return {
            "reports_total": counters["reports"],
            "nodes_total": len(records),
            "nodes_live": sum(r.status == "live" for r in records),
            "bad_reports_total": counters["bad-report"],
            "module_errors_total": counters["module-error"],
            "dist_dropped_total": counters["dist-dropped"],
            "uptime": time.time() - self.started,
        }

    def _publish_health(self) -> None:
        while True:
            gevent.sleep(HEALTH_INTERVAL)
            figures = self.health()
            self.host.publish_many("collector", tuple(figures), tuple(figures.values()))

    def _bad_reports(self) -> dict[str, dict[str, int]]:
        """Reports dropped for a payload that does not decode, by node and type."""
        by_node: dict[str, dict[str, int]] = {}
        for (node, type_name), count in sorted(self.host.bad_reports.items()):
            by_node.setdefault(node, {})[type_name] = count
        return by_node


def _connectable(endpoint: str) -> str:
    """A bound endpoint as a local client would connect to it (0.0.0.0 -> 127.0.0.1)."""
    return endpoint.replace("tcp://0.0.0.0:", "tcp://127.0.0.1:").replace("tcp://[::]:", "tcp://[::1]:")
