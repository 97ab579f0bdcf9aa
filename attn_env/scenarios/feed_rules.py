"""The allocation rules and attention models of the ``feed`` scenario, batched.

``P`` sessions at once (one per population), ``N`` items (creators' posts
first, then ads), ``K`` feed positions in feed order. Arrays:

- ``score [P, N]``: the platform's ranking score of each item, ``> 0`` when it
  may be shown, ``0`` when not (not eligible, or an ad without a bid);
- ``w [P, K]``: the platform's attention weight of each position, non-increasing
  down the feed (position factors cut by the session's budget);
- ``order [P, K]``: the item shown at each position, ``-1`` for an empty one.

Rules:

- :func:`rank_by_score`: the max-weight assignment of items to positions when
  an item's value at position ``k`` is ``score_i w_k`` (rearrangement: the
  ``k``-th highest score takes position ``k``); the tests check it against
  ``mechanisms.make("assignment")`` and brute force.
- :func:`affine_payments`: the Myerson payments of that assignment when
  ``score_i = r_i b_i + c_i`` (bid ``b_i`` per unit of attention, weight
  ``r_i``, and a bonus ``c_i`` the item keeps at bid 0): the item at rank ``k``
  pays ``sum_{j>=k} (w_j - w_{j+1}) (s_(j+1) - c_i)^+ / r_i`` (``s_(j)``: the
  ``j``-th highest score, ``w_{K+1} = 0``), VCG of the affine maximiser
  ``sum_i (r_i b_i + c_i) x_i``, so truthful bidding is dominant and
  ``0 <= pay <= b_i x_i``.
- :func:`interleave`: fixed sponsored positions sold by GSP (score ``b r``,
  per-unit price the next score over one's own ``r``) and the other positions
  filled by an organic key (merit, or the fair-ranking key) among the rest.
- :func:`fair_bonus`: the amortised-fairness correction of a creator's key,
  ``gamma (U_i sum E / sum U - E_i)``: its cumulative exposure deficit against
  exposure proportional to cumulative merit.
- :func:`exposure`: the attention a user pays each position (position factors,
  or the cascade model) cut by the session's attention budget.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "affine_payments",
    "budget_cut",
    "exposure",
    "fair_bonus",
    "interleave",
    "item_exposure",
    "rank_by_score",
]

USER_MODELS = ("attention", "cascade")
"How attention decays down the feed: measured position factors, or cascade."


def budget_cut(e: NDArray[np.float64], budget: NDArray[np.float64]) -> NDArray:
    """``e [P, K]`` cut so that the running total never passes ``budget [P]``.

    Position ``k`` gets ``min(e_k, (B - sum_{j<k} e_j)^+)``: the user spends
    attention down the feed and stops when the budget is spent.
    """
    before = np.cumsum(e, axis=1) - e
    return np.minimum(e, np.maximum(budget[:, None] - before, 0.0))


def exposure(
    model: str,
    pos: NDArray[np.float64],
    order: NDArray[np.int64],
    r: NDArray[np.float64],
    budget: NDArray[np.float64],
    stop: float,
) -> NDArray[np.float64]:
    """Attention ``[P, K]`` the user pays each position of feed ``order``.

    Args:
        model: ``attention`` (position factors ``pos [P, K]``, whatever is
            shown) or ``cascade`` (position 1 is seen, the user goes on past
            an item of relevance ``r`` with probability ``1 - stop r``).
        pos: position factors, ``pos[:, 0] = 1``, non-increasing.
        order: item at each position (``-1``: empty, relevance 0).
        r: ``[P, N]`` relevance of every item.
        budget: ``[P]`` attention budget of each session.
        stop: cascade stop probability per unit of relevance, in [0, 1].
    """
    if model == "attention":
        e = pos
    else:
        rel = np.where(order >= 0, np.take_along_axis(r, np.maximum(order, 0), 1), 0.0)
        go_on = 1.0 - stop * rel
        e = np.ones_like(rel)
        e[:, 1:] = np.cumprod(go_on[:, :-1], axis=1)
    return budget_cut(e, budget)


def item_exposure(order: NDArray[np.int64], x: NDArray[np.float64], n: int) -> NDArray:
    """``[P, N]`` attention of each item from per-position attention ``x [P, K]``."""
    p = order.shape[0]
    out = np.zeros((p, n + 1))
    rows = np.broadcast_to(np.arange(p)[:, None], order.shape)
    # an item is shown at most once, so plain assignment adds; empty
    # positions (-1) land in the spare last column
    out[rows, np.where(order >= 0, order, n)] = x
    return out[:, :n]


def rank_by_score(score: NDArray[np.float64], k: int) -> tuple[NDArray, NDArray]:
    """The ``k`` highest-scoring items in order, and the sorted scores ``[P, N+1]``.

    ``order [P, k]`` is ``-1`` past the items of positive score. The sorted
    scores carry a trailing 0 (the score "below" the last item).
    """
    p, n = score.shape
    idx = np.argsort(-score, axis=1, kind="stable")
    srt = np.take_along_axis(score, idx, axis=1)
    srt = np.concatenate([srt, np.zeros((p, 1))], axis=1)
    if n < k:
        idx = np.concatenate([idx, np.full((p, k - n), -1)], axis=1)
        srt = np.concatenate([srt, np.zeros((p, k - n))], axis=1)
    order = np.where(srt[:, :k] > 0, idx[:, :k], -1)
    return order, srt


def affine_payments(
    order: NDArray[np.int64],
    srt: NDArray[np.float64],
    w: NDArray[np.float64],
    r: NDArray[np.float64],
    bonus: NDArray[np.float64],
) -> NDArray[np.float64]:
    """Per-unit price ``[P, K]`` of the item at each position (0 where empty).

    ``pay_k = sum_{j>=k} (w_j - w_{j+1}) (srt_{j+1} - c)^+ / r`` for the item
    of bonus ``c`` and weight ``r`` at rank ``k``; the price is ``pay_k / w_k``
    (0 where ``w_k = 0``), charged on the attention the item then receives.
    """
    p, k = order.shape
    shown = order >= 0
    safe = np.maximum(order, 0)
    c = np.take_along_axis(bonus, safe, 1)
    rr = np.take_along_axis(r, safe, 1)
    dw = w - np.concatenate([w[:, 1:], np.zeros((p, 1))], axis=1)  # [P, K]
    below = srt[:, 1 : k + 1]  # score one rank below position j
    later = np.arange(k)[None, :] >= np.arange(k)[:, None]  # [k, j]: j >= k
    gap = np.maximum(below[:, None, :] - c[:, :, None], 0.0)  # [P, k, j]
    pay = (dw[:, None, :] * gap * later).sum(axis=2) / np.where(rr > 0, rr, 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        price = np.where(w > 0, pay / np.where(w > 0, w, 1.0), 0.0)
    return np.where(shown, price, 0.0)


def interleave(
    sponsor_score: NDArray[np.float64],
    r: NDArray[np.float64],
    organic_key: NDArray[np.float64],
    ad_pos: NDArray[np.int64],
    k: int,
    reserve: float = 0.0,
    bids: NDArray[np.float64] | None = None,
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Sponsored positions by GSP, the others by ``organic_key``; ``(order, price)``.

    Args:
        sponsor_score: ``[P, N]`` ``b r`` of items bidding for a sponsored
            position (0: not bidding).
        r: ``[P, N]`` relevance (the GSP quality).
        organic_key: ``[P, N]`` key of the organic ranking (> 0 for items that
            may be shown organically, 0 otherwise).
        ad_pos: sponsored positions (0-based, ascending).
        k: positions in the feed.
        reserve: least bid per unit of attention of a sponsored item.
        bids: ``[P, N]`` bids (for the reserve); needed when ``reserve > 0``.

    Returns:
        ``order [P, K]`` and the per-unit ``price [P, K]`` of sponsored items
        (the next sponsored score over own relevance, at least the reserve);
        an unsold sponsored position is filled organically.
    """
    p = r.shape[0]
    m = len(ad_pos)
    s = sponsor_score
    if reserve > 0.0 and bids is not None:
        s = np.where(bids >= reserve, s, 0.0)
    idx = np.argsort(-s, axis=1, kind="stable")[:, : m + 1]
    srt = np.take_along_axis(s, idx, axis=1)
    if srt.shape[1] < m + 1:
        pad = m + 1 - srt.shape[1]
        idx = np.concatenate([idx, np.zeros((p, pad), dtype=idx.dtype)], axis=1)
        srt = np.concatenate([srt, np.zeros((p, pad))], axis=1)
    won = srt[:, :m] > 0
    win = np.where(won, idx[:, :m], -1)
    rw = np.take_along_axis(r, np.maximum(win, 0), 1)
    nxt = srt[:, 1 : m + 1]
    price = np.where(won, np.maximum(nxt / np.where(rw > 0, rw, 1.0), reserve), 0.0)
    # organic ranking among the items that did not win a sponsored position
    key = organic_key.copy()
    rows = np.broadcast_to(np.arange(p)[:, None], win.shape)
    key[rows[won], win[won]] = 0.0
    org, _ = rank_by_score(key, k)
    order = np.full((p, k), -1, dtype=np.int64)
    prices = np.zeros((p, k))
    order[:, ad_pos] = win
    prices[:, ad_pos] = price
    # fill the other positions (and unsold sponsored ones) with organic items
    # in feed order: the j-th free position takes the j-th organic item
    free = order < 0
    rank = np.cumsum(free, axis=1) - 1
    take = np.take_along_axis(org, np.clip(rank, 0, k - 1), 1)
    order = np.where(free, take, order)
    return order, prices


def fair_bonus(
    cum_exposure: NDArray[np.float64], cum_merit: NDArray[np.float64], gamma: float
) -> NDArray[np.float64]:
    """``gamma (U_i sum_j E_j / sum_j U_j - E_i)``, ``[P, n]``: the exposure deficit.

    Positive for a creator whose cumulative exposure is short of its share of
    the cumulative merit (Biega et al. 2018's amortised attention against
    amortised relevance), negative for one ahead of it.
    """
    tot_u = cum_merit.sum(axis=1, keepdims=True)
    tot_e = cum_exposure.sum(axis=1, keepdims=True)
    rate = np.where(tot_u > 0, tot_e / np.where(tot_u > 0, tot_u, 1.0), 0.0)
    return gamma * (cum_merit * rate - cum_exposure)
