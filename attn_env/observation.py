"""The observation layout every agent reads, and the role of an agent name.

The market core writes observations in this layout; agents, trained policies
and the trainers read them through these indices. One row per agent:

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
  ..  with ``feedback`` other than ``none``: the last ``max(1, history)``
      values the auctioneer published to the agent (``attn_env.feedback``)
====  ==============================================================
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

VALUE, BUDGET, ROUND, ROLE, LAST_PRICE, LAST_ALLOC, LAST_PAY, ACTIVE = range(8)
OBS_BASE_DIM = 8
ROLES = ("buyer", "seller")

__all__ = [
    "ACTIVE",
    "BUDGET",
    "LAST_ALLOC",
    "LAST_PAY",
    "LAST_PRICE",
    "OBS_BASE_DIM",
    "ROLE",
    "ROLES",
    "ROUND",
    "VALUE",
    "as_actions",
    "feedback_dim",
    "is_seller",
    "role_of",
]


def as_actions(x: NDArray) -> NDArray[np.float32]:
    """``[N]`` bids or asks -> ``[N, 1]`` float32, the env's action layout."""
    return np.asarray(x, dtype=np.float32).reshape(-1, 1)


def feedback_dim(feedback: str, history: int) -> int:
    """Observation entries of published feedback: 0 under ``none``, else
    ``max(1, history)`` (``history`` sets the memory of every public series)."""
    return 0 if feedback == "none" else max(1, history)


def is_seller(obs: NDArray) -> NDArray[np.bool_]:
    """``[N]`` rows of ``obs`` whose role flag says seller."""
    return obs[:, ROLE] > 0.5


def role_of(agent: str) -> str:
    """The role of an agent name: ``"buyer_3" -> "buyer"``."""
    return agent.rsplit("_", 1)[0]
