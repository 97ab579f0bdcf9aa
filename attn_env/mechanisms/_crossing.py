"""The crossing point of sorted bids and asks, shared by the sealed double auctions.

Bids sorted descending ``b_1 >= b_2 >= ...`` and asks ascending
``s_1 <= s_2 <= ...`` cross at the efficient quantity ``q``: the number of
ranks with ``b_k >= s_k``. k-double, McAfee and the call market all start here:
they choose how many units trade and at what prices; :meth:`Crossing.traders`
then says who trades.

Only values are sorted (``np.sort`` is several times faster than ``argsort``
on short rows), and only the few ranks a rule reads (``q``, ``q + 1``, the
number of trades) are gathered from them; who trades follows from comparing
each order with the marginal bid and ask, with a random draw only where
orders tie at the margin (:func:`resolve_ties`). A batch is cleared in blocks
of markets that share one :class:`Workspace`: the sorted books, the masks and
the gather indices are allocated once per batch, not once per block.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from attn_env.errors import UserError
from attn_env.mechanisms._validate import (
    MAX_MAGNITUDE,
    MIN_MAGNITUDE,
    as_batch_sign,
    check_nonneg,
)

__all__ = [
    "Crossing",
    "Workspace",
    "check_two_sided",
    "cross",
    "cross_book",
    "in_range",
    "resolve_ties",
    "two_sided_arrays",
    "walrasian_price",
    "workspace",
]


@dataclass(frozen=True)
class Workspace:
    """Buffers for blocks of up to ``S`` markets of ``n`` buyers and ``m``
    sellers, reused by every block of a batch (a block uses their first rows).

    Attributes:
        b_pad: ``float64 [S, n + 2]`` sorted bids between pads (see
            :class:`Crossing`).
        s_pad: ``float64 [S, m + 2]`` sorted asks between pads.
        b_top: ``int64 [S]`` flat index in ``b_pad`` of each row's rank 0 (the
            ``inf`` pad): rank ``k`` of row ``i`` is at ``b_top[i] - k``.
        s_top: ``int64 [S]`` flat index in ``s_pad`` of each row's rank 0 (the
            0 pad): rank ``k`` of row ``i`` is at ``s_top[i] + k``.
        crossed: ``bool [S, min(n, m)]`` ``b_k >= s_k`` per rank.
        buyers: ``bool [S, n]`` buyers at or beyond the margin.
        sellers: ``bool [S, m]`` sellers at or beyond the margin.
    """

    b_pad: NDArray[np.float64]
    s_pad: NDArray[np.float64]
    b_top: NDArray[np.int64]
    s_top: NDArray[np.int64]
    crossed: NDArray[np.bool_]
    buyers: NDArray[np.bool_]
    sellers: NDArray[np.bool_]


def workspace(size: int, n: int, m: int) -> Workspace:
    """A :class:`Workspace` for blocks of up to ``size`` markets, pads set (0
    and ``inf`` at both ends, see :class:`Crossing`)."""
    b_pad = np.empty((size, n + 2))
    b_pad[:, 0], b_pad[:, n + 1] = 0.0, np.inf
    s_pad = np.empty((size, m + 2))
    s_pad[:, 0], s_pad[:, m + 1] = 0.0, np.inf
    return Workspace(
        b_pad=b_pad,
        s_pad=s_pad,
        b_top=np.arange(n + 1, size * (n + 2), n + 2, dtype=np.int64),
        s_top=np.arange(0, size * (m + 2), m + 2, dtype=np.int64),
        crossed=np.empty((size, min(n, m)), dtype=bool),
        buyers=np.empty((size, n), dtype=bool),
        sellers=np.empty((size, m), dtype=bool),
    )


@dataclass(frozen=True)
class Crossing:
    """Sorted book of ``B`` sealed-bid markets.

    Attributes:
        bids: ``float64 [B, n]`` bids in the book; ``-1`` for buyers out of it.
        asks: ``float64 [B, m]`` asks in the book; ``inf`` for sellers out of it.
        b_pad: ``float64 [B, n + 2]`` ``bids`` sorted ascending between two
            pads: ``b_k`` (1-based rank, highest first) is ``b_pad[:, n + 1 - k]``,
            ``b_pad[:, 0] = 0`` (rank ``n + 1``: no bid) and
            ``b_pad[:, n + 1] = inf`` (rank 0).
        s_pad: ``float64 [B, m + 2]`` asks sorted ascending by 1-based rank:
            ``s_pad[:, 0] = 0``, ``s_pad[:, m + 1] = inf`` (no ask).
        q: ``int64 [B]`` efficient quantity, ``#{k: b_k >= s_k}``.
        work: the :class:`Workspace` holding ``b_pad`` and ``s_pad`` (its
            first ``B`` rows); :meth:`candidates` writes into its masks.
        b_q: ``b_q``, the marginal bid of the efficient quantity, ``[B]``.
        s_q: ``s_q``, the marginal ask of the efficient quantity, ``[B]``.
        b_next: ``b_{q+1}``, the best bid left out, ``[B]``.
        s_next: ``s_{q+1}``, the best ask left out, ``[B]``.
        dropped: some buyers are out of the book: ranked bids read at least 0.

    The four marginal ranks are gathered once, when the book is crossed: every
    rule, the Walrasian interval and the margin read them.
    """

    bids: NDArray[np.float64]
    asks: NDArray[np.float64]
    b_pad: NDArray[np.float64]
    s_pad: NDArray[np.float64]
    q: NDArray[np.int64]
    work: Workspace
    b_q: NDArray[np.float64]
    s_q: NDArray[np.float64]
    b_next: NDArray[np.float64]
    s_next: NDArray[np.float64]
    dropped: bool = False

    def _raw_bid(self, rank: NDArray[np.int64]) -> NDArray[np.float64]:
        """The sorted book's entry of 1-based ``rank`` (``-1`` for a buyer out
        of the book), 0 at rank ``n + 1``, ``inf`` at 0."""
        at = np.subtract(self.work.b_top[: len(rank)], rank)
        return self.work.b_pad.reshape(-1).take(at)

    def bid(self, rank: NDArray[np.int64]) -> NDArray[np.float64]:
        """``b_rank`` per market (1-based rank, ``[B]``): ``inf`` at rank 0, 0 at
        ``n + 1``; buyers out of the book read 0."""
        val = self._raw_bid(rank)
        return np.maximum(val, 0.0, out=val) if self.dropped else val

    def ask(self, rank: NDArray[np.int64]) -> NDArray[np.float64]:
        """``s_rank`` per market (1-based rank, ``[B]``): 0 at rank 0, ``inf`` at
        ``m + 1``."""
        at = np.add(self.work.s_top[: len(rank)], rank)
        return self.work.s_pad.reshape(-1).take(at)

    def walrasian(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """The interval of prices where demand meets supply, ``(low [B], high [B])``.

        Any ``p`` in ``[max(s_q, b_{q+1}), min(b_q, s_{q+1})]`` lets exactly the
        ``q`` efficient pairs trade: every trading buyer bids ``>= p`` and every
        trading seller asks ``<= p``, and no other trader wants to.
        """
        low = np.maximum(self.s_q, self.b_next)
        high = np.minimum(self.b_q, self.s_next)
        return low, high

    def margin(
        self, trades: NDArray[np.int64]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """``(b_t [B], s_t [B])``: the last bid and ask that trade when ``trades``
        units do (``inf`` and ``-inf`` where none trades: nobody reaches them)."""
        some = trades > 0
        at_q = trades is self.q  # all efficient trades: the ranks read already
        b_t = np.where(some, self.b_q if at_q else self.bid(trades), np.inf)
        s_t = np.where(some, self.s_q if at_q else self.ask(trades), -np.inf)
        return b_t, s_t

    def candidates(self, trades: NDArray[np.int64]) -> tuple[NDArray, ...]:
        """Who trades, before any tie at the margin is drawn.

        Returns:
            ``(buyers [B, n], sellers [B, m], tied_b [B], tied_s [B], b_t [B],
            s_t [B])``: every order at or beyond the margin ``b_t`` / ``s_t``
            (:meth:`margin`), and the markets where more than ``trades``
            orders reach it on that side: the next order in the sorted book
            is tied with the last that trades (left to :func:`resolve_ties`).
            Elsewhere ``buyers`` and ``sellers`` are the traders of
            :meth:`traders`. The two masks are the workspace's buffers,
            valid until the next block.
        """
        b_t, s_t = self.margin(trades)
        rows = len(trades)
        buyers = np.greater_equal(self.bids, b_t[:, None], out=self.work.buyers[:rows])
        sellers = np.less_equal(self.asks, s_t[:, None], out=self.work.sellers[:rows])
        # the bid of rank trades + 1 (raw: -1 is out of the book) reaches b_t;
        # past the last buyer there is none (the pad's 0 does not count)
        next_bid = (
            self.b_next
            if trades is self.q and not self.dropped  # raw as it was read
            else self._raw_bid(trades + 1)
        )
        tied_b = (next_bid >= b_t) & (trades < self.bids.shape[1])
        # the pad past the last ask is inf
        tied_s = (self.s_next if trades is self.q else self.ask(trades + 1)) <= s_t
        return buyers, sellers, tied_b, tied_s, b_t, s_t

    def traders(
        self, trades: NDArray[np.int64], rng: np.random.Generator
    ) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
        """The ``trades`` highest bidders and lowest askers of each market.

        Args:
            trades: ``int64 [B]`` units to trade, ``0 <= trades <= q``.
            rng: draws who trades among orders tied at the margin (buyers'
                markets first, then sellers').

        Returns:
            ``(buyers [B, n], sellers [B, m])`` boolean, ``trades`` True per row.
        """
        buyers, sellers, tied_b, tied_s, b_t, s_t = self.candidates(trades)
        rows = np.flatnonzero(tied_b)
        if rows.size:
            buyers[rows] = resolve_ties(self.bids[rows], b_t[rows], trades[rows], rng)
        rows = np.flatnonzero(tied_s)
        if rows.size:
            sellers[rows] = resolve_ties(
                -self.asks[rows], -s_t[rows], trades[rows], rng
            )
        return buyers, sellers


def resolve_ties(
    values: NDArray[np.float64],
    threshold: NDArray[np.float64],
    count: NDArray[np.int64],
    rng: np.random.Generator,
) -> NDArray[np.bool_]:
    """The ``count`` largest entries of each row, ``threshold`` being the last,
    for rows where more than ``count`` entries reach the threshold.

    Entries above the threshold are in; of those equal to it, as many as still
    needed are drawn at random (every subset equally likely). One draw of
    ``rng.random(values.shape)`` serves all rows, so rows resolved together
    in one call, or in one call per block, draw the same stream.
    """
    thr = threshold[:, None]
    above = values > thr
    need = count - above.sum(axis=1)  # >= 1: the threshold is in
    key = np.where(values == thr, rng.random(values.shape), -1.0)
    cut = -np.sort(-key, axis=1)[np.arange(len(values)), need - 1]
    return above | (key >= cut[:, None])


def check_two_sided(
    bids: ArrayLike, asks: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Validate ``bids [B, n]`` and ``asks [B, m]``: finite, >= 0, same ``B``."""
    bids, bids_nonneg = as_batch_sign(bids, "bids", "B, n")
    asks, asks_nonneg = as_batch_sign(asks, "asks", "B, m")
    if not bids_nonneg:
        check_nonneg(bids, "bids")
    if not asks_nonneg:
        check_nonneg(asks, "asks")
    if bids.shape[0] != asks.shape[0]:
        raise UserError(
            f"bids and asks must have the same batch size B, got bids {bids.shape} "
            f"and asks {asks.shape}"
        )
    return bids, asks


def two_sided_arrays(
    bids: ArrayLike, asks: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64], bool]:
    """:func:`check_two_sided`, leaving the pass over the values to the blocks
    where it can: ``(bids, asks, checked)``.

    When ``bids`` and ``asks`` already are float64 arrays ``[B, n]`` and ``[B,
    m]`` of one ``B`` (nothing to convert, no shape to refuse), they come back
    as they are with ``checked`` False: the caller checks each block with
    :func:`in_range` while the block is in cache, instead of two more passes
    over the whole batch from memory, and on a block that fails calls
    :func:`check_two_sided` on the whole batch, which raises the error it
    always did. Otherwise ``checked`` is True: :func:`check_two_sided` ran.
    """
    if _plain(bids) and _plain(asks) and bids.shape[0] == asks.shape[0]:
        return bids, asks, False
    bids, asks = check_two_sided(bids, asks)
    return bids, asks, True


