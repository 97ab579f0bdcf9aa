"""The commands of each scenario: one module per scenario, imported when used.

``simulate`` is the scenario module's own (``attn_env.scenarios``); the other
commands need training, evaluation or reports, which live above the
environment layer, so each scenario has a module here that may define

- ``train(config, out, progress=True, address=None, num_env_runners=None)
  -> record``: train its learners into run folder ``out`` (``address`` and
  ``num_env_runners`` only where :data:`RAY` is true);
- ``train_summary(record) -> str``: the one line ``train`` prints;
- ``evaluate(config, policy, episodes) -> dict``: a trained policy against the
  scenario's baselines on held-out seeds, paired;
- ``compare(designs) -> dict``: ``designs`` is ``[(label, config)]`` on shared
  seeds, the first the baseline; paired differences against it;
- ``audit(config) -> dict``: the scenario's integrity report (incentives,
  fairness, invariants), written by ``attn-market audit --out``.

A command a module lacks is refused in one line naming the scenarios that
have it (:func:`runner.scenarios.command_of`).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["COMMANDS", "paired"]

COMMANDS: dict[str, str] = {
    "answer_slots": "runner.scenario_commands.answer_slots",
    "compute_market": "runner.scenario_commands.compute_market",
    "feed": "runner.scenario_commands.feed",
    "search_day": "runner.scenario_commands.search_day",
}
"Scenario name -> its command module."


def paired(x: np.ndarray) -> dict[str, float | list[float] | None]:
    """Mean, standard error and a normal 95% interval of paired differences."""
    x = np.asarray(x, dtype=np.float64)
    mean = float(x.mean())
    if len(x) < 2:
        return {"mean": mean, "se": None, "ci95": None}
    se = float(x.std(ddof=1) / math.sqrt(len(x)))
    return {"mean": mean, "se": se, "ci95": [mean - 1.96 * se, mean + 1.96 * se]}
