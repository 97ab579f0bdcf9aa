"""More formats, utilities, asymmetric bidders and correlated values; the
solver's cost as n grows.

Three tables (``attn_env.solver.solve``, the market's default grid,
``game.with_grid_defaults``, unless ``settings`` says otherwise, one process,
numpy):

- **formats**: all-pay n = 2..10 against ``(n-1)/n v^n`` (and n = 2..5 on
  its defaults of before, ``BEFORE_ALL_PAY``; alone: ``--only all_pay``),
  CRRA first price (rho = 0.5) against
  ``(n-1)/(n-1+rho) v``, ROI-constrained first and second price (target 0.5)
  against ``equilibria.roi_bne``, n = 2..10 (and n = 4..10 on 101 bids),
  and the asymmetric first price with values U[0, 0.5] and U[0, 1] (one
  class each) against the uniform asymmetric closed form, per class;
- **correlated** (``solve.prior``): second price with affiliated values and
  with the attention bank's joint draws against truthful bidding (dominant);
  first price with affiliated values checked by a brute-force best reply
  (``bf_gain``, ``equilibria.affiliated_best_reply_gain``), and with
  ``w = 0`` against ``v / 2``;
- **scaling**: first price (the defaults, the defaults before they changed:
  ``scale_floor`` 1e-4 and 64 values, and 256 values x 201 bids) and GSP
  (3 slots, or ``n - 1`` when fewer; defaults and ``scale_floor`` 1e-4) for
  n = 2..10: milliseconds per iteration on 64 values (a 60-iteration solve
  timed between its first and last iteration, the final loss measure left
  out), iterations until the grid utility loss is under ``STOP`` (capped at
  3000), and that solve's seconds, L2 (first price) and utility loss; then
  the solve ``attn-market solve`` makes (``stop`` and ``iterations`` at
  their defaults): ``solve_*`` and ``converged``.

L2 is over the solution's value grid; ``utility loss`` is the solver's own (a
best response on grids ``refine`` times finer), ``bne loss`` the same measure
of the reference (the floor the measurement puts under it). Timings depend
on the load: the 1-minute load average is printed with them.

    python benchmarks/solver_formats.py [--json]
    python benchmarks/solver_formats.py --only formats|all_pay|correlated|scaling
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import numpy as np

from attn_env.config import (
    EnvConfig,
    SolveClass,
    SolveConfig,
    SolvePrior,
    SolveUtility,
)
from attn_env.equilibria import (
    affiliated_best_reply_gain,
    all_pay_bne,
    asymmetric_first_price_bne,
    crra_first_price_bne,
    first_price_bne,
    roi_bne,
    truthful,
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


def _case_rows(name, n, reference, settings, env, s, refs, extra=None, floor=True):
    """Solve one case and measure it: L2 to each class's reference, the solver's
    utility loss and the same measure of the reference (its floor; ``floor=False``
    where the measure cannot score the reference, reported as ``None``)."""
    load = os.getloadavg()[0]
    sol = solve(env, s)
    floors = _bne_loss(env, s, list(refs.values())) if floor else [None] * len(refs)
    rows = []
    for (role, ref), bne in zip(refs.items(), floors, strict=True):
        r = sol.roles[role]
        row = {
            "format": name if len(refs) == 1 else f"{name}: {role}",
            "n": n,
            "reference": reference,
            "settings": settings,
            "iterations": sol.iterations,
            "seconds": round(sol.seconds, 2),
            "load": round(load, 1),
            "l2": round(_l2(r.bids, ref(np.asarray(r.values))), 4),
            "utility_loss": round(r.utility_loss, 4),
            "bne_loss": None if bne is None else round(bne, 4),
        }
        if extra is not None:
            row.update(extra(sol))
        rows.append(row)
    return rows


BEFORE_ALL_PAY = {"bids": 101, "iterations": 3000, "refine": 4}
"All-pay's grid before it got its own defaults (every market's defaults)."


def all_pay(ns=range(2, 11)) -> list[dict[str, Any]]:
    """All-pay at its defaults (``game.ALL_PAY_GRID``) for every n, and for
    n <= 5 at the defaults it had before (``BEFORE_ALL_PAY``)."""
    rows = []
    for settings, grid, ns_ in (
        ("default", {}, ns),
        ("before: bids 101, 3k it, refine 4", BEFORE_ALL_PAY, range(2, 6)),
    ):
        for n in [n for n in ns_ if n in ns]:
            rows += _case_rows(
                "all-pay",
                n,
                "(n-1)/n v^n",
                settings,
                EnvConfig(mechanism=AllPay(), n_buyers=n),
                SolveConfig(cache=False, **grid),
                {"buyer": all_pay_bne(n)},
            )
    return rows


def formats(ns=range(2, 11)) -> list[dict[str, Any]]:
    rows = all_pay(ns)
    crra = SolveConfig(cache=False, utility=SolveUtility("crra", 0.5))
    for n in ns:
        rows += _case_rows(
            "first price, CRRA rho 0.5",
            n,
            "(n-1)/(n-1+rho) v",
            "default",
            EnvConfig(n_buyers=n),
            crra,
            {"buyer": crra_first_price_bne(n, 0.5)},
        )
    roi = SolveConfig(cache=False, roi_target=0.5)
    # 101 bids: the default before ROI markets of 4 or more buyers got 401
    roi_coarse = SolveConfig(cache=False, roi_target=0.5, bids=101)
    for mech, s, settings, ns_ in (
        ("first_price", roi, "default", ns),
        ("first_price", roi_coarse, "bids 101", range(4, 11)),
        ("second_price", roi, "default", ns),
        ("second_price", roi_coarse, "bids 101", range(4, 11)),
    ):
        for n in ns_:
            ref = roi_bne(mech, n, 0.5)
            rows += _case_rows(
                f"{mech.replace('_', ' ')}, ROI target 0.5",
                n,
                f"{float(ref(np.array(1.0))):.4f} v",
                settings,
                EnvConfig(mechanism=mech, n_buyers=n),
                s,
                {"buyer": ref},
                # the second-price closed form sits on the constraint, which the
                # measure's discrete opponents (atoms) break by a rounding margin
                floor=mech == "first_price",
            )
    weak, strong = asymmetric_first_price_bne(0.5, 1.0)
    asym = SolveConfig(
        cache=False,
        classes=[
            SolveClass(["buyer_0"], "weak", value_high=0.5),
            SolveClass(["buyer_1"], "strong"),
        ],
    )
    rows += _case_rows(
        "first price, U[0, 0.5] vs U[0, 1]",
        2,
        "Griesmer et al. closed form",
        "default",
        EnvConfig(n_buyers=2),
        asym,
        {"weak": weak, "strong": strong},
    )
    return rows


def correlated() -> list[dict[str, Any]]:
    """Correlated values (``solve.prior``): affiliated common-plus-noise values
    (w = 0.5) and the attention bank's joint draws."""
    rows = []
    aff = SolvePrior("common_noise", 0.5)
    bank = SolvePrior("source")

    def gain(sol) -> dict[str, float]:
        fn = sol.bid_function("buyer")
        return {"bf_gain": round(affiliated_best_reply_gain(fn, 0.5), 4)}

    cases = [
        (
            "second price, affiliated w 0.5",
            2,
            "truthful (dominant)",
            "default",
            EnvConfig(mechanism="second_price", n_buyers=2),
            aff,
            truthful,
            None,
        ),
        (
            "second price, affiliated w 0.5",
            3,
            "truthful (dominant)",
            "draws 4096",
            EnvConfig(mechanism="second_price", n_buyers=3),
            SolvePrior("common_noise", 0.5, 4096),
            truthful,
            None,
        ),
        (
            "first price, affiliated w 0 (independent)",
            2,
            "v / 2",
            "default",
            EnvConfig(n_buyers=2),
            SolvePrior("common_noise", 0.0),
            first_price_bne(2),
            None,
        ),
        (
            "first price, affiliated w 0.5",
            2,
            "brute-force best reply (bf_gain)",
            "default",
            EnvConfig(n_buyers=2),
            aff,
            first_price_bne(2),
            gain,
        ),
        (
            "second price, attention bank joint draws",
            2,
            "truthful (dominant)",
            "default",
            EnvConfig(mechanism="second_price", n_buyers=2, valuation="attention"),
            bank,
            truthful,
            None,
        ),
        (
            "second price, attention bank joint draws",
            3,
            "truthful (dominant)",
            "draws 4096",
            EnvConfig(mechanism="second_price", n_buyers=3, valuation="attention"),
            SolvePrior("source", draws=4096),
            truthful,
            None,
        ),
        (
            "first price, attention bank joint draws",
            2,
            "none (utility loss only)",
            "default",
            EnvConfig(n_buyers=2, valuation="attention"),
            bank,
            first_price_bne(2),
            None,
        ),
    ]
    for name, n, reference, settings, env, prior, ref, extra in cases:
        rows += _case_rows(
            name,
            n,
            reference,
            settings,
            env,
            SolveConfig(cache=False, prior=prior),
            {"buyer": ref},
            extra,
        )
    return rows


