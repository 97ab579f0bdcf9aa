"""Speed of a search day, and the batched clearing against one auction per call.

Plays full days of ``configs/scenarios/search_day.yaml`` (500,000 impressions,
48 advertisers, 4 slots, GSP) with each baseline bidder kind, and times one
GSP auction per Python call on the same traffic for the ratio. Prints the load
average before and after: figures measured under load say so.

    python benchmarks/search_day.py [--days 3] [--loop 5000] [--json]
    python benchmarks/search_day.py --calibration   # CTR per slot
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time

import numpy as np

from attn_env.scenarios.search_config import load
from attn_env.scenarios.search_market import build_market
from attn_env.scenarios.search_play import play_day
from attn_env.scenarios.search_state import Day


def _one_per_call(market, n_impressions: int) -> float:
    """Impressions/s of clearing each impression in its own mechanism call."""
    day = Day(market, seed=0)
    queries = np.concatenate(day.traffic)[:n_impressions]
    auc = market.auction
    lam = np.ones(market.n)
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for q in queries:
        a = auc.adv_idx[q]
        bids = np.where(auc.valid[q], lam[a] * auc.click_value[q], 0.0)
        auc.mech.clear(
            bids[None],
            weights=auc.pages.pos[q][None],
            quality=auc.quality[q][None],
            rng=rng,
        )
    return len(queries) / (time.perf_counter() - t0)


def calibration(market) -> None:
    """Click-through rate per slot on one period of the market, bidders at
    ``lambda = T / V`` (PID's first bids)."""
    day = Day(market, seed=1)
    auc = market.auction
    q = day.traffic[len(day.traffic) // 2]
    adv = market.advertisers
    lam = adv.target_cpa / adv.value
    a = auc.adv_idx[q]
    bids = np.where(auc.valid[q], lam[a] * auc.click_value[q], 0.0)
    out = auc.mech.clear(
        bids,
        weights=market.pages.pos[q],
        quality=auc.quality[q],
        rng=np.random.default_rng(0),
    )
    won = out.slot >= 0
    clicks = auc.click_prob(
        out.slot, won, market.pages.relevance[q], market.pages.pos[q]
    )
    for k in range(market.config.auction.slots):
        c = clicks[out.slot == k]
        print(
            f"slot {k + 1}: CTR {c.mean():.2%} (p10 {np.percentile(c, 10):.2%}, "
            f"p90 {np.percentile(c, 90):.2%}); position factor "
            f"{market.pages.pos[:, k].mean():.2f}"
        )
    print(
        f"entrants per auction {auc.valid[q].sum(axis=1).mean():.1f} "
        f"(at most {auc.valid.shape[1]})"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/scenarios/search_day.yaml")
    ap.add_argument("--days", type=int, default=3)
    ap.add_argument(
        "--loop", type=int, default=5000, help="impressions timed one per call"
    )
    ap.add_argument("--json", action="store_true")
    ap.add_argument(
        "--calibration", action="store_true", help="CTR per slot, then stop"
    )
    args = ap.parse_args()
    load_before = os.getloadavg()[0]
    config = load(args.config)
    t0 = time.perf_counter()
    market = build_market(config)
    setup = time.perf_counter() - t0
    if args.calibration:
        calibration(market)
        return
    rows = []
    for kind in ("truthful", "pacing", "pid", "onlinelp"):
        cfg = dataclasses.replace(config, bidders={kind: 1.0})
        m = dataclasses.replace(market, config=cfg)
        secs = [play_day(m, [kind] * m.n, seed=d).seconds for d in range(args.days)]
        rows.append(
            {
                "bidders": kind,
                "seconds_per_day_min": min(secs),
                "seconds_per_day_median": float(np.median(secs)),
                "impressions_per_s": config.traffic.impressions
                / float(np.median(secs)),
            }
        )
    per_call = _one_per_call(market, args.loop)
    batched = next(r for r in rows if r["bidders"] == "pid")["impressions_per_s"]
    out = {
        "impressions_per_day": config.traffic.impressions,
        "advertisers": market.n,
        "slots": config.auction.slots,
        "entrants_per_auction_max": int(market.pages.eligible.shape[1]),
        "setup_seconds": setup,
        "days": rows,
        "one_auction_per_call_impressions_per_s": per_call,
        "batched_over_per_call": batched / per_call,
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
    }
    if args.json:
        print(json.dumps(out))
        return
    print(
        f"market setup {setup:.2f} s; {market.n} advertisers, "
        f"{config.traffic.impressions:,} impressions, {config.auction.slots} slots"
    )
    for r in rows:
        print(
            f"  {r['bidders']:9s} {r['seconds_per_day_median']:6.2f} s/day "
            f"(min {r['seconds_per_day_min']:.2f})  {r['impressions_per_s']:>10,.0f} imp/s"
        )
    print(
        f"one auction per call: {per_call:,.0f} imp/s; batched PID day is "
        f"{out['batched_over_per_call']:.0f}x faster"
    )
    print(f"load average {load_before:.2f} before, {out['load_after']:.2f} after")


if __name__ == "__main__":
    main()
