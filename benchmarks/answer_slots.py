"""Throughput of the answer_slots scenario and the truthfulness check of its auctions.

1. Markets per second with truthful bidders: draw (shipped bank) + clear +
   metrics of ``B`` answers, for each mechanism of the scenario (4 ads, the
   organic answer as the platform's bidder, 3 answer positions), after one
   warm-up call; and the bare ``clear`` of each auction.
2. Truthfulness: on 1,000 random instances (4 advertisers, values U[0, 1],
   relevance U[0.2, 2], 3 positions, reserve 0.05) a best-response search over
   a grid of 45 deviations per advertiser (0 .. 2 x value, and 3x, 10x) finds
   the largest gain in *exact* expected utility over truthful bidding.

3. The PettingZoo env (``answer_env``): markets per second stepped through
   ``AnswerSlotsEnv`` by truthful advertisers (512 markets a step).

4. ``--frontier PNG``: the scenario (configs/scenarios/answer_slots.yaml) with
   truthful and with learning bidders, its table (markdown, to stdout) and the
   revenue-quality frontier plotted to ``PNG``; with ``--evaluation FILE`` (the
   JSON of ``attn-market evaluate ... --json``) the trained PPO policy's rows
   (held-out episodes) are tabled and drawn as a third curve per mechanism.

    python benchmarks/answer_slots.py [--markets 100000] [--json]
    python benchmarks/answer_slots.py --frontier docs/img/answer_slots_frontier.png \
        [--evaluation EVAL.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from attn_env import mechanisms
from attn_env.scenarios import answer_slots as sc

AUCTIONS = {
    "segment_auction": {},
    "prominence_auction": {"beta": 2.0},
}


def scenario_rate(markets: int, reps: int = 3) -> dict[str, float]:
    """Markets/s of draw + clear + metrics per mechanism (best of ``reps``)."""
    cfg = sc.AnswerSlotsConfig(markets=markets)
    src = sc.Source(cfg.n_segments)
    rng = np.random.default_rng(0)
    out = {}
    for name in sc.MECHANISMS:
        best = np.inf
        for _ in range(reps + 1):  # the first is a warm-up
            t0 = time.perf_counter()
            mk = src.draw(rng, markets, cfg)
            res = sc.clear(name, mk, mk.value, 0.2, cfg)
            (mk.value * res["x"]).sum(axis=1).mean()
            res["pay"].sum(axis=1).mean()
            best = min(best, time.perf_counter() - t0)
        out[name] = markets / best
    return out


def clear_rate(markets: int, reps: int = 3) -> dict[str, float]:
    """Markets/s of ``clear`` alone (5 bidders, 3 positions, relevance)."""
    rng = np.random.default_rng(1)
    bids = rng.random((markets, 5))
    q = rng.uniform(0.2, 2.0, (markets, 5))
    alpha = -np.sort(-rng.random((markets, 3)), axis=1)
    out = {}
    for name, params in AUCTIONS.items():
        m = mechanisms.make(name, **params)
        best = np.inf
        for _ in range(reps + 1):
            t0 = time.perf_counter()
            m.clear(bids, alpha, q, rng=rng)
            best = min(best, time.perf_counter() - t0)
        out[name] = markets / best
    return out


def env_rate(markets: int, reps: int = 3) -> float:
    """Markets/s stepped through the PettingZoo env by truthful advertisers."""
    from attn_env.scenarios.answer_env import AnswerSlotsEnv

    cfg = sc.AnswerSlotsConfig(env_markets=512, env_steps=100_000)
    env = AnswerSlotsEnv(cfg)
    steps = max(1, markets // cfg.env_markets)
    env.reset(seed=0, options={"mechanism": "segment_auction", "quality_weight": 0.2})
    acts = {a: np.zeros(1, dtype=np.float32) for a in env.agents}
    best = np.inf
    for _ in range(reps + 1):
        t0 = time.perf_counter()
        for _ in range(steps):
            env.step(acts)
        best = min(best, time.perf_counter() - t0)
    return steps * cfg.env_markets / best


def truthfulness(instances: int = 1000, seed: int = 11) -> dict[str, float]:
    """Largest expected gain over truthful bidding any grid deviation finds."""
    grid = np.concatenate([np.linspace(0.0, 2.0, 41), [0.999, 1.001, 3.0, 10.0]])
    out = {}
    for name, params in AUCTIONS.items():
        rng = np.random.default_rng(seed)
        m = mechanisms.make(name, reserve=0.05, **params)
        v = rng.random((instances, 4))
        q = rng.uniform(0.2, 2.0, (instances, 4))
        alpha = -np.sort(-rng.random((instances, 3)), axis=1)
        x, p, _ = m.expected(v, alpha, q)
        truthful = v * x - p
        gain = -np.inf
        for i in range(4):
            for f in grid:
                dev = v.copy()
                dev[:, i] = f * v[:, i]
                xd, pd, _ = m.expected(dev, alpha, q)
                gain = max(
                    gain, float((v[:, i] * xd[:, i] - pd[:, i] - truthful[:, i]).max())
                )
        out[name] = gain
        out[name + "_min_truthful_utility"] = float(truthful.min())
    return out


def policy_rows(evaluation: str | None) -> list[dict]:
    """The trained policy's rows of an ``attn-market evaluate --json`` file."""
    if evaluation is None:
        return []
    with open(evaluation, encoding="utf-8") as fh:
        data = json.load(fh)
    return [r for r in data["by_bidders"] if r["bidders"] == "policy"]


