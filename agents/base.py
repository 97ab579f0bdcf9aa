"""The agent interface: a fixed (or trained) bidding strategy, batched over markets.

One agent object plays one agent name (``buyer_0``) in ``N`` markets at once.
Observations follow the environment's layout (``attn_env.market_env`` docstring):

====  ==============================================================
 idx  meaning
====  ==============================================================
  0   private value per unit this round (buyer: theta*r; seller: cost)
  1   budget left (buyers; see the env docstring for the unlimited case)
  2   round index / rounds, in [0, 1]
  3   role flag: 0 buyer, 1 seller
  4   last round's clearing price (0 before the first round)
  5   own allocation last round
  6   own payment last round (sellers: receipt)
  7   active flag: 1 if the agent can still trade this round
  8+  the last ``history`` clearing prices
====  ==============================================================
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

VALUE, BUDGET, ROUND, ROLE, LAST_PRICE, LAST_ALLOC, LAST_PAY, ACTIVE = range(8)
OBS_BASE_DIM = 8

__all__ = [
    "ACTIVE",
    "BUDGET",
    "LAST_ALLOC",
    "LAST_PAY",
    "LAST_PRICE",
    "OBS_BASE_DIM",
    "ROLE",
    "ROUND",
    "VALUE",
    "Agent",
    "as_actions",
    "is_seller",
]


def as_actions(x: NDArray) -> NDArray[np.float32]:
    """``[N]`` bids or asks -> ``[N, 1]`` float32, the env's action layout."""
    return np.asarray(x, dtype=np.float32).reshape(-1, 1)


def is_seller(obs: NDArray) -> NDArray[np.bool_]:
    """``[N]`` rows of ``obs`` whose role flag says seller."""
    return obs[:, ROLE] > 0.5


@runtime_checkable
class Agent(Protocol):
    """A strategy for one agent name, vectorised over ``N`` markets."""

    def reset(self, num_envs: int, rng: np.random.Generator) -> None:
        """Start new episodes in ``num_envs`` markets (clears any adaptive state)."""
        ...

    def act(
        self, obs: NDArray[np.float32], rng: np.random.Generator
    ) -> NDArray[np.float32]:
        """Bids (buyers) or asks (sellers) per unit: ``obs [N, obs_dim] -> [N, 1]``."""
        ...

    def observe(self, feedback: dict[str, Any]) -> None:
        """Public feedback after a round (the env's ``infos``).

        Adaptive agents (ZIP, GD, pacing) learn from it; the others ignore it.
        """
        ...
