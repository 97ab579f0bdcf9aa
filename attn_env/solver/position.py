"""Exact ex-interim payoffs of one bidder in a symmetric position auction.

Against ``N`` opponents who bid independently from one discrete distribution
(support points and masses), the expected allocation ``A(c)`` and payment
``P(c)`` of a bid ``c`` follow from order statistics, with no sampling:

- the numbers ``H`` of opponents bidding above ``c`` and ``E`` bidding exactly
  ``c`` are trinomial; ties are broken uniformly (as ``rank_desc`` does), so
  the bidder's rank ``R`` is uniform on ``H .. H + E``;
- the opponent ranked ``l`` (0-based, ``l >= R``) sets the prices below the
  bidder: it bids ``c`` when ``l < H + E`` (a tied opponent), otherwise it is
  the ``(l - H - E)``-th highest of the ``L = N - H - E`` opponents below ``c``,
  whose law is a binomial tail of the conditional distribution.

Prices per unit of attention for the rank-``R`` winner (``alpha`` descending,
``alpha_K = 0``, ``o_l`` the ``l``-th opponent, reserve ``r``):

============  ===============================================================
first_price   ``c``
all_pay       ``c``, paid by every bid at or above the reserve, winning or not
gsp           ``max(o_R, r)`` (``second_price``: the same with one slot)
vcg           ``sum_{l >= R} (alpha_l - alpha_{l+1}) max(o_l, r) / alpha_R``
============  ===============================================================

A bid under the reserve wins nothing and pays nothing. These are the rules of
``attn_env.mechanisms.position`` without quality scores (the environment's).
"""

from __future__ import annotations

from math import comb, lgamma

import numpy as np
from numpy.typing import NDArray

from attn_env.errors import UserError

__all__ = ["RULES", "position_payoffs"]

RULES = ("first_price", "second_price", "gsp", "vcg", "all_pay")
"The built-in position auctions whose payoffs are computed here."


def _rank_pairs(n_opp: int) -> tuple[NDArray[np.int64], ...]:
    """Every ``(H, E, L)`` summing to ``n_opp``, with its multinomial coefficient."""
    h, e = np.array(
        [(a, b) for a in range(n_opp + 1) for b in range(n_opp + 1 - a)], dtype=np.int64
    ).T
    low = n_opp - h - e
    coef = np.exp(
        [
            lgamma(n_opp + 1) - lgamma(a + 1) - lgamma(b + 1) - lgamma(c + 1)
            for a, b, c in zip(h, e, low, strict=True)
        ]
    )
    return h, e, low, coef


def _lower_order_stats(
    support: NDArray[np.float64],
    csum: NDArray[np.float64],
    n_below: NDArray[np.int64],
    p_lo: NDArray[np.float64],
    n_opp: int,
    n_slots: int,
    reserve: float,
) -> NDArray[np.float64]:
    """``T[c, L, t] = E[max(t-th highest of L opponents below c, reserve)]``.

    ``t >= L`` (no such opponent) gives the reserve, as the mechanism's
    zero-padded score does. Tail sum over the support: ``E[max(X, r)] = r +
    sum_m (max(s_m, r) - max(s_{m-1}, r)) P(X >= s_m)``.
    """
    step = np.diff(np.maximum(support, reserve), prepend=reserve)  # [S]
    # q[c, m] = P(opponent >= s_m | opponent < c), zero from the first point >= c
    safe = np.where(p_lo > 0.0, p_lo, 1.0)
    q = (p_lo[:, None] - csum[None, :-1]) / safe[:, None]
    q = np.where(np.arange(len(support))[None, :] < n_below[:, None], q, 0.0)
    q = np.clip(q, 0.0, 1.0)
    counts = np.arange(n_opp + 1)  # L
    i = np.arange(n_slots)  # successes counted in the CDF
    binom = np.array(
        [[comb(n, k) for k in i] for n in counts], dtype=np.float64
    )  # [L, i], 0 where k > L
    spare = (counts[:, None] - i[None, :]).clip(min=0)  # L - i
    # P(Bin(L, q) = i), [C, S, L, i] (numpy's 0 ** 0 is 1)
    pmf = binom * q[..., None, None] ** i * (1.0 - q[..., None, None]) ** spare
    cdf = np.cumsum(pmf, axis=-1)  # P(Bin <= t)
    tail = np.clip(1.0 - cdf, 0.0, 1.0)  # P(Bin >= t + 1)
    return reserve + np.einsum("m,cmlt->clt", step, tail)


