"""Ex-interim payoffs of one trader by clearing the library's own mechanism.

The general case, for every sealed mechanism without a closed form here (the
double auctions, a user's registered mechanism): the opponents' bid profiles
are enumerated exactly (bids of probability under ``PRUNE`` left out) when
there are at most ``samples`` of them (the bilateral trade game), otherwise
``samples`` profiles are drawn from their current distributions, stratified
(Latin hypercube). The solver draws them with the same random numbers every
iteration (common random numbers), so a sampled game is one fixed
approximation whose grid utility loss carries no sampling noise. Every
candidate bid of the one trader is set against every profile and the
mechanism's ``clear`` runs once on the whole batch, so whatever it does
(ties, reserves, trade reduction) is what the solver sees.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

__all__ = ["opponent_profiles", "sampled_payoffs"]


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
    profiles = np.column_stack([_stratified(s, m, samples, rng) for s, m in columns])
    return profiles, np.full(samples, 1.0 / samples)


def _stratified(
    support: NDArray[np.float64],
    mass: NDArray[np.float64],
    samples: int,
    rng: np.random.Generator,
) -> NDArray[np.float64]:
    """``samples`` draws, one from each of ``samples`` equal-probability strata
    (inverse CDF of shuffled stratified uniforms: Latin hypercube over columns)."""
    u = (rng.permutation(samples) + rng.random(samples)) / samples
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
        qty, money = out.alloc[:, focal], out.pay[:, focal]
    else:
        qty = out.seller_alloc[:, focal - n_buyers]
        money = out.seller_receipt[:, focal - n_buyers]
    qty = qty.reshape(n_cand, n_prof) @ weights
    money = money.reshape(n_cand, n_prof) @ weights
    return qty, money
