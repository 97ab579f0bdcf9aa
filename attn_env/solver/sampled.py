"""Ex-interim payoffs of one trader by clearing the library's own mechanism.

The general case, for every sealed mechanism without a closed form here (the
double auctions, a user's registered mechanism): the opponents' bid profiles
are enumerated exactly (bids of probability under ``PRUNE`` left out) when
there are at most ``samples`` of them (the bilateral trade game), otherwise
``samples`` profiles are drawn from their current distributions by
randomised quasi-Monte Carlo (scrambled Sobol points through each opponent's
inverse CDF). The solver draws them with the same random numbers every
iteration (common random numbers), so a sampled game is one fixed
approximation whose grid utility loss carries no sampling noise. A tie is
averaged over the traders tied in it (:func:`tie_mean`), not left to one
draw of the mechanism's tie-break. Every
candidate bid of the one trader is set against every profile and the
mechanism's ``clear`` runs once on the whole batch, so whatever it does
(ties, reserves, trade reduction) is what the solver sees.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from attn_env.valuations.base import stratified_uniforms

__all__ = ["opponent_profiles", "sampled_payoffs", "tie_mean"]


def opponent_profiles(
    columns: Sequence[tuple[NDArray[np.float64], NDArray[np.float64]]],
    samples: int,
    rng: np.random.Generator,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Bid profiles of the opponents and their probabilities.

    Args:
        columns: per opponent, ``(support, mass)`` of its bid distribution.
        samples: enumerate when the profiles are at most this many, else draw
            this many.
        rng: draws the profiles.

    Returns:
        ``profiles [S, len(columns)]`` and ``weights [S]`` (sum 1).
    """
    columns = [_prune(s, m) for s, m in columns]
    sizes = [len(s) for s, _ in columns]
    if float(np.prod(sizes, dtype=np.float64)) <= samples:
        grids = np.meshgrid(*[s for s, _ in columns], indexing="ij")
        masses = np.meshgrid(*[m for _, m in columns], indexing="ij")
        profiles = np.stack([g.ravel() for g in grids], axis=1)
        weights = np.prod(np.stack([m.ravel() for m in masses], axis=1), axis=1)
        return profiles, weights / weights.sum()
    u = stratified_uniforms(len(columns), samples, rng)
    profiles = np.column_stack(
        [_inverse_cdf(s, m, u[:, j]) for j, (s, m) in enumerate(columns)]
    )
    return profiles, np.full(samples, 1.0 / samples)


def _inverse_cdf(
    support: NDArray[np.float64], mass: NDArray[np.float64], u: NDArray[np.float64]
) -> NDArray[np.float64]:
    """The bids at quantiles ``u`` of the discrete law ``(support, mass)``."""
    cdf = np.cumsum(mass) / mass.sum()
    return support[np.minimum(np.searchsorted(cdf, u, side="right"), len(cdf) - 1)]


PRUNE = 1e-7
"Bids with less probability are left out of enumerated profiles (then renormalised)."


def _prune(
    support: NDArray[np.float64], mass: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Drop the support points of negligible mass: as strategies concentrate, the
    enumerated profiles shrink from the whole grid to a few bids."""
    keep = mass > PRUNE * mass.sum()
    return support[keep], mass[keep] / mass[keep].sum()


def sampled_payoffs(
    clear,
    focal: int,
    n_buyers: int,
    profiles: NDArray[np.float64],
    weights: NDArray[np.float64],
    cand: NDArray[np.float64],
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Expected quantity and money of the trader in column ``focal`` for each bid.

    Args:
        clear: ``(bids [B, n], asks [B, m] | None) -> Outcome``, the mechanism.
        focal: the trader's column among buyers then sellers.
        n_buyers: buyers' columns come first.
        profiles: ``[S, n + m - 1]`` the other columns, in order.
        weights: ``[S]`` probabilities of the profiles.
        cand: ``[C]`` candidate bids (or asks).

    Returns:
        Buyers: expected allocation and payment; sellers: expected units sold and
        receipts, each ``[C]``.
    """
    n_cand, n_prof = len(cand), len(profiles)
    rows = np.empty((n_cand, n_prof, profiles.shape[1] + 1))
    rows[:, :, :focal] = profiles[None, :, :focal]
    rows[:, :, focal] = cand[:, None]
    rows[:, :, focal + 1 :] = profiles[None, :, focal:]
    rows = rows.reshape(n_cand * n_prof, -1)
    asks = rows[:, n_buyers:] if rows.shape[1] > n_buyers else None
    out = clear(rows[:, :n_buyers], asks)
    if focal < n_buyers:
        qty, money = tie_mean(rows[:, :n_buyers], focal, out.alloc, out.pay)
    else:
        qty, money = tie_mean(
            rows[:, n_buyers:],
            focal - n_buyers,
            out.seller_alloc,
            out.seller_receipt,
        )
    qty = qty.reshape(n_cand, n_prof) @ weights
    money = money.reshape(n_cand, n_prof) @ weights
    return qty, money


def tie_mean(
    orders: NDArray[np.float64],
    col: int,
    qty: NDArray[np.float64],
    money: NDArray[np.float64],
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Column ``col``'s expected quantity and money over the mechanism's tie-breaks.

    A mechanism breaks ties at random, but each row is cleared once, so one
    draw would decide a tie for good: with the same random numbers every
    iteration (and with enumerated profiles, where a candidate meets each
    opponent bid in exactly one row), the trader would win every tie at some
    bids and lose every one at others, and the dynamics settle on that
    artefact (all bids 0 in first price: a trader who always wins the tie at
    0 never raises). Traders of one role with equal orders are exchangeable
    in an anonymous mechanism, so the trader's expected outcome is the mean
    outcome of everyone tied with it in the row: exact whenever the tied
    traders' outcomes depend only on their places among themselves, and
    unbiased always.

    Args:
        orders: ``[R, k]`` the bids (asks) of the trader's role.
        col: the trader's column among them.
        qty, money: ``[R, k]`` the cleared quantities and money of that role.
    """
    tied = orders == orders[:, col : col + 1]
    count = tied.sum(axis=1)
    return (qty * tied).sum(axis=1) / count, (money * tied).sum(axis=1) / count
