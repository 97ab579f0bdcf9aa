"""More formats, utilities and asymmetric bidders; the solver's cost as n grows.

Two tables (``attn_env.solver.solve``, default grid 64 values x 101 bids, one
process, numpy):

- **formats** (issue 25, items 1 and 2): all-pay n = 2..5 against
  ``(n-1)/n v^n``, CRRA first price (rho = 0.5) n = 2..5 against
  ``(n-1)/(n-1+rho) v``, and the asymmetric first price with values U[0, 0.5]
  and U[0, 1] (one class each) against the uniform asymmetric closed form, per
  class. Targets: L2 <= 0.01 in <= 10 s (all-pay, CRRA), <= 30 s per class
  (asymmetric).
- **scaling** (item 5): first price and GSP (3 slots, or ``n - 1`` when fewer)
  for n = 2..10: milliseconds per iteration (a 60-iteration solve timed
  between its first and last iteration, the final loss measure left out),
  iterations until the grid utility loss is under ``STOP`` (capped at 3000),
  and that solve's seconds, L2 (first price) and utility loss.

L2 is over the solve's value grid; ``utility loss`` is the solver's own (a best
response on grids ``refine`` times finer), ``bne loss`` the same measure of the
closed form (the floor the measurement puts under it). Timings depend on the
load: the 1-minute load average is printed with them.

    python benchmarks/solver_formats.py [--only formats|scaling] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import numpy as np

from attn_env.config import EnvConfig, SolveClass, SolveConfig, SolveUtility
from attn_env.equilibria import (
    all_pay_bne,
    asymmetric_first_price_bne,
    crra_first_price_bne,
    first_price_bne,
)
from attn_env.solver import AllPay, game_from_config, solve, utility_losses

DEFAULT = SolveConfig(cache=False)
STOP = 0.005
"Grid utility loss at which the scaling runs stop."


def _l2(a, b) -> float:
    return float(np.sqrt(np.mean((np.asarray(a) - np.asarray(b)) ** 2)))


def _bne_loss(env: EnvConfig, s: SolveConfig, refs: list) -> list[float]:
    """The solver's utility-loss measure applied to the closed forms."""
    game = game_from_config(env, s, np.random.default_rng(0))
    return utility_losses(game, refs, s, np.random.default_rng(0))


def formats() -> list[dict[str, Any]]:
    rows = []
    crra = SolveConfig(cache=False, utility=SolveUtility("crra", 0.5))
    cases = [
        (
            f"all-pay, n = {n}",
            EnvConfig(mechanism=AllPay(), n_buyers=n),
            DEFAULT,
            {"buyer": all_pay_bne(n)},
        )
        for n in range(2, 6)
    ] + [
        (
            f"first price CRRA rho = 0.5, n = {n}",
            EnvConfig(n_buyers=n),
            crra,
            {"buyer": crra_first_price_bne(n, 0.5)},
        )
        for n in range(2, 6)
    ]
    weak, strong = asymmetric_first_price_bne(0.5, 1.0)
    asym = SolveConfig(
        cache=False,
        classes=[
            SolveClass(["buyer_0"], "weak", value_high=0.5),
            SolveClass(["buyer_1"], "strong"),
        ],
    )
    cases.append(
        (
            "first price, U[0, 0.5] vs U[0, 1]",
            EnvConfig(n_buyers=2),
            asym,
            {"weak": weak, "strong": strong},
        )
    )
    for name, env, s, refs in cases:
        load = os.getloadavg()[0]
        sol = solve(env, s)
        floor = _bne_loss(env, s, list(refs.values()))
        for (role, ref), bne in zip(refs.items(), floor, strict=True):
            r = sol.roles[role]
            rows.append(
                {
                    "case": name if len(refs) == 1 else f"{name}: {role}",
                    "iterations": sol.iterations,
                    "seconds": round(sol.seconds, 2),
                    "load": round(load, 1),
                    "l2": round(_l2(r.bids, ref(np.asarray(r.values))), 4),
                    "utility_loss": round(r.utility_loss, 4),
                    "bne_loss": round(bne, 4),
                }
            )
    return rows


def _per_iteration(env: EnvConfig, iterations: int = 60) -> float:
    """Milliseconds per SODA iteration (first to last iteration, no loss measure)."""
    stamps: dict[int, float] = {}
    s = SolveConfig(cache=False, iterations=iterations, stop=0.0, refine=1)
    solve(env, s, progress=lambda t, _: stamps.setdefault(t, time.perf_counter()))
    first, last = min(stamps), max(stamps)
    return 1000 * (stamps[last] - stamps[first]) / (last - first)


def scaling(ns=range(2, 11)) -> list[dict[str, Any]]:
    rows = []
    for mech in ("first_price", "gsp"):
        for n in ns:
            slots = 1 if mech == "first_price" else min(3, n - 1)
            env = EnvConfig(mechanism=mech, n_buyers=n, n_slots=slots)
            load = os.getloadavg()[0]
            ms = _per_iteration(env)
            sol = solve(env, SolveConfig(cache=False, stop=STOP))
            r = sol.roles["buyer"]
            row = {
                "mechanism": mech,
                "n": n,
                "slots": slots,
                "ms_per_iteration": round(ms, 1),
                f"iterations_to_{STOP}": sol.iterations,
                "seconds": round(sol.seconds, 2),
                "load": round(load, 1),
                "utility_loss": round(r.utility_loss, 4),
            }
            if mech == "first_price":
                row["l2"] = round(
                    _l2(r.bids, first_price_bne(n)(np.asarray(r.values))), 4
                )
            rows.append(row)
    return rows


def _table(rows: list[dict[str, Any]]) -> str:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r.get(k, "")) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("formats", "scaling"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    out = {}
    for name, fn in (("formats", formats), ("scaling", scaling)):
        if args.only in (None, name):
            out[name] = fn()
    if args.json:
        print(json.dumps(out, indent=1))
        return
    for name, rows in out.items():
        print(f"## {name}\n\n{_table(rows)}\n")


if __name__ == "__main__":
    main()
