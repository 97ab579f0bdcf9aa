"""Two-sided markets: ``k_double``, ``mcafee``, ``call_market`` and ``cda``.

``B`` markets of ``n`` buyers with bids ``[B, n]`` and ``m`` sellers with asks
``[B, m]``, each trader one unit. Sorting bids descending ``b_1 >= b_2 >= ...``
and asks ascending ``s_1 <= s_2 <= ...``, the efficient quantity ``q`` is the
number of ranks with ``b_k >= s_k``. When ``t`` units trade, the ``t``
highest bidders and the ``t`` lowest askers trade (ties at the margin drawn at
random), paired in index order: every buyer pays the same price and every
seller receives the same price, so the pairing changes no payment. Bids under
``reserve`` are not in the book.

===========  ===============================================================
rule         trades and prices
===========  ===============================================================
k_double     ``q`` trades at ``k b_q + (1 - k) s_q`` (Chatterjee–Samuelson for
             one buyer and one seller); budget balanced
mcafee       ``p0 = (b_{q+1} + s_{q+1}) / 2``; if ``s_q <= p0 <= b_q`` all ``q``
             trade at ``p0``, else ``q - 1`` trade, buyers pay ``b_q`` and
             sellers get ``s_q`` (McAfee 1992). ``b_{n+1} = 0`` and
             ``s_{m+1} = inf`` where a rank is missing; buyers pay at least
             the reserve. Truthful, no deficit
call_market  ``q`` trades at ``k high + (1 - k) low`` of the Walrasian interval
             ``[max(s_q, b_{q+1}), min(b_q, s_{q+1})]`` where ``d(p) = s(p)``
cda          one round of a continuous double auction, see :class:`CDA`
===========  ===============================================================

``Outcome.slot[b, i]`` is the seller buyer ``i`` trades with (``-1`` for none);
``alloc`` is 1 per traded unit; ``seller_alloc`` / ``seller_receipt`` ``[B, m]``
are units sold and money received. ``clearing_price`` is the uniform price, or
the mean of the traded prices (mean of buyer and seller price per trade), ``nan``
where nothing trades.
"""

from __future__ import annotations

import sys
import threading
from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from attn_env.errors import UserError
from attn_env.mechanisms._base import TwoSided
from attn_env.mechanisms._crossing import (
    Crossing,
    Workspace,
    check_two_sided,
    cross,
    cross_book,
    in_range,
    resolve_ties,
    two_sided_arrays,
    workspace,
)
from attn_env.mechanisms._validate import check_k
from attn_env.mechanisms.outcome import Outcome

__all__ = ["CDA", "CallMarket", "KDouble", "McAfee", "SealedDouble"]

#: order entries (markets x (n + m)) cleared per block: the sorted book, the
#: masks and the block's share of the outputs stay in cache (1 MiB a float
#: array), and the fixed cost of a block (some 60 numpy calls) is spread over
#: enough markets (2 ** 16 to 2 ** 19 within 5% at n = 10 and 48; 2 ** 15 about
#: 10% slower).
_BLOCK = 1 << 17


