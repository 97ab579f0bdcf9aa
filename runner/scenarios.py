"""The commands on scenario configs (a YAML file whose ``scenario`` key names one).

``simulate`` works for every scenario (its module's ``simulate``); ``train``,
``evaluate`` and ``compare`` for the scenarios that have them (today
``search_day``); the others are refused in one line naming the scenario.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np

from attn_env.config import from_dict, read_config_yaml
from attn_env.errors import UserError
from attn_env.scenarios import scenario_module

__all__ = [
    "compare_scenarios",
    "evaluate_scenario",
    "read_scenario",
    "simulate_scenario",
    "train_scenario",
]

LEARNING = ("search_day",)
"Scenarios with train / evaluate / compare."


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


def _needs_learning(name: str, command: str) -> None:
    if name not in LEARNING:
        raise UserError(
            f"scenario {name!r} supports simulate; {command} works on "
            f"{', '.join(LEARNING)}"
        )


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
    """Train a scenario's learners into run folder ``out`` (``train.backend``:
    sb3, or rllib, which alone takes a Ray ``address`` and ``num_env_runners``)."""
    _needs_learning(name, "train")
    config = _with_seed(config, seed)
    if timesteps is not None:
        config = dataclasses.replace(
            config, train=dataclasses.replace(config.train, timesteps=timesteps)
        )
    if config.train.backend == "rllib":
        from training.search_day_rllib import train_search_day_rllib

        return train_search_day_rllib(
            config, out, progress, address=address, num_env_runners=num_env_runners
        )
    if address is not None or num_env_runners is not None:
        raise UserError(
            f"--address and --num-env-runners need train.backend: rllib (scenario "
            f"{name!r} trains with {config.train.backend}, in this process)"
        )
    from training.search_day import train_search_day

    return train_search_day(config, out, progress=progress)


def evaluate_scenario(
    name: str, config: Any, policy: str | Path, days: int | None = None
) -> dict[str, Any]:
    """A trained policy against the baselines on the same held-out days.

    Every advertiser bids with the policy; then the same days are played with
    every advertiser bidding with each baseline. Paired over days.
    """
    _needs_learning(name, "evaluate")
    from attn_env.scenarios.search_day import play_days, summarise
    from attn_env.scenarios.search_market import build_market
    from training.search_day import HELD_OUT, held_out, load_search_policy

    days = days or config.train.eval_days
    market = build_market(config)
    bidder = load_search_policy(policy, config.lambda_max)
    results: dict[str, Any] = {}
    scores: dict[str, list[float]] = {}
    for kind in ("policy", "pid", "onlinelp", "pacing", "truthful"):
        cfg = held_out(config, kind, days)
        played = play_days(cfg, market, bidder, first_day=HELD_OUT - cfg.seed)
        results[kind] = summarise(cfg, played)
        scores[kind] = [float(d.score.mean()) for d in played]
    pid = np.array(scores["pid"])
    for kind, entry in results.items():
        if kind != "pid":
            entry["gain_over_pid"] = _paired(np.array(scores[kind]) / pid - 1.0)
    return {"scenario": name, "policy": str(policy), "days": days, "by_bidders": results}


def _paired(x: np.ndarray) -> dict[str, float | None]:
    """Mean, standard error and a normal 95% interval of paired differences."""
    mean = float(x.mean())
    if len(x) < 2:
        return {"mean": mean, "se": None, "ci95": None}
    se = float(x.std(ddof=1) / math.sqrt(len(x)))
    return {"mean": mean, "se": se, "ci95": [mean - 1.96 * se, mean + 1.96 * se]}


COMPARED = ("revenue", "welfare", "advertiser_surplus", "score", "budget_use")
"Day-level measures that ``compare`` pairs."


def compare_scenarios(
    designs: list[tuple[str, str, Any]], seed: int | None = None
) -> dict[str, Any]:
    """Paired differences of each design against the first, over the same days.

    Args:
        designs: ``(label, scenario name, config)``; the first is the baseline.
        seed: override every config's seed (so the days are shared).
    """
    names = {n for _, n, _ in designs}
    if len(names) != 1:
        raise UserError(f"compare needs configs of one scenario, got {sorted(names)}")
    (name,) = names
    _needs_learning(name, "compare")
    from attn_env.scenarios.search_day import play_days, summarise

    rows, per_day = [], []
    for label, _, config in designs:
        config = _with_seed(config, seed)
        played = play_days(config)
        summary = summarise(config, played)
        summary["label"] = label
        rows.append(summary)
        per_day.append(
            {
                "revenue": np.array([d.revenue for d in played]),
                "welfare": np.array([d.welfare for d in played]),
                "advertiser_surplus": np.array([d.welfare - d.revenue for d in played]),
                "score": np.array([d.score.mean() for d in played]),
                "budget_use": np.array([(d.spend / d.budget).mean() for d in played]),
            }
        )
    base = per_day[0]
    diffs = []
    for (label, _, _), days in zip(designs[1:], per_day[1:], strict=True):
        if len(days["score"]) != len(base["score"]):
            raise UserError("compare needs the same number of days in every config")
        diffs.append(
            {"label": label, **{k: _paired(days[k] - base[k]) for k in COMPARED}}
        )
    return {"scenario": name, "designs": rows, "differences": diffs}
