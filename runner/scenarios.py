"""The commands on scenario configs (a YAML file whose ``scenario`` key names one).

``simulate`` works for every scenario (its module's ``simulate``); ``train``,
``evaluate``, ``compare`` and ``audit`` for the scenarios whose command module
(:mod:`runner.scenario_commands`) defines them; the others are refused in one
line naming the scenarios that have the command.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from attn_env.config import from_dict, read_config_yaml
from attn_env.errors import UserError
from attn_env.scenarios import scenario_module
from runner.scenario_commands import COMMANDS

__all__ = [
    "audit_scenario",
    "command_of",
    "compare_scenarios",
    "evaluate_scenario",
    "read_scenario",
    "simulate_scenario",
    "train_scenario",
]


def read_scenario(path: str | Path) -> tuple[str, Any] | None:
    """``(name, checked config)`` if the YAML file names a scenario, else ``None``."""
    data = read_config_yaml(path)
    if not isinstance(data, dict) or "scenario" not in data:
        return None
    name = data["scenario"]
    module = scenario_module(name)
    if hasattr(module, "from_data"):
        return name, module.from_data(data, str(path))
    return name, from_dict(module.CONFIG, data, str(path))


def _with_seed(config: Any, seed: int | None) -> Any:
    return config if seed is None else dataclasses.replace(config, seed=seed)


def _commands(name: str) -> Any:
    return importlib.import_module(COMMANDS[name]) if name in COMMANDS else None


def command_of(name: str, command: str) -> Callable[..., Any]:
    """Scenario ``name``'s ``command`` function, or one line naming who has it."""
    module = _commands(name)
    if module is None or not hasattr(module, command):
        having = [n for n in COMMANDS if hasattr(_commands(n), command)]
        raise UserError(
            f"scenario {name!r} has no {command}; {command} works on "
            f"{', '.join(having) or 'no scenario yet'}"
        )
    return getattr(module, command)


def simulate_scenario(
    name: str, config: Any, seed: int | None = None, progress: bool = False
) -> dict[str, Any]:
    """The scenario module's ``simulate`` on ``config`` (with ``seed`` if given)."""
    return scenario_module(name).simulate(_with_seed(config, seed), progress=progress)


def train_scenario(
    name: str,
    config: Any,
    out: str | Path,
    seed: int | None = None,
    timesteps: int | None = None,
    progress: bool = True,
    address: str | None = None,
    num_env_runners: int | None = None,
) -> dict[str, Any]:
    """Train a scenario's learners into run folder ``out`` (a Ray ``address`` and
    ``num_env_runners`` only for scenarios that train on Ray)."""
    train = command_of(name, "train")
    config = _with_seed(config, seed)
    if timesteps is not None:
        config = dataclasses.replace(
            config, train=dataclasses.replace(config.train, timesteps=timesteps)
        )
    if not getattr(_commands(name), "RAY", False):
        if address is not None or num_env_runners is not None:
            raise UserError(
                f"--address and --num-env-runners do not apply to scenario {name!r} "
                "(it trains with stable-baselines3, in this process)"
            )
        return train(config, out, progress)
    return train(
        config, out, progress, address=address, num_env_runners=num_env_runners
    )


def train_summary(name: str, record: dict[str, Any]) -> str:
    """The line ``train`` prints for scenario ``name``'s run record."""
    return command_of(name, "train_summary")(record)


def evaluate_scenario(
    name: str, config: Any, policy: str | Path, days: int | None = None
) -> dict[str, Any]:
    """A trained policy against the scenario's baselines on held-out seeds."""
    return command_of(name, "evaluate")(config, policy, days)


def compare_scenarios(
    designs: list[tuple[str, str, Any]], seed: int | None = None
) -> dict[str, Any]:
    """Paired differences of each design against the first, on shared seeds.

    Args:
        designs: ``(label, scenario name, config)``; the first is the baseline.
        seed: override every config's seed (so the seeds are shared).
    """
    names = {n for _, n, _ in designs}
    if len(names) != 1:
        raise UserError(f"compare needs configs of one scenario, got {sorted(names)}")
    (name,) = names
    compare = command_of(name, "compare")
    return compare([(label, _with_seed(c, seed)) for label, _, c in designs])


def audit_scenario(name: str, config: Any, seed: int | None = None) -> dict[str, Any]:
    """Scenario ``name``'s integrity report on ``config``."""
    return command_of(name, "audit")(_with_seed(config, seed))
