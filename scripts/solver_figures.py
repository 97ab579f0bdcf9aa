"""The figures of docs/solver.md, from the solver itself.

- ``docs/solver_soda_fpsb.png``: the distributional strategy of the discretised
  first-price auction (2 bidders, values U[0, 1]) as a heat map over value and
  bid, with the analytic BNE ``b(v) = v / 2`` drawn over it: the kind of figure
  Bichler, Fichtl & Oberlechner (2023) use to show SODA's computed strategies.
- ``docs/solver_validation.png``: bid functions against theory: first price
  n = 2..5, GSP with 5 bidders and 3 slots (no closed form), and the bilateral
  k = 1/2 double auction against Chatterjee–Samuelson.

    python scripts/solver_figures.py [--out docs]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from attn_env.config import EnvConfig, SolveConfig
from attn_env.equilibria import chatterjee_samuelson
from attn_env.figures import new_figure, save_png
from attn_env.solver import solve


def soda_fpsb(out: Path) -> Path:
    sol = solve(EnvConfig(mechanism="first_price", n_buyers=2), SolveConfig())
    r = sol.roles["buyer"]
    v, grid = np.asarray(r.values), np.asarray(r.bid_grid)
    strat = np.asarray(r.strategy)
    fig, axes = new_figure(1, 1, figsize=(5.0, 4.2), squeeze=False)
    ax = axes[0][0]
    ax.imshow(
        strat.T,
        origin="lower",
        aspect="auto",
        cmap="Greys",
        extent=(0.0, 1.0, grid[0], grid[-1]),
        vmin=0.0,
        vmax=1.0,
    )
    ax.plot(v, v / 2, "--", color="tab:red", lw=1.2, label="BNE  b(v) = v/2")
    ax.set_xlabel("value")
    ax.set_ylabel("bid")
    ax.set_ylim(0.0, 0.7)
    ax.set_title(
        f"FPSB, 2 bidders: SODA strategy ({len(v)}x{len(grid)} grid, "
        f"{sol.iterations} it., {sol.seconds:.1f} s)",
        fontsize=9,
    )
    ax.legend(loc="upper left", fontsize=8)
    return save_png(fig, out / "solver_soda_fpsb.png", dpi=110)


def validation(out: Path) -> Path:
    fig, axes = new_figure(1, 3, figsize=(13.0, 4.0), squeeze=False)
    ax = axes[0][0]
    for n in (2, 3, 4, 5):
        r = solve(EnvConfig(n_buyers=n), SolveConfig()).roles["buyer"]
        v = np.asarray(r.values)
        ax.plot(v, (n - 1) / n * v, ":", color="black", lw=1)
        ax.plot(v, r.bids, lw=1.8, label=f"n={n}")
    ax.set_title("first price: numerical vs (n-1)/n v (dotted)", fontsize=9)
    ax.set_xlabel("value")
    ax.set_ylabel("bid")
    ax.legend(fontsize=8)
    ax = axes[0][1]
    sol = solve(EnvConfig(mechanism="gsp", n_buyers=5, n_slots=3), SolveConfig())
    r = sol.roles["buyer"]
    ax.plot(r.values, r.values, ":", color="grey", label="truthful")
    ax.plot(r.values, r.bids, lw=1.8, label=f"numerical (loss {r.utility_loss:.4f})")
    ax.set_title("GSP, 5 bidders x 3 equal slots", fontsize=9)
    ax.set_xlabel("value")
    ax.legend(fontsize=8)
    ax = axes[0][2]
    env = EnvConfig(mechanism="k_double", n_buyers=1, n_sellers=1)
    sol = solve(env, SolveConfig())
    for role, color in (("buyer", "tab:blue"), ("seller", "tab:orange")):
        r = sol.roles[role]
        v = np.asarray(r.values)
        ax.plot(v, chatterjee_samuelson(0.5, role)(v), ":", color="black", lw=1)
        ax.plot(v, r.bids, lw=1.8, color=color, label=f"{role} (numerical)")
    ax.axvspan(0.0, 0.25, color="grey", alpha=0.1)
    ax.axvspan(0.75, 1.0, color="grey", alpha=0.1)
    ax.set_title("k-double 1x1, k=1/2 vs Chatterjee-Samuelson (dotted)", fontsize=9)
    ax.set_xlabel("value / cost")
    ax.legend(fontsize=8)
    return save_png(fig, out / "solver_validation.png", dpi=110)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="docs", help="folder for the PNGs")
    args = ap.parse_args(argv)
    out = Path(args.out)
    for fn in (soda_fpsb, validation):
        print(fn(out))


if __name__ == "__main__":
    main()
