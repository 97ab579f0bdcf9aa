"""How a policy's raw output becomes the env's action (the policy's squashing).

What an action *means* is the env's option ``env.action`` (``attn_env.actions``):
``shade`` (a shading factor ``s`` in ``[0, 1]``; the env bids ``s x value``) or
``absolute`` (the bid or ask itself). The trainer steps the env with that very
option (``vector_env(action=env.action, fixed_agents=...)``: learners act in
the env's units, fixed agents bid), so the env's formula is the only one.
What the *policy* outputs is this module's business: a Gaussian policy's raw
sample ``a`` is squashed into the env's action by ``train.squash``. Which
quantity the policy learns decides whether learning works
(docs/design.md#the-action-recipe): a policy that outputs the absolute bid
collapsed to bidding 0 in first price, one that outputs a shading factor
learned the equilibrium. ``s`` is the policy's *truthfulness*: ``s = 1`` bids
or asks the private value, ``s = 0`` the least aggressive end of the role's
range (buyer: ``bid = low + s (value - low)``; seller: ``ask = high - s (high -
cost)``).

An :class:`ActionMap`'s ``mode`` combines the two options:

``shade`` (``env.action: shade``, ``train.squash: sigmoid``, the default squash)
    ``s = sigmoid(a + logit(0.9))``, ``a`` in ``[-8, 8]``: smooth, so the
    gradient never dies at an end of ``[0, 1]``, and an untrained policy
    (``a`` near 0) starts near truthful bidding (``s`` about 0.9) and has to
    *learn* to shade. Measured: with the clipped map below, a k = 1/2 seller's
    mean drifted past ``s = 1`` into the clipped region (every sample there asks
    the cost, so the gradient vanished) and stayed truthful.
``shade_clip`` (``env.action: shade``, ``train.squash: clip``)
    ``s = clip(a, 0, 1)``: the recipe of docs/design.md#the-action-recipe (first
    price: L2 0.014 to the BNE after 2M agent-steps). An untrained policy has
    mean ``s`` near 0.
``absolute`` (``env.action: absolute``)
    The policy outputs the bid (or ask) itself, clipped to its role's range.

A saved policy keeps its mode in the run's manifest; :meth:`ActionMap.to_bid`
turns its output into a bid wherever it plays as a fixed agent (``simulate``,
``evaluate``), with the env's formula (``attn_env.actions.shade_to_price``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from attn_env.actions import (
    ActionOption,
    buyer_shade_range,
    shade_to_price,
)
from attn_env.errors import UserError
from attn_env.observation import ROLES, VALUE

ACTIONS = ("shade", "shade_clip", "absolute")
"Modes of an :class:`ActionMap` (a run's manifest records one per learner)."
SQUASHES = ("sigmoid", "clip")
"Values of ``train.squash``: how a raw Gaussian sample becomes ``s``."
SHADE_START = 0.9
"Truthfulness of an untrained ``shade`` policy (raw action 0)."
RAW_BOUND = 8.0
"Raw actions of ``shade`` lie in ``[-RAW_BOUND, RAW_BOUND]``."
_OFFSET = float(np.log(SHADE_START / (1.0 - SHADE_START)))
CLIP_LOG_STD = float(np.log(0.25))
"""Initial ``log_std`` of a PPO policy under ``shade_clip`` (both backends).