class SealedDouble(TwoSided):
    """A sealed-bid double auction: sort, cross, price; subclasses set the rule.

    The instance keeps its last outcome's memory and its sort buffers
    (:class:`_Kept`) and clears the next batch into them when no one else
    holds them: a caller that drops each outcome before the next call pays
    no fresh pages; one that keeps any field of an outcome gets a fresh
    block next time, so what it holds never changes.
    """

    def __init__(self, *, reserve: float = 0.0, seed: int | None = None, **params: Any):
        super().__init__(reserve=reserve, seed=seed, **params)
        self._kept = _Kept()

    def clear(
        self,
        bids: ArrayLike,
        asks: ArrayLike,
        rng: np.random.Generator | None = None,
        buyer_active: ArrayLike | None = None,
        seller_active: ArrayLike | None = None,
    ) -> Outcome:
        """Clear ``B`` markets at once.

        Args:
            bids: ``float64 [B, n]`` buyers' bids per unit, >= 0.
            asks: ``float64 [B, m]`` sellers' asks per unit, >= 0.
            rng: tie-break generator; default the mechanism's own.
            buyer_active: optional ``bool [B, n]``; False keeps a buyer out of the
                market (e.g. it already traded its unit this trading period).
            seller_active: optional ``bool [B, m]``, the same for sellers.

        Returns:
            :class:`Outcome` with the two-sided fields filled and
            ``extra["walrasian_low"]``, ``extra["walrasian_high"]`` ``[B]`` (of
            the active book).
        """
        gen = self._gen(rng)
        # the values are checked block by block where they can be (see
        # two_sided_arrays); a bad book is still reported before a bad mask
        bids, asks, checked = two_sided_arrays(bids, asks)
        try:
            b_act = (
                None
                if buyer_active is None
                else _mask(buyer_active, "buyer_active", bids.shape)
            )
            s_act = (
                None
                if seller_active is None
                else _mask(seller_active, "seller_active", asks.shape)
            )
        except UserError:
            if not checked:
                check_two_sided(bids, asks)
            raise
        n_markets, n = bids.shape
        m = asks.shape[1]
        step = max(1, _BLOCK // (n + m))
        # the kept memory, for one call at a time: a second thread clearing
        # meanwhile allocates its own (the lock is never waited for)
        kept = self._kept if self._kept.lock.acquire(blocking=False) else None
        try:
            return self._clear(
                bids, asks, b_act, s_act, checked, gen, kept, step, n_markets, n, m
            )
        except BaseException:
            if kept is not None:  # a half-written block is never cleared into again
                kept.forget()
            raise
        finally:
            if kept is not None:
                kept.lock.release()

    def _clear(
        self,
        bids: NDArray[np.float64],
        asks: NDArray[np.float64],
        b_act: NDArray[np.bool_] | None,
        s_act: NDArray[np.bool_] | None,
        checked: bool,
        gen: np.random.Generator,
        kept: _Kept | None,
        step: int,
        n_markets: int,
        n: int,
        m: int,
    ) -> Outcome:
        """The blocked clearing of :meth:`clear` on its checked arguments, into
        ``kept``'s memory where it is free (``None``: fresh memory)."""
        size = _Book.size(n_markets, n, m)
        rows = min(step, n_markets)
        if kept is None:
            out = _Book(n_markets, n, m)
            work, seller_col = _Kept.fresh_work(rows, n, m)
        else:
            out = _Book(n_markets, n, m, kept.block(size))
            work, seller_col = kept.work(rows, n, m)
        # blocks of markets whose sorted book and temporaries stay in cache;
        # markets tied at the margin are drawn after all blocks, buyers' then
        # sellers', in market order: the draws of one call over the batch.
        # Until then only those markets are held, field by field (see redraw)
        held: list[tuple[NDArray, ...]] = []
        for lo in range(0, n_markets, step):
            r = slice(lo, lo + step)
            c = cross(
                bids[r],
                asks[r],
                self.reserve,
                None if b_act is None else b_act[r],
                None if s_act is None else s_act[r],
                work,
            )
            # a side sorted as given shows its extremes in its end columns
            if not checked and not (
                in_range(bids[r], None if c.dropped else (c.b_pad[:, 1], c.b_pad[:, n]))
                and in_range(
                    asks[r],
                    None if s_act is not None else (c.s_pad[:, 1], c.s_pad[:, m]),
                )
            ):
                check_two_sided(bids, asks)  # raises the whole batch's error
            t, buyer_price, seller_price, clearing = self._rule(c)
            out.low[r], out.high[r] = c.walrasian()
            buyers, sellers, tied_b, tied_s, b_t, s_t = c.candidates(t)
            tied = tied_b | tied_s
            if tied.any():  # written after the draw; for now no trader
                at = np.flatnonzero(tied)
                buyers[at] = False
                sellers[at] = False
                fields = (tied_b, tied_s, b_t, s_t, t, buyer_price, seller_price)
                held.append((at + lo, *(field[at] for field in fields)))
            out.fill(
                r,
                t,
                buyers,
                sellers,
                buyer_price,
                seller_price,
                clearing,
                seller_col,
            )
        if held:
            tied, tied_b, tied_s, b_t, s_t, trades, b_price, s_price = (
                np.concatenate(field) for field in zip(*held, strict=True)
            )
            live = cross_book(
                bids[tied], self.reserve, None if b_act is None else b_act[tied]
            )
            ask_book = asks[tied]
            if s_act is not None:
                ask_book = np.where(s_act[tied], ask_book, np.inf)
            out.redraw(
                tied,
                tied_b,
                tied_s,
                live,
                ask_book,
                b_t,
                s_t,
                trades,
                b_price,
                s_price,
                gen,
            )
        return out.outcome()

    def _rule(
        self, c: Crossing
    ) -> tuple[
        NDArray[np.int64], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]
    ]:
        """``(trades [B], buyer price [B], seller price [B], clearing price [B])``."""
        raise NotImplementedError