def _plain(x: object) -> bool:
    """``x`` is a float64 array ``[B, n]`` with ``n >= 1``."""
    return (
        type(x) is np.ndarray  # subclasses (matrix, memmap) are converted
        and x.dtype == np.float64
        and x.ndim == 2
        and x.shape[1] > 0
    )


def in_range(
    x: NDArray[np.float64],
    ends: tuple[NDArray[np.float64], NDArray[np.float64]] | None = None,
) -> bool:
    """Whether :func:`check_two_sided` accepts the values of ``x``: finite,
    >= 0, each 0 or of a magnitude in ``[MIN_MAGNITUDE, MAX_MAGNITUDE]``
    (the test that :func:`~attn_env.mechanisms._validate.as_batch_sign`
    passes without looking further; NaN fails it).

    ``ends``: optional ``(first, last)`` columns of ``x`` sorted along its rows
    (NaN sorts last), read instead of a pass over ``x`` for its extremes.
    """
    if not x.size:
        return True
    lo, hi = (x.min(), x.max()) if ends is None else (ends[0].min(), ends[1].max())
    return bool(
        0.0 <= lo
        and hi <= MAX_MAGNITUDE
        and (lo >= MIN_MAGNITUDE or not ((x > 0.0) & (x < MIN_MAGNITUDE)).any())
    )