With SB3's start (``log_std`` 0, a standard deviation of 1) a clipped policy's
samples cover all of ``[0, 1]`` and beyond, clipped to bid 0 or the value,
where the action has no gradient: first price n = 2 bid 0 (``bne_l2`` 0.289)
for its first ~30k agent-steps at a learning rate of 3e-3 before recovering.
1/4 is the spread in ``s`` an untrained ``shade`` policy has at ``s = 1/2``;
``training.rllib.CLIP_LOG_STD`` is the same value."""

__all__ = [
    "ACTIONS",
    "CLIP_LOG_STD",
    "ROLES",
    "SQUASHES",
    "ActionMap",
    "action_map_for",
    "map_mode",
]


@dataclass(frozen=True)
class ActionMap:
    """Maps raw policy actions ``[M, 1]`` and observations ``[M, D]`` to bids/asks.

    Attributes:
        mode: ``shade``, ``shade_clip`` or ``absolute``.
        role: ``buyer`` or ``seller``.
        low: lower end of the role's value (buyers) or cost (sellers) range.
        high: upper end of that range.
    """

    mode: str
    role: str
    low: float
    high: float

    def __post_init__(self) -> None:
        if self.mode not in ACTIONS:
            raise UserError(
                f"unknown action map {self.mode!r}; known: {', '.join(ACTIONS)}"
            )
        if self.role not in ROLES:
            raise UserError(f"unknown role {self.role!r}; known: {', '.join(ROLES)}")
        if not (
            np.isfinite(self.low) and np.isfinite(self.high) and self.high > self.low
        ):
            raise UserError(
                "range must satisfy low < high, "
                f"got low={self.low!r}, high={self.high!r}"
            )

    @property
    def bounds(self) -> tuple[float, float]:
        """Bounds of the policy's raw action (the SB3 ``Box``)."""
        if self.mode == "shade":
            return (-RAW_BOUND, RAW_BOUND)
        return (0.0, 1.0) if self.mode == "shade_clip" else (self.low, self.high)

    def space(self):
        """The gymnasium ``Box`` the policy acts in."""
        from gymnasium.spaces import Box

        lo, hi = self.bounds
        return Box(np.float32(lo), np.float32(hi), shape=(1,), dtype=np.float32)

    def shade(self, raw: NDArray) -> NDArray[np.float64]:
        """The shading factor ``s`` in ``[0, 1]`` of raw actions (``shade*`` modes)."""
        lo, hi = self.bounds
        a = np.clip(np.asarray(raw, dtype=np.float64), lo, hi)
        if self.mode == "shade":
            return 1.0 / (1.0 + np.exp(-(a + _OFFSET)))
        return a

    @property
    def env_action(self) -> str:
        """The env's ``action`` option this map's outputs are in."""
        return "absolute" if self.mode == "absolute" else "shade"

    def to_action(self, raw: NDArray) -> NDArray[np.float32]:
        """The env's actions ``[M, 1]`` (``s``, or the bid) from raw actions.

        Raw actions are clipped to :attr:`bounds` first (SB3 samples unbounded
        Gaussians and clips the same way when it steps an env).
        """
        raw = np.asarray(raw, dtype=np.float64).reshape(-1, 1)
        if self.mode == "absolute":
            return np.clip(raw, self.low, self.high).astype(np.float32)
        return self.shade(raw).astype(np.float32)

    def to_bid(self, raw: NDArray, obs: NDArray) -> NDArray[np.float32]:
        """Absolute bids (buyers) or asks (sellers) ``[M, 1]`` from raw actions.

        For a policy playing in a market stepped with absolute bids (a saved
        policy in ``simulate``); in training the env applies its own formula.
        """
        raw = np.asarray(raw, dtype=np.float64).reshape(-1, 1)
        if self.mode == "absolute":
            return self.to_action(raw)
        s = self.shade(raw)
        obs = np.asarray(obs, dtype=np.float64)
        value = obs[:, VALUE : VALUE + 1]
        seller = self.role == "seller"
        # the env's own formula (``action="shade"``): one place for the mapping
        bid = shade_to_price(s, value, self.low, self.high, seller=seller)
        return bid.astype(np.float32)

    def from_bid(self, bid: NDArray, value: NDArray) -> NDArray[np.float64]:
        """The raw action that bids ``bid`` at ``value`` (inverse of :meth:`to_bid`).

        Used to express an analytic strategy (a BNE) as a policy output. Where the
        map is flat (``value == low`` for a buyer) ``s = 1`` is returned.
        """
        bid = np.asarray(bid, dtype=np.float64)
        value = np.asarray(value, dtype=np.float64)
        if self.mode == "absolute":
            return np.clip(bid, self.low, self.high)
        with np.errstate(divide="ignore", invalid="ignore"):
            if self.role == "buyer":
                s = (bid - self.low) / (value - self.low)
            else:
                s = (self.high - bid) / (self.high - value)
        s = np.clip(np.where(np.isfinite(s), s, 1.0), 0.0, 1.0)
        if self.mode == "shade_clip":
            return s
        with np.errstate(divide="ignore"):
            raw = np.log(s) - np.log1p(-s) - _OFFSET
        return np.clip(raw, -RAW_BOUND, RAW_BOUND)


def map_mode(option: ActionOption, squash: str) -> str:
    """The :class:`ActionMap` mode of a resolved ``env.action`` and ``train.squash``.

    ``option`` is ``EnvConfig.actions``: learners act in its ``learner`` units
    (shading factors under the default ``auto``).
    """
    if squash not in SQUASHES:
        raise UserError(
            f"train.squash must be one of {', '.join(SQUASHES)}, got {squash!r}"
        )
    if option.learner == "absolute":
        return "absolute"
    return "shade" if squash == "sigmoid" else "shade_clip"


def action_map_for(env_cfg, role: str, mode: str) -> ActionMap:
    """The :class:`ActionMap` of ``role`` in an ``EnvConfig`` (value or cost range).

    The range is the one the env shades in (``attn_env.actions``): a fixed
    buyers' value (``value_low == value_high``) maps onto ``[0, value]``.
    """
    if role == "buyer":
        return ActionMap(mode, role, *buyer_shade_range(env_cfg))
    return ActionMap(mode, role, float(env_cfg.cost_low), float(env_cfg.cost_high))
