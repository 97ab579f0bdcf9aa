"""Throughput of the feed scenario, and its results table and trade-off plot.

1. Sessions per second with truthful (baseline) agents: for each rule, the
   whole session loop of ``attn_env.scenarios.feed.run`` (merit from the
   shipped bank, bids, allocation, payments, attention with the budget,
   metrics, fairness state) over ``populations x sessions`` sessions, 12
   creators, 6 advertisers, 5 positions, best of ``reps`` after a warm-up;
   beside it, the library's general ``assignment`` solver on the same
   ``[B, 18, 5]`` values (what ``rank_by_score`` replaces: values
   ``score_i w_k`` are separable, so sorting is a max-weight assignment).
2. ``--table PNG``: the shipped config (``configs/scenarios/feed.yaml``) with
   truthful and with learning bidders, its tables (markdown, to stdout) and
   the fairness-welfare trade-off plotted to ``PNG``.

    python benchmarks/feed.py [--populations 4096] [--sessions 50] [--json]
    python benchmarks/feed.py --table docs/img/feed_tradeoff.png
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from typing import Any

import numpy as np

from attn_env import mechanisms
from attn_env.scenarios import feed as fd


def scenario_rate(populations: int, sessions: int, reps: int = 2) -> dict[str, float]:
    """Sessions/s of each rule (truthful agents, attention model)."""
    c = fd.validate(
        dataclasses.replace(fd.FeedConfig(), populations=populations, sessions=sessions)
    )
    feeds = fd.load(c)
    d = fd.draw(feeds, c)
    out = {}
    for rule in fd.MECHANISMS:
        gamma = 1.0 if rule in fd.BASE else 0.0
        best = np.inf
        for _ in range(reps + 1):  # the first is a warm-up
            t0 = time.perf_counter()
            fd.run(feeds, d, c, rule, gamma, "attention", np.random.default_rng(0))
            best = min(best, time.perf_counter() - t0)
        out[rule] = populations * sessions / best
    return out


def library_assignment_rate(markets: int = 20_000) -> float:
    """Markets/s of ``mechanisms.make("assignment")`` on ``[B, 18, 5]`` values."""
    rng = np.random.default_rng(0)
    score = rng.random((markets, 18))
    w = -np.sort(-rng.random((markets, 5)), axis=1)
    m = mechanisms.make("assignment")
    t0 = time.perf_counter()
    m.clear(score[:, :, None] * w[:, None, :], rng=rng)
    return markets / (time.perf_counter() - t0)


COLS = (
    "user_welfare",
    "revenue",
    "advertiser_value",
    "creator_exposure",
    "fairness_gap",
    "head_tail_treatment",
)


def _cell(x: dict[str, float]) -> str:
    return f"{x['mean']:.4f} ± {x['se']:.4f}"


def table(png: str) -> dict[str, Any]:
    """Run the shipped config with truthful and learning bidders; tables + plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from attn_env.config import from_dict, read_config_yaml

    data = read_config_yaml("configs/scenarios/feed.yaml")
    runs = {
        kind: fd.simulate(from_dict(fd.CONFIG, {**data, "bidders": kind}))
        for kind in ("truthful", "learner")
    }
    for kind, res in runs.items():
        print(
            f"\n{kind} bidders ({res['sessions']:,} sessions in "
            f"{res['seconds']:.1f} s)\n"
        )
        extra = " | ad factor | promo factor" if kind == "learner" else ""
        print(
            "| model | mechanism | gamma | "
            + " | ".join(COLS)
            + " | welfare cost | revenue cost"
            + extra
            + " |"
        )
        print("|---" * (5 + len(COLS) + (2 if extra else 0)) + "|")
        for r in res["rows"]:
            cost = r.get("cost")
            cells = [_cell(r[k]) for k in COLS]
            cells += (
                [_cell(cost["welfare"]), _cell(cost["revenue"])] if cost else ["", ""]
            )
            if extra:
                cells += [f"{r['ad_factor']:.2f}", f"{r['promo_factor']:.2f}"]
            print(
                f"| {r['user_model']} | {r['mechanism']} | "
                f"{r['fairness_weight']:g} | " + " | ".join(cells) + " |"
            )
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    colors = {"attention": "C0", "cascade": "C1"}
    marks = {"fair_ranking": "-o", "fair_assignment": "--s"}
    res = runs["truthful"]
    for ax, metric, label in (
        (axes[0], "user_welfare", "user welfare per session"),
        (axes[1], "revenue", "revenue per session"),
    ):
        for model in res["config"]["user_models"]:
            for fair, base in fd.BASE.items():
                rows = [
                    r
                    for r in res["rows"]
                    if r["user_model"] == model and r["mechanism"] in (base, fair)
                ]
                rows.sort(key=lambda r: r["fairness_weight"])
                ax.errorbar(
                    [r["fairness_gap"]["mean"] for r in rows],
                    [r[metric]["mean"] for r in rows],
                    yerr=[r[metric]["se"] for r in rows],
                    fmt=marks[fair],
                    color=colors[model],
                    ms=4,
                    label=f"{base} -> {fair} ({model})",
                )
        ax.set_xscale("log")
        ax.set_xlabel("amortised exposure-merit gap (TV, log; left = fairer)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(
        "Fairness-welfare trade-off of a feed as gamma rises (truthful bidders)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    print(f"\nwrote {png}")
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--populations", type=int, default=4096)
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--table", metavar="PNG")
    args = parser.parse_args()
    if args.table:
        table(args.table)
        return
    res = {
        "load_average": os.getloadavg(),
        "sessions": args.populations * args.sessions,
        "sessions_per_s": scenario_rate(args.populations, args.sessions),
        "library_assignment_markets_per_s": library_assignment_rate(),
    }
    if args.json:
        print(json.dumps(res, indent=2))
        return
    print(f"load average {res['load_average']}")
    for name, rate in res["sessions_per_s"].items():
        print(f"sessions/s {name:>16}: {rate:,.0f}")
    print(
        "library assignment [B, 18, 5] markets/s: "
        f"{res['library_assignment_markets_per_s']:,.0f}"
    )


if __name__ == "__main__":
    main()
