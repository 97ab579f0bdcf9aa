"""Numerical Bayes–Nash equilibria of sealed-bid markets (SODA).

``solve(env, solve_cfg, seed)`` discretises a market (:mod:`.game`), runs
simultaneous online dual averaging (:mod:`.soda`) and returns a
:class:`Solution`: a bid (or ask) function per role, its utility loss and the
convergence history. Symmetric position auctions get exact payoffs from order
statistics (:mod:`.position`); every other sealed mechanism is cleared by its
own ``clear`` (:mod:`.sampled`). :func:`solve_cached` keeps solutions on disk.
:mod:`.formats` adds the all-pay auction (:class:`AllPay`), exact payoffs
against bidder classes of unequal value ranges (``solve.classes``), and
``solve.utility`` brings CRRA risk aversion to first price.
:mod:`.joint` integrates one-slot auctions over a joint law of the values
(``solve.prior``: affiliated common-plus-noise values, or the valuation
source's markets with their values kept together), and ``solve.roi_target``
makes the buyers ROI-constrained (:meth:`Game.utility`).
"""

from __future__ import annotations

from attn_env.solver.cache import cache_dir, solve_cached
from attn_env.solver.driver import solve
from attn_env.solver.formats import AllPay, independent_payoffs
from attn_env.solver.game import (
    Game,
    check_solve_config,
    game_from_config,
    unsupported,
)
from attn_env.solver.soda import run_soda, utility_losses
from attn_env.solver.solution import (
    RoleSolution,
    Solution,
    check_converged,
    load_solution,
)

__all__ = [
    "AllPay",
    "Game",
    "RoleSolution",
    "Solution",
    "cache_dir",
    "check_converged",
    "check_solve_config",
    "game_from_config",
    "independent_payoffs",
    "load_solution",
    "run_soda",
    "solve",
    "solve_cached",
    "unsupported",
    "utility_losses",
]
