"""The ``equilibrium`` agent: bids the numerical Bayes–Nash equilibrium.

It plays the solver's bid (or ask) function of its role
(:mod:`attn_env.solver`), interpolated at its value, in any sealed-bid market
the solver covers, so markets without a closed-form equilibrium (GSP with
several slots, double auctions with many traders, attention values) still have
an equilibrium player. The solution is read from ``path`` when given (a file
or an ``attn-market solve --out`` folder; read with limits, every field
checked), else solved once and kept in the solver's cache. Either way it must
have been solved for this market, and a solution whose utility loss is over
``solve.tolerance`` is refused in one line unless ``solve: {allow_unconverged:
true}``: it is not an equilibrium to play.

Asymmetric markets (``env.value_ranges`` / ``solve.classes``) have one bid
function per bidder class: the agent plays its own seat's class (``agent``,
filled in with the seat's name by ``simulate``, ``evaluate`` and ``exploit``).
The solution's utility (``solve.utility``, CRRA) must be the market's.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from attn_env import mechanisms
from attn_env.config import EnvConfig, SolveConfig, from_dict, game_in_sync
from attn_env.core import MarketSpec
from attn_env.equilibria import truthful
from attn_env.errors import UserError
from attn_env.observation import VALUE, as_actions, is_seller
from attn_env.solver import (
    Solution,
    check_converged,
    check_solve_config,
    load_solution,
    solve_cached,
)

__all__ = ["EquilibriumAgent", "class_of"]


def _rules(name: str, params: Any) -> str:
    """The mechanism with its parameters filled in (``FirstPrice(reserve=0.0)``),
    so ``{}`` and ``{reserve: 0}`` compare equal; the raw text if it cannot be
    built."""
    try:
        return repr(mechanisms.make(name, **dict(params)))
    except (ValueError, TypeError):
        return f"{name}{params!r}"


def _check_market(solution: Solution, env: EnvConfig, where: str) -> None:
    """``UserError`` unless ``solution`` was solved for ``env``'s market."""
    spec = MarketSpec.from_config(env)
    name = mechanisms.name_of(env.mechanism)
    want = {
        "mechanism": name,
        "n_buyers": env.n_buyers,
        "n_sellers": spec.n_sellers,
        "n_slots": spec.n_slots if spec.family == "one_sided" else 1,
        "valuation": env.valuation,
        "value_dist": env.value_dist,
    }
    got = {k: solution.market.get(k, want[k]) for k in want}
    if got == want and not isinstance(env.mechanism, mechanisms.Mechanism):
        params = solution.market.get("mechanism_params", {})
        if _rules(name, params) != _rules(name, env.mechanism_params):
            got["mechanism_params"] = params
            want["mechanism_params"] = dict(env.mechanism_params)
    u = env.utility
    want["utility"] = None if u.kind == "linear" else {"kind": u.kind, "rho": u.rho}
    got["utility"] = solution.market.get("utility")
    want["value_ranges"] = _ranges(env, env.value_ranges)
    got["value_ranges"] = _ranges(env, _class_ranges(solution, env))
    if got != want:
        raise UserError(
            f"{where}: the equilibrium was solved for {got}, but the market is {want}; "
            "solve this market (attn-market solve CONFIG --out DIR)"
        )
    top = spec.max_bid  # bids >= 0 are checked when the file is read
    for role, sol in solution.roles.items():
        if (highest := max(sol.bids)) > top:
            raise UserError(
                f"{where}: {role}.bids must lie in [0, {top:g}] (the market's "
                f"max_bid), got {highest:g}; bids are never clipped in silence"
            )


def _class_ranges(solution: Solution, env: EnvConfig) -> dict[str, list[float]]:
    """Each classed buyer's ``[low, high]`` in ``solution`` (empty: symmetric)."""
    out = {}
    for c in solution.market.get("classes") or []:
        low = env.value_low if c["value_low"] is None else c["value_low"]
        high = env.value_high if c["value_high"] is None else c["value_high"]
        out.update({a: [float(low), float(high)] for a in c["agents"]})
    return out


def _ranges(env: EnvConfig, ranges: dict[str, list[float]]) -> list[list[float]]:
    """Every buyer's value range, in buyer order (the market's where not named)."""
    return [
        [float(x) for x in ranges.get(f"buyer_{i}", [env.value_low, env.value_high])]
        for i in range(env.n_buyers)
    ]


def class_of(solution: Solution, agent: str | None, where: str) -> str:
    """The role of ``agent``'s bid function: ``buyer``, or its bidder class."""
    classes = solution.market.get("classes") or []
    if not classes:
        return "buyer"
    names = ", ".join(c["name"] for c in classes)
    if agent is None:
        raise UserError(
            f"{where}: one bid function per bidder class ({names}); the agent needs "
            "its seat's name (params {agent: buyer_0}; simulate, evaluate and "
            "exploit fill it in)"
        )
    for c in classes:
        if agent in c["agents"]:
            return c["name"]
    raise UserError(f"{where}: agent {agent!r} is in no bidder class ({names})")


class EquilibriumAgent:
    """Bid the numerical equilibrium of the market (stateless).

    Args:
        env: the market (filled in by ``agents.for_market``).
        path: a saved solution (``equilibrium.json`` or the folder holding it);
            ``None`` solves the market (cached).
        solve: solver options (a ``SolveConfig`` or a mapping of its fields);
            the config's ``solve:`` section when built by the runner; its
            utility and classes follow ``env``'s where it sets none.
        seed: seed of the solve.
        agent: the seat's name (``buyer_0``), which picks its class's bid
            function in an asymmetric market; ignored in a symmetric one.
    """

    market_params = ("env",)

    def __init__(
        self,
        env: EnvConfig,
        path: str | None = None,
        solve: SolveConfig | Mapping[str, Any] | None = None,
        seed: int = 0,
        agent: str | None = None,
    ) -> None:
        if not isinstance(env, EnvConfig):
            raise UserError(f"env must be an EnvConfig, got {env!r}")
        if solve is None or isinstance(solve, SolveConfig):
            cfg = solve or SolveConfig()
        elif isinstance(solve, Mapping):
            cfg = from_dict(SolveConfig, dict(solve), "solve")
        else:
            raise UserError(f"equilibrium: solve must be a mapping, got {solve!r}")
        _, cfg = game_in_sync(env, cfg)
        check_solve_config(cfg)
        if path is not None:
            if not isinstance(path, str | Path):
                raise UserError(f"equilibrium: path must be a file name, got {path!r}")
            where = str(Path(path))
            solution = load_solution(path)
            _check_market(solution, env, where)
        else:
            where = f"the equilibrium of this market (seed {seed})"
            solution = solve_cached(env, cfg, seed)
        check_converged(solution, cfg.tolerance, cfg.allow_unconverged, where)
        self.solution = solution
        self.role = class_of(solution, agent, where)
        self._buyer = solution.roles[self.role].bid_function()
        self._seller = (
            solution.bid_function("seller") if "seller" in solution.roles else truthful
        )

    def reset(self, num_envs: int, rng: np.random.Generator) -> None:
        """Nothing to clear."""

    def observe(self, feedback: dict[str, Any]) -> None:
        """A fixed strategy ignores feedback."""

    def act(self, obs: NDArray, rng: np.random.Generator) -> NDArray[np.float32]:
        v = obs[:, VALUE].astype(np.float64)
        bid = np.where(is_seller(obs), self._seller(v), self._buyer(v))
        return as_actions(bid)  # in [0, max_bid]: the solver grid, or checked on load
