"""An exposure floor for slot markets: randomised promotion by a free lottery.

Each buyer of ``n`` is promised an expected share of at least ``floor`` of the
page's attention ``A = alpha_1 + ... + alpha_min(n, K)``, whatever it bids. The
rule: in each market, with probability ``lam = n * floor`` the slots go by a
uniform random permutation of the buyers, free of charge (price and payment 0);
otherwise the mechanism's own outcome stands. Under the lottery each buyer's
expected attention is ``A / n``, so

    E[alloc_i] >= lam * A / n = floor * A,

with equality for a buyer the auction never ranks. ``floor`` is therefore in
``[0, 1 / n]``; ``1 / n`` is a pure lottery (equal exposure, no revenue).

Why a bid-independent lottery rather than promoting just the buyers under the
floor: the lottery is drawn before, and apart from, the bids, so a buyer's
expected utility is ``(1 - lam) x`` its utility in the auction ``+ lam x`` a
constant. Every incentive property of the auction survives (truthful bidding
stays dominant in second price, VCG and assignment), and the floor holds in
every market, not only on average. The price is the welfare and revenue of the
``lam`` share of markets that the lottery allocates (measured in
``docs/integrity.md``).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from numpy.typing import NDArray

from attn_env.errors import ConfigError
from attn_env.mechanisms.outcome import Outcome

__all__ = ["check_floor", "promote"]


def check_floor(floor: object, n_buyers: int) -> float:
    """``floor`` as a float if in ``[0, 1 / n_buyers]``, else ``ConfigError``."""
    top = 1.0 / n_buyers
    if (
        isinstance(floor, bool)
        or not isinstance(floor, int | float | np.number)
        or not 0.0 <= float(floor) <= top * (1 + 1e-12)
    ):
        raise ConfigError(
            f"exposure_floor must be a number in [0, 1/n_buyers] = [0, {top:.6g}], "
            f"got {floor!r}"
        )
    return min(float(floor), top)


def promote(
    out: Outcome, alpha: NDArray[np.float64], floor: float, rng: np.random.Generator
) -> Outcome:
    """Replace the outcome of a ``n * floor`` share of markets by a free lottery.

    Args:
        out: a one-sided or matching outcome of ``B`` markets of ``n`` buyers.
        alpha: ``[B, K]`` attention of the slots, descending.
        floor: each buyer's least expected share of the page's attention,
            in ``[0, 1 / n]`` (:func:`check_floor`).
        rng: draws which markets hold a lottery and its permutation.

    Returns:
        The outcome with lottery markets overwritten (slot by a uniform
        permutation, ``alloc = alpha`` of the slot, ``pay = price = 0``,
        ``clearing_price = 0``) and ``extra["lottery"] [B]`` bool.
    """
    B, n = out.alloc.shape
    floor = check_floor(floor, n)
    lottery = rng.random(B) < n * floor
    # a uniform permutation per market: rank of each buyer in random keys
    rank = np.argsort(np.argsort(rng.random((B, n)), axis=1), axis=1)
    K = alpha.shape[1]
    won = rank < K
    slot = np.where(won, rank, -1)
    alloc = np.where(won, np.take_along_axis(alpha, np.minimum(rank, K - 1), 1), 0.0)
    row = lottery[:, None]
    extra = {**out.extra, "lottery": lottery}
    if "slot_price" in extra:  # the lottery's slots are free; unfilled ones unsold
        free = np.where(np.arange(K) < n, 0.0, np.nan)
        extra["slot_price"] = np.where(row, free, extra["slot_price"])
    return dataclasses.replace(
        out,
        slot=np.where(row, slot, out.slot),
        alloc=np.where(row, alloc, out.alloc),
        pay=np.where(row, 0.0, out.pay),
        price=np.where(row, 0.0, out.price),
        clearing_price=np.where(lottery, 0.0, out.clearing_price),
        extra=extra,
    )
