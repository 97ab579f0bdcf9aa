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
    name: str, out: Path, docs: Path, quick: bool, timesteps: int | None
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
    run = out / name
    if run.exists():
        import shutil

        shutil.rmtree(run)
    t0 = time.perf_counter()
    manifest = train(config, run, progress=sys.stderr.isatty())
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    plot = docs / f"learning_{name}.png"
    res = evaluate(config, run, plot=plot)
    eval_s = time.perf_counter() - t0
    row = {
        "case": name,
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
        "plot": str(plot.relative_to(ROOT)) if plot.is_relative_to(ROOT) else str(plot),
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
    args = parser.parse_args(argv)
    cases = list(CASES) if args.cases == "all" else args.cases.split(",")
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; known: {', '.join(CASES)}")
    out, docs = Path(args.out), Path(args.docs)
    docs.mkdir(parents=True, exist_ok=True)
    rows = [run_case(c, out, docs, args.quick, args.timesteps) for c in cases]
    print()
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
