"""A sweep on Ray Tune against the same runs back to back: 10 mechanisms x 5 seeds.

The sweep runs ``simulate`` (2 truthful buyers, ``--episodes`` one-round
episodes) for 10 mechanisms x seeds 0-4 through ``runner.sweep.run_sweep`` on a
local Ray (Ray's start-up and shutdown included), then the same 50 configs
back to back in this process with ``runner.simulate.play``. It checks that
every number of the sweep's table equals the back-to-back run's, and prints
both wall times, the ratio ``sweep / (back_to_back / cores)`` (issue 24's
target: <= 2) and the load average before and after.

    python benchmarks/sweep.py                   # 300,000 episodes per trial
    python benchmarks/sweep.py --episodes 50000  # quick run
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path

from attn_env.config import load_config
from runner.results import jsonable
from runner.simulate import play
from runner.sweep import flat_metrics, run_sweep

ROOT = Path(__file__).resolve().parents[1]
MECHANISMS = (
    "first_price",
    "second_price",
    "gsp",
    "vcg",
    "segment_auction",
    "prominence_auction",
    "k_double",
    "mcafee",
    "call_market",
    "cda",
)
SEEDS = (0, 1, 2, 3, 4)


def sweep_text(episodes: int) -> str:
    """The sweep file: ``configs/first_price.yaml`` with truthful buyers."""
    return (
        f"base: {ROOT / 'configs' / 'first_price.yaml'}\n"
        "job: simulate\n"
        f"grid:\n  env.mechanism: [{', '.join(MECHANISMS)}]\n"
        f"  seed: [{', '.join(map(str, SEEDS))}]\n"
        f"set: {{episodes: {episodes}, agents.buyer.kind: truthful}}\n"
    )


def back_to_back(episodes: int) -> tuple[float, dict[tuple[str, int], dict]]:
    """The 50 runs one after another in this process: wall time and results."""
    base = load_config(ROOT / "configs" / "first_price.yaml")
    base = dataclasses.replace(
        base,
        episodes=episodes,
        agents={"buyer": dataclasses.replace(base.agents["buyer"], kind="truthful")},
    )
    out = {}
    t0 = time.perf_counter()
    for mech in MECHANISMS:
        for seed in SEEDS:
            config = dataclasses.replace(
                base, seed=seed, env=dataclasses.replace(base.env, mechanism=mech)
            )
            out[mech, seed] = flat_metrics(jsonable(play(config, progress=False)))
    return time.perf_counter() - t0, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=300_000)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="sweep-bench-") as tmp:
        sweep = Path(tmp) / "sweep.yaml"
        sweep.write_text(sweep_text(args.episodes))
        t0 = time.perf_counter()
        table = run_sweep(sweep, Path(tmp) / "out", progress=not args.json)
        sweep_s = time.perf_counter() - t0
    serial_s, serial = back_to_back(args.episodes)
    load_after = os.getloadavg()
    mismatches = 0
    for t in table["trials"]:
        mine = dict(t["metrics"])
        theirs = serial[t["overrides"]["env.mechanism"], t["seed"]]
        mismatches += t["status"] != "ok" or mine != theirs
    result = {
        "trials": len(table["trials"]),
        "episodes_per_trial": args.episodes,
        "cores": cores,
        "sweep_s": round(sweep_s, 2),
        "tune_s": round(table["run"].get("seconds", float("nan")), 2),
        "back_to_back_s": round(serial_s, 2),
        "ratio_to_back_to_back_over_cores": round(sweep_s / (serial_s / cores), 3),
        "tables_equal": mismatches == 0,
        "mismatched_trials": mismatches,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
    }
    if args.json:
        print(json.dumps(result))
        return
    for key, value in result.items():
        print(f"{key:34s} {value}")


if __name__ == "__main__":
    main()
