"""One-sided position auctions: ``first_price``, ``second_price``, ``gsp``, ``vcg``.

``B`` markets, ``n`` buyers, ``K`` slots with attention ``alpha_1 >= ... >= alpha_K``.
Buyers bid per unit of attention; they are ranked by score ``bid * quality``
(quality 1 by default), ties in random order, and the ``k``-th ranked buyer
takes slot ``k`` if its bid is at least the reserve. Units: ``alloc = alpha`` of
the slot won, ``price`` is per unit of attention, ``pay = price * alloc``.

=============  ==========================================================
rule           per-unit price of the buyer ranked ``k`` (0-based)
=============  ==========================================================
first_price    its own bid
second_price   ``max(score_1 / quality_0, reserve)`` (one slot)
gsp            ``max(score_{k+1} / quality_k, reserve)`` (Edelman et al.)
vcg            total ``sum_{j>=k} (alpha_j - alpha_{j+1}) max(score_{j+1} / quality_k,
               reserve)``, divided by ``alpha_k``
=============  ==========================================================

``score_j`` is the ``j``-th highest score among buyers bidding at least the
reserve (0 where there is none). The VCG payment is the externality a buyer
imposes on the others in the score-weighted welfare ``sum score * alpha``
(divided by its quality to turn it into money); with reserve it is the
Myerson threshold payment of that allocation, so truthful bidding is dominant.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from attn_env.checks import show
from attn_env.errors import ConfigError, UserError
from attn_env.mechanisms._base import OneSided, top_desc
from attn_env.mechanisms._validate import (
    as_batch,
    as_nonneg_batch,
    check_positive,
    check_weights,
)
from attn_env.mechanisms.outcome import Outcome

__all__ = ["GSP", "VCG", "FirstPrice", "PositionAuction", "SecondPrice"]

#: buyer entries (markets x n) cleared per block: temporaries of a block stay
#: in cache, and freed blocks are reused instead of faulting in fresh pages.
_BLOCK = 1 << 16


class PositionAuction(OneSided):
    """Common clearing of the position auctions; subclasses set the price rule.

    Args:
        reserve: minimum bid per unit to win a slot, and the least price.
        seed: seed of the tie-break generator (used when ``clear`` gets no ``rng``).
        n_slots: ``K`` when ``clear`` gets no ``weights`` (slots of attention 1).
    """

    params: ClassVar[dict[str, Any]] = {"n_slots": 1}
    one_slot: ClassVar[str | None] = None
    "Set for rules that sell exactly one slot: the hint their refusal of more adds."

    def __init__(self, *, reserve: float = 0.0, seed: int | None = None, **params: Any):
        super().__init__(reserve=reserve, seed=seed, **params)
        if (
            isinstance(self.n_slots, bool)
            or not isinstance(self.n_slots, int | np.integer)
            or self.n_slots < 1
        ):
            raise ConfigError(
                f"n_slots must be an integer >= 1, got {show(self.n_slots)}"
            )
        self.n_slots = int(self.n_slots)
        self._check_slots(self.n_slots)

    def clear(
        self,
        bids: ArrayLike,
        weights: ArrayLike | None = None,
        quality: ArrayLike | None = None,
        rng: np.random.Generator | None = None,
    ) -> Outcome:
        """Clear ``B`` auctions at once.

        Args:
            bids: ``float64 [B, n]`` bid per unit of attention, >= 0.
            weights: attention ``alpha`` of the slots, descending, ``[K]`` or
                ``[B, K]``; default ``n_slots`` slots of 1.
            quality: ``float64 [B, n]`` quality scores, > 0; default 1.
            rng: tie-break generator; default the mechanism's own.

        Returns:
            :class:`Outcome` with ``slot``, ``alloc``, ``pay``, ``price``,
            ``clearing_price`` (per-unit price of the top slot, ``nan`` if unsold)
            and ``extra["slot_price"]`` ``[B, K]`` (per-unit price of each slot,
            ``nan`` if unsold).
        """
        gen = self._gen(rng)
        bids = as_nonneg_batch(bids, "bids", "B, n")
        n_markets, n = bids.shape
        if weights is None:
            alpha = np.broadcast_to(
                np.ones((1, self.n_slots)), (n_markets, self.n_slots)
            )
        else:
            alpha = check_weights(weights, n_markets)
        self._check_slots(alpha.shape[1])
        q = None
        if quality is not None:
            q = as_batch(quality, "quality", "B, n")
            if q.shape != bids.shape:
                raise UserError(
                    f"quality must have the shape of bids {bids.shape}, got {q.shape}"
                )
            check_positive(q, "quality")

        slot = np.full((n_markets, n), -1, dtype=np.int64)
        out_alloc = np.zeros((n_markets, n))
        out_pay = np.zeros((n_markets, n))
        out_price = np.zeros((n_markets, n))
        slot_price = np.full(alpha.shape, np.nan)
        # blocks of markets whose temporaries stay in cache; the tie-break
        # keys of successive blocks are successive draws, as in one call
        step = max(1, _BLOCK // n)
        for lo in range(0, n_markets, step):
            rows = slice(lo, lo + step)
            self._clear_block(
                bids[rows],
                alpha[rows],
                None if q is None else q[rows],
                gen,
                (slot[rows], out_alloc[rows], out_pay[rows], out_price[rows]),
                slot_price[rows],
            )
        return Outcome(
            slot=slot,
            alloc=out_alloc,
            pay=out_pay,
            price=out_price,
            clearing_price=slot_price[:, 0].copy(),
            extra={"slot_price": slot_price},
        )

    def _clear_block(
        self,
        bids: NDArray[np.float64],
        alpha: NDArray[np.float64],
        q: NDArray[np.float64] | None,
        gen: np.random.Generator,
        out: tuple[NDArray, ...],
        slot_price: NDArray[np.float64],
    ) -> None:
        """Clear the markets of one block into ``out`` (slot, alloc, pay,
        price ``[b, n]``) and ``slot_price`` ``[b, K]``, set beforehand to -1,
        0, 0, 0 and nan."""
        n_markets, n = bids.shape
        n_slots = alpha.shape[1]
        n_win = min(n_slots, n)
        score = bids if q is None else bids * q
        # only the K + 1 highest scores matter: the K winners and the next one
        if self.reserve > 0.0:
            # scores are >= 0, so -1 ranks every buyer under the reserve last
            score = np.where(bids < self.reserve, -1.0, score)
            order, srt = top_desc(score, n_slots + 1, gen, ignore_negative=True)
        else:
            order, srt = top_desc(score, n_slots + 1, gen)
        top = order[:, :n_win]
        # without a reserve every score is >= 0: every rank up to n_win is won
        won = None if self.reserve == 0.0 else srt[:, :n_win] >= 0.0
        # s_pad[:, r] = score of rank r, 0 where no eligible buyer holds that rank
        s_pad = np.zeros((n_markets, n_slots + 1))
        np.maximum(srt[:, : n_slots + 1], 0.0, out=s_pad[:, : srt.shape[1]])
        q_top = None if q is None else _gather(q, top)
        price, pay = self._price(bids, top, s_pad, q_top, alpha)
        a_top = alpha[:, :n_win]
        rank = np.arange(n_win)
        if won is not None:
            price = np.where(won, price, 0.0)
            pay = np.where(won, pay, 0.0)
            a_top = np.where(won, a_top, 0.0)
            rank = np.where(won, rank, -1)
        # scatter rank-ordered results to buyers through one flat index (faster
        # than put_along_axis, which rebuilds its index for every array)
        flat = top + np.arange(0, n_markets * n, n)[:, None]
        for arr, val in zip(out, (rank, a_top, pay, price), strict=True):
            arr.reshape(-1)[flat] = val
        slot_price[:, :n_win] = price if won is None else np.where(won, price, np.nan)

    def _check_slots(self, n_slots: int) -> None:
        """Refuse ``K != 1`` for a one-slot rule (:attr:`one_slot`), at
        construction (``n_slots``) and at ``clear`` (``weights``)."""
        if self.one_slot is not None and n_slots != 1:
            raise UserError(
                f"{self.name} sells exactly one slot, got K={n_slots}{self.one_slot}"
            )

    def _price(
        self,
        bids: NDArray[np.float64],
        top: NDArray[np.int64],
        s_pad: NDArray[np.float64],
        q_top: NDArray[np.float64] | None,
        alpha: NDArray[np.float64],
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Per-unit price and total pay of the buyers ranked ``0..L-1``, ``[B, L]``.

        Args:
            bids: ``[B, n]`` bids.
            top: ``[B, L]`` buyer index of each winning rank.
            s_pad: ``[B, K + 1]`` score by rank, 0 past the eligible buyers.
            q_top: ``[B, L]`` quality of each winning rank; ``None`` without
                quality scores (scores are then the bids).
            alpha: ``[B, K]`` attention of each slot.
        """
        raise NotImplementedError