def cross(
    bids: NDArray[np.float64],
    asks: NDArray[np.float64],
    reserve: float = 0.0,
    buyer_active: NDArray[np.bool_] | None = None,
    seller_active: NDArray[np.bool_] | None = None,
    work: Workspace | None = None,
) -> Crossing:
    """Sort a validated book and find its crossing point.

    Args:
        bids: ``float64 [B, n]``.
        asks: ``float64 [B, m]``.
        reserve: bids under it are not in the book.
        buyer_active: ``bool [B, n]``; inactive buyers are not in the book.
        seller_active: ``bool [B, m]``; inactive sellers are not in the book.
        work: optional :class:`Workspace` for ``B`` markets or more, from
            :func:`workspace` (blocks of one batch reuse it instead of
            allocating fresh pages for every block).
    """
    n_markets, n = bids.shape
    m = asks.shape[1]
    dropped = reserve > 0.0 or buyer_active is not None
    live = cross_book(bids, reserve, buyer_active)
    if seller_active is not None:
        asks = np.where(seller_active, asks, np.inf)
    work = work or workspace(n_markets, n, m)
    b_pad, s_pad = work.b_pad[:n_markets], work.s_pad[:n_markets]
    # sorting in place leaves the pads at both ends alone
    b_srt, s_srt = b_pad[:, 1 : n + 1], s_pad[:, 1 : m + 1]
    _sort_rows(b_srt, live)
    _sort_rows(s_srt, asks)
    depth = min(n, m)
    # b_k >= s_k for k = 1..depth: the highest bids, reversed, against the lowest
    # asks. Bids descend and asks ascend, so it holds up to q and fails after:
    # q is the first rank where it fails (argmin of the bools), or depth
    crossed = np.greater_equal(
        b_pad[:, n : n - depth : -1], s_srt[:, :depth], out=work.crossed[:n_markets]
    )
    q = crossed.argmin(axis=1).astype(np.int64, copy=False)
    np.copyto(q, depth, where=crossed[:, -1])
    # the marginal ranks q and q + 1 of both sides (see Crossing)
    b_flat, s_flat = work.b_pad.reshape(-1), work.s_pad.reshape(-1)
    at = np.subtract(work.b_top[:n_markets], q)
    b_q = b_flat.take(at)
    b_next = b_flat.take(np.subtract(at, 1, out=at))
    if dropped:  # buyers out of the book read 0
        np.maximum(b_q, 0.0, out=b_q)
        np.maximum(b_next, 0.0, out=b_next)
    at = np.add(work.s_top[:n_markets], q)
    s_q = s_flat.take(at)
    s_next = s_flat.take(np.add(at, 1, out=at))
    return Crossing(
        live, asks, b_pad, s_pad, q, work, b_q, s_q, b_next, s_next, dropped
    )


