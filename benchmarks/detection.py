"""Precision and recall of the manipulation detectors on labelled simulated traffic.

For each detector a labelled *training* set and a labelled *test* set of
markets are simulated from different seeds (the scenario of every market is
drawn at random from a grid: mechanism, number of bidders, honest strategy,
attack strength). The detector's threshold is the one with the best F1 on the
training set; the table reports precision and recall of that threshold on the
test set, with its size.

- shill: unit = a bidder in a market history (10 episodes of 5 rounds);
  positive = the seat a shill (``kind: shill``, margin 0.85-0.98) plays;
  negatives include honest bidders of markets with and without a shill, and
  the extra seat played honestly. Score: :func:`shill_scores`, its
  ``closeness`` tuned on the training set too (0.7, 0.8 or 0.9).
- ring: unit = a market history (50 rounds); positive = a ring of 2 or more
  buyers (``kind: ring``, cover 0 or 0.3; in first price the leader shades
  as the BNE among the rivals left); negatives are truthful, BNE or lightly
  shading markets. Score: :func:`collusion_index` against the rounds'
  Walrasian lower ends.
- fake traffic: unit = an ad in a market history (100 rounds); positive = an
  ad whose r bots inflate (boost 1.1-2). Scores: :func:`exposure_pvalues`
  (uniform values) and, where an attention bank is available,
  :func:`relevance_ks` against r drawn from the clean bank (attention values).

    python benchmarks/detection.py [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from attn_env import metrics
from attn_env.config import ExperimentConfig, from_dict
from attn_env.integrity.detect import (
    collusion_index,
    exposure_pvalues,
    precision_recall,
    relevance_ks,
    shill_scores,
)
from runner.attacks import record

Units = tuple[np.ndarray, np.ndarray]  # scores, labels


def _config(env: dict[str, Any], agents: dict[str, Any], seed: int) -> ExperimentConfig:
    return from_dict(ExperimentConfig, {"seed": seed, "env": env, "agents": agents})


def shill_set(
    rng: np.random.Generator, scenarios: int, markets: int, closeness: float
) -> Units:
    """Bidders' shill scores and labels (the shill's seat is positive)."""
    scores, labels = [], []
    for _ in range(scenarios):
        mech = str(rng.choice(["second_price", "gsp"]))
        n = int(rng.integers(2, 5))  # honest bidders; seat n is the extra one
        honest = [
            {"kind": "truthful"},
            {"kind": "shading", "params": {"shade": 0.8}},
            {"kind": "zi_c"},
        ][int(rng.integers(3))]
        shill = bool(rng.random() < 0.5)
        extra = (
            {"kind": "shill", "params": {"margin": float(rng.uniform(0.85, 0.98))}}
            if shill
            else honest
        )
        env = {
            "mechanism": mech,
            "n_buyers": n + 1,
            "n_slots": 2 if mech == "gsp" else 1,
            "rounds": 5,
            "redraw": "episode",
        }
        cfg = _config(
            env, {"buyer": honest, f"buyer_{n}": extra}, int(rng.integers(2**31))
        )
        rec = record(cfg, markets, episodes=10)
        s = shill_scores(rec["bid"], rec["payment"], rec["alloc"], closeness)
        lab = np.zeros_like(s, dtype=bool)
        lab[:, n] = shill
        scores.append(s.ravel())
        labels.append(lab.ravel())
    return np.concatenate(scores), np.concatenate(labels)


def ring_set(rng: np.random.Generator, scenarios: int, markets: int) -> Units:
    """Markets' collusion indices and labels (a ring is positive)."""
    scores, labels = [], []
    for _ in range(scenarios):
        mech = str(rng.choice(["second_price", "first_price", "gsp"]))
        n = int(rng.integers(3, 6))
        honest = [
            {"kind": "truthful"},
            {"kind": "bne"},
            {"kind": "shading", "params": {"shade": 0.95}},
        ][int(rng.integers(3))]
        if mech != "second_price" and honest["kind"] == "truthful":
            honest = {"kind": "bne"}
        ring = bool(rng.random() < 0.5)
        agents: dict[str, Any] = {"buyer": honest}
        if ring:
            size = int(rng.integers(2, n))
            cover = float(rng.choice([0.0, 0.3]))
            members = rng.permutation(n)[:size]
            # the leader bids as one bidder among n - size + 1 would
            rivals = n - size + 1
            shade = (rivals - 1) / rivals if honest["kind"] == "bne" else 1.0
            for k, i in enumerate(members):
                agents[f"buyer_{i}"] = {
                    "kind": "ring",
                    "params": {"leader": k == 0, "cover": cover, "shade": shade},
                }
        env = {
            "mechanism": mech,
            "n_buyers": n,
            "n_slots": 2 if mech == "gsp" else 1,
            "rounds": 50,
        }
        if honest["kind"] == "bne" and mech == "gsp":
            env["mechanism"] = "first_price"
            env["n_slots"] = 1
        rec = record(_config(env, agents, int(rng.integers(2**31))), markets, 1)
        n_b = rec["n_buyers"]
        values, alpha = rec["value"][..., :n_b], rec["alpha"]
        low = metrics.walrasian_interval(
            values.reshape(-1, n_b), alpha=alpha.reshape(-1, alpha.shape[-1])
        )[0].reshape(values.shape[:2])
        idx = [
            collusion_index(rec["clearing_price"][b], low[b]) for b in range(markets)
        ]
        scores.append(np.nan_to_num(np.array(idx), nan=0.0))
        labels.append(np.full(markets, ring))
    return np.concatenate(scores), np.concatenate(labels)


