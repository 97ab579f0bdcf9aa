"""Play days of a search market with seated auto-bidders and measure them.

The measures (docs/search_day.md, "Metrics"): each advertiser's AuctionNet
score, conversions, spend, budget use, realised CPA and whether it broke its
target; the market's revenue, welfare (value of the conversions) and
advertiser surplus; exposure fairness across verticals (the integrity
layer's Singh–Joachims ratios, with clicks per auction as exposure and mean
relevance as merit); and, with ``hindsight``, every advertiser's best fixed
multiplier on the realised day and an upper bound on any policy's score.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from attn_env.integrity.fairness import disparity, group_means
from attn_env.scenarios.autobidders import AutoBidder, make_bidder
from attn_env.scenarios.search_landscape import (
    dual_totals,
    grid_totals,
    hindsight_lambda,
    score_bound,
    slot_options,
)
from attn_env.scenarios.search_market import SearchMarket
from attn_env.scenarios.search_state import Day

__all__ = ["DayResult", "Policy", "play_day", "seat_kinds"]

Policy = Callable[[NDArray[np.float32]], NDArray[np.float64]]
"A learned bidder: observations ``[k, OBS_SIZE]`` -> multipliers ``[k]``."


@dataclass
class DayResult:
    """One day's outcome: per advertiser arrays ``[N]`` and market totals."""

    kinds: list[str]
    score: NDArray[np.float64]
    conversions: NDArray[np.float64]
    spend: NDArray[np.float64]
    value: NDArray[np.float64]
    budget: NDArray[np.float64]
    target_cpa: NDArray[np.float64]
    revenue: float
    welfare: float
    impressions: int
    seconds: float
    fairness: dict[str, float]
    hindsight_score: NDArray[np.float64] | None = None
    hindsight_lambda: NDArray[np.float64] | None = None
    score_bound: NDArray[np.float64] | None = None
    spend_by_period: NDArray[np.float64] | None = field(default=None, repr=False)

    @property
    def cpa(self) -> NDArray[np.float64]:
        """Realised cost per acquisition (``nan`` with no conversion)."""
        return np.divide(
            self.spend,
            self.conversions,
            out=np.full_like(self.spend, np.nan),
            where=self.conversions > 0,
        )

    @property
    def violated(self) -> NDArray[np.bool_]:
        """Advertisers whose realised CPA passed their target."""
        return np.nan_to_num(self.cpa, nan=0.0) > self.target_cpa * (1 + 1e-9)


def seat_kinds(
    bidders: dict[str, float], n: int, rng: np.random.Generator
) -> list[str]:
    """A kind per advertiser: ``round(share * n)`` of each (largest remainder),
    in a seeded order."""
    names = list(bidders)
    shares = np.array([bidders[k] for k in names], dtype=np.float64)
    exact = shares / shares.sum() * n
    counts = np.floor(exact).astype(int)
    counts[np.argsort(-(exact - counts), kind="stable")[: n - counts.sum()]] += 1
    kinds = [k for k, c in zip(names, counts, strict=True) for _ in range(c)]
    return [kinds[i] for i in rng.permutation(n)]


def play_day(
    market: SearchMarket,
    kinds: list[str],
    seed: int,
    policy: Policy | None = None,
    hindsight: bool = False,
) -> DayResult:
    """Play one day (traffic drawn from ``seed``) with a bidder kind per advertiser.

    Args:
        market: the market.
        kinds: one kind per advertiser (``truthful``, ``pacing``, ``pid``,
            ``onlinelp``, ``policy``).
        seed: seed of the day's traffic and tie-breaks.
        policy: the learned bidder, for kind ``policy``.
        hindsight: also compute the best fixed multiplier and the score bound.
    """
    t0 = time.perf_counter()
    groups: list[tuple[Any, NDArray[np.int64]]] = []
    for kind in dict.fromkeys(kinds):
        idx = np.array([i for i, k in enumerate(kinds) if k == kind], dtype=np.int64)
        groups.append((policy if kind == "policy" else make_bidder(kind), idx))
    if any(k == "policy" for k in kinds) and policy is None:
        raise ValueError("kind 'policy' needs a policy")
    need_landscape = hindsight or any(
        getattr(b, "needs_landscape", False) for b, _ in groups
    )
    # the cleared bids are kept only for the landscape (or what it publishes)
    day = Day(market, seed, keep_bids=need_landscape)
    for b, idx in groups:
        if isinstance(b, AutoBidder):
            b.reset(day, idx)
    n = market.n
    grids: list[tuple[NDArray, NDArray]] = []
    dual = None
    merit_sum, entries = np.zeros(n), np.zeros(n)
    auction = market.auction
    spend_rows = []
    while not day.done:
        obs = day.observe()
        lam = np.ones(n)
        for b, idx in groups:
            lam[idx] = b.act(day) if isinstance(b, AutoBidder) else b(obs[idx])
        lam = np.clip(lam, 0.0, market.config.lambda_max)
        queries = day.traffic[day.t]
        res = day.step(lam)
        spend_rows.append(res.spend)
        a, valid = auction.adv_idx[queries], auction.valid[queries]
        merit_sum += np.bincount(a[valid], auction.pages.relevance[queries][valid], n)
        entries += np.bincount(a[valid], minlength=n)
        if need_landscape:
            opts = slot_options(auction, queries, res.bids)
            day.landscape = grid_totals(auction, opts)
            grids.append(day.landscape)
            if hindsight:
                d = dual_totals(auction, opts)
                dual = d if dual is None else dual + d
        for b, _ in groups:
            if isinstance(b, AutoBidder):
                b.update(day)
    adv = market.advertisers
    out = DayResult(
        kinds=list(kinds),
        score=day.scores(),
        conversions=day.conversions.copy(),
        spend=day.spend.copy(),
        value=day.value.copy(),
        budget=adv.budget.copy(),
        target_cpa=adv.target_cpa.copy(),
        revenue=float(day.spend.sum()),
        welfare=float(day.value.sum()),
        impressions=int(sum(len(q) for q in day.traffic)),
        seconds=0.0,
        fairness=_vertical_fairness(
            market, day.clicks, day.auctions, merit_sum, entries
        ),
        spend_by_period=np.array(spend_rows),
    )
    if hindsight:
        spend_g = np.stack([g[0] for g in grids])
        conv_g = np.stack([g[1] for g in grids])
        out.hindsight_lambda, out.hindsight_score = hindsight_lambda(
            spend_g, conv_g, adv.budget, adv.target_cpa
        )
        out.score_bound = score_bound(dual, adv.budget, adv.target_cpa)
    out.seconds = time.perf_counter() - t0
    return out


def _vertical_fairness(
    market, clicks, auctions, merit_sum, entries
) -> dict[str, float]:
    """Singh–Joachims ratios across the advertisers' primary verticals."""
    index = {v: i for i, v in enumerate(market.verticals)}
    group = np.array([[index[v[0]] for v in market.advertisers.verticals]])
    exposure = np.divide(
        clicks, auctions, out=np.zeros_like(clicks), where=auctions > 0
    )
    merit = np.divide(
        merit_sum, entries, out=np.zeros_like(merit_sum), where=entries > 0
    )
    means = group_means(exposure[None, :], merit[None, :], group, len(index))
    return disparity(means)