#: -0.0 read as an int64: the smallest one
_NEG_ZERO = np.float64(-0.0).view(np.int64)


def _sort_rows(out: NDArray[np.float64], values: NDArray[np.float64]) -> None:
    """``out[:] = np.sort(values, axis=1)``, to the bit.

    The rows are sorted as int64, some 20-30% faster than as float64: the bits
    of floats ``>= +0`` order as their values, and what else a book holds
    (``-1`` for an order out of it; negative input, which the value check
    refuses after this sort) sorts below them as an int64 as it does as a
    float, so the sorted bytes are ``np.sort``'s. Not so -0.0, which reads as
    the smallest int64 and would leave its place among equal zeros to the
    algorithm: a block holding one (it sorts first, so column 0 shows it) is
    sorted again from ``values``, as floats.
    """
    bits = out.view(np.int64)
    np.copyto(out, values)
    bits.sort(axis=1)
    if (bits[:, 0] == _NEG_ZERO).any():
        np.copyto(out, values)
        out.sort(axis=1)


def cross_book(
    bids: NDArray[np.float64],
    reserve: float = 0.0,
    buyer_active: NDArray[np.bool_] | None = None,
) -> NDArray[np.float64]:
    """The bids in the book: ``bids``, with ``-1`` for buyers under ``reserve``
    or inactive (asks are >= 0, so such a bid never meets one)."""
    if reserve > 0.0 or buyer_active is not None:
        keep = bids >= reserve
        if buyer_active is not None:
            keep &= buyer_active
        return np.where(keep, bids, -1.0)
    return bids


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
