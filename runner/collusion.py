"""Algorithmic collusion: learning bidders in a repeated auction, many seeds at once.

:func:`run_collusion` plays a config's agents (typically two ``qlearn``
bidders, ``agents.qlearn``) in ``seeds`` independent markets stepped together:
market ``b`` is seed ``b``, a pair of learners that never meets another. Each
market learns for ``config.warmup`` rounds, then plays one measured episode of
``env.rounds`` rounds, as ``attn-market simulate`` does with the same config,
so the revenue here is simulate's ``revenue / rounds``. It returns per-seed
revenue with a 95% confidence interval over seeds, the rounds to convergence
of the learners' greedy policies and the path of the winning bid for plots.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

import attn_env
from attn_env.config import ExperimentConfig
from attn_env.estimates import Estimate
from attn_env.figures import new_figure, save_png
from attn_env.mechanisms import name_of
from attn_env.players import Seats
from runner.seats import build_agents

__all__ = ["confidence_interval", "plot_paths", "run_collusion"]


def confidence_interval(x: NDArray[np.float64], level: float = 0.95) -> dict:
    """Mean, standard error and Student-t interval of ``x`` (one value per seed)."""
    est = Estimate.mean(x)
    return {"mean": est.value, "se": est.se, "ci": list(est.interval(level))}


def run_collusion(
    config: ExperimentConfig,
    seeds: int | None = None,
    warmup: int | None = None,
    path_points: int = 200,
) -> dict[str, Any]:
    """Learn for ``warmup`` rounds in ``seeds`` markets, then measure one episode.

    Args:
        config: the experiment (env, agents by role or name, seed).
        seeds: independent markets (default ``config.episodes``).
        warmup: rounds of learning before the measured episode (default
            ``config.warmup``).
        path_points: blocks of rounds in the returned bid path.

    Returns:
        Plain data: ``revenue`` (per round, measured episode, mean over seeds),
        ``revenue_se``, ``revenue_ci95``, ``revenue_by_seed``, ``mean_bid`` by
        agent, ``rounds_to_convergence`` (median over seeds of the last round at
        which a learner's greedy bid changed; ``nan`` without learners),
        ``converged_share`` (seeds whose greedy bids held for the last 10% of
        the rounds),
        ``path`` (``round`` and the winning bid's ``mean``, ``q10``, ``q90`` over
        seeds per block), ``seconds`` and the case (``mechanism``, ``feedback``,
        ``seeds``, ``warmup``, ``rounds``, ``seed``).
    """
    seeds = config.episodes if seeds is None else int(seeds)
    warmup = config.warmup if warmup is None else int(warmup)
    if seeds < 1 or warmup < 0:
        raise ValueError(f"need seeds >= 1 and warmup >= 0, got {seeds}, {warmup}")
    start = time.perf_counter()
    env = attn_env.vector_env(seeds, config=config.env, action="absolute")
    players = build_agents(config, env.agents)
    n, rounds = env.spec.n_buyers, env.config.rounds
    seats = Seats([players[a] for a in env.agents], n)
    rng = np.random.default_rng([config.seed, 1])
    seats.reset(seeds, rng)
    obs, _ = env.reset(seed=config.seed)

    total = warmup + rounds
    block = max(1, math.ceil(total / path_points))
    path: list[NDArray[np.float64]] = []
    acc = np.zeros(seeds)
    revenue, bids = np.zeros(seeds), np.zeros((seeds, n))
    for t in range(total):
        if t == warmup:  # the measured episode starts afresh, as in simulate
            obs, _ = env.reset()
        obs, _, _, _, info = env.step(seats.act(obs, rng))
        seats.observe(info)
        bid = info["bid"][:, :n]
        acc += bid.max(axis=1)
        if (t + 1) % block == 0 or t + 1 == total:
            path.append(acc / ((t % block) + 1))
            acc = np.zeros(seeds)
        if t >= warmup:
            revenue += info["payment"][:, :n].sum(axis=1)
            bids += bid
    revenue /= rounds
    ci = confidence_interval(revenue)
    change = [p.last_change for p in players.values() if hasattr(p, "last_change")]
    converge = np.max(change, axis=0) if change else np.full(seeds, np.nan)
    wins = np.stack(path)
    ends = np.minimum(np.arange(1, len(path) + 1) * block, total)
    return {
        "mechanism": name_of(config.env.mechanism),
        "feedback": config.env.feedback,
        "seeds": seeds,
        "warmup": warmup,
        "rounds": rounds,
        "seed": config.seed,
        "revenue": ci["mean"],
        "revenue_se": ci["se"],
        "revenue_ci95": ci["ci"],
        "revenue_by_seed": revenue.tolist(),
        "mean_bid": dict(
            zip(env.agents[:n], (bids / rounds).mean(axis=0).tolist(), strict=True)
        ),
        "rounds_to_convergence": float(np.median(converge)),
        "converged_share": float(np.mean(converge < 0.9 * total)),
        "path": {
            "round": ends.tolist(),
            "mean": wins.mean(axis=1).tolist(),
            "q10": np.quantile(wins, 0.1, axis=1).tolist(),
            "q90": np.quantile(wins, 0.9, axis=1).tolist(),
        },
        "seconds": time.perf_counter() - start,
    }


def plot_paths(results: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Winning bid by round of each :func:`run_collusion` result, one panel per
    mechanism: the mean over seeds, and the band of their 10-90% quantiles."""
    mechanisms = list(dict.fromkeys(r["mechanism"] for r in results))
    fig, axes = new_figure(
        1, len(mechanisms), figsize=(5.0 * len(mechanisms), 3.8), squeeze=False
    )
    for ax, mechanism in zip(axes[0], mechanisms, strict=True):
        for r in results:
            if r["mechanism"] != mechanism:
                continue
            p = r["path"]
            (line,) = ax.plot(p["round"], p["mean"], label=r["feedback"])
            ax.fill_between(
                p["round"], p["q10"], p["q90"], color=line.get_color(), alpha=0.15
            )
        ax.axvline(r["warmup"], color="grey", lw=0.8, ls=":")
        ax.set_title(f"{mechanism}, {r['seeds']} seeds")
        ax.set_xlabel("round")
        ax.set_ylim(0.0, 1.05)
        ax.legend(title="feedback", loc="lower right")
    axes[0][0].set_ylabel("winning bid (value 1)")
    return save_png(fig, path)
