"""The module test kit: run an aggregator module without a collector, sockets or processes.

Like Telegraf's ``testutil.Accumulator``: feed reports in, compare what comes
out. :class:`StubCollector` is the ``self.collector`` a module sees (the
CollectorAPI), backed by a plain dict of node records; :func:`attach` does what
the collector does after construction (checks the config like the collector,
attaches itself and the merged config, calls ``on_startup``)::

    from collector.testing import StubCollector, attach
    from collector.addons import Report, Request

    stub = StubCollector(tmp_path)
    stub.add_node("n1")
    module = attach(Uptime(), stub, keep_lost=True)
    module.processReport(Report("n1", "Uptime", 1, 0.0, b"..."))
    assert module.processREQUEST(Request("Uptime", {"node": "n1"})) == ...
    assert stub.points("n1") == {...}   # what the module published for the distributions

A module with ``main`` runs as in the collector: ``stub.start_mains()`` spawns
it (after every attach), ``stub.shutdown()`` sets the shutdown signal, waits
``grace`` seconds for every ``main`` and calls ``on_shutdown(exc_info)`` in
reverse attach order; ``stub.errors`` lists ``(module, hook, exception)``.
"""

from __future__ import annotations

import tempfile
import time as _time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from collector import settings
from collector.addons import Aggregator, NodeRecord, ReadFigures, Request, RequestError, as_names
from collector.dist import DataPoint
from collector.lifecycle import Lifecycle, accepts_exc_info
from collector.stores.base import Store
from collector.stores.memory import MemoryStore
from messages import Code, NodeInfo, __version__

__all__ = ["StubCollector", "attach"]

A = TypeVar("A", bound=Aggregator)
R = TypeVar("R")


class StubCollector:
    """The CollectorAPI methods a module may call, backed by a plain dict of NodeRecords."""

    def __init__(self, tmp_path: Path | None = None) -> None:
        self.records: dict[str, NodeRecord] = {}
        self.modules: dict[str, Aggregator] = {}
        self.tmp_path = tmp_path or Path(tempfile.mkdtemp(prefix="labscope-test-"))
        self.published: list[DataPoint] = []  # every point a module published, in order
        self.distributing = True  # what publishing() answers: False to test a module's "nobody listens" path
        self.errors: list[tuple[str, str, BaseException]] = []  # (module, hook, exception) from main/on_shutdown
        self.grace = 1.0  # seconds each main() gets to return on shutdown()
        self.lifecycle = Lifecycle(self.grace, self._main_failed, self._main_abandoned)
        self.store: Store = MemoryStore()  # self.collector.store: give another (e.g. an SQLite one) to test persistence
        self.replaying = False  # set True to feed a module reports as the journal replay would

    def add_node(self, node: str, hostname: str = "", **fields: Any) -> NodeRecord:
        """Register (or replace) a node record, as a HELLO would; ``fields`` are NodeRecord fields."""
        info = NodeInfo(
            node=node,
            hostname=hostname or f"host-{node}",
            agent_version=__version__,
            os="Linux",
            cpu_count=4,
            memory_total=8_254_304_256,
        )
        record = NodeRecord(node=node, info=info, **fields)
        self.records[node] = record
        return record

    def nodes(self) -> list[NodeRecord]:
        """Every registered node, in registration order (modules must sort themselves)."""
        return list(self.records.values())

    def node(self, node_id: str) -> NodeRecord | None:
        """One node's record, or None."""
        return self.records.get(node_id)

    def request(self, type: str, node: str | None = None, **params: str) -> Any:
        """Route a request to the attached module that answers ``type``, as the collector does.

        Raises RequestError ``unknown-type`` when no attached module answers it.
        """
        if node is not None:
            params["node"] = node
        for module in self.modules.values():
            if type in as_names(module.requesttypes):
                return module.processREQUEST(Request(type, params))
        raise RequestError(Code.UNKNOWN_TYPE, f"no attached module answers request type {type!r}")

    def data_dir(self, module: str) -> Path:
        """A folder per module under ``tmp_path``, created on demand."""
        path = self.tmp_path / module
        path.mkdir(parents=True, exist_ok=True)
        return path

    def publish(self, code: str, value: Any, time: float | None = None, node: str | None = None) -> None:
        """Record the point in :attr:`published` (time and node defaulted as the collector does)."""
        when = _time.time() if time is None else time
        self.published.append(DataPoint(code, value, when, code.partition("/")[0] if node is None else node))

    def publish_many(self, node: str, names: Sequence[str], values: Sequence[Any], time: float | None = None) -> None:
        """Record each point ``NODE/NAME`` of the sample in :attr:`published`."""
        when = _time.time() if time is None else time
        self.published.extend(
            DataPoint(f"{node}/{name}", value, when, node) for name, value in zip(names, values, strict=False)
        )

    def publish_read(
        self, node: str, names: Sequence[str], read: ReadFigures, data: bytes, time: float | None = None
    ) -> None:
        """Record each point of the sample ``read(data)`` gives, as :meth:`publish_many` does."""
        self.publish_many(node, names, read(data), time)

    def publishing(self) -> bool:
        """:attr:`distributing` (True by default, so modules publish and tests see it)."""
        return self.distributing

    def run_in_thread(self, fn: Callable[..., R], *args: Any) -> R:
        """``fn(*args)``, here and now (no loop to keep free)."""
        return fn(*args)

    def wait_for_shutdown(self, seconds: float | None = None) -> bool:
        """True once :meth:`shutdown` began; False when ``seconds`` passed first."""
        return self.lifecycle.signal.wait(seconds)

    def start_mains(self) -> None:
        """Spawn ``main`` of every attached module that has one, in attach order (as the collector does)."""
        self.lifecycle.start(self.modules.items())

    def shutdown(self) -> None:
        """Stop the mains (up to :attr:`grace` s each), then ``on_shutdown`` in reverse attach order.

        An exception from ``on_shutdown`` is recorded in :attr:`errors`, as the collector contains it.
        """
        self.lifecycle.grace = self.grace
        self.lifecycle.stop()
        for name, module in reversed(self.modules.items()):
            hook = module.on_shutdown
            try:
                hook(self.lifecycle.exc_info(name)) if accepts_exc_info(hook) else hook()
            except Exception as exc:  # contained as in the collector
                self.errors.append((name, "on_shutdown", exc))

    def _main_failed(self, name: str, exc: BaseException) -> None:
        self.errors.append((name, "main", exc))

    def _main_abandoned(self, name: str, grace: float) -> None:
        self.errors.append((name, "main", TimeoutError(f"main() ignored the shutdown for {grace:g} s; abandoned")))

    def points(self, node: str | None = None) -> dict[str, Any]:
        """The latest published value per code (only ``node``'s when given)."""
        return {p.code: p.value for p in self.published if node is None or p.node == node}


def attach(module: A, collector: StubCollector | None = None, **config: Any) -> A:
    """Start ``module`` as the collector would: check ``config``, attach, then call ``on_startup``.

    ``config`` is the module's ``[modules.NAME]`` section; an unknown key or a
    value of the wrong type raises ConfigError, as at the collector's start-up.
    """
    cls = type(module)
    name = module.name or cls.__name__.lower()
    settings.check_section(name, cls, config)
    stub = collector if collector is not None else StubCollector()
    module.collector = stub
    module.config = {**settings.defaults(cls), **config}
    stub.modules[name] = module
    module.on_startup()
    return module
