"""The action parameterisation of the env: absolute bids, or shading factors.

``EnvConfig.action`` picks what an agent's action means:

``auto`` (default)
    ``absolute`` wherever the env is stepped (every env face, ``simulate``);
    learners that ``attn-market train`` trains act under ``shade``
    (:class:`ActionOption`), the parameterisation under which they learn.
``absolute``
    The action is the bid (buyer) or ask (seller) per unit itself, in
    ``[0, max_bid]``. Set explicitly, learners train on absolute bids too.
``shade``
    The action is a shading factor ``s`` in ``[0, 1]``, the agent's
    *truthfulness*: ``s = 1`` bids or asks the private value, ``s = 0`` the
    least aggressive end of the role's range:

    - buyer:  ``bid = value_low + s * (value - value_low)`` (with values on
      ``[0, 1]``: ``bid = s * value``), in ``[value_low, value]``;
    - seller: ``ask = cost_high - s * (cost_high - cost)``, in
      ``[cost, cost_high]``.

    ``value`` (``cost``) is first clipped into ``[value_low, value_high]``
    (``[cost_low, cost_high]``). With a fixed common value
    (``value_low == value_high``) buyers shade from 0: ``bid = s * value``.
    A constant ``s`` covers the linear equilibria (first price on ``U[0, 1]``
    with ``n`` buyers: ``s = (n - 1) / n``).

:func:`shade_to_price` is the one formula; the env faces and the trainer's
action maps (``training.actions``) call it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "ACTION_MODES",
    "ActionOption",
    "buyer_shade_range",
    "shade_to_price",
    "shade_to_prices",
]

ACTION_MODES = ("auto", "absolute", "shade")
"Values of ``EnvConfig.action``."


Units = Literal["absolute", "shade"]


@dataclass(frozen=True)
class ActionOption:
    """``EnvConfig.action`` resolved once: what an action means, and to whom.

    The one owner of ``auto``: every env face steps in :attr:`env` units,
    learners that ``attn-market train`` trains act in :attr:`learner` units,
    and :attr:`explicit` says whether the user chose (a learner on explicit
    ``absolute`` bids is warned about). ``EnvConfig.actions`` gives it.
    """

    env: Units
    "Units every env face (PettingZoo, vector, single-agent, simulate) takes."
    learner: Units
    "Units a trained learner's policy outputs."
    explicit: bool
    "``False`` for ``auto`` (the default)."

    @classmethod
    def resolve(cls, action: str) -> ActionOption:
        """The option of ``EnvConfig.action`` (one of :data:`ACTION_MODES`)."""
        if action == "auto":
            return cls(env="absolute", learner="shade", explicit=False)
        if action in ("absolute", "shade"):
            return cls(env=action, learner=action, explicit=True)
        raise ValueError(f"env.action must be one of {ACTION_MODES}, got {action!r}")


def shade_to_price(
    s: ArrayLike, value: ArrayLike, low: float, high: float, seller: bool
) -> NDArray[np.float64]:
    """Bids (buyer) or asks (``seller``) of shading factors ``s`` at ``value``.

    Args:
        s: shading factors, already in ``[0, 1]``.
        value: private values (buyer) or costs (seller), broadcast with ``s``.
        low, high: the role's value (buyer) or cost (seller) range.
        seller: ``True`` for asks, ``False`` for bids.
    """
    s = np.asarray(s, dtype=np.float64)
    value = np.clip(np.asarray(value, dtype=np.float64), low, high)
    if seller:
        return high - s * (high - value)
    return low + s * (value - low)


def buyer_shade_range(config) -> tuple[float, float]:
    """``(low, high)`` buyers shade in: the value range, from 0 for a fixed value."""
    low, high = float(config.value_low), float(config.value_high)
    return (0.0 if low == high else low), high


def shade_to_prices(
    s: NDArray, values: NDArray, n_buyers: int, config
) -> NDArray[np.float64]:
    """``[B, n_agents]`` bids and asks from shading factors (buyers' columns first).

    ``config`` is the :class:`attn_env.config.EnvConfig` whose value and cost
    ranges the roles shade in; ``s`` is clipped into ``[0, 1]``.
    """
    s = np.clip(np.asarray(s, dtype=np.float64), 0.0, 1.0)
    out = np.empty_like(s)
    n = n_buyers
    out[:, :n] = shade_to_price(
        s[:, :n], values[:, :n], *buyer_shade_range(config), seller=False
    )
    if s.shape[1] > n:
        out[:, n:] = shade_to_price(
            s[:, n:], values[:, n:], config.cost_low, config.cost_high, seller=True
        )
    return out
