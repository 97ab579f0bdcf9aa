"""One period of a search day: every impression's auction, batched, with hard budgets.

The economics of an impression of query q (docs/search_day.md, "Economics"):

- advertiser a (eligible for q, relevance r) bids per click
  ``b = lambda_a * V_a * pConv``, ``pConv = cvr * r``; its quality score is r,
  so the auction ranks by ``b * r`` (a pay-per-click auction with pCTR r);
- slot k is clicked with probability ``ctr_top * e_k * r``, where the
  examination ``e_k`` is the position factor ``pos[q, k]`` (``attention``,
  ``pbm``) or, in the ``cascade`` model, the chance that no ad above was
  clicked, ``prod_{j<k} (1 - ctr_top * r_j)``;
- outcomes are expected values: spend = price per click x click probability,
  conversions = clicks x pConv, value = conversions x V.

Budgets are hard. The impressions of a period are cleared in one batched call;
if some advertiser's cumulative spend passes its budget at impression i, the
impressions before i are kept, every advertiser that would pass at i leaves the
auction for the rest of the day, and the impressions from i on are cleared
again without it. So no budget is ever exceeded, and an advertiser that has
left takes no slot (a bid of 0 is under the reserve, which must be > 0).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from attn_env.mechanisms import Mechanism
from attn_env.scenarios.search_advertisers import Advertisers
from attn_env.scenarios.search_config import EconomicsConfig
from attn_env.scenarios.search_pages import Pages

__all__ = ["PeriodResult", "SearchAuction"]

CHUNK = 32_768
"Most impressions cleared in one call (bounds the [chunk, N] budget check)."


@dataclass
class PeriodResult:
    """What one period did, per advertiser ``[N]`` and in total."""

    spend: NDArray[np.float64]
    clicks: NDArray[np.float64]
    conversions: NDArray[np.float64]
    value: NDArray[np.float64]
    wins: NDArray[np.float64]
    "Impressions on which the advertiser took a slot."
    auctions: NDArray[np.float64]
    "Impressions the advertiser was eligible for and bid on."
    left: NDArray[np.bool_]
    "Advertisers that ran out of budget in this period."
    impressions: int = 0
    top_price_sum: float = 0.0
    "Sum over sold impressions of the top slot's price per click."
    top_sold: int = 0
    bids: NDArray[np.float64] | None = field(default=None, repr=False)
    "The bids each impression was finally cleared with ``[B, M]`` (for landscapes)."


class SearchAuction:
    """Clears the impressions of a period for N advertisers on a page model."""

    def __init__(
        self,
        pages: Pages,
        advertisers: Advertisers,
        economics: EconomicsConfig,
        mechanism: Mechanism,
        n_slots: int,
    ) -> None:
        self.pages = pages
        self.adv = advertisers
        self.econ = economics
        self.mech = mechanism
        self.n_slots = n_slots
        self.cascade = economics.click_model == "cascade"
        # per (query, entrant): value of a click at lambda = 1 and quality
        valid = pages.eligible >= 0
        a = np.where(valid, pages.eligible, 0)
        self.valid = valid
        self.adv_idx = a
        self.pconv = economics.cvr * pages.relevance
        self.click_value = np.where(valid, advertisers.value[a] * self.pconv, 0.0)
        self.quality = np.where(valid, pages.relevance, 1.0)

    def clear(
        self,
        queries: NDArray[np.int64],
        lam: NDArray[np.float64],
        budget_left: NDArray[np.float64],
        alive: NDArray[np.bool_],
        rng: np.random.Generator,
        keep_bids: bool = False,
    ) -> PeriodResult:
        """Clear every impression of ``queries`` with multipliers ``lam [N]``.

        ``alive [N]`` (advertisers still in the day) is updated in place.
        """
        n = self.adv.n
        res = PeriodResult(
            spend=np.zeros(n),
            clicks=np.zeros(n),
            conversions=np.zeros(n),
            value=np.zeros(n),
            wins=np.zeros(n),
            auctions=np.zeros(n),
            left=np.zeros(n, dtype=bool),
        )
        left = budget_left.astype(np.float64).copy()
        kept = [] if keep_bids else None
        for lo in range(0, len(queries), CHUNK):
            self._clear_chunk(
                queries[lo : lo + CHUNK], lam, left, alive, rng, res, kept
            )
        res.impressions = len(queries)
        if keep_bids:
            width = self.pages.eligible.shape[1]
            res.bids = np.concatenate(kept) if kept else np.zeros((0, width))
        return res

    def _clear_chunk(self, q, lam, left, alive, rng, res, kept) -> None:
        start = 0
        while start < len(q):
            qs = q[start:]
            a = self.adv_idx[qs]
            bids = np.where(
                self.valid[qs] & alive[a], lam[a] * self.click_value[qs], 0.0
            )
            out = self.mech.clear(
                bids, weights=self.pages.pos[qs], quality=self.quality[qs], rng=rng
            )
            won = out.slot >= 0
            r = self.pages.relevance[qs]
            clicks = self.click_prob(out.slot, won, r, self.pages.pos[qs])
            spend = np.where(won, out.price * clicks, 0.0)
            stop, quitters = self._first_overrun(spend, a, won, left)
            rows = slice(0, stop)
            self._book(
                res, a[rows], won[rows], bids[rows], clicks[rows], spend[rows], qs[rows]
            )
            np.subtract(
                left,
                np.bincount(a[rows][won[rows]], spend[rows][won[rows]], len(left)),
                out=left,
            )
            top = out.extra.get("slot_price")
            if top is not None:
                sold = np.isfinite(top[rows, 0])
                res.top_price_sum += float(top[rows, 0][sold].sum())
                res.top_sold += int(sold.sum())
            if kept is not None:
                kept.append(bids[rows])
            if quitters is not None:
                alive[quitters] = False
                res.left[quitters] = True
            start += stop

    def click_prob(self, slot, won, r, pos) -> NDArray[np.float64]:
        """Click probability of each entrant ``[b, M]`` (0 where it won nothing)."""
        k = np.where(won, slot, 0)
        if self.cascade:
            b, width = pos.shape
            r_slot = np.zeros((b, width))
            rows = np.broadcast_to(np.arange(b)[:, None], slot.shape)
            r_slot[rows[won], slot[won]] = r[won]
            exam = np.ones((b, width))
            exam[:, 1:] = np.cumprod(1.0 - self.econ.ctr_top * r_slot, axis=1)[:, :-1]
        else:
            exam = pos
        e = np.take_along_axis(exam, k, axis=1)
        return np.where(won, self.econ.ctr_top * e * r, 0.0)

    @staticmethod
    def _first_overrun(spend, a, won, left) -> tuple[int, NDArray[np.bool_] | None]:
        """Rows to keep, and who leaves: the first impression at which any
        advertiser's running spend would pass what it has left."""
        b = spend.shape[0]
        dense = np.zeros((b, len(left)))
        rows = np.broadcast_to(np.arange(b)[:, None], a.shape)
        dense[rows[won], a[won]] = spend[won]
        over = np.cumsum(dense, axis=0) > left[None, :]
        if not over.any():
            return b, None
        hit = over.any(axis=0)
        first = np.where(hit, over.argmax(axis=0), b)
        stop = int(first.min())
        return stop, first == stop

    def _book(self, res, a, won, bids, clicks, spend, qs) -> None:
        n = len(res.spend)
        aw = a[won]
        conv = clicks * self.pconv[qs]
        res.spend += np.bincount(aw, spend[won], n)
        res.clicks += np.bincount(aw, clicks[won], n)
        res.conversions += np.bincount(aw, conv[won], n)
        res.value += np.bincount(aw, (conv * self.adv.value[a])[won], n)
        res.wins += np.bincount(aw, minlength=n)
        entered = bids > 0
        res.auctions += np.bincount(a[entered], minlength=n)
