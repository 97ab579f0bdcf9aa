"""Market metrics: pure numpy functions over arrays with a leading batch axis.

Shapes: ``B`` markets (or market-rounds), ``n`` buyers, ``m`` sellers, ``K`` slots.
``values [B, n]`` are values per unit (``theta * r``), ``alloc [B, n]`` the
attention won (``alpha`` of the slot, or 1 per traded unit), ``pay [B, n]`` the
buyers' payments (> 0: the buyer pays), ``costs [B, m]`` and ``seller_alloc``,
``seller_receipt [B, m]`` the sellers' side. Nothing here knows about the
environment; ``attn_env.market_log`` feeds these functions with its round records.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from attn_env.mechanisms import walrasian_price

__all__ = [
    "METRIC_KEYS",
    "budget_surplus",
    "efficiency",
    "episode_metrics",
    "exposure_share",
    "gini",
    "ir_violations",
    "mean_utility",
    "optimal_welfare",
    "price_stats",
    "revenue",
    "slot_price_intervals",
    "walrasian_distance",
    "walrasian_interval",
    "welfare",
]

_EPS = 1e-12


def _batch(x: ArrayLike, name: str, ndim: int = 2) -> NDArray[np.float64]:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {a.shape}")
    return a


def welfare(
    values: ArrayLike,
    alloc: ArrayLike,
    costs: ArrayLike | None = None,
    seller_alloc: ArrayLike | None = None,
) -> NDArray[np.float64]:
    """Realised surplus per market, ``[B]``.

    ``sum values * alloc - sum costs * seller_alloc``.

    Payments are transfers and cancel out; a one-sided publisher has no cost.
    """
    w = (_batch(values, "values") * _batch(alloc, "alloc")).sum(axis=1)
    if costs is not None:
        if seller_alloc is None:
            raise ValueError("seller_alloc is required with costs")
        w = w - (_batch(costs, "costs") * _batch(seller_alloc, "seller_alloc")).sum(
            axis=1
        )
    return w


def optimal_welfare(
    values: ArrayLike, alpha: ArrayLike | None = None, costs: ArrayLike | None = None
) -> NDArray[np.float64]:
    """First-best surplus per market, ``[B]``.

    One-sided / matching (``alpha [B, K]`` or ``[K]``): the assortative match, highest
    unit values on the largest slots (optimal since ``v_ij = value_i * alpha_j``).
    Two-sided (``costs [B, m]``): highest values paired with lowest costs while the
    gain ``v - c`` is positive.

    Args:
        values: ``[B, n]`` values per unit.
        alpha: slot attention (one-sided); exactly one of ``alpha``, ``costs``.
        costs: sellers' costs (two-sided).
    """
    v = _batch(values, "values")
    if (alpha is None) == (costs is None):
        raise ValueError("give exactly one of alpha (one-sided) or costs (two-sided)")
    v_desc = -np.sort(-v, axis=1)
    if costs is not None:
        c = np.sort(_batch(costs, "costs"), axis=1)
        q = min(v.shape[1], c.shape[1])
        return np.clip(v_desc[:, :q] - c[:, :q], 0.0, None).sum(axis=1)
    a = np.asarray(alpha, dtype=np.float64)
    a = (
        np.broadcast_to(a, (v.shape[0], a.shape[-1]))
        if a.ndim == 1
        else _batch(a, "alpha")
    )
    k = min(v.shape[1], a.shape[1])
    a_desc = -np.sort(-a, axis=1)
    return (np.clip(v_desc[:, :k], 0.0, None) * a_desc[:, :k]).sum(axis=1)


def episode_metrics(
    acc: dict[str, NDArray[np.float64]],
) -> dict[str, NDArray[np.float64]]:
    """Market metrics of whole episodes from the market core's accumulators.

    ``efficiency`` = welfare / optimal welfare per market (``nan`` when no trade
    could create value), ``mean_price`` = payments / units traded (``nan`` when
    nothing traded); arrays ``[B]``.
    """
    welfare, opt = acc["welfare"], acc["optimal_welfare"]
    revenue, volume = acc["revenue"], acc["volume"]
    with np.errstate(divide="ignore", invalid="ignore"):
        eff = np.where(opt > _EPS, welfare / np.where(opt > _EPS, opt, 1.0), np.nan)
        price = np.where(
            volume > _EPS, revenue / np.where(volume > _EPS, volume, 1.0), np.nan
        )
    return {
        "efficiency": eff,
        "welfare": welfare.copy(),
        "optimal_welfare": opt.copy(),
        "revenue": revenue.copy(),
        "budget_surplus": revenue - acc["receipts"],
        "mean_price": price,
        "volume": volume.copy(),
    }


METRIC_KEYS = (
    "efficiency",
    "welfare",
    "optimal_welfare",
    "revenue",
    "budget_surplus",
    "mean_price",
    "volume",
)
"Keys of :func:`episode_metrics` (the env's end-of-episode infos)."


def efficiency(welfare: ArrayLike, optimal: ArrayLike) -> float:
    """Allocative efficiency ``sum welfare / sum optimal`` (``nan`` if nothing to gain).

    A ratio of sums, not a mean of ratios: markets where no trade creates value
    (optimal 0) carry no weight instead of dividing by zero.
    """
    w, o = np.asarray(welfare, dtype=np.float64), np.asarray(optimal, dtype=np.float64)
    total = o.sum()
    return float(w.sum() / total) if total > _EPS else float("nan")


def revenue(pay: ArrayLike) -> NDArray[np.float64]:
    """Buyers' total payments per market, ``[B]``."""
    return _batch(pay, "pay").sum(axis=1)


