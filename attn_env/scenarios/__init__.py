"""Scenario markets: markets of practice built from the mechanism library.

A scenario is a whole market with its own data, agents and measures (a day of
sponsored search, the compute market, ...), run from one YAML file whose
top-level key ``scenario`` names it. Each scenario module exposes

- ``CONFIG``: its typed config dataclass (read with
  :func:`attn_env.config.from_dict`, so unknown keys are refused by name);
- ``simulate(config, progress=False) -> dict``: one JSON-able result.

This registry maps names to modules, imported only when used, so
``import attn_env`` stays cheap.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from attn_env.errors import ConfigError

__all__ = ["SCENARIOS", "names", "scenario_module"]

SCENARIOS: dict[str, str] = {
    "search_day": "attn_env.scenarios.search_day",
    "compute_market": "attn_env.scenarios.compute_market",
    "answer_slots": "attn_env.scenarios.answer_slots",
    "feed": "attn_env.scenarios.feed",
}
"Scenario name -> module (one line per scenario)."


def names() -> list[str]:
    """The scenario names, in registry order."""
    return list(SCENARIOS)


def scenario_module(name: object) -> ModuleType:
    """The module of scenario ``name`` (a clear error for an unknown name)."""
    if not isinstance(name, str) or name not in SCENARIOS:
        raise ConfigError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")
    return importlib.import_module(SCENARIOS[name])
