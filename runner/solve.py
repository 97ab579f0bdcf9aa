"""``solve``: the numerical equilibrium of a config's market, saved and drawn.

:func:`solve` runs (or reads from the cache) :func:`attn_env.solver.solve_cached`
with the config's ``solve:`` options and seed, writes
``DIR/equilibrium.json`` (atomic, JSON) when asked, and
:func:`plot_solution` draws the bid (ask) functions beside the closed-form
equilibrium where ``attn_env.equilibria`` knows one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from attn_env.config import ExperimentConfig
from attn_env.equilibria import bne_strategy
from attn_env.figures import new_figure, save_png
from attn_env.solver import Solution, solve_cached

__all__ = ["SOLUTION_FILE", "plot_solution", "solve"]

SOLUTION_FILE = "equilibrium.json"
"The file ``solve --out DIR`` writes (``kind: equilibrium`` reads it by ``path``)."


def solve(
    config: ExperimentConfig,
    out: str | Path | None = None,
    plot: str | Path | None = None,
) -> Solution:
    """The config's market solved; optionally saved to ``out`` and drawn to ``plot``."""
    solution = solve_cached(config.env, config.solve, config.seed)
    if out is not None:
        solution.save(Path(out) / SOLUTION_FILE)
    if plot is not None:
        plot_solution(solution, plot, config)
    return solution


def plot_solution(
    solution: Solution, path: str | Path, config: ExperimentConfig | None = None
) -> Path:
    """Bid (ask) functions per role, with the analytic BNE where one is known."""
    roles = list(solution.roles)
    fig, axes = new_figure(
        1, len(roles), figsize=(4.4 * len(roles), 3.8), squeeze=False
    )
    for ax, role in zip(axes[0], roles, strict=True):
        r = solution.roles[role]
        v = np.asarray(r.values)
        ax.plot(v, v, ":", color="grey", label="truthful")
        star = bne_strategy(config.env, role) if config is not None else None
        if star is not None:
            ax.plot(v, star(v), "--", color="black", label="analytic BNE")
        ax.plot(v, r.bids, color="tab:blue", lw=2, label="numerical")
        ax.set_xlabel("cost" if role == "seller" else "value")
        ax.set_ylabel("ask" if role == "seller" else "bid")
        ax.set_title(f"{role}: utility loss {r.utility_loss:.4f}")
        ax.legend(loc="upper left", fontsize=8)
        ax.grid(alpha=0.3)
    market = solution.market
    fig.suptitle(
        f"{market['mechanism']}, {market['n_buyers']} buyers"
        + (f" x {market['n_sellers']} sellers" if market["n_sellers"] else "")
        + (f", {market['n_slots']} slots" if market["n_slots"] > 1 else "")
    )
    return save_png(fig, path, dpi=110)