def fake_set(
    rng: np.random.Generator,
    scenarios: int,
    markets: int,
    valuation: str,
    score: Callable[[dict[str, Any], int], np.ndarray],
) -> Units:
    """Ads' fake-traffic scores and labels (targeted ads are positive)."""
    scores, labels = [], []
    for _ in range(scenarios):
        mech = str(rng.choice(["second_price", "gsp"]))
        n = int(rng.integers(3, 7))
        k = int(rng.integers(0, 3))
        ads = sorted(int(a) for a in rng.permutation(n)[:k])
        env: dict[str, Any] = {
            "mechanism": mech,
            "n_buyers": n,
            "n_slots": 2 if mech == "gsp" else 1,
            "valuation": valuation,
        }
        if ads:
            boost = float(rng.choice([1.1, 1.25, 1.5, 2.0]))
            env["valuation_params"] = {"fake_traffic": {"ads": ads, "boost": boost}}
        rec = record(_config(env, {}, int(rng.integers(2**31))), markets, 100)
        lab = np.zeros((markets, n), dtype=bool)
        lab[:, ads] = True
        scores.append(np.stack([score(rec, b) for b in range(markets)]).ravel())
        labels.append(lab.ravel())
    return np.concatenate(scores), np.concatenate(labels)


def exposure_score(rec: dict[str, Any], b: int) -> np.ndarray:
    """``-log10`` of the exposure p-values of market ``b``'s ads."""
    p = exposure_pvalues(rec["alloc"][b, :, : rec["n_buyers"]])
    return -np.log10(np.maximum(p, 1e-300))


def ks_score(reference: np.ndarray) -> Callable[[dict[str, Any], int], np.ndarray]:
    """``-log10`` of the KS p-values of market ``b``'s ads against ``reference``."""

    def score(rec: dict[str, Any], b: int) -> np.ndarray:
        p = relevance_ks(rec["relevance"][b], reference)
        return -np.log10(np.maximum(p, 1e-300))

    return score


def clean_relevance(samples: int, seed: int) -> np.ndarray | None:
    """r drawn from the clean attention bank, or ``None`` where none can be had."""
    from attn_env.valuations import make_source

    try:
        source = make_source("attention", build="never")
    except (FileNotFoundError, OSError, ValueError) as err:
        print(f"relevance KS skipped: {err}", file=sys.stderr)
        return None
    d = source.draw(np.random.default_rng(seed), samples, 1, 1)
    return d.relevance.ravel()


def evaluate(
    name: str,
    make: Callable[[np.random.Generator, Any], Units],
    seed: int,
    params: tuple[Any, ...] = (None,),
) -> dict[str, Any]:
    """Tune the threshold (and the detector's ``params``) on the training set,
    report the test set; the two sets come from different seeds."""
    t0 = time.perf_counter()

    def best_on(units: Units) -> tuple[float, float]:
        grid = np.unique(units[0])
        f1 = [precision_recall(units[1], units[0] >= t)["f1"] for t in grid]
        return float(max(f1)), float(grid[int(np.argmax(f1))])

    tuned = {p: best_on(make(np.random.default_rng([seed, 0]), p)) for p in params}
    param = max(params, key=lambda p: tuned[p][0])
    threshold = tuned[param][1]
    test = make(np.random.default_rng([seed, 1]), param)
    pr = precision_recall(test[1], test[0] >= threshold)
    return {
        "detector": name,
        "param": param,
        "threshold": threshold,
        "test_units": int(test[1].size),
        "test_positives": int(test[1].sum()),
        **pr,
        "seconds": round(time.perf_counter() - t0, 1),
    }


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sets (smoke test)")
    ap.add_argument("--json", action="store_true", help="print JSON rows")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    sc, mk = (4, 4) if args.quick else (24, 16)
    rows = [
        evaluate(
            "shill (shill_scores)",
            lambda g, c: shill_set(g, sc, mk, c),
            args.seed,
            params=(0.7, 0.8, 0.9),
        ),
        evaluate("ring (collusion_index)", lambda g, _: ring_set(g, sc, mk), args.seed),
        evaluate(
            "fake traffic (exposure_pvalues)",
            lambda g, _: fake_set(g, sc, mk, "uniform", exposure_score),
            args.seed,
        ),
    ]
    reference = clean_relevance(20_000, args.seed)
    if reference is not None:
        rows.append(
            evaluate(
                "fake traffic (relevance_ks)",
                lambda g, _: fake_set(g, sc, mk, "attention", ks_score(reference)),
                args.seed,
            )
        )
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(
            "| detector | closeness, threshold (train) | test units (positive) "
            "| precision | recall | F1 |\n|---|---|---|---|---|---|"
        )
        for r in rows:
            tuned = f"{r['threshold']:.3g}"
            if r["param"] is not None:
                tuned = f"{r['param']}, {tuned}"
            print(
                f"| {r['detector']} | {tuned} | {r['test_units']} "
                f"({r['test_positives']}) | {_f(r['precision'])} | "
                f"{_f(r['recall'])} | {_f(r['f1'])} |"
            )
    return rows


def _f(x: float) -> str:
    return "nan" if not math.isfinite(x) else f"{x:.3f}"


if __name__ == "__main__":
    main()