class KDouble(SealedDouble):
    """k-double auction: the efficient quantity at ``k b_q + (1 - k) s_q``.

    Args:
        k: weight of the marginal bid in the price, in [0, 1] (default 0.5).
    """

    name = "k_double"
    params: ClassVar[dict[str, Any]] = {"k": 0.5}

    def __init__(self, *, reserve: float = 0.0, seed: int | None = None, **params: Any):
        super().__init__(reserve=reserve, seed=seed, **params)
        self.k = check_k(self.k)

    def _rule(self, c):
        p = self.k * c.b_q + (1.0 - self.k) * c.s_q
        p = np.where(c.q > 0, p, np.nan)
        return c.q, p, p, p


class McAfee(SealedDouble):
    """McAfee's (1992) trade-reduction double auction: truthful, never in deficit.

    With a reserve, bids under it are not admitted and buyers pay at least the
    reserve (sellers still receive ``p0`` or ``s_q``; the difference is surplus),
    which keeps bidding truthful for every buyer.
    """

    name = "mcafee"

    def _rule(self, c):
        q = c.q
        p0 = 0.5 * (c.b_next + c.s_next)
        b_q, s_q = c.b_q, c.s_q
        keep = (q > 0) & (s_q <= p0) & (p0 <= b_q)
        trades = np.where(keep, q, np.maximum(q - 1, 0))
        # the reserve floors the buyers' price: without it a buyer valuing less
        # than the reserve could bid above it and trade at a lower p0
        buyer_price = np.maximum(np.where(keep, p0, b_q), self.reserve)
        seller_price = np.where(keep, p0, s_q)
        none = trades == 0
        buyer_price = np.where(none, np.nan, buyer_price)
        seller_price = np.where(none, np.nan, seller_price)
        return trades, buyer_price, seller_price, 0.5 * (buyer_price + seller_price)


class CallMarket(SealedDouble):
    """Call market: all efficient trades at one price of the Walrasian interval.

    Args:
        k: where in ``[low, high]`` the price lies, ``p = k high + (1 - k) low``
            (default 0.5, the midpoint).
    """

    name = "call_market"
    params: ClassVar[dict[str, Any]] = {"k": 0.5}

    def __init__(self, *, reserve: float = 0.0, seed: int | None = None, **params: Any):
        super().__init__(reserve=reserve, seed=seed, **params)
        self.k = check_k(self.k)

    def _rule(self, c):
        low, high = c.walrasian()
        p = np.where(c.q > 0, self.k * high + (1.0 - self.k) * low, np.nan)
        return c.q, p, p, p


