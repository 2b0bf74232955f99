"""``CollectorObserver``: the significant events of a collector, for the program around it.

Subclass it and override the methods you care about; every method is a no-op
by default, so an observer written today keeps working when events are added.
Give observers to the ticket (``CollectorTicket(observers=[MyObserver()])``)
or name their classes in the config (``observers = ["file.py:Class",
"package.module:Class"]``; such a class is built with no arguments).

The methods are called off the ingest path, one call at a time, from one
thread of their own (collector/observer_thread.py): an observer may block or
raise; it is counted and logged, never stalls the collector. Arguments are
plain values (strings and numbers), safe to keep. See docs/observers.md.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from messages.errors import ConfigError, ModuleError
from messages.plugins import defined_subclasses, import_file

__all__ = ["BAD_PAYLOAD", "DUPLICATE", "EVENTS", "REFUSED", "CollectorObserver", "event_call", "load_observers"]

# The reasons ``reports_rejected`` gives.
BAD_PAYLOAD, DUPLICATE, REFUSED = "bad-payload", "duplicate", "refused"


class CollectorObserver:
    """One no-op method per significant event of a collector; override what you need."""

    def collector_started(self, alias: str, agents: str, clients: str) -> None:
        """The collector is ready: sockets bound (``agents``/``clients`` are connectable endpoints), modules started."""

    def collector_stopping(self, alias: str) -> None:
        """The collector was asked to stop; this is the last event it delivers."""

    def node_joined(self, node: str) -> None:
        """A node said HELLO (or was heard from again after it was lost)."""

    def node_lost(self, node: str) -> None:
        """A node was silent for longer than ``node_timeout``, or said BYE."""

    def module_failed(self, module: str, hook: str, error: str) -> None:
        """A module raised in ``hook`` (``on_startup``, ``processReport``, ...); at most once a second per hook."""

    def distribution_down(self, name: str, type: str, message: str) -> None:
        """A distribution lost its destination (it queues and retries)."""

    def distribution_up(self, name: str, type: str, message: str) -> None:
        """A distribution reached its destination again."""

    def reports_rejected(self, reason: str, node: str, count: int, detail: str) -> None:
        """``count`` reports of ``node`` were not applied: ``reason`` is bad-payload, duplicate or refused.

        Duplicates come once per ingest pass and node; a bad payload or a
        refused report (out of range) one at a time.
        """

    def backlog_high(self, node: str, backlog: int, threshold: int) -> None:
        """An agent reported more unsent reports than ``backlog_alert``; again only after it fell below."""

    def auth_refused(self, reason: str, fingerprint: str, detail: str) -> None:
        """A peer was refused for its CURVE key (docs/security.md); at most once a minute per key."""

    def config_changed(self, name: str, who: str) -> None:
        """The config file ``name`` was changed by ``who`` (the web page's editor)."""


# Every event, the name of its method.
EVENTS = tuple(name for name in vars(CollectorObserver) if not name.startswith("_"))


def load_observers(specs: list[Any], base_dir: Path | None = None) -> list[CollectorObserver]:
    """The observers a ticket names: objects as they are, ``"file.py:Class"`` / ``"package.module:Class"`` built.

    A relative file is found from ``base_dir`` (the config file's folder).
    Raises ConfigError naming the spec and what is wrong.
    """
    return [spec if not isinstance(spec, str) else _build(spec, base_dir) for spec in specs]


def _build(spec: str, base_dir: Path | None) -> CollectorObserver:
    cls = _load_class(spec, base_dir)
    try:
        observer = cls()
    except Exception as exc:  # a third party's constructor may raise anything
        raise ConfigError(f"observer {spec}: constructing it failed: {type(exc).__name__}: {exc}") from None
    if not isinstance(observer, CollectorObserver):
        raise ConfigError(f"observer {spec}: {cls.__name__} is not a collector.observer.CollectorObserver")
    return observer


def _load_class(spec: str, base_dir: Path | None) -> type[Any]:
    where, _, name = spec.rpartition(":")
    if not where or not name:
        raise ConfigError(f'observer {spec!r}: expected "file.py:Class" or "package.module:Class"')
    try:
        module = _import(where, base_dir)
    except ModuleError as exc:
        raise ConfigError(f"observer {spec}: {exc}") from None
    cls = getattr(module, name, None)
    if not isinstance(cls, type):
        known = ", ".join(c.__name__ for c in defined_subclasses(module, CollectorObserver)) or "none"
        raise ConfigError(f"observer {spec}: no class {name!r} there (CollectorObserver classes: {known})")
    return cls


def _import(where: str, base_dir: Path | None) -> Any:
    if where.endswith(".py"):
        path = Path(where)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        if not path.is_file():
            raise ConfigError(f"observer {where}: no such file")
        return import_file(path, "observer")
    try:
        return importlib.import_module(where)
    except Exception as exc:  # a third party's import may raise anything
        raise ConfigError(f"observer {where}: cannot import: {type(exc).__name__}: {exc}") from None


def event_call(kind: str, node: str, message: str, attrs: dict[str, str]) -> tuple[str, tuple[Any, ...]] | None:
    """The observer method and arguments for one of the collector's own Events, or None for other kinds."""
    get = attrs.get
    calls: dict[str, tuple[str, tuple[Any, ...]]] = {
        "joined": ("node_joined", (node,)),
        "lost": ("node_lost", (node,)),
        "module-error": ("module_failed", (get("module", ""), get("hook", ""), message)),
        "bad-report": ("reports_rejected", (BAD_PAYLOAD, node, 1, message)),
        "auth-refused": ("auth_refused", (get("reason", ""), get("fingerprint", ""), message)),
        "distribution-down": ("distribution_down", (get("distribution", ""), get("type", ""), message)),
        "distribution-up": ("distribution_up", (get("distribution", ""), get("type", ""), message)),
    }
    return calls.get(kind)