def _per_iteration(env: EnvConfig, iterations: int = 60, **grid: Any) -> float:
    """Milliseconds per SODA iteration (first to last iteration, no loss measure)."""
    stamps: dict[int, float] = {}
    s = SolveConfig(cache=False, iterations=iterations, stop=0.0, refine=1, **grid)
    solve(env, s, progress=lambda t, _: stamps.setdefault(t, time.perf_counter()))
    first, last = min(stamps), max(stamps)
    return 1000 * (stamps[last] - stamps[first]) / (last - first)


SCALING = (
    ("first_price", {}),
    ("first_price", {"scale_floor": 1e-4, "values": 64}),
    ("first_price", {"values": 256, "bids": 201}),
    ("gsp", {}),
    ("gsp", {"scale_floor": 1e-4}),
)
"""The scaling runs: mechanism and the solver options that differ from the default
(``scale_floor`` 1e-4 with 64 values: the defaults before they changed)."""


def scaling(ns=range(2, 11)) -> list[dict[str, Any]]:
    rows = []
    for mech, opts in SCALING:
        for n in ns:
            slots = 1 if mech == "first_price" else min(3, n - 1)
            env = EnvConfig(mechanism=mech, n_buyers=n, n_slots=slots)
            load = os.getloadavg()[0]
            # per iteration on a fixed grid (64 values unless set), so that
            # the cost in n is not mixed with the default grid's switch
            grid = {k: v for k, v in opts.items() if k == "bids"}
            grid["values"] = opts.get("values", 64)
            ms = _per_iteration(env, **grid)
            s = SolveConfig(cache=False, stop=STOP, **opts)
            sol = solve(env, s)
            r = sol.roles["buyer"]
            row = {
                "mechanism": mech,
                "options": ", ".join(f"{k} {v:g}" for k, v in opts.items())
                or "default",
                "n": n,
                "slots": slots,
                "values": len(r.values),
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
                row["bne_loss"] = round(_bne_loss(env, s, [first_price_bne(n)])[0], 4)
            # what `attn-market solve` returns: the same options, stop and
            # iterations at their defaults
            full = solve(env, SolveConfig(cache=False, **opts))
            f = full.roles["buyer"]
            row.update(
                solve_iterations=full.iterations,
                solve_seconds=round(full.seconds, 2),
                solve_utility_loss=round(f.utility_loss, 4),
                converged=full.converged,
            )
            if mech == "first_price":
                ref = first_price_bne(n)(np.asarray(f.values))
                row["solve_l2"] = round(_l2(f.bids, ref), 4)
            rows.append(row)
    return rows


def _table(rows: list[dict[str, Any]]) -> str:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r.get(k, "")) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only", choices=("formats", "all_pay", "correlated", "scaling")
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    out = {}
    for name, fn in (
        ("formats", formats),
        ("all_pay", all_pay),
        ("correlated", correlated),
        ("scaling", scaling),
    ):
        if args.only == name or (args.only is None and name != "all_pay"):
            out[name] = fn()
    if args.json:
        print(json.dumps(out, indent=1))
        return
    for name, rows in out.items():
        print(f"## {name}\n\n{_table(rows)}\n")


if __name__ == "__main__":
    main()
