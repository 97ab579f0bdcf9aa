"""The crossing point of sorted bids and asks, shared by the sealed double auctions.

Bids sorted descending ``b_1 >= b_2 >= ...`` and asks ascending
``s_1 <= s_2 <= ...`` cross at the efficient quantity ``q``: the number of
ranks with ``b_k >= s_k``. k-double, McAfee and the call market all start here:
they choose how many units trade and at what prices; :meth:`Crossing.traders`
then says who trades.

Only values are sorted (``np.sort`` is several times faster than ``argsort``
on short rows); who trades follows from comparing each order with the
marginal bid and ask, with a random draw only where orders tie at the margin.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from attn_env.errors import UserError
from attn_env.mechanisms._validate import as_batch, check_nonneg

__all__ = ["Crossing", "check_two_sided", "cross", "walrasian_price"]


@dataclass(frozen=True)
class Crossing:
    """Sorted book of ``B`` sealed-bid markets.

    Attributes:
        bids: ``float64 [B, n]`` bids in the book; ``-1`` for buyers out of it.
        asks: ``float64 [B, m]`` asks in the book; ``inf`` for sellers out of it.
        b: ``float64 [B, n + 2]`` sorted bids by 1-based rank: ``b[:, 0] = inf``,
            ``b[:, n + 1] = 0`` (no bid; buyers out of the book also read 0).
        s: ``float64 [B, m + 2]`` sorted asks by 1-based rank: ``s[:, 0] = 0``,
            ``s[:, m + 1] = inf`` (no ask).
        q: ``int64 [B]`` efficient quantity, ``#{k: b_k >= s_k}``.
    """

    bids: NDArray[np.float64]
    asks: NDArray[np.float64]
    b: NDArray[np.float64]
    s: NDArray[np.float64]
    q: NDArray[np.int64]

    def bid(self, rank: NDArray[np.int64]) -> NDArray[np.float64]:
        """``b_rank`` per market (1-based rank, ``[B]``; 0 and ``n + 1`` padded)."""
        return self.b.reshape(-1)[rank + np.arange(0, self.b.size, self.b.shape[1])]

    def ask(self, rank: NDArray[np.int64]) -> NDArray[np.float64]:
        """``s_rank`` per market (1-based rank, ``[B]``; 0 and ``m + 1`` padded)."""
        return self.s.reshape(-1)[rank + np.arange(0, self.s.size, self.s.shape[1])]

    def walrasian(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """The interval of prices where demand meets supply, ``(low [B], high [B])``.

        Any ``p`` in ``[max(s_q, b_{q+1}), min(b_q, s_{q+1})]`` lets exactly the
        ``q`` efficient pairs trade: every trading buyer bids ``>= p`` and every
        trading seller asks ``<= p``, and no other trader wants to.
        """
        q = self.q
        low = np.maximum(self.ask(q), self.bid(q + 1))
        high = np.minimum(self.bid(q), self.ask(q + 1))
        return low, high

    def traders(
        self, trades: NDArray[np.int64], rng: np.random.Generator
    ) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
        """The ``trades`` highest bidders and lowest askers of each market.

        Args:
            trades: ``int64 [B]`` units to trade, ``0 <= trades <= q``.
            rng: draws who trades among orders tied at the margin.

        Returns:
            ``(buyers [B, n], sellers [B, m])`` boolean, ``trades`` True per row.
        """
        some = trades > 0
        b_t = np.where(some, self.bid(trades), np.inf)
        s_t = np.where(some, self.ask(trades), -np.inf)
        buyers = _top(self.bids, b_t, trades, rng)
        sellers = _top(-self.asks, -s_t, trades, rng)
        return buyers, sellers


def _top(
    values: NDArray[np.float64],
    threshold: NDArray[np.float64],
    count: NDArray[np.int64],
    rng: np.random.Generator,
) -> NDArray[np.bool_]:
    """The ``count`` largest entries of each row, ``threshold`` being the last.

    Entries above the threshold are in; of those equal to it, as many as still
    needed are drawn at random (every subset equally likely).
    """
    chosen = values >= threshold[:, None]
    over = np.flatnonzero(np.count_nonzero(chosen, axis=1) > count)
    if over.size:
        vals, thr = values[over], threshold[over, None]
        above = vals > thr
        need = count[over] - above.sum(axis=1)  # >= 1: the threshold is in
        key = np.where(vals == thr, rng.random(vals.shape), -1.0)
        cut = -np.sort(-key, axis=1)[np.arange(over.size), need - 1]
        chosen[over] = above | (key >= cut[:, None])
    return chosen


def check_two_sided(
    bids: ArrayLike, asks: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Validate ``bids [B, n]`` and ``asks [B, m]``: finite, >= 0, same ``B``."""
    bids = as_batch(bids, "bids", "B, n")
    asks = as_batch(asks, "asks", "B, m")
    check_nonneg(bids, "bids")
    check_nonneg(asks, "asks")
    if bids.shape[0] != asks.shape[0]:
        raise UserError(
            f"bids and asks must have the same batch size B, got bids {bids.shape} "
            f"and asks {asks.shape}"
        )
    return bids, asks


