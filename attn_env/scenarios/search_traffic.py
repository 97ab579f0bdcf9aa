"""A day of traffic: which query each impression is, and in which period.

Query popularity is Zipf over a seeded rank order of the queries
(``p_q ∝ 1 / rank_q ** zipf``); the day's impressions are split over T periods
by a diurnal curve ``w_t ∝ 1 + a cos(2 pi (t / T - peak))`` (largest-remainder
rounding, so the counts sum to the day's total exactly).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from attn_env.scenarios.search_config import TrafficConfig

__all__ = ["diurnal_shares", "draw_day", "zipf_popularity"]


def zipf_popularity(
    n_queries: int, exponent: float, rng: np.random.Generator
) -> NDArray:
    """``p [Q]``: Zipf popularity over a seeded rank order of the queries."""
    ranks = rng.permutation(n_queries) + 1
    w = ranks.astype(np.float64) ** -exponent
    return w / w.sum()


def diurnal_shares(cfg: TrafficConfig) -> NDArray[np.float64]:
    """``w [T]``: each period's share of the day's impressions (sums to 1)."""
    t = (np.arange(cfg.periods) + 0.5) / cfg.periods
    w = 1.0 + cfg.diurnal_amplitude * np.cos(2 * np.pi * (t - cfg.diurnal_peak))
    return w / w.sum()


def period_counts(cfg: TrafficConfig) -> NDArray[np.int64]:
    """Impressions per period ``[T]`` (largest remainder; sums to ``impressions``)."""
    exact = diurnal_shares(cfg) * cfg.impressions
    counts = np.floor(exact).astype(np.int64)
    short = cfg.impressions - int(counts.sum())
    counts[np.argsort(-(exact - counts), kind="stable")[:short]] += 1
    return counts


def draw_day(
    cfg: TrafficConfig, popularity: NDArray, rng: np.random.Generator
) -> list[NDArray[np.int64]]:
    """The query (bank row) of every impression, one array per period."""
    counts = period_counts(cfg)
    queries = rng.choice(len(popularity), size=int(counts.sum()), p=popularity)
    return np.split(queries, np.cumsum(counts)[:-1])
