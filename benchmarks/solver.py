"""The equilibrium solver: speed targets, validation against theory, cost growth.

Three tables (``attn_env.solver.solve``, one process, numpy):

- **targets** (issue 13): first price n = 2 to L2 <= 0.01 in <= 5 s; GSP with
  5 bidders and 3 slots to utility loss <= 0.01 in <= 60 s;
- **validation**: the numerical equilibrium against the closed forms of
  ``attn_env.equilibria`` (first price n = 2..5, K = 2 units, a reserve;
  truthful second price, VCG, McAfee; Chatterjee–Samuelson on the trade
  region);
- **scaling**: milliseconds per iteration as bidders, slots and the bid grid
  grow (GSP), and for double auctions (the difference of a 140- and a
  40-iteration solve, so the final loss measure is left out);
- **generic** (issue 20): every built-in sealed-bid mechanism re-registered as
  a thin subclass, so the solver clears it by its own ``clear``, against the
  built-in's exact path (L2 between the bid functions; the generic bid
  function's utility loss measured in the exact game beside the exact
  solution's own), and two mechanisms the solver has never seen against their
  closed forms (the docs' soft floor with reserve 0: ``v / 2``; first price
  with a 10 % winner fee: ``v / 2.2``).

L2 is over the solve's value grid (quantile midpoints); the utility loss is
the solver's own, a best response on grids ``refine`` times finer;
``bne_utility_loss`` is that same measure applied to the closed-form
equilibrium (the floor the discretised measurement itself puts under it). Timings
depend on the machine's load: run it on an idle machine (``uptime``).

    python benchmarks/solver.py [--only targets|validation|scaling|generic] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import numpy as np

from attn_env.config import EnvConfig, SolveConfig
from attn_env.equilibria import bne_strategy
from attn_env.solver import game_from_config, solve, utility_losses
from attn_env.solver.game import with_grid_defaults

DEFAULT = SolveConfig(cache=False)


def _row(name: str, env: EnvConfig, s: SolveConfig, region=None) -> dict[str, Any]:
    """Solve ``env``; L2 to the analytic BNE (on ``region`` of values) per role."""
    sol = solve(env, s)
    row: dict[str, Any] = {
        "case": name,
        "grid": "{0.values}x{0.bids}".format(with_grid_defaults(env, s)),
        "iterations": sol.iterations,
        "seconds": round(sol.seconds, 2),
    }
    stars = [bne_strategy(env, role) for role in sol.roles]
    for role, r in sol.roles.items():
        v, b = np.asarray(r.values), np.asarray(r.bids)
        star = bne_strategy(env, role)
        keep = np.ones_like(v, dtype=bool) if region is None else region(role, v)
        if star is not None:
            row[f"l2_{role}"] = float(np.sqrt(np.mean((b - star(v))[keep] ** 2)))
        row[f"utility_loss_{role}"] = r.utility_loss
    if all(star is not None for star in stars):
        # the same measure applied to the closed form: its discretisation floor
        rng = np.random.default_rng(0)
        floor = utility_losses(game_from_config(env, s, rng), stars, s, rng)
        for role, loss in zip(sol.roles, floor, strict=True):
            row[f"bne_utility_loss_{role}"] = loss
    return row


def targets() -> list[dict[str, Any]]:
    fpsb = SolveConfig(values=64, bids=101, iterations=600, cache=False)
    gsp = SolveConfig(values=64, bids=101, iterations=3000, cache=False)
    return [
        _row("FPSB n=2 (target L2<=0.01 in <=5 s)", EnvConfig(n_buyers=2), fpsb),
        _row(
            "GSP 5 bidders x 3 slots (target loss<=0.01 in <=60 s)",
            EnvConfig(mechanism="gsp", n_buyers=5, n_slots=3),
            gsp,
        ),
    ]


def _trade_region(role: str, v: np.ndarray) -> np.ndarray:
    """Values that trade in the k = 1/2 linear equilibrium (v >= 1/4, c <= 3/4)."""
    return v >= 0.25 if role == "buyer" else v <= 0.75


def _above_reserve(reserve: float):
    return lambda role, v: v >= reserve


def validation() -> list[dict[str, Any]]:
    rows = [_row(f"FPSB n={n}", EnvConfig(n_buyers=n), DEFAULT) for n in (2, 3, 4, 5)]
    rows += [
        _row("FP n=4, K=2 equal units", EnvConfig(n_buyers=4, n_slots=2), DEFAULT),
        _row(
            "FP n=3, reserve 0.3 (v >= r)",
            EnvConfig(n_buyers=3, mechanism_params={"reserve": 0.3}),
            DEFAULT,
            _above_reserve(0.3),
        ),
        _row(
            "second price n=3", EnvConfig(mechanism="second_price", n_buyers=3), DEFAULT
        ),
        _row(
            "VCG n=4, 3 slots",
            EnvConfig(mechanism="vcg", n_buyers=4, n_slots=3),
            DEFAULT,
        ),
        _row(
            "McAfee 3x3",
            EnvConfig(mechanism="mcafee", n_buyers=3, n_sellers=3),
            SolveConfig(values=32, bids=51, iterations=400, cache=False),
        ),
        _row(
            "k-double 1x1, k=1/2 (trade region)",
            EnvConfig(mechanism="k_double", n_buyers=1, n_sellers=1),
            DEFAULT,
            _trade_region,
        ),
    ]
    return rows


def _ms_per_iteration(env: EnvConfig, bids: int = 101, values: int = 64) -> float:
    """Milliseconds per dual-averaging iteration (the final loss measure excluded)."""
    seconds = []
    for iterations in (40, 140):
        s = SolveConfig(
            values=values, bids=bids, iterations=iterations, stop=0.0, cache=False
        )
        seconds.append(solve(env, s).seconds)
    return 1000.0 * (seconds[1] - seconds[0]) / 100


def scaling() -> list[dict[str, Any]]:
    rows = []
    for n in (3, 5, 8, 12):
        env = EnvConfig(mechanism="gsp", n_buyers=n, n_slots=3)
        rows.append(
            {
                "grow": "bidders",
                "n": n,
                "K": 3,
                "bids": 101,
                "ms_per_iteration": _ms_per_iteration(env),
            }
        )
    for k in (1, 2, 3, 5):
        env = EnvConfig(mechanism="gsp", n_buyers=6, n_slots=k)
        rows.append(
            {
                "grow": "slots",
                "n": 6,
                "K": k,
                "bids": 101,
                "ms_per_iteration": _ms_per_iteration(env),
            }
        )
    for bids in (51, 101, 201, 401):
        env = EnvConfig(mechanism="gsp", n_buyers=5, n_slots=3)
        rows.append(
            {
                "grow": "bid grid",
                "n": 5,
                "K": 3,
                "bids": bids,
                "ms_per_iteration": _ms_per_iteration(env, bids=bids),
            }
        )
    for mech, n, m in (("k_double", 1, 1), ("mcafee", 3, 3), ("k_double", 5, 5)):
        env = EnvConfig(mechanism=mech, n_buyers=n, n_sellers=m)
        rows.append(
            {
                "grow": f"{mech} {n}x{m} (mechanism's clear)",
                "n": n,
                "K": 1,
                "bids": 101,
                "ms_per_iteration": _ms_per_iteration(env),
            }
        )
    return rows


GENERIC_CASES = (
    ("first price n = 2", "first_price", {"n_buyers": 2}, {}),
    ("first price n = 3", "first_price", {"n_buyers": 3}, {}),
    (
        "first price n = 2, reserve 0.3",
        "first_price",
        {"n_buyers": 2, "mechanism_params": {"reserve": 0.3}},
        {},
    ),
    ("second price n = 3", "second_price", {"n_buyers": 3}, {}),
    ("GSP 4 x 2", "gsp", {"n_buyers": 4, "n_slots": 2}, {}),
    ("VCG 4 x 2", "vcg", {"n_buyers": 4, "n_slots": 2}, {}),
    ("k-double 1 x 1", "k_double", {"n_buyers": 1, "n_sellers": 1}, {}),
    (
        "McAfee 3 x 3 (32 x 51)",
        "mcafee",
        {"n_buyers": 3, "n_sellers": 3},
        {"values": 32, "bids": 51},
    ),
)


def _thin(builtin: str) -> str:
    """``builtin`` registered again as a subclass that adds only a name."""
    from attn_env import mechanisms

    name = f"generic_{builtin}"
    if name not in mechanisms.names():
        base = mechanisms.mechanism_class(builtin)
        mechanisms.register(name, type(f"G{base.__name__}", (base,), {"name": name}))
    return name


def generic() -> list[dict[str, Any]]:
    rows = []
    for case, builtin, market, grid in GENERIC_CASES:
        env = EnvConfig(mechanism=builtin, **market)
        # both paths on the exact market's grid (its default may be finer)
        s = with_grid_defaults(env, SolveConfig(cache=False, **grid))
        exact = solve(env, s)
        gen = solve(EnvConfig(mechanism=_thin(builtin), **market), s)
        game = game_from_config(env, s, np.random.default_rng(1))
        fns = [gen.bid_function(role.name) for role in game.roles]
        cross = utility_losses(game, fns, s, np.random.default_rng(2))
        row: dict[str, Any] = {"case": case}
        for r, role in enumerate(game.roles):
            a = np.asarray(exact.roles[role.name].bids)
            b = np.asarray(gen.roles[role.name].bids)
            row[f"l2_{role.name}"] = float(np.sqrt(np.mean((a - b) ** 2)))
            row[f"loss_generic_{role.name}"] = cross[r]
            row[f"loss_exact_{role.name}"] = exact.roles[role.name].utility_loss
        row.update(
            seconds_exact=round(exact.seconds, 1), seconds_generic=round(gen.seconds, 1)
        )
        rows.append(row)
    rows += _unseen()
    return rows


def _unseen() -> list[dict[str, Any]]:
    """The soft floor (reserve 0) and a 10 % winner fee against their closed forms
    (the mechanisms as tests/test_solver_generic.py defines them)."""
    import importlib.util
    from pathlib import Path

    from attn_env import mechanisms

    spec = importlib.util.spec_from_file_location(
        "generic_cases", Path(__file__).parent.parent / "tests/test_solver_generic.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rows = []
    for case, cls, params, star in (
        ("soft floor, reserve 0 (v / 2)", mod.SoftFloor, {}, lambda v: v / 2),
        ("winner fee 10 % (v / 2.2)", mod.WinnerFee, {"fee": 0.1}, lambda v: v / 2.2),
    ):
        if cls.name not in mechanisms.names():
            mechanisms.register(cls.name, cls)
        env = EnvConfig(mechanism=cls.name, n_buyers=2, mechanism_params=params)
        sol = solve(env, DEFAULT)
        r = sol.roles["buyer"]
        v = np.asarray(r.values)
        rows.append(
            {
                "case": case,
                "l2_buyer": float(
                    np.sqrt(np.mean((np.asarray(r.bids) - star(v)) ** 2))
                ),
                "loss_generic_buyer": r.utility_loss,
                "seconds_generic": round(sol.seconds, 1),
                "converged": sol.converged,
            }
        )
    return rows


TABLES = {
    "targets": targets,
    "validation": validation,
    "scaling": scaling,
    "generic": generic,
}


def main(argv: list[str] | None = None) -> dict[str, list[dict[str, Any]]]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=list(TABLES), help="one table only")
    ap.add_argument("--json", action="store_true", help="print JSON")
    args = ap.parse_args(argv)
    load = os.getloadavg()[0]
    out: dict[str, list[dict[str, Any]]] = {}
    for name, fn in TABLES.items():
        if args.only and name != args.only:
            continue
        start = time.perf_counter()
        out[name] = fn()
        if not args.json:
            print(f"\n## {name} ({time.perf_counter() - start:.0f} s, load {load:.1f})")
            for row in out[name]:
                print("  " + ", ".join(f"{k}={_fmt(v)}" for k, v in row.items()))
    if args.json:
        print(json.dumps({"load": load, **out}, indent=2))
    return out


def _fmt(x: Any) -> str:
    return f"{x:.4f}" if isinstance(x, float) else str(x)


if __name__ == "__main__":
    main()
