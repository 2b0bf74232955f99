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

from collector.addons import Aggregator, Option
from messages.errors import ConfigError

__all__ = ["check_section", "check_value", "classic_settings", "defaults", "known_settings", "with_classic_settings"]

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


def defaults(cls: type[Aggregator]) -> dict[str, Any]:
    """The module's ``options`` with each :class:`Option` replaced by its default: ``self.config``'s base."""
    return {key: _option(value).default for key, value in cls.options.items()}


def known_settings(cls: type[Aggregator]) -> dict[str, Option]:
    """Every key ``[modules.NAME]`` may hold for ``cls``, as an Option (a default of None takes any type)."""
    known = {"update_interval": Option(cls.update_interval, minimum=0)}
    known.update((key, Option(value)) for key, value in classic_settings(cls).items())
    known.update((key, _option(value)) for key, value in cls.options.items())
    return known


def check_section(name: str, cls: type[Aggregator], section: dict[str, Any]) -> None:
    """Raise ConfigError for the first key of ``[modules.NAME]`` that ``cls`` does not know or whose value is wrong."""
    known = known_settings(cls)
    for key, value in section.items():
        if key not in known:
            raise ConfigError(f"unknown key '{key}' in [modules.{name}]; known keys: {', '.join(sorted(known))}")
        check_value(f"modules.{name}", key, value, known[key])


def check_value(section: str, key: str, value: Any, option: Option) -> None:
    """Raise ConfigError when ``value`` is not of the type of the option's default, or out of its bounds."""
    default = option.default
    if default is not None and not _fits(value, default):
        raise ConfigError(
            f"[{section}] {key}: expected {_type_word(default)} (like the default {default!r}), got {value!r}"
        )
    problem = _out_of_bounds(value, option)
    if problem:
        raise ConfigError(f"[{section}] {key}: {problem}, got {value!r}")


def _option(value: Any) -> Option:
    return value if isinstance(value, Option) else Option(value)


def _out_of_bounds(value: Any, option: Option) -> str:
    if option.choices and value not in option.choices:
        return f"expected one of {', '.join(map(repr, option.choices))}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return ""
    if option.minimum is not None and value < option.minimum:
        return f"expected at least {option.minimum}"
    if option.maximum is not None and value > option.maximum:
        return f"expected at most {option.maximum}"
    return ""


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
    words = {
        bool: "true or false",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a table",
    }
    return words.get(type(default), f"a {type(default).__name__}")
