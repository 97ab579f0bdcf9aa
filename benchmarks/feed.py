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
    python benchmarks/feed.py --table docs/img/feed_tradeoff.png \
        [--learner-populations 64]
    python benchmarks/feed.py --diagnose

3. ``--diagnose``: why bandit learners shade where truthful bidding is
   dominant (the utility differences between bid levels against the noise of
   one session), and bandit against counterfactual feedback per rule.
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


def table(png: str, learner_populations: int | None = None) -> dict[str, Any]:
    """Run the shipped config with truthful and learning bidders; tables + plot.

    ``learner_populations``: run the learners on this many populations only
    (counterfactual feedback clears every agent's every level each session)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from attn_env.config import from_dict, read_config_yaml

    data = read_config_yaml("configs/scenarios/feed.yaml")
    fewer = {"populations": learner_populations} if learner_populations else {}
    runs = {
        "truthful": fd.simulate(from_dict(fd.CONFIG, {**data, "bidders": "truthful"})),
        "learner": fd.simulate(
            from_dict(fd.CONFIG, {**data, "bidders": "learner", **fewer})
        ),
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


def diagnose(populations: int = 64, sessions: int = 400) -> dict[str, Any]:
    """Why bandit learners shade under ``assignment``, and what fixes it.

    (a) Against truthful others, the per-session utility of each bid factor
    (``feed.deviations``, attention model): the gain of factor 1 over the
    next level down and over the lowest, the share of sessions where the
    factor changes anything, and the spread of one session's utility. (b) The
    learners' mean final factor per rule with ``feedback: bandit`` and
    ``feedback: counterfactual`` on the same sessions.
    """
    c = fd.validate(
        dataclasses.replace(
            fd.FeedConfig(),
            populations=populations,
            sessions=sessions,
            bidders="learner",
        )
    )
    feeds = fd.load(c)
    d = fd.draw(feeds, c)
    nc = c.n_creators
    levels = fd._agent_levels(c)
    util = []
    for s in range(sessions):
        q = d.query[s]
        r = feeds.rel[d.cat, q]
        value = d.theta * r
        dev = fd.deviations(
            "assignment",
            "attention",
            r,
            value,
            value,
            feeds.pos[q],
            d.budget[s],
            np.zeros((populations, nc)),
            c,
            levels,
        )
        util.append(np.where((r > 0)[:, :, None], dev, np.nan))
    u = np.array(util)  # [T, P, N, L]
    out: dict[str, Any] = {"noise": {}, "factors": []}
    for role, part in (("advertiser", u[:, :, nc:]), ("creator", u[:, :, :nc])):
        top, nxt, low = part[..., -1], part[..., -2], part[..., 0]
        out["noise"][role] = {
            "utility_mean": float(np.nanmean(top)),
            "utility_sd": float(np.nanstd(top)),
            "gain_over_next": float(np.nanmean(top - nxt)),
            "decisive_next": float(np.nanmean(np.abs(top - nxt) > 1e-12)),
            "gain_over_lowest": float(np.nanmean(top - low)),
            "decisive_lowest": float(np.nanmean(np.abs(top - low) > 1e-12)),
        }
    for rule in fd.MECHANISMS:
        gamma = 0.1 if rule in fd.BASE else 0.0
        row: dict[str, Any] = {"mechanism": rule, "fairness_weight": gamma}
        for fb in fd.FEEDBACK:
            cc = dataclasses.replace(c, feedback=fb)
            t0 = time.perf_counter()
            res = fd.run(
                feeds, d, cc, rule, gamma, "attention", np.random.default_rng(1)
            )
            row[fb] = {
                "ad_factor": _mean_se_of(res["ad_factor"].mean(axis=1)),
                "promo_factor": _mean_se_of(res["promo_factor"].mean(axis=1)),
                "seconds": time.perf_counter() - t0,
            }
        out["factors"].append(row)
    return out


def _mean_se_of(x: np.ndarray) -> dict[str, float]:
    return {"mean": float(x.mean()), "se": float(x.std(ddof=1) / np.sqrt(x.size))}


def print_diagnosis(res: dict[str, Any]) -> None:
    """The diagnosis as two markdown tables."""
    print(f"load average {os.getloadavg()}")
    print(
        "\n| agents | utility/session (sd) | gain of 1 over next level | "
        "sessions it decides | gain of 1 over lowest | sessions it decides |"
    )
    print("|---|---|---|---|---|---|")
    for role, n in res["noise"].items():
        print(
            f"| {role}s | {n['utility_mean']:.4f} ({n['utility_sd']:.4f}) | "
            f"{n['gain_over_next']:.5f} | {100 * n['decisive_next']:.1f} % | "
            f"{n['gain_over_lowest']:.5f} | {100 * n['decisive_lowest']:.1f} % |"
        )
    print(
        "\n| mechanism | gamma | ad factor, bandit | ad factor, counterfactual "
        "| promotion, bandit | promotion, counterfactual | seconds (b / cf) |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in res["factors"]:
        b, cf = r["bandit"], r["counterfactual"]
        print(
            f"| {r['mechanism']} | {r['fairness_weight']:g} | "
            f"{_cell(b['ad_factor'])} | {_cell(cf['ad_factor'])} | "
            f"{_cell(b['promo_factor'])} | {_cell(cf['promo_factor'])} | "
            f"{b['seconds']:.1f} / {cf['seconds']:.1f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--populations", type=int, default=4096)
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--table", metavar="PNG")
    parser.add_argument(
        "--learner-populations",
        type=int,
        metavar="N",
        help="with --table: the learners on N populations only",
    )
    parser.add_argument(
        "--diagnose",
        action="store_true",
        help="why bandit learners shade where truthful bidding is dominant",
    )
    args = parser.parse_args()
    if args.diagnose:
        res = diagnose()
        print(json.dumps(res, indent=2)) if args.json else print_diagnosis(res)
        return
    if args.table:
        table(args.table, args.learner_populations)
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