def _gather(x: NDArray[np.float64], idx: NDArray[np.int64]) -> NDArray[np.float64]:
    """``x[b, idx[b, r]]`` through one flat index (take_along_axis is slower)."""
    flat = idx + np.arange(0, x.size, x.shape[1])[:, None]
    return np.take(x.reshape(-1), flat)


class FirstPrice(PositionAuction):
    """Pay-your-bid: each winner pays its own bid per unit of attention."""

    name = "first_price"

    def _price(self, bids, top, s_pad, q_top, alpha):
        price = _gather(bids, top)
        return price, price * alpha[:, : top.shape[1]]


class GSP(PositionAuction):
    """Generalised second price: rank ``k`` pays the next score over its quality."""

    name = "gsp"

    def _price(self, bids, top, s_pad, q_top, alpha):
        n_win = top.shape[1]
        nxt = s_pad[:, 1 : n_win + 1]
        price = np.maximum(nxt if q_top is None else nxt / q_top, self.reserve)
        return price, price * alpha[:, :n_win]


class SecondPrice(GSP):
    """Vickrey auction of one slot: pays ``max(second score / quality, reserve)``."""

    name = "second_price"
    one_slot = " (use gsp or vcg for several slots)"


class VCG(PositionAuction):
    """Vickrey–Clarke–Groves position auction: each winner pays its externality."""

    name = "vcg"

    def _price(self, bids, top, s_pad, q_top, alpha):
        n_slots = alpha.shape[1]
        n_win = top.shape[1]
        # alpha_j - alpha_{j+1}; once for all markets when they share one row
        rows = alpha[:1] if alpha.strides[0] == 0 else alpha
        d_alpha = rows - np.concatenate([rows[:, 1:], np.zeros((len(rows), 1))], 1)
        nxt = s_pad[:, 1 : n_slots + 1]  # score one rank below slot j, [B, K]
        if self.reserve == 0.0 and q_top is None:
            # sum_{j>=k} d_alpha_j * s_{j+1} as a suffix sum; without quality the
            # scores are bids, so each product is at most 1e300 (no overflow)
            pay = _suffix_sum(d_alpha * nxt, n_win)
        else:
            # each threshold in bid units first (score / own quality <= own
            # bid), then times attention: no product of a score (up to 1e300)
            # with an attention (up to 1e150), and no division of a rounded
            # tiny product by a tiny quality
            later = np.arange(n_slots)[None, :] >= np.arange(n_win)[:, None]
            # only the scores below the winner: those above it, over its
            # quality, could exceed the float range
            below = np.where(later, nxt[:, None, :], 0.0)
            unit = below if q_top is None else below / q_top[..., None]
            thr = np.maximum(unit, self.reserve)
            pay = (d_alpha[:, None, :] * thr * later).sum(axis=2)
        a_top = alpha[:, :n_win]
        price = np.zeros(pay.shape)
        np.divide(pay, a_top, out=price, where=a_top > 0)
        return price, pay


def _suffix_sum(x: NDArray[np.float64], n_cols: int) -> NDArray[np.float64]:
    """``sum_{j >= k} x[:, j]`` for ``k < n_cols``, ``[B, n_cols]``.

    Added from the last column down, one column of all markets at a time: the
    sums of ``np.cumsum(x[:, ::-1], axis=1)[:, ::-1]`` bit for bit (the same
    additions in the same order), without a reduction along the short slot
    axis, whose per-market overhead dominates at a few slots.
    """
    n_rows, n_slots = x.shape
    out = np.empty((n_rows, n_cols))
    acc = x[:, n_slots - 1].copy()
    for j in range(n_slots - 1, -1, -1):
        if j < n_slots - 1:
            acc += x[:, j]
        if j < n_cols:
            out[:, j] = acc
    return out
