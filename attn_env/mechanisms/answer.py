"""Sponsored sources in a generated answer: ``segment_auction``, ``prominence_auction``.

``B`` markets, ``n`` advertisers, an answer of ``K`` segments (context
positions) with attention ``alpha_1 >= ... >= alpha_K`` and total attention
``A = alpha_1 + ... + alpha_K``. Advertiser ``i`` bids ``b_i`` per unit of
attention; its score is ``s_i = b_i * q_i`` (``q_i`` its passage's relevance,
1 by default). Only *eligible* advertisers take part: ``b_i > 0`` and
``b_i >= reserve``. Both rules give eligible advertiser ``i`` the share

    pi_i = s_i^beta / sum_{j eligible} s_j^beta

of the answer's attention in expectation, ``x_i(b) = A * pi_i``, and 0 to the
others. ``x_i`` is continuous and strictly increasing in ``b_i`` (for
``b_i >= reserve``; a jump from 0 at the reserve), so the allocation is
monotone and Myerson's payment identity

    P_i(b) = b_i x_i(b) - int_0^{b_i} x_i(z, b_-i) dz

gives the unique expected payments (with ``P_i(0) = 0``) that make truthful
bidding a dominant strategy in expectation; ``0 <= P_i <= b_i x_i``
(individual rationality).

==================  ===========================================================
rule                allocation
==================  ===========================================================
segment_auction     ``beta = 1``. Each of the ``K`` segments is drawn
                    independently: eligible advertiser ``i`` with probability
                    ``pi_i = s_i / sum_j s_j`` (a perturbed ranking: the argmax
                    of ``log s_i + Gumbel`` per segment, the retrieval
                    probability of retrieval-augmented generation; after
                    Hajiaghayi et al., NeurIPS 2024). An advertiser may win
                    several segments; ``alloc`` is the attention of the
                    segments it won, so ``E[alloc_i] = A * pi_i``.
prominence_auction  ``beta > 0`` (parameter). Deterministic prominence shares:
                    ``alloc_i = A * pi_i`` with ``pi_i`` proportional to
                    ``f(s_i) = s_i^beta`` (after Dubey et al., KDD 2024,
                    "Auctions with LLM summaries", whose prominence function is
                    ``f(prom) = prom^beta``; the proportional normalisation is
                    ours). ``beta -> inf`` approaches winner-takes-all.
==================  ===========================================================

Payments are charged per unit of attention: ``price_i = P_i / x_i`` (the
expected payment over the expected attention, at most ``b_i``), ``pay_i =
price_i * alloc_i``. In the prominence auction ``alloc = x`` and ``pay = P``;
in the segment auction the payment follows the realised attention, so
``E[pay_i] = P_i`` exactly and no advertiser ever pays more than its bid per
unit it got (ex-post individually rational; truthful in expectation, the
property Myerson's identity gives a randomised rule).

Closed form of the payment. With ``S = sum_{j != i eligible} s_j^beta``,
``z0 = S^(1/beta) / q_i`` (the bid at which ``i`` would take half) and
``x~(z) = A (z/z0)^beta / (1 + (z/z0)^beta)`` (the allocation with no
reserve),

    P_i = G(b_i) - G(r) + r x~(r),     G(u) = u x~(u) - int_0^u x~ = A z0 Phi(u / z0),
    Phi(Y) = int_0^Y beta y^beta / (1 + y^beta)^2 dy
           = beta / (beta + 1) * Y^(beta + 1) * 2F1(2, 1 + 1/beta; 2 + 1/beta; -Y^beta)

for ``b_i >= r`` (``r`` the reserve, ``G(0) = 0``); ``beta = 1`` gives
``Phi(Y) = log(1 + Y) - Y / (1 + Y)``. ``S = 0`` (a sole eligible advertiser)
gives ``P_i = r A``. :func:`phi` evaluates ``Phi`` to float accuracy for
``Y <= 1e150`` (``beta < 1``: larger ``Y`` are taken as ``1e150``; a bidder
150 orders of magnitude above the rest of the market).

Units and fields as in :mod:`attn_env.mechanisms.position`: ``alloc`` is the
attention won, ``price`` per unit, ``pay`` total. ``extra`` holds
``expected_alloc`` (``x``), ``expected_pay`` (``P``) and ``share`` (``pi``),
all ``[B, n]``; the segment auction adds ``segment_winner [B, K]`` (the
advertiser of each segment, ``-1`` for none).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import hyp2f1

from attn_env.checks import check_real, show
from attn_env.errors import ConfigError, UserError
from attn_env.mechanisms._base import OneSided
from attn_env.mechanisms._validate import (
    as_batch,
    check_nonneg,
    check_positive,
    check_weights,
)
from attn_env.mechanisms.outcome import Outcome

__all__ = ["AnswerAuction", "ProminenceAuction", "SegmentAuction", "phi"]

#: largest ``beta`` accepted: ``s^beta`` of the accepted scores stays a float
#: in log space, and larger exponents are winner-takes-all in all but name.
MAX_BETA = 64.0
_Y_CAP = 1e150


def phi(y: NDArray[np.float64], beta: float) -> NDArray[np.float64]:
    """``Phi(Y) = int_0^Y beta t^beta / (1 + t^beta)^2 dt`` for ``Y >= 0``.

    The area left of the normalised allocation curve ``t^beta / (1 + t^beta)``
    up to ``Y``: Myerson's payment in units of ``A * z0``. ``Y <= 1`` takes the
    hypergeometric series (argument in ``[-1, 0]``); ``Y > 1`` with
    ``beta > 1`` takes the same integral split at 1 and reflected ``t -> 1/t``
    (so nothing overflows); ``beta = 1`` is elementary.
    """
    y = np.asarray(y, dtype=np.float64)
    if beta == 1.0:
        # small Y: the series Y^2/2 - 2Y^3/3 + ... avoids the cancellation
        small = y < 1e-3
        ys = np.where(small, y, 0.0)
        series = ys**2 * (0.5 - ys * (2.0 / 3.0 - ys * (0.75 - ys * 0.8)))
        yb = np.where(small, 1.0, y)
        return np.where(small, series, np.log1p(yb) - yb / (1.0 + yb))
    out = np.empty_like(y)
    low = y <= 1.0
    yl = np.where(low, y, 0.0)
    out[low] = _phi_series(yl[low], beta)
    high = ~low
    if high.any():
        yh = y[high]
        if beta > 1.0:
            # Phi(Y) = F(Y) - Y / (1 + Y^beta), F(Y) = int_0^Y dt / (1 + t^beta);
            # F(Y) = F(1) + int_{1/Y}^1 s^(beta-2) / (1 + s^beta) ds
            #      = F(1) + E(1) - E(1/Y)
            s = 1.0 / yh
            f1 = float(hyp2f1(1.0, 1.0 / beta, 1.0 + 1.0 / beta, -1.0))
            out[high] = (
                f1
                + _e(np.ones(1), beta)[0]
                - _e(s, beta)
                - s ** (beta - 1.0) / (s**beta + 1.0)
            )
        else:
            yh = np.minimum(yh, _Y_CAP)
            # Y^(beta+1) <= 1e300 for beta < 1: the series form stays finite
            out[high] = _phi_series(yh, beta)
    return np.maximum(out, 0.0)


def _phi_series(y: NDArray[np.float64], beta: float) -> NDArray[np.float64]:
    """``Phi`` by its hypergeometric form (accurate for ``Y <= 1`` and for
    ``beta < 1`` beyond)."""
    return (
        beta
        / (beta + 1.0)
        * y ** (beta + 1.0)
        * hyp2f1(2.0, 1.0 + 1.0 / beta, 2.0 + 1.0 / beta, -(y**beta))
    )


def _e(s: NDArray[np.float64], beta: float) -> NDArray[np.float64]:
    """Antiderivative of ``s^(beta-2) / (1 + s^beta)`` on ``[0, 1]``, ``beta > 1``."""
    return (
        s ** (beta - 1.0)
        / (beta - 1.0)
        * hyp2f1(1.0, 1.0 - 1.0 / beta, 2.0 - 1.0 / beta, -(s**beta))
    )


class AnswerAuction(OneSided):
    """Shares of an answer's attention ``proportional to (bid x quality)^beta``
    with Myerson payments; subclasses set ``beta`` and how shares are realised.

    Args:
        reserve: minimum bid per unit to take part, and the least price.
        seed: seed of the generator used when ``clear`` gets no ``rng``.
        n_slots: ``K`` segments when ``clear`` gets no ``weights`` (attention 1).
    """

    params: ClassVar[dict[str, Any]] = {"n_slots": 1}
    #: attention goes by shares, not by ranked slots of one ``alpha`` each:
    #: properties of slot rankings do not apply (tests/test_answer_mechanisms.py).
    share_rule: ClassVar[bool] = True
    #: the realised allocation is random (its mean: ``extra["expected_alloc"]``).
    randomised: ClassVar[bool] = False

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

    @property
    def exponent(self) -> float:
        """``beta`` of the share rule."""
        return 1.0

    def _inputs(
        self, bids: ArrayLike, weights: ArrayLike | None, quality: ArrayLike | None
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        """Checked ``bids [B, n]``, ``alpha [B, K]`` and ``quality [B, n]``."""
        b = as_batch(bids, "bids", "B, n")
        check_nonneg(b, "bids")
        if weights is None:
            alpha = np.ones((b.shape[0], self.n_slots))
        else:
            alpha = check_weights(weights, b.shape[0])
        if quality is None:
            q = np.ones_like(b)
        else:
            q = as_batch(quality, "quality", "B, n")
            if q.shape != b.shape:
                raise UserError(
                    f"quality must have the shape of bids {b.shape}, got {q.shape}"
                )
            check_positive(q, "quality")
        return b, alpha, q

    def expected(
        self,
        bids: ArrayLike,
        weights: ArrayLike | None = None,
        quality: ArrayLike | None = None,
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        """Expected attention ``x``, Myerson payment ``P`` and share ``pi``, ``[B, n]``.

        Same arguments as :meth:`clear`; nothing random is drawn.
        """
        b, alpha, q = self._inputs(bids, weights, quality)
        return self._expected(b, alpha.sum(axis=1), q)

    def _expected(
        self, b: NDArray[np.float64], total: NDArray[np.float64], q: NDArray[np.float64]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        """``x, P, pi`` from checked inputs; ``total [B]`` is ``A``."""
        beta = self.exponent
        r = self.reserve
        elig = (b > 0.0) & (b >= r)
        s = np.where(elig, b * q, 0.0)
        # log-space shares: s^beta of accepted scores may overflow for large beta
        smax = s.max(axis=1, keepdims=True)
        safe_max = np.where(smax > 0, smax, 1.0)
        rel = s / safe_max  # in [0, 1]
        h = np.zeros_like(rel)
        np.power(rel, beta, out=h, where=elig)
        hsum = h.sum(axis=1, keepdims=True)
        share = np.where(elig, h / np.where(hsum > 0, hsum, 1.0), 0.0)
        big_a = total[:, None]
        x = big_a * share
        # others' weight S_i relative to smax^beta; rounding can leave a tiny
        # negative, and a sole bidder has exactly 0
        others = np.maximum(hsum - h, 0.0)
        sole = elig & (others <= hsum * 1e-300)
        ot = np.where(sole | ~elig, 1.0, others)
        root = ot ** (1.0 / beta)  # S_i^(1/beta) / smax
        # z0 = S_i^(1/beta) / q_i = root * smax / q_i
        z0 = root * safe_max / q
        y_b = np.where(elig & ~sole, b / z0, 0.0)
        pay = phi(y_b, beta)
        if r > 0.0:
            y_r = np.where(elig & ~sole, r / z0, 0.0)
            # x~(r) / A = 1 / (1 + Y_r^-beta): no inf / inf for a large Y_r
            with np.errstate(divide="ignore", over="ignore"):
                frac = 1.0 / (1.0 + np.where(y_r > 0, y_r, 1.0) ** -beta)
            frac = np.where(y_r > 0, frac, 0.0)
            pay = pay - phi(y_r, beta) + y_r * frac
        pay = big_a * z0 * pay
        pay = np.where(sole, r * big_a, pay)
        pay = np.where(elig, np.clip(pay, 0.0, b * x), 0.0)
        return x, pay, share

    def _priced(
        self,
        alloc: NDArray[np.float64],
        x: NDArray[np.float64],
        p: NDArray[np.float64],
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Per-unit price ``P / x`` and the payment ``price * alloc``."""
        price = np.where(x > 0, p / np.where(x > 0, x, 1.0), 0.0)
        price = np.where(alloc > 0, price, 0.0)
        return price, price * alloc


