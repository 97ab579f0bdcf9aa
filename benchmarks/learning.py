"""Learning benchmark: PPO bidders against the analytic equilibria (the headline).

For each case: train from its config (wall time measured), then evaluate the
trained policy: ``bne_l2`` (L2 distance of the learned bid function to the
BNE), ``utility_loss`` (relative gain of a best response) and market
efficiency; the learned bid functions are drawn against the BNE into
``docs/learning_<case>.png``.

=============  =================================  ===================================
case           config                             known answer
=============  =================================  ===================================
fpsb_n2        configs/fpsb_n2.yaml               b(v) = v/2 (target bne_l2 <= 0.05)
fpsb_n5        configs/fpsb_n5.yaml               b(v) = 4v/5
second_price   configs/second_price_learn.yaml    truthful b(v) = v
bilateral      configs/bilateral_k05.yaml         2v/3 + 1/12, 2c/3 + 1/4; eff. 27/32
gsp3           configs/gsp3_learn.yaml            (self-play; utility loss only)
cda            configs/cda_vs_zic.yaml            (one learner among ZI-C traders)
=============  =================================  ===================================

Usage (2 CPU cores; run it niced on a shared machine)::

    python benchmarks/learning.py              # fpsb_n2 fpsb_n5 second_price bilateral
    python benchmarks/learning.py --cases fpsb_n2       # the headline only
    python benchmarks/learning.py --quick               # short runs, a smoke check
    python benchmarks/learning.py --cases fpsb_n2,gsp3 --seeds 0,1,2  # mean ± SE
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES = {
    "fpsb_n2": "configs/fpsb_n2.yaml",
    "fpsb_n5": "configs/fpsb_n5.yaml",
    "second_price": "configs/second_price_learn.yaml",
    "bilateral": "configs/bilateral_k05.yaml",
    "gsp3": "configs/gsp3_learn.yaml",
    "cda": "configs/cda_vs_zic.yaml",
}
DEFAULT = ("fpsb_n2", "fpsb_n5", "second_price", "bilateral")
QUICK_STEPS = 200_000


def run_case(
    name: str,
    out: Path,
    docs: Path,
    quick: bool,
    timesteps: int | None,
    seed: int | None = None,
) -> dict:
    from attn_env.config import load_config
    from runner.evaluate import evaluate
    from training.sb3 import train

    config = load_config(ROOT / CASES[name])
    steps = timesteps or (
        min(QUICK_STEPS, config.train.total_timesteps) if quick else None
    )
    if steps:
        config = dataclasses.replace(
            config, train=dataclasses.replace(config.train, total_timesteps=steps)
        )
    if seed is not None:
        config = dataclasses.replace(config, seed=seed)
    run = out / name if seed is None else out / f"{name}_seed{seed}"
    if run.exists():
        import shutil

        shutil.rmtree(run)
    t0 = time.perf_counter()
    manifest = train(config, run, progress=sys.stderr.isatty())
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    plot = docs / f"learning_{name}.png"
    drawn = seed is None or seed == 0
    res = evaluate(config, run, plot=plot if drawn else None)
    eval_s = time.perf_counter() - t0
    row = {
        "case": name,
        "seed": config.seed,
        "timesteps": manifest["timesteps"],
        "train_s": round(train_s, 1),
        "eval_s": round(eval_s, 1),
        "bne_l2": res["bne_l2"],
        "bne_l2_by_learner": res["bne_l2_by_learner"],
        "bne_l2_floor": max(res["bne_l2_floor_by_learner"].values(), default=None),
        "utility_loss": res["utility_loss"],
        "utility_loss_by_learner": res["utility_loss_by_learner"],
        "efficiency": res.get("efficiency"),
        "revenue": res.get("revenue"),
        "plot": None
        if not drawn
        else str(plot.relative_to(ROOT))
        if plot.is_relative_to(ROOT)
        else str(plot),
    }
    print(json.dumps(row), flush=True)
    return row


def _f(x, digits: int = 3) -> str:
    if x is None:
        return "–"
    if isinstance(x, dict):
        return ", ".join(f"{k} {_f(v, digits)}" for k, v in x.items()) or "–"
    return f"{x:.{digits}f}"


def table(rows: list[dict]) -> str:
    """The results as a markdown table."""
    lines = [
        "| case | agent-steps | train (s) | bne_l2 (by learner) | utility_loss "
        "| efficiency |",
        "|---|---:|---:|---|---:|---:|",
    ]
    for r in rows:
        l2 = (
            _f(r["bne_l2_by_learner"])
            if len(r["bne_l2_by_learner"]) > 1
            else _f(r["bne_l2"])
        )
        lines.append(
            f"| {r['case']} | {r['timesteps']:,} | {r['train_s']:.0f} | {l2} | "
            f"{_f(r['utility_loss'])} | {_f(r['efficiency'])} |"
        )
    return "\n".join(lines)


def mean_se(xs: list[float]) -> tuple[float, float]:
    """Mean and standard error (``std / sqrt(n)``, ``ddof = 1``; 0 for one)."""
    import numpy as np

    a = np.asarray(xs, dtype=float)
    se = float(a.std(ddof=1) / np.sqrt(len(a))) if len(a) > 1 else 0.0
    return float(a.mean()), se


def seed_table(rows: list[dict]) -> str:
    """Mean ± SE over the seeds run, one line per case."""
    lines = [
        "| case | seeds | agent-steps | train (s) | bne_l2 | utility_loss "
        "| efficiency |",
        "|---|---|---:|---:|---|---:|---:|",
    ]
    for case in dict.fromkeys(r["case"] for r in rows):
        rs = [r for r in rows if r["case"] == case]

        def cell(key: str, digits: int = 4, rs: list[dict] = rs) -> str:
            xs = [r[key] for r in rs if r.get(key) is not None]
            if not xs:
                return "–"
            m, se = mean_se(xs)
            return f"{m:.{digits}f} ± {se:.{digits}f}"

        seeds = ",".join(str(r["seed"]) for r in rs)
        lines.append(
            f"| {case} | {seeds} | {rs[0]['timesteps']:,} | {cell('train_s', 1)} | "
            f"{cell('bne_l2')} | {cell('utility_loss')} | {cell('efficiency', 3)} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--cases",
        default=",".join(DEFAULT),
        help=f"comma-separated, from {', '.join(CASES)} (or 'all')",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"at most {QUICK_STEPS:,} agent-steps per case",
    )
    parser.add_argument(
        "--timesteps", type=int, default=None, help="override every case"
    )
    parser.add_argument(
        "--out", default=str(ROOT / "runs" / "bench"), help="run folders"
    )
    parser.add_argument("--docs", default=str(ROOT / "docs"), help="where plots go")
    parser.add_argument("--json", default=None, help="also write the rows to this file")
    parser.add_argument(
        "--seeds",
        default=None,
        help="comma-separated seeds (default: each config's own); with more than "
        "one, a mean ± SE table follows",
    )
    args = parser.parse_args(argv)
    cases = list(CASES) if args.cases == "all" else args.cases.split(",")
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; known: {', '.join(CASES)}")
    out, docs = Path(args.out), Path(args.docs)
    docs.mkdir(parents=True, exist_ok=True)
    seeds = [None] if args.seeds is None else [int(x) for x in args.seeds.split(",")]
    rows = [
        run_case(c, out, docs, args.quick, args.timesteps, seed)
        for c in cases
        for seed in seeds
    ]
    print()
    print(table(rows))
    if len(seeds) > 1:
        print()
        print(seed_table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
