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

import dataclasses
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from attn_env.config import ExperimentConfig, make_config
from attn_env.core import MarketSpec
from attn_env.errors import UserError
from attn_env.estimates import Estimate
from attn_env.figures import new_figure, save_png
from attn_env.mechanisms import name_of
from runner.seats import build_agents
from runner.simulate import play_log

__all__ = [
    "CollusionRecorder",
    "collusion_recorder",
    "confidence_interval",
    "plot_paths",
    "run_collusion",
]


def confidence_interval(x: NDArray[np.float64], level: float = 0.95) -> dict:
    """Mean, standard error and Student-t interval of ``x`` (one value per seed)."""
    est = Estimate.mean(x)
    return {"mean": est.value, "se": est.se, "ci": list(est.interval(level))}


class CollusionRecorder:
    """The bid path and per-seed revenue of one batch of learning markets.

    A :class:`runner.simulate.Recorder` with a ``warmup_round`` hook: it sees
    every round, warmup included, of a :func:`runner.simulate.play_log` whose
    one batch holds every seed (``num_envs == episodes``).

    Args:
        players: the agents by name (convergence reads the ``qlearn`` ones'
            ``last_change``).
        warmup: rounds of learning before the measured episode.
        rounds: rounds of the measured episode.
        path_points: blocks of rounds in the returned bid path.
    """

    def __init__(
        self, players: dict[str, Any], warmup: int, rounds: int, path_points: int = 200
    ) -> None:
        self.players, self.warmup, self.rounds = players, warmup, rounds
        self.total = warmup + rounds
        self.block = max(1, math.ceil(self.total / path_points))
        self.path: list[NDArray[np.float64]] = []
        self.t = 0

    def start(self, env: Any) -> None:
        self.n, self.seeds = env.spec.n_buyers, env.num_envs
        self.agents = list(env.agents[: self.n])
        self.acc = np.zeros(self.seeds)
        self.revenue = np.zeros(self.seeds)
        self.bids = np.zeros((self.seeds, self.n))

    def warmup_round(self, info: Mapping[str, Any]) -> None:
        bid = info["bid"][:, : self.n]
        self.acc += bid.max(axis=1)
        self.t += 1
        if self.t % self.block == 0 or self.t == self.total:
            self.path.append(self.acc / (((self.t - 1) % self.block) + 1))
            self.acc = np.zeros(self.seeds)

    def add_round(self, info: Mapping[str, Any]) -> None:
        self.warmup_round(info)
        self.revenue += info["payment"][:, : self.n].sum(axis=1)
        self.bids += info["bid"][:, : self.n]

    def end_batch(self, keep: int) -> None:
        """One batch holds every seed: nothing to do."""

    def result(self) -> dict[str, Any]:
        """Revenue with its interval over seeds, convergence, mean bids, path."""
        revenue = self.revenue / self.rounds
        ci = confidence_interval(revenue)
        change = [
            p.last_change for p in self.players.values() if hasattr(p, "last_change")
        ]
        converge = np.max(change, axis=0) if change else np.full(self.seeds, np.nan)
        wins = np.stack(self.path)
        ends = np.minimum(np.arange(1, len(self.path) + 1) * self.block, self.total)
        mean_bid = (self.bids / self.rounds).mean(axis=0).tolist()
        return {
            "revenue": ci["mean"],
            "revenue_se": ci["se"],
            "revenue_ci95": ci["ci"],
            "revenue_by_seed": revenue.tolist(),
            "mean_bid": dict(zip(self.agents, mean_bid, strict=True)),
            "rounds_to_convergence": float(np.median(converge)),
            "converged_share": float(np.mean(converge < 0.9 * self.total)),
            "path": {
                "round": ends.tolist(),
                "mean": wins.mean(axis=1).tolist(),
                "q10": np.quantile(wins, 0.1, axis=1).tolist(),
                "q90": np.quantile(wins, 0.9, axis=1).tolist(),
            },
        }


def collusion_recorder(
    config: ExperimentConfig, path_points: int = 200
) -> tuple[CollusionRecorder, dict[str, Any]]:
    """A :class:`CollusionRecorder` for ``config`` and the agents it watches.

    Play ``config`` with ``play_log(config, agents, num_envs=config.episodes,
    recorders=[recorder, ...])``: the one batch holds every seed.
    """
    names = MarketSpec.from_config(make_config(config.env)).agents
    players = build_agents(config, names)
    recorder = CollusionRecorder(players, config.warmup, config.env.rounds, path_points)
    return recorder, players


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
        raise UserError(f"need seeds >= 1 and warmup >= 0, got {seeds}, {warmup}")
    start = time.perf_counter()
    config = dataclasses.replace(config, episodes=seeds, warmup=warmup)
    recorder, players = collusion_recorder(config, path_points)
    play_log(config, players, progress=False, num_envs=seeds, recorders=[recorder])
    return {
        "mechanism": name_of(config.env.mechanism),
        "feedback": config.env.feedback,
        "seeds": seeds,
        "warmup": warmup,
        "rounds": config.env.rounds,
        "seed": config.seed,
        **recorder.result(),
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