class SegmentAuction(AnswerAuction):
    """Each answer segment goes to advertiser ``i`` with probability
    ``b_i q_i / sum_j b_j q_j``, independently; Myerson payments per unit won."""

    name = "segment_auction"
    randomised = True

    def clear(
        self,
        bids: ArrayLike,
        weights: ArrayLike | None = None,
        quality: ArrayLike | None = None,
        rng: np.random.Generator | None = None,
    ) -> Outcome:
        """Clear ``B`` answers at once.

        Args:
            bids: ``float64 [B, n]`` bid per unit of attention, >= 0.
            weights: attention ``alpha`` of the segments, descending, ``[K]`` or
                ``[B, K]``; default ``n_slots`` segments of 1.
            quality: ``float64 [B, n]`` relevance of each advertiser's passage,
                > 0; default 1.
            rng: draws the segments; default the mechanism's own generator.

        Returns:
            :class:`Outcome`: ``slot`` the first segment won (``-1`` none),
            ``alloc`` the attention of the segments won, ``price`` per unit
            (``P / x``), ``pay``, ``clearing_price`` (price of the first
            segment's advertiser, ``nan`` if no one is eligible) and the
            ``extra`` arrays of the module docstring.
        """
        gen = self._gen(rng)
        b, alpha, q = self._inputs(bids, weights, quality)
        n_markets, n = b.shape
        x, p, share = self._expected(b, alpha.sum(axis=1), q)
        k = alpha.shape[1]
        cum = np.cumsum(share, axis=1)
        # one uniform per segment; the winner is the first i with cum_i > u
        u = gen.random((n_markets, k)) * cum[:, -1:]
        winner = (cum[:, None, :] <= u[:, :, None]).sum(axis=2)
        has = cum[:, -1] > 0
        winner = np.where(has[:, None], np.minimum(winner, n - 1), -1)
        alloc = np.zeros((n_markets, n))
        rows = np.repeat(np.arange(n_markets), k)
        win_flat = winner.ravel()
        ok = win_flat >= 0
        np.add.at(alloc, (rows[ok], win_flat[ok]), alpha.ravel()[ok])
        # first segment won: scan segments from last to first
        slot = np.full((n_markets, n), -1, dtype=np.int64)
        for j in range(k - 1, -1, -1):
            w = winner[:, j]
            hit = np.flatnonzero(w >= 0)
            slot[hit, w[hit]] = j
        price, pay = self._priced(alloc, x, p)
        top = winner[:, 0]
        clearing = np.where(
            top >= 0,
            np.take_along_axis(
                np.where(x > 0, p / np.where(x > 0, x, 1.0), 0.0),
                np.maximum(top, 0)[:, None],
                axis=1,
            )[:, 0],
            np.nan,
        )
        return Outcome(
            slot=slot,
            alloc=alloc,
            pay=pay,
            price=price,
            clearing_price=clearing,
            extra={
                "expected_alloc": x,
                "expected_pay": p,
                "share": share,
                "segment_winner": winner,
            },
        )


