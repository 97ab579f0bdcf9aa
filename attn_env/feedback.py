"""What the auctioneer publishes after each round: the ``feedback`` env option.

Ad exchanges choose how much of a finished auction they reveal (Google began
publishing each bidder's *minimum bid to win* when it moved to first-price
auctions), and that choice changes what learning bidders converge to
(Banchio & Skrzypacz 2022). The option is one of :data:`FEEDBACKS`:

==================  =======================================================
feedback            published to buyer ``i`` after a round
==================  =======================================================
``none``            nothing beyond what every market shows (default)
``winning_bid``     the highest bid among the buyers who won a slot (the
                    same number for everyone; 0 when nothing sold)
``min_bid_to_win``  the least bid per unit with which ``i`` would have won
                    a slot, the others' bids held fixed:
                    ``max(reserve, K-th highest of the others' bids)``
                    (``K`` slots; the reserve alone when fewer than ``K``
                    others bid). Above it ``i`` wins for sure; at it ``i``
                    ties, and ties are broken at random
==================  =======================================================

``winning_bid`` needs buyers with one bid each and slots: one-sided auctions
and matchings. ``min_bid_to_win`` is a threshold of a ranking by bid, so
one-sided auctions only (``first_price``, ``second_price``, ``gsp``, ``vcg``).
Bids are the effective ones (after clipping and budget caps). Sellers, where
there are any, receive 0. The value joins each agent's observation and the
``published`` key of ``Agent.observe``'s feedback
(``attn_env.players.feedback_for``).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from attn_env.checks import ConfigError

__all__ = ["FEEDBACKS", "SUPPORTED", "check_feedback", "published"]

FEEDBACKS = ("none", "winning_bid", "min_bid_to_win")
SUPPORTED: dict[str, tuple[str, ...]] = {
    "none": ("one_sided", "two_sided", "matching"),
    "winning_bid": ("one_sided", "matching"),
    "min_bid_to_win": ("one_sided",),
}
"Mechanism families that can publish each feedback."


def check_feedback(feedback: str, family: str, mechanism: str) -> None:
    """``ConfigError`` naming ``feedback`` if unknown or not published by ``family``."""
    if feedback not in FEEDBACKS:
        raise ConfigError(
            f"feedback must be one of {', '.join(FEEDBACKS)}, got {feedback!r}"
        )
    if family not in SUPPORTED[feedback]:
        raise ConfigError(
            f"feedback {feedback!r} is not published by the {family} mechanism "
            f"{mechanism!r}; it needs a {' or '.join(SUPPORTED[feedback])} one"
        )


def published(
    feedback: str,
    bids: NDArray[np.float64],
    alloc: NDArray[np.float64],
    n_slots: int,
    reserve: float = 0.0,
) -> NDArray[np.float64]:
    """The value published to each buyer after one round, ``[B, n]``.

    Args:
        feedback: one of :data:`FEEDBACKS` other than ``none``.
        bids: ``[B, n]`` effective bids per unit.
        alloc: ``[B, n]`` attention won (``> 0``: the buyer won a slot).
        n_slots: ``K``, the number of slots.
        reserve: the mechanism's reserve price.
    """
    B, n = bids.shape
    if feedback == "winning_bid":
        top = np.where(alloc > 0, bids, -np.inf).max(axis=1)
        return np.broadcast_to(np.where(np.isfinite(top), top, 0.0)[:, None], (B, n))
    if feedback != "min_bid_to_win":
        raise ValueError(f"no published value for feedback {feedback!r}")
    if n_slots >= n:  # fewer rivals than slots: the reserve wins
        return np.full((B, n), float(reserve))
    # the K-th highest of the others: the K-th of all, or the (K+1)-th for a buyer
    # who is itself among the top K (ties: either copy of a tied bid serves)
    srt = -np.sort(-bids, axis=1)
    kth, next_ = srt[:, n_slots - 1 : n_slots], srt[:, n_slots : n_slots + 1]
    others = np.where(bids >= kth, next_, kth)
    return np.maximum(others, float(reserve))
