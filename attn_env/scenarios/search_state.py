"""One day of a search market: its traffic, the advertisers' running totals, and
what each advertiser observes between periods.

Observation of advertiser a before period t (``float32 [13]``, all scaled to
order 1; docs/search_day.md, "Observation"):

====  ===========================================================
0     time left, ``1 - t / T``
1     next period's expected traffic relative to the mean (public curve)
2     budget left / budget
3     spend so far / budget
4     conversions so far / target conversions (budget / target CPA)
5     realised CPA / target CPA (0 before the first conversion; at most 5)
6     last period's win rate (slots won / auctions entered)
7     last period's cost per click / (V * cvr) (at most 5)
8     published: last period's mean top-slot price per click / (V * cvr)
9     published (``landscape``): median multiplier that would have won the
      top slot of a's last-period auctions / lambda_max (at most 1)
10    log(V / value_median)
11    target CPA / V
12    last multiplier / lambda_max
====  ===========================================================

Entries 8 and 9 are 0 unless ``publish`` is ``price`` (8) or ``landscape``
(8 and 9). Reward of a period: its conversions / target conversions; the last
period adds ``(score - conversions) / target conversions``, so an episode's
return is the AuctionNet score in units of target conversions.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from attn_env.scenarios.search_auction import PeriodResult
from attn_env.scenarios.search_market import SearchMarket
from attn_env.scenarios.search_traffic import draw_day

__all__ = ["OBS_SIZE", "Day", "auctionnet_score"]

OBS_SIZE = 13


def auctionnet_score(
    conversions: NDArray, spend: NDArray, target_cpa: NDArray
) -> NDArray[np.float64]:
    """``conversions * min(1, (target CPA / realised CPA) ** 2)`` (0 with none)."""
    conv = np.asarray(conversions, dtype=np.float64)
    cpa = np.divide(spend, conv, out=np.zeros_like(conv), where=conv > 0)
    ratio = np.divide(target_cpa, cpa, out=np.ones_like(conv), where=cpa > 0)
    return conv * np.minimum(1.0, ratio**2)


class Day:
    """A day of ``market`` drawn from ``seed``; ``step(lam)`` plays one period."""

    def __init__(
        self, market: SearchMarket, seed: int, keep_bids: bool = False
    ) -> None:
        self.market = market
        rng = np.random.default_rng([seed, 0xDA7])
        self.traffic = draw_day(market.config.traffic, market.popularity, rng)
        self.rng = rng
        self.keep_bids = keep_bids or market.config.publish == "landscape"
        n = market.n
        self.t = 0
        self.periods = len(self.traffic)
        adv = market.advertisers
        self.budget_left = adv.budget.copy()
        self.alive = np.ones(n, dtype=bool)
        z = np.zeros
        self.spend, self.conversions, self.clicks = z(n), z(n), z(n)
        self.value, self.wins, self.auctions = z(n), z(n), z(n)
        self.last_lam = np.ones(n)
        self.last_win_rate, self.last_cpc = z(n), z(n)
        self.published_price = 0.0
        self.published_lambda = z(n)
        self.history: list[PeriodResult] = []
        self.landscape: tuple[NDArray, NDArray] | None = None
        "Spend and conversions [N, G] at each multiplier in the last period."
        self.lam_history: list[NDArray[np.float64]] = []

    @property
    def done(self) -> bool:
        """All periods played."""
        return self.t >= self.periods

    @property
    def target_conversions(self) -> NDArray[np.float64]:
        """Budget / target CPA: the reward unit of each advertiser."""
        adv = self.market.advertisers
        return adv.budget / adv.target_cpa

    def step(self, lam: NDArray[np.float64]) -> PeriodResult:
        """Play period ``t`` with multipliers ``lam [N]`` (checked by the caller)."""
        lam = np.asarray(lam, dtype=np.float64)
        m = self.market
        res = m.auction.clear(
            self.traffic[self.t],
            lam,
            self.budget_left,
            self.alive,
            self.rng,
            keep_bids=self.keep_bids,
        )
        self.budget_left = np.maximum(self.budget_left - res.spend, 0.0)
        self.spend += res.spend
        self.conversions += res.conversions
        self.clicks += res.clicks
        self.value += res.value
        self.wins += res.wins
        self.auctions += res.auctions
        self.last_lam = lam
        self.last_win_rate = np.divide(
            res.wins, res.auctions, out=np.zeros(m.n), where=res.auctions > 0
        )
        self.last_cpc = np.divide(
            res.spend, res.clicks, out=np.zeros(m.n), where=res.clicks > 0
        )
        self.published_price = res.top_price_sum / res.top_sold if res.top_sold else 0.0
        if res.bids is not None:
            self.published_lambda = self._top_lambda(self.traffic[self.t], res.bids)
        self.history.append(res)
        self.lam_history.append(lam)
        self.t += 1
        return res

    def _top_lambda(self, queries: NDArray, bids: NDArray) -> NDArray[np.float64]:
        """Per advertiser, the median multiplier that would have topped the other
        entrants' scores in its auctions of the last period (``inf`` -> 0)."""
        auc = self.market.auction
        score = bids * auc.quality[queries]
        a = auc.adv_idx[queries]
        valid = auc.valid[queries]
        top2 = (
            -np.partition(-score, 1, axis=1)[:, :2]
            if score.shape[1] > 1
            else np.c_[score, np.zeros(len(score))]
        )
        first = top2.max(axis=1, keepdims=True)
        second = top2.min(axis=1, keepdims=True)
        other = np.where(score >= first, second, first)
        base = auc.click_value[queries] * auc.quality[queries]
        need = np.divide(other, base, out=np.full_like(base, np.inf), where=base > 0)
        out = np.zeros(self.market.n)
        for i in np.unique(a[valid]):
            out[i] = float(np.median(need[valid & (a == i)]))
        return out

    def observe(self) -> NDArray[np.float32]:
        """Every advertiser's observation ``[N, OBS_SIZE]`` before period ``t``."""
        m = self.market
        cfg = m.config
        adv = m.advertisers
        n = m.n
        click_value = adv.value * cfg.economics.cvr
        obs = np.zeros((n, OBS_SIZE), dtype=np.float64)
        obs[:, 0] = 1.0 - self.t / self.periods
        nxt = m.shares[self.t] * self.periods if self.t < self.periods else 0.0
        obs[:, 1] = nxt
        obs[:, 2] = self.budget_left / adv.budget
        obs[:, 3] = self.spend / adv.budget
        obs[:, 4] = self.conversions / self.target_conversions
        cpa = np.divide(
            self.spend, self.conversions, out=np.zeros(n), where=self.conversions > 0
        )
        obs[:, 5] = np.minimum(cpa / adv.target_cpa, 5.0)
        obs[:, 6] = self.last_win_rate
        obs[:, 7] = np.minimum(self.last_cpc / click_value, 5.0)
        if cfg.publish != "none":
            obs[:, 8] = np.minimum(self.published_price / click_value, 5.0)
        if cfg.publish == "landscape":
            obs[:, 9] = np.minimum(self.published_lambda / cfg.lambda_max, 1.0)
        obs[:, 10] = np.log(adv.value / cfg.advertisers.value_median)
        obs[:, 11] = adv.target_cpa / adv.value
        obs[:, 12] = self.last_lam / cfg.lambda_max
        return obs.astype(np.float32)

    def scores(self) -> NDArray[np.float64]:
        """The AuctionNet score of every advertiser so far."""
        adv = self.market.advertisers
        return auctionnet_score(self.conversions, self.spend, adv.target_cpa)

    def rewards(self, res: PeriodResult) -> NDArray[np.float64]:
        """Each advertiser's reward for the period just played (module docstring)."""
        r = res.conversions.copy()
        if self.done:
            r += self.scores() - self.conversions
        return r / self.target_conversions
