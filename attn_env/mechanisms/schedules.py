"""A uniform-price call market on step supply and demand schedules.

``B`` markets at once. Buyer ``i`` submits ``S`` steps, seller ``j`` submits
``T`` steps; a step is a limit order for a divisible good:

==================  =================  =========================================
array               shape              meaning
==================  =================  =========================================
``bid_prices``      ``[B, n, S]``      buyer step: buy up to ``q`` at any price
                                       ``<= p`` (``p`` = its marginal value)
``bid_quantities``  ``[B, n, S]``      that ``q``, >= 0 (0: an unused step)
``ask_prices``      ``[B, m, T]``      seller step: sell up to ``q`` at any
                                       price ``>= p`` (``p`` = marginal cost)
``ask_quantities``  ``[B, m, T]``      that ``q``, >= 0
==================  =================  =========================================

Steps need not be sorted: a buyer's demand is ``d_i(p) = sum_s q_is 1[p_is >= p]``
and a seller's supply ``s_j(p) = sum_t q_jt 1[p_jt <= p]``, so a falling
demand schedule (decreasing marginal values) and a rising supply schedule
(increasing marginal cost) are what truthful traders send. Aggregate demand
``D(p)`` falls, aggregate supply ``S(p)`` rises.

**Volume.** ``Q* = max_p min(D(p), S(p))``: the efficient volume, every unit
whose marginal value is at least the marginal cost of the unit it meets.

**Allocation (rationing at the margin, pro rata).** Steps trade in price
priority. The *marginal bid* ``p_D = max {p : D(p) >= Q*}`` is the price of the
last demand step that trades; every demand step priced above ``p_D`` fills
completely, the steps priced exactly ``p_D`` share what is left,
``Q* - D^+(p_D)``, in proportion to their quantities (``D^+(p)``: demand
priced strictly above ``p``). The supply side is the mirror image with the
*marginal ask* ``p_S = min {p : S(p) >= Q*}``. The allocation is efficient,
and no step trades more than its quantity, so no trader buys (sells) more
than it asked for.

**Tie rule: the interval of clearing prices.** ``p`` clears the market,
``d(p) = s(p)``, when ``Q*`` lies in the demand correspondence
``[D^+(p), D(p)]`` and in the supply correspondence ``[S^-(p), S(p)]``: the
steps strictly better than ``p`` want no more than ``Q*`` and those at ``p``
are indifferent. These prices form the Walrasian interval::

    low  = max(p_S, b_next)   b_next: best bid with quantity left unfilled (0: none)
    high = min(p_D, a_next)   a_next: best ask with quantity left unfilled (inf: none)

(for one-unit traders: ``[max(s_q, b_{q+1}), min(b_q, s_{q+1})]``, the
``call_market`` interval). With no trade it is ``[b_1, a_1]``, the best bid and
the best ask.

===================  ==========================================================
``rule``             trades and prices
===================  ==========================================================
``uniform``          ``Q*`` trades at ``p* = k high + (1 - k) low`` (the
                     default, ``k = 0.5``); budget balanced
``k_double``         ``Q*`` trades at ``k p_D + (1 - k) p_S``, between the
                     marginal bid and ask (may leave the Walrasian interval);
                     budget balanced
``trade_reduction``  McAfee (1992) on steps: ``p0 = (b_next + a_next) / 2``; if
                     ``p_S <= p0 <= p_D`` all of ``Q*`` trades at ``p0``; else
                     the marginal steps are dropped, ``min(D^+(p_D), S^-(p_S))``
                     trades in price priority, buyers pay ``p_D`` and sellers
                     receive ``p_S``. Never a deficit; truthful for one-unit
                     traders
===================  ==========================================================

Every price of a trade lies in ``[p_S, p_D]``: a trading buyer's steps are
priced at least what it pays, a trading seller's at most what it receives
(individual rationality for truthful schedules).

**Dust.** Quantities are compared with a tolerance of :data:`RTOL` times the
market's total quantity (demand plus supply): floating sums of quantities in
different orders differ by rounding, and a step smaller than that tolerance
is dropped from the book. Integer quantities are summed exactly.

The rule is deterministic (pro rata needs no random draw). This family takes
schedules, not one bid per trader, so it is made by name
(``mechanisms.make("schedule_call_market", rule=..., k=...)``) but is not in
``mechanisms.names()``, whose mechanisms the environments clear.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from attn_env.errors import ConfigError, UserError
from attn_env.mechanisms._validate import (
    as_batch,
    check_k,
    check_nonneg,
    check_reserve,
    check_unknown,
)

__all__ = [
    "CHUNK",
    "RTOL",
    "RULES",
    "ScheduleCallMarket",
    "ScheduleOutcome",
    "check_schedules",
    "unit_schedules",
]

RULES = ("uniform", "k_double", "trade_reduction")
"The pricing rules of :class:`ScheduleCallMarket`."

RTOL = 1e-9
"Quantities within ``RTOL`` x the market's total quantity are equal (see Dust)."

CHUNK = 4096
"""Markets cleared per block: a block's two dozen temporaries stay in cache (one
call on 200,000 markets ran about 2.5x slower than the same markets in blocks
of 4,096; ``benchmarks/compute_market.py``)."""


@dataclass(frozen=True)
class ScheduleOutcome:
    """What a schedule market decided for ``B`` markets.

    Attributes:
        bid_fill: ``float64 [B, n, S]`` quantity bought on each demand step.
        ask_fill: ``float64 [B, m, T]`` quantity sold on each supply step.
        buyer_qty: ``float64 [B, n]`` quantity each buyer bought.
        buyer_pay: ``float64 [B, n]`` money each buyer pays (> 0: it pays).
        seller_qty: ``float64 [B, m]`` quantity each seller sold.
        seller_receipt: ``float64 [B, m]`` money each seller receives.
        buyer_price: ``float64 [B]`` price per unit buyers pay (``nan``: no trade).
        seller_price: ``float64 [B]`` price per unit sellers receive (``nan``: no
            trade); equal to ``buyer_price`` except under trade reduction.
        clearing_price: ``float64 [B]`` the headline price: the uniform price, or
            the mean of buyer and seller price; ``nan`` where nothing trades.
        volume: ``float64 [B]`` quantity traded.
        efficient_volume: ``float64 [B]`` ``Q*``, the efficient volume.
        walrasian_low: ``float64 [B]`` low end of the Walrasian interval.
        walrasian_high: ``float64 [B]`` high end (``inf``: no seller left).
        marginal_bid: ``float64 [B]`` ``p_D`` (``nan`` where ``Q* = 0``).
        marginal_ask: ``float64 [B]`` ``p_S`` (``nan`` where ``Q* = 0``).
    """

    bid_fill: NDArray[np.float64]
    ask_fill: NDArray[np.float64]
    buyer_qty: NDArray[np.float64]
    buyer_pay: NDArray[np.float64]
    seller_qty: NDArray[np.float64]
    seller_receipt: NDArray[np.float64]
    buyer_price: NDArray[np.float64]
    seller_price: NDArray[np.float64]
    clearing_price: NDArray[np.float64]
    volume: NDArray[np.float64]
    efficient_volume: NDArray[np.float64]
    walrasian_low: NDArray[np.float64]
    walrasian_high: NDArray[np.float64]
    marginal_bid: NDArray[np.float64]
    marginal_ask: NDArray[np.float64]

    @property
    def budget_surplus(self) -> NDArray[np.float64]:
        """Buyers' payments minus sellers' receipts per market, ``[B]`` (>= 0)."""
        return self.buyer_pay.sum(axis=1) - self.seller_receipt.sum(axis=1)

    def welfare(
        self, bid_prices: ArrayLike, ask_prices: ArrayLike
    ) -> NDArray[np.float64]:
        """Gains from trade per market, ``[B]``, read at the given step prices
        (true values and costs for the realised welfare)."""
        bp = np.asarray(bid_prices, dtype=np.float64)
        ap = np.asarray(ask_prices, dtype=np.float64)
        return (self.bid_fill * bp).sum(axis=(1, 2)) - (self.ask_fill * ap).sum(
            axis=(1, 2)
        )


def check_schedules(
    bid_prices: ArrayLike,
    bid_quantities: ArrayLike,
    ask_prices: ArrayLike,
    ask_quantities: ArrayLike,
) -> tuple[
    NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]
]:
    """Validate four schedule arrays: finite, >= 0, matching shapes and ``B``."""
    bp = as_batch(bid_prices, "bid_prices", "B, n, S")
    bq = as_batch(bid_quantities, "bid_quantities", "B, n, S")
    ap = as_batch(ask_prices, "ask_prices", "B, m, T")
    aq = as_batch(ask_quantities, "ask_quantities", "B, m, T")
    for arr, name in ((bp, "bid_prices"), (bq, "bid_quantities")):
        check_nonneg(arr, name)
    for arr, name in ((ap, "ask_prices"), (aq, "ask_quantities")):
        check_nonneg(arr, name)
    if bp.shape != bq.shape:
        raise UserError(
            f"bid_quantities must have the shape of bid_prices {bp.shape}, "
            f"got {bq.shape}"
        )
    if ap.shape != aq.shape:
        raise UserError(
            f"ask_quantities must have the shape of ask_prices {ap.shape}, "
            f"got {aq.shape}"
        )
    if bp.shape[0] != ap.shape[0]:
        raise UserError(
            f"bids and asks must have the same batch size B, got bid_prices "
            f"{bp.shape} and ask_prices {ap.shape}"
        )
    return bp, bq, ap, aq


def unit_schedules(
    bids: ArrayLike, asks: ArrayLike
) -> tuple[
    NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]
]:
    """One-unit traders as schedules: ``bids [B, n]``, ``asks [B, m]`` become
    ``(bid_prices, bid_quantities, ask_prices, ask_quantities)`` with ``S = T = 1``
    and quantity 1 each (the book of the unit-demand double auctions)."""
    b = np.asarray(bids, dtype=np.float64)[..., None]
    a = np.asarray(asks, dtype=np.float64)[..., None]
    return b, np.ones_like(b), a, np.ones_like(a)


class ScheduleCallMarket:
    """Uniform-price call market on step schedules (module docstring: the rules).

    Args:
        rule: ``uniform`` (default), ``k_double`` or ``trade_reduction``.
        k: where the price lies: in the Walrasian interval (``uniform``) or
            between the marginal ask and bid (``k_double``), in [0, 1].
        reserve: demand steps priced under it are out of the book; under
            trade reduction buyers pay at least it. 0 or in ``[1e-150, 1e150]``.
    """

    name: ClassVar[str] = "schedule_call_market"
    #: not one of ``mechanisms.FAMILIES``: ``clear`` takes schedules.
    family: ClassVar[str] = "schedule"
    params: ClassVar[dict[str, Any]] = {"rule": "uniform", "k": 0.5}

    def __init__(self, *, reserve: float = 0.0, **params: Any):
        self.reserve = check_reserve(reserve)
        unknown = {k: v for k, v in params.items() if k not in self.params}
        check_unknown(type(self).__name__, unknown, ["reserve", *self.params])
        rule = params.get("rule", "uniform")
        if rule not in RULES:
            raise ConfigError(
                f"ScheduleCallMarket rule must be one of {', '.join(RULES)}, "
                f"got {rule!r}"
            )
        self.rule: str = rule
        self.k: float = check_k(params.get("k", 0.5))

    @classmethod
    def parameters(cls) -> dict[str, Any]:
        """Every keyword the constructor accepts, with its default."""
        return {"reserve": 0.0, **cls.params}

    def __repr__(self) -> str:
        return (
            f"ScheduleCallMarket(reserve={self.reserve!r}, rule={self.rule!r}, "
            f"k={self.k!r})"
        )

    def clear(
        self,
        bid_prices: ArrayLike,
        bid_quantities: ArrayLike,
        ask_prices: ArrayLike,
        ask_quantities: ArrayLike,
    ) -> ScheduleOutcome:
        """Clear ``B`` markets of step schedules at once.

        Args:
            bid_prices: ``float64 [B, n, S]`` buyers' step prices, >= 0.
            bid_quantities: ``float64 [B, n, S]`` their quantities, >= 0.
            ask_prices: ``float64 [B, m, T]`` sellers' step prices, >= 0.
            ask_quantities: ``float64 [B, m, T]`` their quantities, >= 0.

        Returns:
            :class:`ScheduleOutcome`.
        """
        bp3, bq3, ap3, aq3 = check_schedules(
            bid_prices, bid_quantities, ask_prices, ask_quantities
        )
        n_markets = bp3.shape[0]
        if n_markets <= CHUNK:
            return self._clear_block(bp3, bq3, ap3, aq3)
        # every market is cleared on its own row: blocks give the same bits
        fields: dict[str, NDArray[np.float64]] = {}
        for i in range(0, n_markets, CHUNK):
            part = self._clear_block(*(x[i : i + CHUNK] for x in (bp3, bq3, ap3, aq3)))
            for f in dataclasses.fields(ScheduleOutcome):
                block = getattr(part, f.name)
                if i == 0:
                    fields[f.name] = np.empty((n_markets, *block.shape[1:]))
                fields[f.name][i : i + CHUNK] = block
        return ScheduleOutcome(**fields)

    def _clear_block(
        self,
        bp3: NDArray[np.float64],
        bq3: NDArray[np.float64],
        ap3: NDArray[np.float64],
        aq3: NDArray[np.float64],
    ) -> ScheduleOutcome:
        """:meth:`clear` on checked schedules of at most :data:`CHUNK` markets."""
        n_markets = bp3.shape[0]
        bp = bp3.reshape(n_markets, -1)
        ap = ap3.reshape(n_markets, -1)
        bq = bq3.reshape(n_markets, -1)
        aq = aq3.reshape(n_markets, -1)
        if self.reserve > 0.0:
            bq = np.where(bp >= self.reserve, bq, 0.0)
        book = _Book(bp, bq, ap, aq)
        q_star = book.q_star
        trade = q_star > 0.0
        p_d = book.marginal_bid(q_star)
        p_s = book.marginal_ask(q_star)
        b_next, a_next = book.next_orders(q_star, p_d, p_s)
        low = np.where(trade, np.maximum(p_s, b_next), book.best_bid)
        high = np.where(trade, np.minimum(p_d, a_next), book.best_ask)
        volume, fill_d, fill_s = q_star, p_d, p_s
        if self.rule == "uniform":
            # where nothing trades high may be inf (no ask): 0 * inf is nan
            hi, lo = np.where(trade, high, 0.0), np.where(trade, low, 0.0)
            buyer_price = self.k * hi + (1.0 - self.k) * lo
            seller_price = buyer_price
        elif self.rule == "k_double":
            hi, lo = np.where(trade, p_d, 0.0), np.where(trade, p_s, 0.0)
            buyer_price = self.k * hi + (1.0 - self.k) * lo
            seller_price = buyer_price
        else:
            p0 = 0.5 * (b_next + a_next)
            keep = (p_s <= p0) & (p0 <= p_d)
            reduced = np.minimum(book.demand_above(p_d), book.supply_below(p_s))
            reduced = np.where(reduced > book.tol, reduced, 0.0)
            volume = np.where(keep, q_star, reduced)
            fill_d = np.where(keep, p_d, book.marginal_bid(volume))
            fill_s = np.where(keep, p_s, book.marginal_ask(volume))
            buyer_price = np.maximum(np.where(keep, p0, p_d), self.reserve)
            seller_price = np.where(keep, p0, p_s)
        traded = volume > 0.0
        buyer_price = np.where(traded, buyer_price, np.nan)
        seller_price = np.where(traded, seller_price, np.nan)
        bid_fill = _fill(bp, book.bq, volume, fill_d, +1).reshape(bp3.shape)
        ask_fill = _fill(ap, book.aq, volume, fill_s, -1).reshape(ap3.shape)
        buyer_qty = bid_fill.sum(axis=2)
        seller_qty = ask_fill.sum(axis=2)
        return ScheduleOutcome(
            bid_fill=bid_fill,
            ask_fill=ask_fill,
            buyer_qty=buyer_qty,
            buyer_pay=buyer_qty * np.where(traded, buyer_price, 0.0)[:, None],
            seller_qty=seller_qty,
            seller_receipt=seller_qty * np.where(traded, seller_price, 0.0)[:, None],
            buyer_price=buyer_price,
            seller_price=seller_price,
            clearing_price=0.5 * (buyer_price + seller_price),
            volume=volume,
            efficient_volume=q_star,
            walrasian_low=low,
            walrasian_high=high,
            marginal_bid=np.where(trade, p_d, np.nan),
            marginal_ask=np.where(trade, p_s, np.nan),
        )


class _Book:
    """The merged book of ``B`` markets: aggregate demand and supply at every
    step price, the efficient volume and the marginal prices.

    Steps of both sides are sorted together by price, asks before bids at an
    equal price (a stable sort of ``[asks, bids]``). At the last ask of a
    price, ``S(p)`` (asks ``<= p``) is complete; at the first bid of a price
    where no ask sits, and at the last ask where one does, ``D(p)`` (bids
    ``>= p``) is too. Elsewhere both are underestimates, which the maxima and
    minima below never pick.
    """

    def __init__(
        self,
        bp: NDArray[np.float64],
        bq: NDArray[np.float64],
        ap: NDArray[np.float64],
        aq: NDArray[np.float64],
    ):
        total = bq.sum(axis=1) + aq.sum(axis=1)
        self.tol = RTOL * total
        # dust: steps below the tolerance leave the book
        bq = np.where(bq > self.tol[:, None], bq, 0.0)
        aq = np.where(aq > self.tol[:, None], aq, 0.0)
        self.bp, self.bq, self.ap, self.aq = bp, bq, ap, aq
        prices = np.concatenate([ap, bp], axis=1)
        order = np.argsort(prices, axis=1, kind="stable")
        # one flat gather (take_along_axis builds an index per axis)
        flat = order + (np.arange(order.shape[0]) * order.shape[1])[:, None]
        self.prices = prices.ravel()[flat]
        weights = np.concatenate([aq, bq], axis=1).ravel()[flat]
        ask_side = order < ap.shape[1]
        w_s = np.where(ask_side, weights, 0.0)
        w_d = np.where(ask_side, 0.0, weights)
        self.supply_le = np.cumsum(w_s, axis=1)
        self.demand_ge = bq.sum(axis=1)[:, None] - (np.cumsum(w_d, axis=1) - w_d)
        self.is_bid = w_d > 0.0
        self.is_ask = w_s > 0.0
        q = np.minimum(self.supply_le, self.demand_ge).max(axis=1, initial=0.0)
        self.q_star = np.where(q > self.tol, q, 0.0)
        live_b = bq > 0.0
        live_a = aq > 0.0
        self.best_bid = np.where(live_b, bp, 0.0).max(axis=1, initial=0.0)
        self.best_ask = np.where(live_a, ap, np.inf).min(axis=1, initial=np.inf)

    def marginal_bid(self, q: NDArray[np.float64]) -> NDArray[np.float64]:
        """``max {p : D(p) >= q}`` over bid prices (``inf`` where ``q = 0``)."""
        ok = self.is_bid & (self.demand_ge >= (q - self.tol)[:, None])
        p = np.where(ok, self.prices, -np.inf).max(axis=1, initial=-np.inf)
        return np.where(q > 0.0, p, np.inf)

    def marginal_ask(self, q: NDArray[np.float64]) -> NDArray[np.float64]:
        """``min {p : S(p) >= q}`` over ask prices (``0`` where ``q = 0``)."""
        ok = self.is_ask & (self.supply_le >= (q - self.tol)[:, None])
        p = np.where(ok, self.prices, np.inf).min(axis=1, initial=np.inf)
        return np.where(q > 0.0, p, 0.0)

    def demand_above(self, p: NDArray[np.float64]) -> NDArray[np.float64]:
        """``D^+(p)``: demand priced strictly above ``p``, ``[B]``."""
        return np.where(self.bp > p[:, None], self.bq, 0.0).sum(axis=1)

    def supply_below(self, p: NDArray[np.float64]) -> NDArray[np.float64]:
        """``S^-(p)``: supply priced strictly below ``p``, ``[B]``."""
        return np.where(self.ap < p[:, None], self.aq, 0.0).sum(axis=1)

    def next_orders(
        self,
        q: NDArray[np.float64],
        p_d: NDArray[np.float64],
        p_s: NDArray[np.float64],
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """``(b_next, a_next)``: the best bid and the best ask with quantity left
        once ``q`` trades in price priority (``0`` / ``inf`` where none)."""
        bp, bq, ap, aq = self.bp, self.bq, self.ap, self.aq
        at_d = np.where(bp == p_d[:, None], bq, 0.0).sum(axis=1)
        left_d = self.demand_above(p_d) + at_d > q + self.tol
        below = np.where((bq > 0.0) & (bp < p_d[:, None]), bp, 0.0)
        b_next = np.where(left_d, p_d, below.max(axis=1, initial=0.0))
        at_s = np.where(ap == p_s[:, None], aq, 0.0).sum(axis=1)
        left_s = self.supply_below(p_s) + at_s > q + self.tol
        above = np.where((aq > 0.0) & (ap > p_s[:, None]), ap, np.inf)
        a_next = np.where(left_s, p_s, above.min(axis=1, initial=np.inf))
        return b_next, a_next


def _fill(
    price: NDArray[np.float64],
    qty: NDArray[np.float64],
    volume: NDArray[np.float64],
    margin: NDArray[np.float64],
    side: int,
) -> NDArray[np.float64]:
    """Quantity filled on each step when ``volume`` trades in price priority.

    Steps strictly better than the ``margin`` price (above it for bids,
    ``side = +1``; below it for asks, ``side = -1``) fill completely; steps at
    the margin share the rest in proportion to their quantities.

    Args:
        price: ``float64 [B, N]`` step prices.
        qty: ``float64 [B, N]`` step quantities.
        volume: ``float64 [B]`` quantity to fill (0: nothing).
        margin: ``float64 [B]`` the marginal price of that volume.
        side: ``+1`` for the demand side, ``-1`` for the supply side.

    Returns:
        ``float64 [B, N]``, each entry in ``[0, qty]``.
    """
    edge = margin[:, None]
    better = (price > edge) if side > 0 else (price < edge)
    at = price == edge
    full = np.where(better, qty, 0.0).sum(axis=1)
    tied = np.where(at, qty, 0.0).sum(axis=1)
    share = np.divide(volume - full, tied, out=np.zeros_like(volume), where=tied > 0.0)
    share = np.clip(share, 0.0, 1.0)[:, None]
    filled = np.where(better, qty, np.where(at, qty * share, 0.0))
    return np.where((volume > 0.0)[:, None], filled, 0.0)