def frontier(png: str, evaluation: str | None = None) -> None:
    """Run the shipped config with truthful and learning bidders; table + plot
    (and the trained policy's curve from ``evaluation``, if given)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from attn_env.config import from_dict, read_config_yaml

    data = read_config_yaml("configs/scenarios/answer_slots.yaml")
    runs = {
        kind: sc.simulate(from_dict(sc.CONFIG, {**data, "bidders": kind}))
        for kind in ("truthful", "learner")
    }
    q0 = runs["truthful"]["organic_quality"]
    print(f"organic answer quality Q0 = {q0['mean']:.4f} +- {q0['se']:.4f}\n")
    cols = (
        "revenue",
        "advertiser_welfare",
        "quality",
        "quality_cost",
        "sponsored_share",
    )
    print("| bidders | mechanism | lambda | bid factor | " + " | ".join(cols) + " |")
    print("|---" * (4 + len(cols)) + "|")
    for kind, res in runs.items():
        for row in res["rows"]:
            cells = [f"{row[k]['mean']:.4f} ± {row[k]['se']:.4f}" for k in cols]
            print(
                f"| {kind} | {row['mechanism']} | {row['quality_weight']:g} | "
                f"{row['bid_factor']:.2f} | " + " | ".join(cells) + " |"
            )
    policy = policy_rows(evaluation)
    if policy:
        print(f"\nPPO policy (held-out episodes of {evaluation}):\n")
        pcols = ("bid_factor", "revenue", "advertiser_utility", "quality", "br_gain")
        print("| mechanism | lambda | " + " | ".join(pcols) + " |")
        print("|---" * (2 + len(pcols)) + "|")
        for row in policy:
            cells = [f"{row[k]['mean']:.4f} ± {row[k]['se']:.4f}" for k in pcols]
            print(
                f"| {row['mechanism']} | {row['quality_weight']:g} | "
                + " | ".join(cells)
                + " |"
            )
    fig, ax = plt.subplots(figsize=(8.4, 4.2))
    colors = {"segment_auction": "C0", "prominence_auction": "C1", "gsp": "C2"}
    for kind, style in (("truthful", "-o"), ("learner", "--x")):
        for name in sc.MECHANISMS:
            rows = [r for r in runs[kind]["rows"] if r["mechanism"] == name]
            ax.plot(
                [r["quality"]["mean"] for r in rows],
                [r["revenue"]["mean"] for r in rows],
                style,
                color=colors[name],
                label=f"{name} ({kind})",
                ms=4,
            )
    for name in sc.MECHANISMS:
        rows = [r for r in policy if r["mechanism"] == name]
        if rows:
            ax.plot(
                [r["quality"]["mean"] for r in rows],
                [r["revenue"]["mean"] for r in rows],
                ":s",
                color=colors[name],
                label=f"{name} (PPO policy)",
                ms=3,
            )
    ax.axvline(q0["mean"], color="grey", lw=0.8, ls=":", label="organic answer")
    ax.set_xlabel("answer quality (attention-weighted relevance cited)")
    ax.set_ylabel("revenue per answer")
    ax.set_title("Revenue-quality frontier across the quality weight")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    print(f"\nwrote {png}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markets", type=int, default=100_000)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--frontier", metavar="PNG")
    parser.add_argument("--evaluation", metavar="EVAL_JSON")
    args = parser.parse_args()
    if args.frontier:
        frontier(args.frontier, args.evaluation)
        return
    res = {
        "load_average": os.getloadavg(),
        "markets": args.markets,
        "scenario_markets_per_s": scenario_rate(args.markets),
        "clear_markets_per_s": clear_rate(args.markets),
        "env_markets_per_s": {"segment_auction": env_rate(args.markets)},
        "truthfulness_max_gain": truthfulness(),
    }
    if args.json:
        print(json.dumps(res, indent=2))
        return
    print(f"load average {res['load_average']}")
    for key in ("scenario_markets_per_s", "clear_markets_per_s", "env_markets_per_s"):
        for name, rate in res[key].items():
            print(f"{key:>24} {name:>20}: {rate:,.0f}")
    for name, gain in res["truthfulness_max_gain"].items():
        print(f"truthfulness {name:>40}: {gain:.3g}")


if __name__ == "__main__":
    main()