def budget_surplus(
    pay: ArrayLike, seller_receipt: ArrayLike | None = None
) -> NDArray[np.float64]:
    """Buyers' payments minus sellers' receipts per market, ``[B]`` (< 0: a deficit)."""
    out = revenue(pay)
    if seller_receipt is not None:
        out = out - _batch(seller_receipt, "seller_receipt").sum(axis=1)
    return out


def ir_violations(
    utility: ArrayLike, rational: ArrayLike | None = None, tol: ArrayLike = 1e-9
) -> NDArray[np.int64]:
    """Individual-rationality violations per market, ``[B]``.

    Counts agents whose action was individually rational (``rational [B, N]``:
    truthful, or at least bid <= value / ask >= cost) and who still ended with a
    negative utility, beyond ``tol`` (a number, or ``[B, N]`` per agent: the
    market log allows each agent the loss float32 rounding of its action can
    cause). A mechanism with such agents is not IR. ``rational=None`` counts
    every agent.
    """
    u = _batch(utility, "utility")
    mask = (
        np.ones_like(u, dtype=bool) if rational is None else np.asarray(rational, bool)
    )
    if mask.shape != u.shape:
        raise ValueError(f"rational must have shape {u.shape}, got {mask.shape}")
    return ((u < -tol) & mask).sum(axis=1)


def price_stats(prices: ArrayLike) -> tuple[float, float]:
    """``(mean, std)`` of clearing prices, ignoring no-trade markets (nan)."""
    p = np.asarray(prices, dtype=np.float64).ravel()
    p = p[np.isfinite(p)]
    if p.size == 0:
        return float("nan"), float("nan")
    return float(p.mean()), float(p.std())


