"""The ``equilibrium`` agent: bids the numerical Bayes–Nash equilibrium.

It plays the solver's bid (or ask) function of its role
(:mod:`attn_env.solver`), interpolated at its value, in any sealed-bid market
the solver covers, so markets without a closed-form equilibrium (GSP with
several slots, double auctions with many traders, attention values) still have
an equilibrium player. The solution is read from ``path`` when given (a file
or an ``attn-market solve --out`` folder), else solved once and kept in the
solver's cache.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from attn_env import mechanisms
from attn_env.config import EnvConfig, SolveConfig, from_dict
from attn_env.core import MarketSpec
from attn_env.equilibria import truthful
from attn_env.observation import VALUE, as_actions, is_seller
from attn_env.solver import Solution, load_solution, solve_cached

__all__ = ["EquilibriumAgent"]


def _check_market(solution: Solution, env: EnvConfig, where: str) -> None:
    """``ValueError`` unless ``solution`` was solved for ``env``'s market."""
    spec = MarketSpec.from_config(env)
    want = {
        "mechanism": mechanisms.name_of(env.mechanism),
        "n_buyers": env.n_buyers,
        "n_sellers": spec.n_sellers,
        "n_slots": spec.n_slots if spec.family == "one_sided" else 1,
    }
    got = {k: solution.market.get(k) for k in want}
    if got != want:
        raise ValueError(
            f"{where}: the equilibrium was solved for {got}, but the market is {want}; "
            "solve this market (attn-market solve CONFIG --out DIR)"
        )


class EquilibriumAgent:
    """Bid the numerical equilibrium of the market (stateless).

    Args:
        env: the market (filled in by ``agents.for_market``).
        path: a saved solution (``equilibrium.json`` or the folder holding it);
            ``None`` solves the market (cached).
        solve: solver options (a ``SolveConfig`` or a mapping of its fields);
            the config's ``solve:`` section when built by the runner.
        seed: seed of the solve.
    """

    market_params = ("env",)

    def __init__(
        self,
        env: EnvConfig,
        path: str | None = None,
        solve: SolveConfig | Mapping[str, Any] | None = None,
        seed: int = 0,
    ) -> None:
        if not isinstance(env, EnvConfig):
            raise ValueError(f"env must be an EnvConfig, got {env!r}")
        if path is not None:
            solution = load_solution(path)
            _check_market(solution, env, str(Path(path)))
        else:
            if solve is None or isinstance(solve, SolveConfig):
                cfg = solve or SolveConfig()
            else:
                cfg = from_dict(SolveConfig, dict(solve), "solve")
            solution = solve_cached(env, cfg, seed)
        self.solution = solution
        self._buyer = solution.bid_function("buyer")
        self._seller = (
            solution.bid_function("seller") if "seller" in solution.roles else truthful
        )
        self._top = MarketSpec.from_config(env).max_bid

    def reset(self, num_envs: int, rng: np.random.Generator) -> None:
        """Nothing to clear."""

    def observe(self, feedback: dict[str, Any]) -> None:
        """A fixed strategy ignores feedback."""

    def act(self, obs: NDArray, rng: np.random.Generator) -> NDArray[np.float32]:
        v = obs[:, VALUE].astype(np.float64)
        bid = np.where(is_seller(obs), self._seller(v), self._buyer(v))
        return as_actions(np.clip(bid, 0.0, self._top))
