"""Play the compute market's env with a policy, the hill climber or truth.

:func:`play` runs ``populations`` populations of
:class:`attn_env.scenarios.compute_env.ComputeBooks` for ``periods`` periods
from one seed, every trader shading by one *bidder*:

- ``"truthful"``: shading 0 (the efficient benchmark under ``uniform``);
- ``"hill"``: the scenario's hill-climbing learner (``compute_market._learn``
  on that period's counterfactual clears, from ``shade_init``);
- a policy (observations ``[m, 8]`` -> actions ``[m, 1]``, the env's: shading
  ``shade_max / (1 + exp(-a))``), e.g. a trained
  PPO policy (:func:`training.scenario_ppo.load_shared_policy`).

Each population's figures are its means over the last ``report_last``
periods, as ``simulate`` reports them; one seed draws the same random
numbers whatever the bidder (common random numbers: the same capacities and
candidate jobs), so results of bidders on one seed are paired by population.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from attn_env.scenarios.compute_env import (
    ACTION_MAX,
    ComputeBooks,
    check_actions,
    shading_of,
)
from attn_env.scenarios.compute_market import ComputeMarketConfig, _learn, _variants

__all__ = ["BIDDERS", "MEASURES", "deviation_gain", "play", "with_periods"]

BIDDERS = ("truthful", "hill")
"The built-in bidders (besides a policy)."

MEASURES = (
    "efficiency",
    "abs_price_gap",
    "price_gap",
    "volume_ratio",
    "buyer_share",
    "seller_share",
    "budget_share",
)
"Per-market measures each population averages (compute_market._measures)."

Bidder = str | Callable[[NDArray[np.float32]], NDArray[np.float32]]


def play(
    c: ComputeMarketConfig,
    bidder: Bidder,
    seed: int,
    populations: int,
    on_period: Callable[[ComputeBooks, NDArray[np.float64], Any], None] | None = None,
    grid: NDArray[np.float64] | None = None,
    unit: bool = False,
) -> dict[str, Any]:
    """Play ``populations`` populations of ``c`` with ``bidder`` from ``seed``.

    Args:
        on_period: called after each period with ``(books, shading [P, N],
            the step's Period)``; the audit checks invariants there.
        grid: if given, every period each trader's utility at every shading
            of ``grid`` (the others held) is measured on the period's books
            before the step; ``br_gain`` is the gain of each trader's best
            *fixed* deviation over the last ``report_last`` periods (mean over
            traders, reward units, >= 0; ``buyer_br_gain`` /
            ``seller_br_gain`` by side). A fixed shading, chosen after the
            fact over many periods, is a strategy a trader could commit to;
            the best shading of each single period is not (it would need the
            period's books in advance).
        unit: the unit-demand market (:class:`ComputeBooks`) instead.

    Returns:
        ``{"per_population": {measure: float64 [P]}, "curves": {measure:
        [per period]}}``; measures are :data:`MEASURES`, ``utility`` (mean
        over traders, in reward units), ``buyer_shading``, ``seller_shading``
        and ``served_value_share`` (of the value that arrived).
    """
    books = ComputeBooks(c, populations, unit=unit)
    books.reset(np.random.default_rng(seed))
    n, N = c.n_buyers, books.N
    names = [f"buyer_{i}" for i in range(n)] + [
        f"seller_{j}" for j in range(c.n_sellers)
    ]
    shade = np.full((populations, N), c.shade_init if bidder == "hill" else 0.0)
    scale = books.reward_scale()
    hist: dict[str, list[NDArray[np.float64]]] = {}
    deviations: list[NDArray[np.float64]] = []  # [P, N, G] per period
    while not books.done:
        new = shade
        if bidder == "hill":
            util = books.utilities(_variants(shade, c.shade_step, c.shade_max))
            new = _learn(shade, util, c.shade_step, c.shade_max)
        elif callable(bidder):
            obs = books.observe().reshape(populations * N, -1)
            act = np.asarray(bidder(obs), dtype=np.float64).reshape(populations, N)
            act = check_actions(
                np.clip(act, -ACTION_MAX, ACTION_MAX), shade.shape, names
            )
            shade = shading_of(act, c.shade_max)
        elif bidder != "truthful":
            raise ValueError(f"unknown bidder {bidder!r}; known: {', '.join(BIDDERS)}")
        if grid is not None:
            deviations.append(deviation_gain(books, shade, grid) / scale)
        period = books.step(shade)
        if on_period is not None:
            on_period(books, shade, period)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            for key in MEASURES:
                hist.setdefault(key, []).append(
                    np.nanmean(period.measures[key], axis=1)
                )
        hist.setdefault("utility", []).append(period.utility.mean(axis=1) / scale)
        hist.setdefault("buyer_shading", []).append(shade[:, :n].mean(axis=1))
        hist.setdefault("seller_shading", []).append(shade[:, n:].mean(axis=1))
        shade = new
    last = min(c.report_last, c.periods)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        per_pop = {k: np.nanmean(np.stack(v)[-last:], axis=0) for k, v in hist.items()}
        curves = {
            k: [
                float(x) if np.isfinite(x) else None
                for x in np.nanmean(np.stack(v), axis=1)
            ]
            for k, v in hist.items()
        }
    if grid is not None:
        gain = np.maximum(np.mean(deviations[-last:], axis=0).max(axis=2), 0.0)
        per_pop["br_gain"] = gain.mean(axis=1)
        per_pop["buyer_br_gain"] = gain[:, :n].mean(axis=1)
        per_pop["seller_br_gain"] = gain[:, n:].mean(axis=1)
    some = books.arrived > 0
    if not unit:
        per_pop["served_value_share"] = np.where(
            some, books.served / np.where(some, books.arrived, 1.0), np.nan
        )
    return {"per_population": per_pop, "curves": curves}


def deviation_gain(
    books: ComputeBooks, shade: NDArray[np.float64], grid: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Each trader's gain ``[P, N, G]`` (value units; < 0: a loss) from shading
    ``grid[g]`` instead of its own on this period's books, every other trader
    keeping ``shade [P, N]``."""
    P, N = shade.shape
    G = len(grid)
    rows = np.repeat(shade[:, None, :], 1 + N * G, axis=1)
    t = np.repeat(np.arange(N), G)
    rows[:, 1 + np.arange(N * G), t] = np.tile(grid, N)
    util = books.utilities(rows)  # [P, 1 + N G, N]
    stay = util[:, 0, :]
    dev = util[:, 1 + np.arange(N * G), t].reshape(P, N, G)
    return dev - stay[:, :, None]


def with_periods(c: ComputeMarketConfig, periods: int) -> ComputeMarketConfig:
    """``c`` cut to ``periods`` periods (``report_last`` cut with it)."""
    return dataclasses.replace(
        c, periods=periods, report_last=min(c.report_last, periods)
    )
