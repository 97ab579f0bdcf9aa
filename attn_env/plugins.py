"""Plug-ins: the user's own modules that register mechanisms, sources and agents.

A plug-in is a Python module that, when imported, registers pieces by name
(``attn_env.mechanisms.register``, ``attn_env.valuations.register_source``,
``agents.register``; docs/custom_mechanism.md). Three ways bring one in:

- a config's ``plugins: [module, ...]``, imported by ``attn_env.config.load_config``
  before the rest of the config is checked;
- ``--plugin MODULE`` (repeatable) on every ``attn-market`` command;
- an installed distribution's entry point in the group ``attn_market.plugins``
  (``name = module`` imports the module; ``name = module:function`` also calls
  ``function()`` with no arguments), loaded when ``attn-market`` starts.

A plug-in is code the user chose to run (docs/security.md): modules are named,
never paths, and are found on ``sys.path`` like any import. A module that fails
to import gives one :class:`PluginError` line naming it (the cause stays
chained for ``--debug``).

Foundation layer: imports only ``attn_env.errors`` (and the standard library),
so the config loader can bring plug-ins in before it checks names.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable
from importlib import metadata
from types import ModuleType
from typing import Any

from attn_env.errors import ConfigError, UserError

__all__ = [
    "GROUP",
    "PROJECT_PACKAGES",
    "PluginError",
    "check_module_names",
    "entry_points",
    "import_plugin",
    "import_plugins",
    "load_entry_points",
    "origin_of",
]

GROUP = "attn_market.plugins"
"Entry-point group of installed plug-ins."
PROJECT_PACKAGES = frozenset(
    {"attn_env", "agents", "training", "runner", "attn_market"}
)
"This project's own packages: what they register is built in."
_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
MAX_PLUGINS = 64
"Most modules one config may list under ``plugins``."


class PluginError(UserError):
    """A plug-in module could not be imported (or its entry point failed)."""


def check_module_names(names: Any, where: str) -> list[str]:
    """``names`` as a list of dotted module names, else ``ConfigError`` naming it.

    A module name, not a path: ``my_pkg.mechanisms``, never ``./x.py``.
    """
    if isinstance(names, str) or not isinstance(names, list | tuple):
        raise ConfigError(
            f"{where} must be a list of module names (e.g. [my_pkg.mechanisms]), "
            f"got {_brief(repr(names))}"
        )
    if len(names) > MAX_PLUGINS:
        raise ConfigError(
            f"{where} lists {len(names)} modules, over the cap of {MAX_PLUGINS}"
        )
    for i, name in enumerate(names):
        if not (isinstance(name, str) and _MODULE.fullmatch(name)):
            raise ConfigError(
                f"{where}[{i}] must be a Python module name (dotted identifiers, "
                f"not a file path), got {_brief(repr(name))}"
            )
    return list(names)


def import_plugin(name: str, where: str) -> ModuleType:
    """Import plug-in module ``name``; one :class:`PluginError` line if it fails.

    Args:
        name: a dotted module name on ``sys.path``.
        where: who asked for it, for the message (``--plugin``, ``exp.yaml: plugins``).
    """
    check_module_names([name], where)
    try:
        return importlib.import_module(name)
    except (Exception, SystemExit) as err:
        hint = ""
        if isinstance(err, ModuleNotFoundError) and err.name == name.split(".")[0]:
            hint = " (is its folder on PYTHONPATH, or its package installed?)"
        raise PluginError(
            f"{where}: plug-in module {name!r} failed to import: "
            f"{type(err).__name__}: {_brief(str(err))}{hint}"
        ) from err


def import_plugins(names: Iterable[str], where: str) -> list[ModuleType]:
    """Import every module of ``names`` in order (see :func:`import_plugin`)."""
    return [
        import_plugin(name, where) for name in check_module_names(list(names), where)
    ]


def entry_points() -> list[metadata.EntryPoint]:
    """The installed entry points of :data:`GROUP`, in a stable order."""
    found = metadata.entry_points(group=GROUP)
    return sorted(found, key=lambda ep: (ep.name, ep.value))


def _dist_label(ep: metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "an unknown distribution"
    return f"distribution {dist.metadata['Name']} {dist.version}"


def load_entry_points() -> list[metadata.EntryPoint]:
    """Load every plug-in entry point (:data:`GROUP`); one line naming a failure.

    ``name = module`` imports the module; ``name = module:function`` imports it
    and calls ``function()``. Returns the entry points loaded.
    """
    loaded = []
    for ep in entry_points():
        where = f"entry point {ep.name!r} of {_dist_label(ep)}"
        try:
            obj = ep.load()
            if ep.attr:
                if not callable(obj):
                    raise TypeError(f"{ep.value} is not callable")
                obj()
        except (Exception, SystemExit) as err:
            raise PluginError(
                f"{where} ({ep.value}) failed to load: "
                f"{type(err).__name__}: {_brief(str(err))}"
            ) from err
        loaded.append(ep)
    return loaded


def origin_of(obj: Any) -> str:
    """Where a registered class comes from, for ``attn-market list``.

    ``built-in`` for this project's packages; else the module that defines it,
    with the entry point and distribution that bring it in where one does.
    """
    module = getattr(obj, "__module__", None) or "?"
    top = module.split(".")[0]
    if top in PROJECT_PACKAGES:
        return "built-in"
    for ep in entry_points():  # the entry point's package brings the class in
        if top == ep.module.split(".")[0]:
            return f"plug-in {module} (entry point {ep.name!r} of {_dist_label(ep)})"
    dists = metadata.packages_distributions().get(top, [])
    if dists:
        return f"plug-in {module} (distribution {', '.join(sorted(set(dists)))})"
    return f"plug-in {module}"


def _brief(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
