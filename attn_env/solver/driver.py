"""``solve``: a market discretised (:mod:`.game`) and solved by SODA (:mod:`.soda`).

Its own module so that :mod:`.cache` can import it without importing the
package (no ``solver/__init__`` <-> ``cache`` cycle).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from attn_env.config import EnvConfig, SolveConfig
from attn_env.solver.game import game_from_config
from attn_env.solver.soda import run_soda
from attn_env.solver.solution import Solution

__all__ = ["solve"]


def solve(
    env: EnvConfig,
    solve_cfg: SolveConfig | None = None,
    seed: int = 0,
    progress: Callable[[int, float], None] | None = None,
) -> Solution:
    """The symmetric equilibrium of ``env`` (an ``EnvConfig``) on ``solve_cfg``'s grids.

    Raises:
        ConfigError: a market the solver does not cover (the message says why
            and what to use instead), or a bad solver option.
    """
    solve_cfg = solve_cfg or SolveConfig()
    rng = np.random.default_rng(seed)
    game = game_from_config(env, solve_cfg, rng)
    return run_soda(game, solve_cfg, rng, progress)
