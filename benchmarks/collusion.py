"""Algorithmic collusion: Q-learners in repeated first- and second-price auctions.

The direction of Banchio & Skrzypacz (2022): two ``qlearn`` bidders with a
common value 1 learn to bid well under it in a first-price auction with no
feedback, near it in a second-price auction, and publishing the minimum bid to
win after each round restores first-price revenue. Every case runs its seeds
as one batch of markets (:func:`runner.collusion.run_collusion`), cases two at
a time on two processes; the learners' settings are those of
``configs/collusion_fpa.yaml``. Each row: revenue per auction over the
measured window (mean over seeds, 95% t-interval), the learners' mean bids,
the median round of the last change of a greedy bid, and seconds.
With the configs' 500,000 rounds of learning a case takes about 3 minutes
(docs/collusion.md); ``--cases`` picks some.

    python benchmarks/collusion.py [--seeds 20] [--window 1000] [--workers 2]
        [--warmup ROUNDS] [--memory M] [--params JSON] [--cases MECH:FEEDBACK,..]
        [--json OUT.json] [--plot OUT.png]

``--params`` overrides the learners' settings (``qlearn`` keyword arguments),
e.g. Banchio & Skrzypacz's (docs/collusion.md): ``--params '{"learning_rate":
0.05, "discount": 0.99, "epsilon": 0.025, "epsilon_decay": 2e-4, "q_init":
100}' --warmup 1000000``; ``--cases second_price:none`` runs only that case.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from attn_env.config import load_config
from attn_env.fileio import atomic_write_text
from runner.collusion import plot_paths, run_collusion

BASE = Path(__file__).resolve().parent.parent / "configs" / "collusion_fpa.yaml"
CASES = [
    (mechanism, feedback)
    for mechanism in ("first_price", "second_price")
    for feedback in ("none", "winning_bid", "min_bid_to_win")
]


def run_case(
    case: tuple[str, str],
    seeds: int,
    window: int,
    warmup: int | None = None,
    memory: int | None = None,
    params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One case of :data:`CASES` on the base config, measured over ``window``."""
    mechanism, feedback = case
    config = load_config(BASE)
    env = dataclasses.replace(
        config.env, mechanism=mechanism, feedback=feedback, rounds=window
    )
    buyer = config.agents["buyer"]
    if memory is not None:
        buyer = dataclasses.replace(buyer, params={**buyer.params, "memory": memory})
    if params:
        buyer = dataclasses.replace(buyer, params={**buyer.params, **params})
    config = dataclasses.replace(config, env=env, agents={"buyer": buyer})
    return run_collusion(config, seeds=seeds, warmup=warmup)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--window", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--warmup", type=int, help="rounds of learning (config's)")
    parser.add_argument("--memory", type=int, help="learners' memory (config's: 0)")
    parser.add_argument(
        "--params", type=json.loads, help="learners' settings, JSON (config's)"
    )
    parser.add_argument(
        "--cases", help="comma-separated MECHANISM:FEEDBACK (default: all six)"
    )
    parser.add_argument("--json", type=Path, help="write every result here")
    parser.add_argument("--plot", type=Path, help="bid paths of every case (PNG)")
    args = parser.parse_args()

    cases = CASES
    if args.cases:
        cases = [tuple(c.split(":")) for c in args.cases.split(",")]
        unknown = [c for c in cases if c not in CASES]
        if unknown:
            parser.error(f"unknown cases {unknown}; choose from {CASES}")
    start = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:
        jobs = [
            pool.submit(
                run_case,
                c,
                args.seeds,
                args.window,
                args.warmup,
                args.memory,
                args.params,
            )
            for c in cases
        ]
        results = [j.result() for j in jobs]
    wall = time.perf_counter() - start

    print(
        f"{'mechanism':<13} {'feedback':<15} {'revenue':>8} {'95% CI':>17} "
        f"{'bids':>11} {'converged':>10} {'seconds':>8}"
    )
    for r in results:
        lo, hi = r["revenue_ci95"]
        bids = "/".join(f"{b:.2f}" for b in r["mean_bid"].values())
        print(
            f"{r['mechanism']:<13} {r['feedback']:<15} {r['revenue']:>8.3f} "
            f"{f'[{lo:.3f}, {hi:.3f}]':>17} {bids:>11} "
            f"{r['rounds_to_convergence']:>10.0f} {r['seconds']:>8.1f}"
        )
    print(
        f"{len(cases)} cases x {args.seeds} seeds x "
        f"{results[0]['warmup'] + args.window} rounds: {wall:.0f} s wall "
        f"on {args.workers} processes"
    )
    if args.json:
        atomic_write_text(args.json, json.dumps(results, indent=1) + "\n")
    if args.plot:
        plot_paths(results, args.plot)


if __name__ == "__main__":
    main()