class _Book:
    """The outcome arrays of a batch of sealed double auctions, filled by block.

    Both sides have the same number of traders per market; they are paired in
    index order (the k-th trading buyer meets the k-th trading seller). Every
    buyer pays the same price and every seller receives the same price, so the
    pairing changes no payment.
    """

    def __init__(
        self, n_markets: int, n: int, m: int, buf: NDArray[np.float64] | None = None
    ) -> None:
        # one allocation cut into the outcome's nine arrays (disjoint views):
        # the kernel backs it with huge pages but for one unaligned head and
        # tail, where nine arrays would have nine of each, faulted page by page.
        # ``buf``: float64 memory of :meth:`size` entries to cut them from
        # instead (every entry is written before the outcome is returned)
        shapes = [(n,)] * 4 + [(m,)] * 2 + [()] * 3
        if buf is None:
            buf = np.empty(self.size(n_markets, n, m))
        parts, at = [], 0
        for shape in shapes:
            size = n_markets * (shape[0] if shape else 1)
            parts.append(buf[at : at + size].reshape(n_markets, *shape))
            at += size
        slot, self.alloc, self.pay, self.price = parts[:4]
        self.slot = slot.view(np.int64)
        self.seller_alloc, self.seller_receipt = parts[4:6]
        self.clearing, self.low, self.high = parts[6:]

    @staticmethod
    def size(n_markets: int, n: int, m: int) -> int:
        """float64 entries of the outcome of ``n_markets`` markets of ``n``
        buyers and ``m`` sellers."""
        return n_markets * (4 * n + 2 * m + 3)

    def fill(
        self,
        rows: slice,
        trades: NDArray[np.int64],
        buyers: NDArray[np.bool_],
        sellers: NDArray[np.bool_],
        buyer_price: NDArray[np.float64],
        seller_price: NDArray[np.float64],
        clearing: NDArray[np.float64],
        seller_col: NDArray[np.int64] | None = None,
    ) -> None:
        """Write markets ``rows``: ``trades [b]`` units, traders ``buyers [b, n]``
        and ``sellers [b, m]`` at ``buyer_price`` / ``seller_price`` and
        ``clearing`` price ``[b]``; ``seller_col`` (``int64 [b * m]`` or
        longer: ``0..m-1`` repeated) saves the remainder that turns the
        sellers' flat indices into columns."""
        some = trades > 0
        slot = self.slot[rows]  # views: each array is written once, in place
        slot.fill(-1)
        # the k-th trading buyer of a market meets its k-th trading seller:
        # flat indices in row-major order, the sellers' reduced to columns
        sold = sellers.reshape(-1).nonzero()[0]
        slot.reshape(-1)[buyers.reshape(-1).nonzero()[0]] = (
            np.remainder(sold, sellers.shape[1], out=sold)
            if seller_col is None
            else seller_col.take(sold)
        )
        alloc, price = self.alloc[rows], self.price[rows]
        np.copyto(alloc, buyers)
        np.multiply(alloc, np.where(some, buyer_price, 0.0)[:, None], out=price)
        np.copyto(self.pay[rows], price)
        seller_alloc = self.seller_alloc[rows]
        np.copyto(seller_alloc, sellers)
        np.multiply(
            seller_alloc,
            np.where(some, seller_price, 0.0)[:, None],
            out=self.seller_receipt[rows],
        )
        self.clearing[rows] = np.where(some, clearing, np.nan)

    def redraw(
        self,
        rows: NDArray[np.int64],
        tied_b: NDArray[np.bool_],
        tied_s: NDArray[np.bool_],
        bids: NDArray[np.float64],
        asks: NDArray[np.float64],
        b_t: NDArray[np.float64],
        s_t: NDArray[np.float64],
        trades: NDArray[np.int64],
        buyer_price: NDArray[np.float64],
        seller_price: NDArray[np.float64],
        rng: np.random.Generator,
    ) -> None:
        """Draw who trades in the markets ``rows`` (ascending) tied at the
        margin, and rewrite them.

        The other arguments are of those markets only: which side is tied,
        the book (``-1`` and ``inf`` for orders out of it), the margins, the
        units traded and the prices of the rule. Buyers' ties are drawn first,
        then sellers', each in market order.
        """
        buyers = bids >= b_t[:, None]
        sellers = asks <= s_t[:, None]
        if tied_b.any():
            buyers[tied_b] = resolve_ties(
                bids[tied_b], b_t[tied_b], trades[tied_b], rng
            )
        if tied_s.any():
            sellers[tied_s] = resolve_ties(
                -asks[tied_s], -s_t[tied_s], trades[tied_s], rng
            )
        sub = _Book(rows.size, bids.shape[1], asks.shape[1])
        sub.fill(
            slice(None),
            trades,
            buyers,
            sellers,
            buyer_price,
            seller_price,
            self.clearing[rows],  # already the final price: kept as it is
        )
        for name in ("slot", "alloc", "pay", "price", "seller_alloc", "seller_receipt"):
            getattr(self, name)[rows] = getattr(sub, name)

    def outcome(self) -> Outcome:
        """The :class:`Outcome` with the two-sided fields and the Walrasian
        interval in ``extra``."""
        return Outcome(
            slot=self.slot,
            alloc=self.alloc,
            pay=self.pay,
            price=self.price,
            clearing_price=self.clearing,
            seller_alloc=self.seller_alloc,
            seller_receipt=self.seller_receipt,
            extra={"walrasian_low": self.low, "walrasian_high": self.high},
        )


