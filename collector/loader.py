"""Find aggregator modules, validate them, and put them in start order.

A module is a ``.py`` file (not starting with ``_``) in the built-in
``modules/`` folder or in a ``--modules-dir``, or an installed entry point in
the ``labscope.modules`` group. Each file holds exactly one Aggregator
subclass. A file that fails to import or validate is *failed*: it and its
dependents are left out and logged, the rest run. A missing dependency, a
dependency cycle, or two modules with the same name are start-up errors
(:class:`DependencyError` / :class:`ModuleError`, exit status 2).
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import importlib.util
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from collector.addons import Aggregator, as_names
from messages.errors import ConfigError, DependencyError, ModuleError
from messages.plugins import defined_subclasses, import_file
from messages.specs import spec_mismatch

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "labscope.modules"
# The built-in modules are found by package name, not imported here: the module
# API stands below the modules, so the collector never imports them statically.
BUILTIN_PACKAGE = "modules"


@dataclass
class Candidate:
    """One discovered module: its class, or why it cannot run."""

    name: str
    source: str
    cls: type[Aggregator] | None = None
    error: str | None = None
    depends: tuple[str, ...] = ()
    reporttypes: tuple[str, ...] = ()
    requesttypes: tuple[str, ...] = ()
    updatetype: str | None = None
    disabled: bool = False

    @property
    def usable(self) -> bool:
        """True when the module loaded, validated and is not disabled."""
        return self.cls is not None and self.error is None and not self.disabled


def discover(extra_dirs: list[Path]) -> list[Candidate]:
    """Every module in the built-in folder, each extra folder and the entry points."""
    found = [_from_import(f"{BUILTIN_PACKAGE}.{path.stem}", path) for path in _module_files(_builtin_dir())]
    for folder in extra_dirs:
        if not folder.is_dir():
            raise ConfigError(f"--modules-dir {folder}: no such folder")
        found += [_from_file(path) for path in _module_files(folder)]
    found += _from_entry_points()
    return [c for c in found if c is not None]


def _builtin_dir() -> Path:
    spec = importlib.util.find_spec(BUILTIN_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleError(BUILTIN_PACKAGE, "the built-in modules package is not installed; reinstall labscope")
    return Path(list(spec.submodule_search_locations)[0]).resolve()


def _module_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.py") if not p.name.startswith(("_", "test_")))


def _from_import(dotted: str, path: Path) -> Candidate | None:
    try:
        module = importlib.import_module(dotted)
    except Exception as exc:  # a module's import may raise anything
        return Candidate(path.stem, str(path), error=f"import failed: {type(exc).__name__}: {exc}")
    return _from_module(module, path.stem, str(path))


def _from_file(path: Path) -> Candidate | None:
    try:
        module = import_file(path, "module")
    except ModuleError as exc:
        return Candidate(path.stem, str(path), error=exc.reason)
    return _from_module(module, path.stem, str(path))


def _from_entry_points() -> list[Candidate | None]:
    found: list[Candidate | None] = []
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        source = f"entry point {entry.value}"
        try:
            obj = entry.load()
        except Exception as exc:  # third-party import may raise anything
            found.append(Candidate(entry.name, source, error=f"import failed: {type(exc).__name__}: {exc}"))
            continue
        if isinstance(obj, ModuleType):
            found.append(_from_module(obj, entry.name, source))
        else:
            found.append(_validate(obj, entry.name, source))
    return found


def _from_module(module: ModuleType, stem: str, source: str) -> Candidate | None:
    classes = defined_subclasses(module, Aggregator)
    if not classes:
        log.warning("%s defines no Aggregator subclass; skipped", source)
        return None
    if len(classes) > 1:
        names = ", ".join(sorted(c.__name__ for c in classes))
        return Candidate(stem, source, error=f"defines {len(classes)} Aggregator classes ({names}); put one per file")
    return _validate(classes[0], stem, source)


def _validate(cls: object, stem: str, source: str) -> Candidate:
    if not (isinstance(cls, type) and issubclass(cls, Aggregator)):
        return Candidate(stem, source, error="is not an Aggregator subclass")
    name = cls.name or stem
    try:
        candidate = Candidate(
            name,
            source,
            cls=cls,
            depends=_names(cls, "depends"),
            reporttypes=_names(cls, "reporttype"),
            requesttypes=_names(cls, "requesttypes"),
            updatetype=_update_type(cls),
        )
        _check_methods(cls, candidate)
    except ModuleError as exc:
        return Candidate(name, source, error=exc.reason)
    return candidate


def _names(cls: type, attribute: str) -> tuple[str, ...]:
    value = getattr(cls, attribute, ())
    try:
        names = as_names(value)
    except TypeError:
        names = ()
        value = object()
    if not all(isinstance(n, str) and n for n in names) or not isinstance(value, (str, tuple, list)):
        raise ModuleError(cls.__name__, f"{attribute} must be a string or a tuple of strings, not {value!r}")
    return names


def _update_type(cls: type) -> str | None:
    value = getattr(cls, "updatetype", None)
    if value is not None and not (isinstance(value, str) and value):
        raise ModuleError(cls.__name__, f"updatetype must be a string or None, not {value!r}")
    return value or None


HOOKS = (
    "on_startup",
    "on_shutdown",
    "on_node_joined",
    "on_node_left",
    "processReport",
    "processREQUEST",
    "getUpdateMessage",
)
_HOOK_LIKE = re.compile(r"^(on_.+|process.+|get.+Message)$")


def _check_hook_names(cls: type[Aggregator]) -> None:
    """Refuse a method named like a hook that is none (``on_node_leave``): it would never be called."""
    for klass in cls.__mro__:
        if klass is Aggregator or not issubclass(klass, Aggregator):
            continue
        for attr, value in vars(klass).items():
            if callable(value) and attr not in HOOKS and _looks_like_a_hook(attr):
                nearest = _nearest_hook(attr)
                raise ModuleError(
                    cls.__name__,
                    f"method {attr}() looks like a hook but none is named so "
                    f"(did you mean {nearest}()?); it would never be called. Hooks: {', '.join(HOOKS)}",
                )


def _looks_like_a_hook(name: str) -> bool:
    """Named like a hook (on_*, process*, get*Message) or within a typo of one (getUpdateMesage)."""
    lowered = [hook.lower() for hook in HOOKS]
    return bool(_HOOK_LIKE.match(name) or difflib.get_close_matches(name.lower(), lowered, n=1, cutoff=0.85))


def _nearest_hook(name: str) -> str:
    """The hook ``name`` was most likely meant to be (case is the commonest slip: processRequest)."""
    lowered = {hook.lower(): hook for hook in HOOKS}
    best = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.0)
    return lowered[best[0]]


def _check_methods(cls: type[Aggregator], candidate: Candidate) -> None:
    _check_hook_names(cls)
    if candidate.reporttypes and cls.processReport is Aggregator.processReport:
        raise ModuleError(cls.__name__, "sets reporttype but does not define processReport")
    if candidate.requesttypes and cls.processREQUEST is Aggregator.processREQUEST:
        raise ModuleError(cls.__name__, "sets requesttypes but does not define processREQUEST")
    if candidate.updatetype and cls.getUpdateMessage is Aggregator.getUpdateMessage:
        raise ModuleError(cls.__name__, "sets updatetype but does not define getUpdateMessage")
    mismatch = spec_mismatch(candidate.requesttypes, candidate.updatetype, cls.request_specs, cls.update_spec)
    if mismatch:
        raise ModuleError(cls.__name__, mismatch)


def start_order(candidates: list[Candidate], disabled: list[str]) -> list[Candidate]:
    """All candidates in dependency order, with failed/disabled ones (and their dependents) marked.

    Raises ModuleError for two modules of one name and DependencyError for a
    missing dependency or a cycle, naming every module involved.
    """
    by_name = _unique(candidates)
    for name in disabled:
        if name in by_name:
            by_name[name].disabled = True
        else:
            log.warning("--disable-module %s: no module has that name (known: %s)", name, ", ".join(sorted(by_name)))
    _check_missing(by_name)
    order = _topological(by_name)
    _propagate_failures(order, by_name)
    return order


def _unique(candidates: list[Candidate]) -> dict[str, Candidate]:
    by_name: dict[str, Candidate] = {}
    for candidate in candidates:
        other = by_name.get(candidate.name)
        if other is not None:
            raise ModuleError(
                candidate.name,
                f"two modules are named {candidate.name!r}: {other.source} and {candidate.source}; "
                "rename one (class attribute name) or --disable-module it",
            )
        by_name[candidate.name] = candidate
    return by_name


def _check_missing(by_name: dict[str, Candidate]) -> None:
    missing = [(c.name, dep) for c in by_name.values() for dep in c.depends if dep not in by_name]
    if missing:
        involved = sorted({n for pair in missing for n in pair})
        detail = "; ".join(f"{name} depends on {dep}, which does not exist" for name, dep in missing)
        raise DependencyError(involved, f"missing module dependency: {detail}")


def _topological(by_name: dict[str, Candidate]) -> list[Candidate]:
    remaining = {name: set(c.depends) for name, c in by_name.items()}
    order: list[Candidate] = []
    while remaining:
        ready = sorted(name for name, deps in remaining.items() if not deps)
        if not ready:
            cycle = _cycle_members(remaining)
            raise DependencyError(cycle, f"dependency cycle between modules: {', '.join(cycle)}")
        for name in ready:
            order.append(by_name[name])
            del remaining[name]
        for deps in remaining.values():
            deps.difference_update(ready)
    return order


def _cycle_members(graph: dict[str, set[str]]) -> list[str]:
    def reaches(start: str, goal: str) -> bool:
        seen, stack = set(), list(graph[start])
        while stack:
            name = stack.pop()
            if name == goal:
                return True
            if name not in seen and name in graph:
                seen.add(name)
                stack.extend(graph[name])
        return False

    return sorted(name for name in graph if reaches(name, name))


def _propagate_failures(order: list[Candidate], by_name: dict[str, Candidate]) -> None:
    for candidate in order:
        if candidate.error:
            log.error("module %s (%s) not loaded: %s", candidate.name, candidate.source, candidate.error)
            continue
        if candidate.disabled:
            log.info("module %s disabled", candidate.name)
            continue
        broken = [d for d in candidate.depends if not by_name[d].usable]
        if broken:
            candidate.disabled = True
            log.error(
                "module %s not started: it depends on %s, which is not running", candidate.name, ", ".join(broken)
            )


def check_conflicts(
    order: list[Candidate], reserved_requests: tuple[str, ...], reserved_updates: tuple[str, ...] = ()
) -> None:
    """Raise ModuleError when two running modules (or a module and the collector) claim one request or update type."""
    for kind, claims in (
        ("request", _claims(order, "requesttypes", reserved_requests)),
        ("update", _claims(order, "updatetype", reserved_updates)),
    ):
        for type_name, owners in claims.items():
            if len(owners) > 1:
                raise ModuleError(
                    " and ".join(owners),
                    f"modules {' and '.join(owners)} both claim {kind} type {type_name!r}; "
                    "disable one with --disable-module",
                )


def _claims(order: list[Candidate], attribute: str, reserved: tuple[str, ...]) -> dict[str, list[str]]:
    claims: dict[str, list[str]] = {name: ["the collector itself"] for name in reserved}
    for candidate in order:
        if not candidate.usable:
            continue
        value = getattr(candidate, attribute)
        for type_name in (value,) if isinstance(value, str) else (value or ()):
            claims.setdefault(type_name, []).append(candidate.name)
    return claims
