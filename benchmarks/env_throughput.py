"""Agent-steps per second: ``vector_env`` (4096 markets) against the PettingZoo loop.

Both play the same market with truthful actions (bid the value, ask the cost),
in one run, and the ratio is printed. An agent-step is one agent acting in one
market for one round, so a step of ``vector_env(4096)`` with 2 buyers counts
8192 agent-steps.

    python benchmarks/env_throughput.py            # the three headline markets
    python benchmarks/env_throughput.py --json     # machine-readable
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from typing import Any

import numpy as np

from attn_env import parallel_env, vector_env

CASES: dict[str, dict[str, Any]] = {
    "first_price n=2": {"mechanism": "first_price", "n_buyers": 2},
    "gsp n=10 K=5": {"mechanism": "gsp", "n_buyers": 10, "n_slots": 5},
    "cda 10x10": {
        "mechanism": "cda",
        "n_buyers": 10,
        "n_sellers": 10,
        "rounds": 10,
        "redraw": "episode",
    },
}


def bench_vector(options: dict[str, Any], num_envs: int, seconds: float) -> float:
    """Agent-steps/s of ``vector_env(num_envs)`` with truthful actions."""
    v = vector_env(num_envs, **options)
    obs, _ = v.reset(seed=0)
    for _ in range(3):  # warm-up
        obs, *_ = v.step(obs[..., :1])
    steps, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(5):
            obs, *_ = v.step(obs[..., :1])
        steps += 5
    return steps * num_envs * v.n_agents / elapsed


def bench_loop(options: dict[str, Any], seconds: float) -> float:
    """Agent-steps/s of the PettingZoo ``parallel_env`` stepped in a Python loop."""
    e = parallel_env(**options)
    obs, _ = e.reset(seed=0)
    agent_steps, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(20):
            if not e.agents:
                obs, _ = e.reset()
            agent_steps += len(e.agents)
            obs, *_ = e.step({a: o[:1] for a, o in obs.items()})
    return agent_steps / elapsed


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--num-envs", type=int, default=4096)
    ap.add_argument("--seconds", type=float, default=3.0, help="timing per measurement")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    rows = []
    for name, options in CASES.items():
        vec = bench_vector(options, args.num_envs, args.seconds)
        loop = bench_loop(options, args.seconds)
        rows.append({"market": name, "vector": vec, "loop": loop, "ratio": vec / loop})
    result = {
        "num_envs": args.num_envs,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "rows": rows,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return result
    print(f"agent-steps/s, vector_env({args.num_envs}) vs parallel_env loop")
    print(f"{'market':<18}{'vector_env':>14}{'loop':>12}{'ratio':>9}")
    for r in rows:
        print(
            f"{r['market']:<18}{r['vector']:>14,.0f}{r['loop']:>12,.0f}"
            f"{r['ratio']:>8.0f}x"
        )
    return result


if __name__ == "__main__":
    main()