def cross(
    bids: NDArray[np.float64],
    asks: NDArray[np.float64],
    reserve: float = 0.0,
    buyer_active: NDArray[np.bool_] | None = None,
    seller_active: NDArray[np.bool_] | None = None,
) -> Crossing:
    """Sort a validated book and find its crossing point.

    Args:
        bids: ``float64 [B, n]``.
        asks: ``float64 [B, m]``.
        reserve: bids under it are not in the book.
        buyer_active: ``bool [B, n]``; inactive buyers are not in the book.
        seller_active: ``bool [B, m]``; inactive sellers are not in the book.
    """
    n_markets, n = bids.shape
    m = asks.shape[1]
    # asks are >= 0, so a bid of -1 never meets one, nor a bid an ask of inf:
    # such orders are out of the book and read as "no order" in the padding
    live = bids
    dropped = reserve > 0.0 or buyer_active is not None
    if dropped:
        keep = bids >= reserve
        if buyer_active is not None:
            keep &= buyer_active
        live = np.where(keep, bids, -1.0)
    if seller_active is not None:
        asks = np.where(seller_active, asks, np.inf)
    b_srt = np.sort(live, axis=1)[:, ::-1]
    s_srt = np.sort(asks, axis=1)
    depth = min(n, m)
    q = np.count_nonzero(b_srt[:, :depth] >= s_srt[:, :depth], axis=1)
    b = np.empty((n_markets, n + 2))
    b[:, 0] = np.inf
    b[:, 1 : n + 1] = np.maximum(b_srt, 0.0) if dropped else b_srt
    b[:, n + 1] = 0.0
    s = np.empty((n_markets, m + 2))
    s[:, 0] = 0.0
    s[:, 1 : m + 1] = s_srt
    s[:, m + 1] = np.inf
    return Crossing(live, asks, b, s, q.astype(np.int64))


def walrasian_price(
    bids: ArrayLike, asks: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The Walrasian price interval where demand ``d(p)`` meets supply ``s(p)``.

    ``d(p)`` counts the bids ``>= p`` and ``s(p)`` the asks ``<= p``; for discrete
    traders they meet on an interval ``[low, high]``, on which exactly the
    efficient number of units trades. With no trade (``b_1 < s_1``) the interval
    is ``[b_1, s_1]``.

    Args:
        bids: ``float64 [B, n]`` buyers' bids (values), >= 0.
        asks: ``float64 [B, m]`` sellers' asks (costs), >= 0.

    Returns:
        ``(low, high)``, each ``float64 [B]``, ``low <= high``.
    """
    bids, asks = check_two_sided(bids, asks)
    return cross(bids, asks).walrasian()
