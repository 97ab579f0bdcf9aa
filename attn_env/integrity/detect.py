"""Detectors of manipulation in played markets, and how to score them.

Each detector reads what a market's log holds (bids, payments, allocations,
prices, the round's draws) and returns a score per unit (a market, or a
bidder or ad in a market); a threshold turns scores into flags, and
:func:`precision_recall` scores flags against labels. ``benchmarks/detection.py``
tunes the thresholds on a labelled training set and reports a test set.

- :func:`collusion_index`: where prices sit between the competitive and the
  fully collusive benchmark, ``(C - P) / (C - K)`` of mean prices, with ``C``
  the competitive price of each round (the lower end of its Walrasian interval:
  the second-highest value per unit in a one-slot auction, what truthful
  second price charges and, by revenue equivalence, what every standard
  auction's equilibrium charges on average), ``K`` the collusive one (the
  reserve: a perfect ring pays nothing more) and ``P`` the price paid. 0 is
  competitive, 1 fully collusive; the index has no lower bound: below 0 is
  prices over the competitive level (overbidding, as truthful GSP does, or a
  shill), by ``(P - C) / (C - K)``; above 1 (prices under the reserve) an
  enforced reserve rules out. :func:`price_benchmarks` returns ``P``, ``C``
  and ``K`` with it, so a reader can see which.
- :func:`shill_scores`: per bidder, the share of rounds in which it *shadows*
  another buyer: its bid set that buyer's price (second price, GSP) and was
  within ``closeness`` of that buyer's own bid. An honest bidder shadows when
  its value happens to lie just under another's; a shill that tracks the top
  bid does it round after round, market after market.
- :func:`relevance_ks`: per ad, the two-sample Kolmogorov-Smirnov p-value of its
  measured relevance r over rounds against the clean bank's r.
- :func:`exposure_pvalues`: per ad, the one-sided p-value of its share of won
  rounds against the mean share (ads are exchangeable in a clean market; bots
  that inflate an ad's r make it win more).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

from attn_env.errors import UserError

__all__ = [
    "collusion_index",
    "exposure_pvalues",
    "precision_recall",
    "price_benchmarks",
    "relevance_ks",
    "shill_scores",
]


def price_benchmarks(
    price: ArrayLike, competitive: ArrayLike, collusive: ArrayLike = 0.0
) -> dict[str, float]:
    """Mean price paid ``P``, competitive ``C`` and collusive ``K`` over rounds with
    a sale, and the collusion index ``(C - P) / (C - K)`` they give.

    The index is not bounded below: it is 0 at the competitive price and 1 at
    the collusive one, and negative exactly when ``P > C`` (prices above the
    competitive level: overbidding, as truthful GSP does, or a shill), by
    ``(P - C) / (C - K)``. It exceeds 1 only when prices fall under the reserve
    ``K``, which an enforced reserve rules out.

    Args:
        price: ``[T]`` (or any shape) price per unit paid; ``nan`` where nothing
            sold (left out).
        competitive: the competitive price ``C`` of each round, same shape.
        collusive: the fully collusive price ``K`` (the reserve), a scalar or the
            same shape.

    Returns:
        ``index``, ``price``, ``competitive``, ``collusive`` (all ``nan`` when
        nothing sold; ``index`` ``nan`` also when ``C = K`` on average).
    """
    p = np.asarray(price, dtype=np.float64)
    c = np.broadcast_to(np.asarray(competitive, dtype=np.float64), p.shape)
    k = np.broadcast_to(np.asarray(collusive, dtype=np.float64), p.shape)
    sold = np.isfinite(p)
    if not sold.any():
        return dict.fromkeys(("index", "price", "competitive", "collusive"), math.nan)
    mp, mc, mk = (float(x[sold].mean()) for x in (p, c, k))
    gap = mc - mk
    index = (mc - mp) / gap if gap > 1e-12 else math.nan
    return {"index": index, "price": mp, "competitive": mc, "collusive": mk}


def collusion_index(
    price: ArrayLike, competitive: ArrayLike, collusive: ArrayLike = 0.0
) -> float:
    """``(mean C - mean P) / (mean C - mean K)`` over rounds with a sale: 0
    competitive, 1 fully collusive, negative where prices exceed the
    competitive level (see :func:`price_benchmarks`, which also returns the
    three means).

    Returns:
        The index (``nan`` when nothing sold or ``C = K`` on average).
    """
    return price_benchmarks(price, competitive, collusive)["index"]


def shill_scores(
    bids: ArrayLike,
    pay: ArrayLike,
    alloc: ArrayLike,
    closeness: float = 0.9,
    tol: float = 1e-9,
) -> NDArray[np.float64]:
    """Per bidder, the share of rounds in which it shadowed another buyer.

    Bidder ``i`` shadows buyer ``j != i`` in a round when ``j`` won
    (``alloc > 0``), paid per unit exactly ``i``'s bid (``i`` set the price) and
    ``bid_i >= closeness * bid_j``.

    Args:
        bids: ``[..., T, n]`` bids per unit of ``T`` rounds (leading axes: markets).
        pay: ``[..., T, n]`` payments.
        alloc: ``[..., T, n]`` attention won.
        closeness: how near under the shadowed bid, in ``(0, 1]``.
        tol: relative tolerance of "paid exactly the bid".

    Returns:
        ``[..., n]`` scores in ``[0, 1]``.
    """
    b = np.asarray(bids, dtype=np.float64)
    pay = np.asarray(pay, dtype=np.float64)
    a = np.asarray(alloc, dtype=np.float64)
    if not (b.shape == pay.shape == a.shape and b.ndim >= 2):
        raise UserError(
            f"bids, pay and alloc must share one [..., T, n] shape, got {b.shape}, "
            f"{pay.shape}, {a.shape}"
        )
    if not 0.0 < closeness <= 1.0:
        raise UserError(f"closeness must be in (0, 1], got {closeness!r}")
    won = a > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        unit = np.where(won, pay / np.where(won, a, 1.0), np.nan)
    bi, uj, bj = b[..., :, None], unit[..., None, :], b[..., None, :]
    sets = np.abs(bi - uj) <= tol * np.maximum(np.abs(uj), 1.0)
    shadow = sets & (bi >= closeness * bj) & (bi > 0)
    n = b.shape[-1]
    shadow &= ~np.eye(n, dtype=bool)  # [.., T, i, j]: i shadows j
    return shadow.any(axis=-1).mean(axis=-2)


def relevance_ks(relevance: ArrayLike, reference: ArrayLike) -> NDArray[np.float64]:
    """Per ad, the KS p-value of its measured r against the clean distribution.

    Args:
        relevance: ``[T, n]`` measured r of each ad (buyer column) over rounds.
        reference: ``[M]`` r drawn from the clean bank.

    Returns:
        ``[n]`` two-sided p-values (small: the ad's r is not the bank's).
    """
    from scipy.stats import ks_2samp

    r = np.asarray(relevance, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64).ravel()
    if r.ndim != 2 or ref.size == 0:
        raise UserError(
            f"relevance must be [T, n] and reference non-empty, got {r.shape} and "
            f"{ref.shape}"
        )
    return np.array([ks_2samp(r[:, i], ref).pvalue for i in range(r.shape[1])])


def exposure_pvalues(alloc: ArrayLike) -> NDArray[np.float64]:
    """Per ad, the one-sided p-value of winning more often than the ads' mean.

    The share of rounds ad ``i`` won a slot, ``w_i``, is compared with the mean
    share ``w`` under the binomial normal approximation:
    ``z_i = (w_i - w) / sqrt(w (1 - w) / T)``, p-value ``1 - Phi(z_i)``.

    Args:
        alloc: ``[T, n]`` attention won by each ad over ``T`` rounds.

    Returns:
        ``[n]`` p-values (1 where no ad or every ad always won).
    """
    a = np.asarray(alloc, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] < 1:
        raise UserError(f"alloc must be [T, n] with T >= 1, got {a.shape}")
    won = (a > 0).mean(axis=0)
    w = won.mean()
    if w <= 0.0 or w >= 1.0:
        return np.ones(a.shape[1])
    z = (won - w) / math.sqrt(w * (1.0 - w) / a.shape[0])
    return 0.5 * np.array([math.erfc(x / math.sqrt(2.0)) for x in z])


def precision_recall(labels: ArrayLike, flags: ArrayLike) -> dict[str, float]:
    """Precision, recall and F1 of boolean ``flags`` against boolean ``labels``.

    Returns:
        ``precision`` (``nan`` with no flag), ``recall`` (``nan`` with no
        positive label), ``f1``, and the counts ``tp``, ``fp``, ``fn``, ``tn``.
    """
    y = np.asarray(labels, dtype=bool).ravel()
    f = np.asarray(flags, dtype=bool).ravel()
    if y.shape != f.shape:
        raise UserError(
            f"labels and flags must have one size, got {y.size} and {f.size}"
        )
    tp, fp = int((y & f).sum()), int((~y & f).sum())
    fn, tn = int((y & ~f).sum()), int((~y & ~f).sum())
    precision = tp / (tp + fp) if tp + fp else math.nan
    recall = tp / (tp + fn) if tp + fn else math.nan
    f1 = (
        2 * precision * recall / (precision + recall)
        if tp and math.isfinite(precision) and math.isfinite(recall)
        else 0.0
    )
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
    }