class ProminenceAuction(AnswerAuction):
    """Deterministic prominence shares ``proportional to (b_i q_i)^beta``
    of the answer's attention, Myerson payments.

    Args:
        beta: exponent of the prominence function ``f(s) = s^beta``, in
            ``(0, 64]``; 1 is proportional, large values winner-takes-all.
    """

    name = "prominence_auction"
    params: ClassVar[dict[str, Any]] = {"n_slots": 1, "beta": 2.0}

    def __init__(self, *, reserve: float = 0.0, seed: int | None = None, **params: Any):
        super().__init__(reserve=reserve, seed=seed, **params)
        self.beta = check_real(self.beta, "beta", 0.0, MAX_BETA, above=True)

    @property
    def exponent(self) -> float:
        return self.beta

    def clear(
        self,
        bids: ArrayLike,
        weights: ArrayLike | None = None,
        quality: ArrayLike | None = None,
        rng: np.random.Generator | None = None,
    ) -> Outcome:
        """Clear ``B`` answers at once (nothing random: ``rng`` is checked only).

        Args:
            bids: ``float64 [B, n]`` bid per unit of attention, >= 0.
            weights: attention ``alpha`` of the answer's positions, descending,
                ``[K]`` or ``[B, K]``; only their sum ``A`` matters.
            quality: ``float64 [B, n]`` relevance, > 0; default 1.
            rng: unused (kept for the one-sided contract).

        Returns:
            :class:`Outcome`: ``alloc = A * share``, ``pay`` the Myerson
            payment, ``price = pay / alloc``, ``slot`` the prominence rank
            (0 = largest share; ``-1`` for no share; it may exceed ``K - 1``:
            shares are not slots), ``clearing_price`` the price of the most
            prominent advertiser (``nan`` if none).
        """
        self._gen(rng)
        b, alpha, q = self._inputs(bids, weights, quality)
        x, p, share = self._expected(b, alpha.sum(axis=1), q)
        price, pay = self._priced(x, x, p)
        order = np.argsort(-share, axis=1, kind="stable")
        rank = np.empty_like(order)
        np.put_along_axis(rank, order, np.arange(b.shape[1])[None, :], axis=1)
        slot = np.where(share > 0, rank, -1).astype(np.int64)
        top = order[:, 0]
        top_price = np.take_along_axis(price, top[:, None], axis=1)[:, 0]
        clearing = np.where(share.max(axis=1) > 0, top_price, np.nan)
        return Outcome(
            slot=slot,
            alloc=x,
            pay=pay,
            price=price,
            clearing_price=clearing,
            extra={"expected_alloc": x, "expected_pay": p, "share": share},
        )