def walrasian_interval(
    values: ArrayLike, costs: ArrayLike | None = None, alpha: ArrayLike | None = None
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Competitive price interval ``(low [B], high [B])`` where demand meets supply.

    Two-sided (``costs [B, m]``): buyers' values against sellers' costs, through
    the mechanisms' crossing helper (the call market's definition). One-sided
    (``alpha [B, K]`` or ``[K]``): the interval of the **top slot's price per
    unit** over all Walrasian price vectors (:func:`slot_price_intervals`); with
    equal slots it is ``[v_(K+1), v_(K)]``, the unit-supply crossing at cost 0.
    """
    v = _batch(values, "values")
    if (costs is None) == (alpha is None):
        raise ValueError("give exactly one of costs (two-sided) or alpha (one-sided)")
    if costs is not None:
        return walrasian_price(np.clip(v, 0.0, None), _batch(costs, "costs"))
    low, high = slot_price_intervals(v, alpha)
    return low[:, 0], high[:, 0]


def slot_price_intervals(
    values: ArrayLike, alpha: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Walrasian prices per unit of each slot, ``(low [B, K], high [B, K])``.

    With values ``v_ij = v_i alpha_j`` (values sorted ``v_1 >= v_2 >= ...``, slots
    ``alpha_1 >= ... >= alpha_K``, ``alpha_{K+1} = 0``, missing values 0), the
    competitive (envy-free) total prices of slot ``j`` form the interval
    ``[sum_{k>=j} (alpha_k - alpha_{k+1}) v_{k+1}, sum_{k>=j} (alpha_k - alpha_{k+1})
    v_k]``: the lower end is the VCG price (Leonard 1983), the upper the bound
    of Varian (2007). Divided by ``alpha_j`` they are prices per unit (nan for
    slots without attention).
    """
    v = np.clip(_batch(values, "values"), 0.0, None)
    a = np.asarray(alpha, dtype=np.float64)
    a = (
        np.broadcast_to(a, (v.shape[0], a.shape[-1]))
        if a.ndim == 1
        else _batch(a, "alpha")
    )
    if a.shape[0] != v.shape[0]:
        raise ValueError(f"alpha must have batch size {v.shape[0]}, got {a.shape}")
    B, K = a.shape
    a = -np.sort(-a, axis=1)
    v_desc = np.zeros((B, K + 1))
    k = min(K + 1, v.shape[1])
    v_desc[:, :k] = -np.sort(-v, axis=1)[:, :k]
    step = a - np.concatenate(
        [a[:, 1:], np.zeros((B, 1))], axis=1
    )  # alpha_k - alpha_{k+1}
    # suffix sums over k >= j
    low = np.cumsum((step * v_desc[:, 1:])[:, ::-1], axis=1)[:, ::-1]
    high = np.cumsum((step * v_desc[:, :K])[:, ::-1], axis=1)[:, ::-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        safe = np.where(a > _EPS, a, np.nan)
        return low / safe, high / safe


def walrasian_distance(
    price: ArrayLike, low: ArrayLike, high: ArrayLike
) -> NDArray[np.float64]:
    """Distance of each price to ``[low, high]`` (0 inside, nan if no price)."""
    p = np.asarray(price, dtype=np.float64)
    lo, hi = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
    return np.maximum(np.maximum(lo - p, p - hi), 0.0) + p * 0.0  # keep nan


def mean_utility(utility: ArrayLike) -> NDArray[np.float64]:
    """Mean utility of each agent over the batch, ``[B, N] -> [N]``."""
    return _batch(utility, "utility").mean(axis=0)


def gini(x: ArrayLike) -> NDArray[np.float64] | float:
    """Gini coefficient over the last axis (0: equal, ``1 - 1/n``: one holds all).

    ``G = sum_i (2i - n - 1) x_(i) / (n sum x)`` with ``x`` ascending. Defined for
    non-negative ``x``; an all-zero vector has Gini 0.
    """
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 0 or a.shape[-1] == 0:
        raise ValueError(
            f"gini needs at least one entry on the last axis, got shape {a.shape}"
        )
    if np.any(a < 0) or not np.all(np.isfinite(a)):
        raise ValueError("gini is defined for finite non-negative values")
    n = a.shape[-1]
    s = np.sort(a, axis=-1)
    i = np.arange(1, n + 1)
    total = s.sum(axis=-1)
    num = ((2 * i - n - 1) * s).sum(axis=-1)
    g = np.where(total > _EPS, num / (n * np.where(total > _EPS, total, 1.0)), 0.0)
    return float(g) if g.ndim == 0 else g


def exposure_share(alloc: ArrayLike) -> NDArray[np.float64]:
    """Share of all attention won by each buyer, ``[B, n] -> [n]`` (sums to 1)."""
    won = _batch(alloc, "alloc").sum(axis=0)
    total = won.sum()
    return won / total if total > _EPS else np.zeros_like(won)
