"""The four runs of docs/search_day.md, each from one command.

    python benchmarks/search_day_runs.py league     --days 6
    python benchmarks/search_day_runs.py learn      --minutes 30 --days 4
    python benchmarks/search_day_runs.py mechanisms --minutes 8 --days 4
    python benchmarks/search_day_runs.py publish    --minutes 8 --days 4

Each writes ``<out>/<run>.json`` (default ``benchmarks/results/``) and a PNG in
``docs/img/``, and prints a markdown table with standard errors over days.
Runs train in ``<out>/runs/<name>/`` (fresh folders; an existing one is refused).

- ``league``: the baselines head to head on 500,000-impression days, every
  advertiser a mix of kinds (seats rotate each day), with hindsight bounds.
- ``learn``: all 48 advertisers learning at once (shared PPO) against the same
  held-out days with PID bidders; the learning curve.
- ``mechanisms``: GSP, VCG and first price, learners trained in each.
- ``publish``: what publishing more feedback (none, price, landscape) changes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

from attn_env.fileio import atomic_write_text
from attn_env.scenarios.search_config import load
from runner.scenarios import evaluate_scenario, simulate_scenario
from training.search_day import train_search_day

CONFIG = "configs/scenarios/search_day.yaml"
EVAL_EVERY = 46_080
"Advertiser-periods between points of the learning curve (10 days of 48 x 48)."
TRAIN_IMPRESSIONS = 100_000
"Impressions of a training day (budgets scale with traffic); evaluation uses the config's."


def _train_and_evaluate(
    config, out: Path, name: str, minutes: float, days: int
) -> dict:
    train_cfg = dataclasses.replace(
        config,
        traffic=dataclasses.replace(config.traffic, impressions=TRAIN_IMPRESSIONS),
    )
    train_cfg = dataclasses.replace(
        train_cfg,
        train=dataclasses.replace(
            train_cfg.train, timesteps=10**9, max_minutes=minutes, eval_every=EVAL_EVERY
        ),
    )
    record = train_search_day(train_cfg, out / "runs" / name, progress=True)
    result = evaluate_scenario("search_day", config, out / "runs" / name, days=days)
    return {"train": record, "evaluate": result}


def _row(label: str, s: dict[str, Any], keys: list[str]) -> str:
    cells = []
    for k in keys:
        v, se = s.get(k), s.get(f"{k}_se")
        if isinstance(v, dict):
            v, se = v.get("mean"), v.get("se")
        cells.append(
            "—" if v is None else (f"{v:.3g} ± {se:.2g}" if se else f"{v:.3g}")
        )
    return f"| {label} | " + " | ".join(cells) + " |"


def league(config, out: Path, args) -> dict:
    cfg = dataclasses.replace(
        config,
        days=args.days,
        bidders={"truthful": 0.25, "pacing": 0.25, "pid": 0.25, "onlinelp": 0.25},
        seating="rotate",
        hindsight=True,
    )
    res = simulate_scenario("search_day", cfg, progress=True)
    keys = [
        "score",
        "budget_use",
        "violation_rate",
        "cpa_over_target",
        "share_of_bound",
        "share_of_best_fixed_lambda",
        "gain_over_pid",
    ]
    print("| bidder | " + " | ".join(keys) + " |")
    for kind, s in res["by_kind"].items():
        print(_row(kind, s, keys))
    plot_league(res, "docs/img/search_day_league.png")
    return res


def plot_league(res: dict[str, Any], path: str) -> None:
    """Each kind's score as a share of its hindsight bound and of the best
    fixed multiplier, with standard errors over days."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = list(res["by_kind"])
    fig, ax = plt.subplots(figsize=(6, 3.5))
    width = 0.38
    for j, (key, label) in enumerate(
        [
            ("share_of_bound", "share of the hindsight bound"),
            ("share_of_best_fixed_lambda", "share of the best fixed λ"),
        ]
    ):
        y = [res["by_kind"][k][key] for k in kinds]
        e = [res["by_kind"][k][f"{key}_se"] or 0.0 for k in kinds]
        ax.bar(
            [i + (j - 0.5) * width for i in range(len(kinds))],
            y,
            width,
            yerr=e,
            label=label,
        )
    ax.set_xticks(range(len(kinds)), kinds)
    ax.axhline(1.0, color="gray", lw=0.8)
    ax.set_ylabel("score / reference")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def learn(config, out: Path, args) -> dict:
    res = _train_and_evaluate(config, out, "learn", args.minutes, args.days)
    keys = [
        "score",
        "budget_use",
        "violation_rate",
        "revenue",
        "welfare",
        "gain_over_pid",
    ]
    print("| bidders | " + " | ".join(keys) + " |")
    for kind, s in res["evaluate"]["by_bidders"].items():
        print(_row(kind, s, keys))
    _plot_curve(res["train"]["curve"], "docs/img/search_day_learning.png")
    return res


def mechanisms(config, out: Path, args) -> dict:
    res = {}
    keys = ["revenue", "welfare", "advertiser_surplus", "score", "violation_rate"]
    print("| mechanism | bidders | " + " | ".join(keys) + " |")
    for mech in ("gsp", "vcg", "first_price"):
        cfg = dataclasses.replace(
            config, auction=dataclasses.replace(config.auction, mechanism=mech)
        )
        r = _train_and_evaluate(cfg, out, f"mech_{mech}", args.minutes, args.days)
        res[mech] = r
        for kind in ("policy", "pid"):
            print(_row(f"{mech} | {kind}", r["evaluate"]["by_bidders"][kind], keys))
    return res


def publish(config, out: Path, args) -> dict:
    res = {}
    keys = ["score", "revenue", "welfare", "violation_rate", "gain_over_pid"]
    print("| publish | " + " | ".join(keys) + " |")
    for what in ("none", "price", "landscape"):
        cfg = dataclasses.replace(config, publish=what)
        r = _train_and_evaluate(cfg, out, f"publish_{what}", args.minutes, args.days)
        res[what] = r
        print(_row(what, r["evaluate"]["by_bidders"]["policy"], keys))
    return res


def _plot_curve(curve: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [c["seconds"] / 60 for c in curve]
    y = [c["score"] for c in curve]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(x, y, marker="o", label="shared PPO (all 48 learning)")
    ax.axhline(curve[0]["pid_score"], color="gray", ls="--", label="PID (all 48)")
    ax.set_xlabel("training minutes (2 CPU cores)")
    ax.set_ylabel("mean AuctionNet score,\nvalidation days (100k impressions)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


RUNS = {"league": league, "learn": learn, "mechanisms": mechanisms, "publish": publish}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", choices=list(RUNS))
    ap.add_argument("--config", default=CONFIG)
    ap.add_argument("--days", type=int, default=4)
    ap.add_argument("--minutes", type=float, default=8.0)
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    res = RUNS[args.run](load(args.config), out, args)
    res = {
        "run": args.run,
        "args": vars(args),
        "seconds": time.perf_counter() - t0,
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
        "result": res,
    }
    atomic_write_text(out / f"{args.run}.json", json.dumps(res, indent=1, default=str))
    print(
        f"{args.run}: {res['seconds']:.0f} s, load {load_before:.1f} -> {res['load_after']:.1f}"
    )


if __name__ == "__main__":
    main()