class _Kept:
    """The memory a sealed double auction keeps from one call to the next.

    The last outcome's block (the one allocation :class:`_Book` cuts the nine
    arrays from) and the last :class:`Workspace` with its seller columns.
    Every array of a returned :class:`Outcome` is a view whose ``base`` is the
    block, so while a caller holds any of them (or anything viewing them) the
    block's reference count shows it, and the next call allocates a fresh
    block, which it keeps instead: what a caller holds never changes. A block
    is reused for an outcome of between half and all of its entries, a
    workspace for the same ``n`` and ``m`` and no more rows; the workspace
    never leaves the mechanism, so it is reused whenever it fits. Use it only
    while holding :attr:`lock`.

    A copy or a pickle of the mechanism starts with nothing kept.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._block: NDArray[np.float64] | None = None
        #: ``sys.getrefcount`` of the block, read in :meth:`_refs`, when only
        #: this object held it
        self._alone = 0
        self._work: tuple[Workspace, NDArray[np.int64]] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__()

    def _refs(self) -> int:
        return sys.getrefcount(self._block)

    def block(self, size: int) -> NDArray[np.float64]:
        """``size`` float64 entries: the kept block's first, when no one else
        holds it and it fits, else a fresh block, kept from now on."""
        held = self._block
        fits = held is not None and size <= held.size <= 2 * size
        del held  # the count below must see only this object's reference
        if not (fits and self._refs() == self._alone):
            self._block = None  # a held block is the holder's alone
            self._block = np.empty(size)
            self._alone = self._refs()
        return self._block[:size]

    def work(self, rows: int, n: int, m: int) -> tuple[Workspace, NDArray[np.int64]]:
        """A :class:`Workspace` for blocks of ``rows`` markets and its seller
        columns (see :meth:`fresh_work`): the kept one when it fits."""
        if self._work is not None:
            work, seller_col = self._work
            if (
                work.b_pad.shape[1] == n + 2
                and work.s_pad.shape[1] == m + 2
                and work.b_pad.shape[0] >= rows
            ):
                return work, seller_col
        self._work = self.fresh_work(rows, n, m)
        return self._work

    @staticmethod
    def fresh_work(rows: int, n: int, m: int) -> tuple[Workspace, NDArray[np.int64]]:
        """A new :class:`Workspace` for blocks of ``rows`` markets and each flat
        entry's column in a block of asks ``[rows, m]`` (the sellers' indices
        are gathered from it instead of a remainder of their flat indices)."""
        return workspace(rows, n, m), np.tile(np.arange(m, dtype=np.int64), rows)

    def forget(self) -> None:
        """Drop the kept block (after a call that failed half-way through it)."""
        self._block = None


class CDA(TwoSided):
    """One round of a continuous double auction with an order book.

    Every active trader places one order, in the arrival ``order``. An incoming
    bid that meets the best standing ask (``bid >= ask``) trades at the ask, and
    both traders leave; an incoming ask that meets the best standing bid trades
    at the bid. Otherwise the order stands if it improves the best order of its
    side (the NYSE spread-reduction rule of Gode & Sunder 1993: the book keeps
    the best bid and the best ask; a replaced or non-improving order is
    dropped). Buyers bidding under ``reserve`` place no order. The book starts
    empty on each call and whatever has not traded expires at its end. The
    environment calls ``clear`` once per round of a trading period, marking
    traders that already traded as inactive.

    The loop runs over the ``n + m`` arrival steps only; every step is a numpy
    operation over all ``B`` markets.
    """

    sequential = True
    name = "cda"

    def clear(
        self,
        bids: ArrayLike,
        asks: ArrayLike,
        rng: np.random.Generator | None = None,
        order: ArrayLike | None = None,
        buyer_active: ArrayLike | None = None,
        seller_active: ArrayLike | None = None,
    ) -> Outcome:
        """Process one round of orders.

        Args:
            bids: ``float64 [B, n]`` buyers' bids, >= 0.
            asks: ``float64 [B, m]`` sellers' asks, >= 0.
            rng: draws the arrival order when ``order`` is None; default the
                mechanism's own generator.
            order: ``int [B, n + m]`` arrival order, each row a permutation of
                ``0..n+m-1`` (``0..n-1`` buyers, ``n..n+m-1`` sellers).
            buyer_active: ``bool [B, n]``, False for buyers who place no order
                (already traded); default all True.
            seller_active: ``bool [B, m]``, the same for sellers.

        Returns:
            :class:`Outcome`; ``clearing_price`` is the mean trade price of the
            round (``nan`` with no trade) and ``extra["trade_step"]`` ``int64
            [B, n]`` the arrival step at which each buyer traded (-1 for none).
        """
        gen = self._gen(rng)
        bids, asks = check_two_sided(bids, asks)
        n_markets, n = bids.shape
        m = asks.shape[1]
        order = self._order(order, n_markets, n + m, gen)
        b_act = _mask(buyer_active, "buyer_active", bids.shape) & (bids >= self.reserve)
        s_act = _mask(seller_active, "seller_active", asks.shape)

        slot = np.full((n_markets, n), -1, dtype=np.int64)
        step_of = np.full((n_markets, n), -1, dtype=np.int64)
        price = np.zeros((n_markets, n))
        seller_alloc = np.zeros((n_markets, m))
        receipt = np.zeros((n_markets, m))
        # the book: best standing bid (-inf: none) and ask (inf: none); an empty
        # side can never be met, so no separate "is there an order" test
        bid_px = np.full(n_markets, -np.inf)
        bid_who = np.full(n_markets, -1, dtype=np.int64)
        ask_px = np.full(n_markets, np.inf)
        ask_who = np.full(n_markets, -1, dtype=np.int64)
        # every step's order, gathered once: [n + m, B], one contiguous row a step
        who_t = np.ascontiguousarray(order.T)
        px_t = np.take_along_axis(np.concatenate([bids, asks], 1), order, 1).T.copy()
        live = np.concatenate([b_act, s_act], 1)
        live_t = np.take_along_axis(live, order, 1).T.copy()

        for t in range(n + m):
            who, px = who_t[t], px_t[t]
            is_buyer = who < n
            buying = live_t[t] & is_buyer
            selling = live_t[t] & ~is_buyer
            hit_ask = buying & (px >= ask_px)
            hit_bid = selling & (px <= bid_px)
            traded = hit_ask | hit_bid
            if traded.any():
                r = np.flatnonzero(traded)
                took_ask = hit_ask[r]
                # the buyer, the seller and the standing price of each trade
                b_i = np.where(took_ask, who[r], bid_who[r])
                s_i = np.where(took_ask, ask_who[r], who[r] - n)
                p = np.where(took_ask, ask_px[r], bid_px[r])
                slot[r, b_i] = s_i
                price[r, b_i] = p
                step_of[r, b_i] = t
                seller_alloc[r, s_i] = 1.0
                receipt[r, s_i] = p
                ask_px[r[took_ask]] = np.inf
                ask_who[r[took_ask]] = -1
                bid_px[r[~took_ask]] = -np.inf
                bid_who[r[~took_ask]] = -1
            better_bid = buying & ~hit_ask & (px > bid_px)
            better_ask = selling & ~hit_bid & (px < ask_px)
            np.copyto(bid_px, px, where=better_bid)
            np.copyto(bid_who, who, where=better_bid)
            np.copyto(ask_px, px, where=better_ask)
            np.copyto(ask_who, who - n, where=better_ask)

        alloc = (slot >= 0).astype(np.float64)
        n_trades = alloc.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_price = np.where(n_trades > 0, price.sum(axis=1) / n_trades, np.nan)
        return Outcome(
            slot=slot,
            alloc=alloc,
            pay=price.copy(),
            price=price,
            clearing_price=mean_price,
            seller_alloc=seller_alloc,
            seller_receipt=receipt,
            extra={"trade_step": step_of},
        )

    @staticmethod
    def _order(
        order: ArrayLike | None,
        n_markets: int,
        n_traders: int,
        gen: np.random.Generator,
    ) -> NDArray[np.int64]:
        """The arrival order ``[B, n + m]``: validated, or a fresh random one."""
        if order is None:
            base = np.broadcast_to(np.arange(n_traders), (n_markets, n_traders))
            return gen.permuted(base, axis=1)
        arr = np.asarray(order)
        if arr.shape != (n_markets, n_traders):
            raise UserError(
                f"order must have shape [B, n + m] = {(n_markets, n_traders)}, "
                f"got {arr.shape}"
            )
        if not np.issubdtype(arr.dtype, np.integer):
            raise UserError(f"order must hold integer trader indices, got {arr.dtype}")
        bad = (np.sort(arr, axis=1) != np.arange(n_traders)).any(axis=1)
        if bad.any():
            b = int(np.flatnonzero(bad)[0])
            raise UserError(
                f"order rows must be permutations of 0..{n_traders - 1}, "
                f"got {arr[b].tolist()} in market {b}"
            )
        return arr.astype(np.int64, copy=False)


def _mask(
    mask: ArrayLike | None, name: str, shape: tuple[int, ...]
) -> NDArray[np.bool_]:
    """An activity mask of ``shape`` (default all True)."""
    if mask is None:
        return np.ones(shape, dtype=bool)
    arr = np.asarray(mask)
    if arr.shape != shape:
        raise UserError(f"{name} must have shape {shape}, got {arr.shape}")
    if arr.dtype != np.bool_:
        raise UserError(f"{name} must be a bool array, got dtype {arr.dtype}")
    return arr
