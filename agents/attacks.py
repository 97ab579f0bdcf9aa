"""Adversarial agents: shill bidders, bidding rings, wash traders, empty seats.

=============  ==============================================================
kind           strategy
=============  ==============================================================
``shill``      a bidder the seller controls: bids just under its estimate of
               the ``rank``-th highest other bid, to raise the price the
               winner pays (second price, GSP, VCG); its value is fictitious
``ring``       a bidding ring without a knockout: the ``leader`` bids
               ``shade * value``, the members cover-bid ``cover * value``
``wash``       one side of a wash-trading pair: the buyer bids and the seller
               asks the same price ``level * max_price``, printing trades there
``absent``     an empty seat: bids 0, asks ``max_price`` (never trades); the
               clean market of an attack that adds seats
=============  ==============================================================

``runner.attacks`` builds these into a market and measures the damage against
the clean market on common random numbers; ``attn_env.integrity`` detects them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from attn_env.errors import UserError
from attn_env.observation import ROUND, VALUE, as_actions, is_seller

__all__ = ["SEES", "AbsentAgent", "RingAgent", "ShillAgent", "WashAgent"]

SEES = ("bids", "published")
"What a shill reads: every bid (the auctioneer's view) or the published feedback."


def _fraction(name: str, x: float) -> float:
    if isinstance(x, bool) or not isinstance(x, int | float) or not 0.0 <= x <= 1.0:
        raise UserError(f"{name} must be a number in [0, 1], got {x!r}")
    return float(x)


class _Stateless:
    """No adaptive state: ``reset`` and ``observe`` do nothing."""

    def reset(self, num_envs: int, rng: np.random.Generator) -> None:
        """Nothing to clear."""

    def observe(self, feedback: dict[str, Any]) -> None:
        """A fixed rule ignores feedback."""


class AbsentAgent(_Stateless):
    """An empty seat: bids 0 (buyer) or asks ``max_price`` (seller).

    Args:
        max_price: top of the price range (from the market).
    """

    market_params = ("max_price",)

    def __init__(self, max_price: float = 1.0) -> None:
        self.max_price = float(max_price)

    def act(self, obs: NDArray, rng: np.random.Generator) -> NDArray[np.float32]:
        return as_actions(np.where(is_seller(obs), self.max_price, 0.0))


class ShillAgent:
    """A shill: a bidder the seller controls, pushing up the winner's price.

    After each round it estimates, per market, the ``rank``-th highest other bid
    and next round bids ``margin`` times it. With ``sees="bids"`` (the
    auctioneer's view: a publisher running its own shill) it reads every bid
    (``feedback["bids"]``, its own removed); with ``sees="published"`` (a third
    party) only what the market publishes: the env's ``feedback`` value for its
    seat (``winning_bid``, ``min_bid_to_win``: ``attn_env.feedback``) where there
    is one, else the clearing price, which it set itself whenever it mattered.
    In the first round of an episode whose values are held for the episode
    (``redraw="episode"``) it has no estimate yet and bids
    ``opening * max_price``. Under second price or GSP a bid just under
    the top value sets the winner's price near its value; a bid above it wins
    (the seller keeps the slot: revenue and welfare are lost). Its own value
    (the draw of its seat) is fictitious and ignored.

    Args:
        margin: fraction of the estimate bid, in ``[0, 1]``.
        rank: which other bid to shadow (1: the top one; 2 in GSP pushes the
            second slot's price); ``sees="bids"`` only.
        sees: ``bids`` or ``published``.
        opening: first bid of an episode, as a fraction of ``max_price``.
        max_price: top of the price range (from the market).
        redraw: the market's ``redraw`` (from the market).
    """

    market_params = ("max_price", "redraw")

    def __init__(
        self,
        margin: float = 0.95,
        rank: int = 1,
        opening: float = 0.0,
        sees: str = "bids",
        max_price: float = 1.0,
        redraw: str = "round",
    ) -> None:
        if sees not in SEES:
            raise UserError(f"sees must be one of {', '.join(SEES)}, got {sees!r}")
        self.margin = _fraction("margin", margin)
        self.opening = _fraction("opening", opening)
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
            raise UserError(f"rank must be an integer >= 1, got {rank!r}")
        self.rank, self.sees = rank, sees
        self.max_price, self.redraw = float(max_price), redraw
        self.estimate = np.zeros(0)

    def reset(self, num_envs: int, rng: np.random.Generator) -> None:
        self.estimate = np.full(num_envs, self.opening * self.max_price)

    def act(self, obs: NDArray, rng: np.random.Generator) -> NDArray[np.float32]:
        est = self.estimate
        if self.redraw == "episode":
            est = np.where(obs[:, ROUND] == 0, self.opening * self.max_price, est)
        return as_actions(np.minimum(self.margin * est, self.max_price))

    def observe(self, feedback: dict[str, Any]) -> None:
        """Keep the ``rank``-th highest bid of the others, market by market."""
        if self.sees == "published":
            seen = feedback.get("published", feedback["clearing_price"])
            self.estimate = np.nan_to_num(np.asarray(seen, dtype=np.float64))
            return
        bids = np.asarray(feedback["bids"], dtype=np.float64)
        own = np.asarray(feedback["own_action"], dtype=np.float64)
        mine = bids == own[:, None]
        # drop one copy of its own bid per market (the first equal entry)
        first = mine & (np.cumsum(mine, axis=1) == 1)
        others = -np.sort(-np.where(first, -np.inf, bids), axis=1)
        k = self.rank - 1
        if k < others.shape[1]:
            self.estimate = np.where(np.isfinite(others[:, k]), others[:, k], 0.0)
        else:
            self.estimate = np.zeros(len(bids))


class RingAgent(_Stateless):
    """A bidding ring member without a knockout (no side payments, no sharing).

    The designated ``leader`` bids ``shade * value``; every other member
    cover-bids ``cover * value`` (0: abstains), so the ring never bids against
    itself and the price it pays falls to the best outside bid.

    Args:
        leader: whether this seat bids for the ring.
        shade: the leader's bid as a fraction of its value.
        cover: a member's bid as a fraction of its value.
    """

    market_params: tuple[str, ...] = ()

    def __init__(
        self, leader: bool = False, shade: float = 1.0, cover: float = 0.0
    ) -> None:
        if not isinstance(leader, bool):
            raise UserError(f"leader must be true or false, got {leader!r}")
        self.leader = leader
        self.shade = _fraction("shade", shade)
        self.cover = _fraction("cover", cover)

    def act(self, obs: NDArray, rng: np.random.Generator) -> NDArray[np.float32]:
        v = obs[:, VALUE].astype(np.float64)
        return as_actions((self.shade if self.leader else self.cover) * v)


class WashAgent(_Stateless):
    """One side of a wash-trading (sybil) pair in a double auction.

    The pair's buyer bids and its seller asks the same price
    ``level * max_price``: trades print at that price (or move the crossing
    toward it), inflating volume and steering the clearing price that others
    see. Its own value or cost (the seat's draw) is fictitious and ignored.

    Args:
        level: the price to print, as a fraction of ``max_price``.
        max_price: top of the price range (from the market).
    """

    market_params = ("max_price",)

    def __init__(self, level: float = 0.9, max_price: float = 1.0) -> None:
        self.level = _fraction("level", level)
        self.max_price = float(max_price)

    def act(self, obs: NDArray, rng: np.random.Generator) -> NDArray[np.float32]:
        return as_actions(np.full(len(obs), self.level * self.max_price))