def position_payoffs(
    rule: str,
    support: NDArray[np.float64],
    mass: NDArray[np.float64],
    n_opp: int,
    alpha: NDArray[np.float64],
    reserve: float,
    cand: NDArray[np.float64],
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Expected attention ``A [C]`` and payment ``P [C]`` of each candidate bid.

    Args:
        rule: one of :data:`RULES`.
        support: ``[S]`` bids the opponents may place (any order).
        mass: ``[S]`` their probabilities (sum 1).
        n_opp: number of opponents ``N`` (i.i.d. from ``support, mass``).
        alpha: ``[K]`` attention of the slots, descending.
        reserve: least bid that can win.
        cand: ``[C]`` candidate bids of the one bidder.
    """
    if rule not in RULES:
        raise UserError(f"unknown position rule {rule!r}; known: {', '.join(RULES)}")
    order = np.argsort(support, kind="stable")
    support = np.asarray(support, dtype=np.float64)[order]
    mass = np.asarray(mass, dtype=np.float64)[order]
    cand = np.asarray(cand, dtype=np.float64)
    alpha = np.asarray(alpha, dtype=np.float64)
    n_slots = len(alpha)
    csum = np.concatenate([[0.0], np.cumsum(mass)])
    csum /= csum[-1]
    tol = 1e-12 * max(1.0, float(np.abs(support).max(initial=0.0)))
    n_below = np.searchsorted(support, cand - tol, side="left")
    p_lo = csum[n_below]
    p_le = csum[np.searchsorted(support, cand + tol, side="right")]
    p_eq, p_hi = p_le - p_lo, np.clip(1.0 - p_le, 0.0, 1.0)

    h, e, low, coef = _rank_pairs(n_opp)
    prob = (
        coef[None]
        * p_hi[:, None] ** h[None]
        * p_eq[:, None] ** e[None]
        * p_lo[:, None] ** low[None]
    )  # [C, M]
    k = np.arange(n_slots)
    # P(rank = k | H, E): uniform over the tied places
    w = ((h[:, None] <= k[None]) & (k[None] <= (h + e)[:, None])) / (e[:, None] + 1.0)
    can_win = (cand >= reserve).astype(np.float64)
    alloc = can_win * (prob @ w @ alpha)
    if rule == "first_price":
        return alloc, cand * alloc
    if rule == "all_pay":
        return alloc, can_win * cand

    lower = _lower_order_stats(
        support, csum, n_below, p_lo, n_opp, n_slots, reserve
    )  # [C, L, t]
    # price set by the opponent ranked l, given (H, E): [C, M, l]
    t = k[None, :] - (h + e)[:, None]  # [M, l]
    tied = t < 0
    from_lower = lower[:, low[:, None], np.clip(t, 0, n_slots - 1)]
    price_at = np.where(
        tied[None], np.maximum(cand, reserve)[:, None, None], from_lower
    )
    q = np.einsum("cm,mk,cml->ckl", prob, w, price_at)  # E[1{R=k} max(o_l, r)]
    if rule in ("gsp", "second_price"):
        pay = np.einsum("k,ckk->c", alpha, q)
    else:  # vcg: the externality, slot by slot below the winner
        d_alpha = alpha - np.append(alpha[1:], 0.0)
        later = (k[None, :] >= k[:, None]).astype(np.float64)  # [k, l]
        pay = np.einsum("kl,l,ckl->c", later, d_alpha, q)
    return alloc, can_win * pay
