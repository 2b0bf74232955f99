"""A module's settings: what ``[modules.NAME]`` may set, with the type each value must have.

Two kinds of setting, checked the same way:

- ``options``: the dict a modern module declares; the merged values land in ``self.config``.
- classic settings: plain class attributes a module written in the classic
  SEER style keeps its configuration in (``storagedir = '/tmp/dir'``). A config
  value replaces the attribute *before* the module is constructed (the classic
  ``__init__`` reads it), by building a subclass that holds the new value.

A value's type must match its default's: a bool for a bool, an integer for an
int, a number for a float, a string for a str, a list for a list; a default of
None takes anything.
"""

from __future__ import annotations

from typing import Any

from collector.addons import Aggregator
from messages.errors import ConfigError

__all__ = ["classic_settings", "check_value", "known_settings", "with_classic_settings"]

_SETTING_TYPES = (str, int, float, bool)


def classic_settings(cls: type[Aggregator]) -> dict[str, Any]:
    """Plain public class attributes of a module (not the Aggregator API's), with their defaults."""
    api = set(vars(Aggregator))
    found: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        if klass is object or klass is Aggregator or not issubclass(klass, Aggregator):
            continue
        for key, value in vars(klass).items():
            if not key.startswith("_") and key not in api and isinstance(value, _SETTING_TYPES):
                found[key] = value
    return found


def known_settings(cls: type[Aggregator]) -> dict[str, Any]:
    """Every key ``[modules.NAME]`` may hold for ``cls``, with its default (None: no default)."""
    return {"update_interval": cls.update_interval, **classic_settings(cls), **cls.options}


def check_value(section: str, key: str, value: Any, default: Any) -> None:
    """Raise ConfigError when ``value`` is not of the type of ``default``."""
    if default is None or _fits(value, default):
        return
    raise ConfigError(f"[{section}] {key}: expected {_type_word(default)} (like the default {default!r}), "
                      f"got {value!r}")


def with_classic_settings(cls: type[Aggregator], section: dict[str, Any]) -> type[Aggregator]:
    """``cls``, or a subclass of it carrying the classic settings ``section`` sets."""
    classic = classic_settings(cls)
    overrides = {key: value for key, value in section.items() if key in classic and key not in cls.options}
    if not overrides:
        return cls
    return type(cls.__name__, (cls,), {**overrides, "__module__": cls.__module__, "__doc__": cls.__doc__})


def _fits(value: Any, default: Any) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    return isinstance(value, type(default))


def _type_word(default: Any) -> str:
    words = {bool: "true or false", int: "an integer", float: "a number", str: "a string", list: "a list",
             dict: "a table"}
    return words.get(type(default), f"a {type(default).__name__}")
