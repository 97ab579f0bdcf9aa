"""Baseline bidding agents: ``agents.make(kind, **params)`` and ``agents.names()``.

=============  ==============================================================
kind           strategy
=============  ==============================================================
``truthful``   bid the value per unit, ask the cost
``bne``        analytic Bayes–Nash equilibrium (``attn_env.equilibria``);
               ``ValueError`` where none is known
``shading``    bid ``shade * value``; ask ``cost + (1 - shade) * (max_price - cost)``
``zi_c``       Gode–Sunder zero intelligence, constrained
``zip``        Cliff's zero intelligence plus (adaptive margin)
``gd``         Gjerstad–Dickhaut belief-based expected-surplus maximiser
``pacing``     budget pacing, ``bid = value / (1 + mu)``
``shill``      the seller's shill bidder (``agents.attacks``)
``ring``       a bidding ring's leader or member (``agents.attacks``)
``wash``       one side of a wash-trading pair (``agents.attacks``)
``absent``     an empty seat: bids 0, asks the top price (``agents.attacks``)
``qlearn``     tabular Q-learning on a bid grid (algorithmic collusion;
               ``agents.qlearn``)
=============  ==============================================================

``equilibrium`` bids the numerical Bayes–Nash equilibrium of any sealed-bid
market (``attn_env.solver``, solved once and cached; ``agents.equilibrium``).

Every agent follows ``attn_env.players.Agent``: ``reset(num_envs, rng)``,
``act(obs [N, obs_dim], rng) -> [N, 1]`` float32 and ``observe(feedback)``
(feedback layout: ``attn_env.players.feedback_for``). A trained policy
(``training.load_policy``) follows the same protocol; configs name it with
``kind: policy``, which the experiment runner resolves.

Parameters that describe the market (price range, rounds, budget, the market
itself) are listed by each class in ``market_params`` and filled from the
environment config by :func:`for_market`, so a config only names the
strategy's own knobs (``shade: 0.8``). Your own kind joins with
:func:`register`.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping
from typing import Any

from agents.attacks import AbsentAgent, RingAgent, ShillAgent, WashAgent
from agents.baselines import BNEAgent, PacingAgent, ShadingAgent, TruthfulAgent
from agents.equilibrium import EquilibriumAgent
from agents.qlearn import QLearnAgent
from agents.traders import GDAgent, ZICAgent, ZIPAgent
from attn_env.config import EnvConfig
from attn_env.core import MarketSpec
from attn_env.errors import UserError
from attn_env.observation import role_of
from attn_env.players import Agent

__all__ = [
    "Agent",
    "for_market",
    "make",
    "market_context",
    "names",
    "opponents",
    "register",
]

_REGISTRY: dict[str, type] = {
    "truthful": TruthfulAgent,
    "bne": BNEAgent,
    "shading": ShadingAgent,
    "zi_c": ZICAgent,
    "zip": ZIPAgent,
    "gd": GDAgent,
    "pacing": PacingAgent,
    "shill": ShillAgent,
    "ring": RingAgent,
    "wash": WashAgent,
    "absent": AbsentAgent,
    "equilibrium": EquilibriumAgent,
    "qlearn": QLearnAgent,
}


def names() -> list[str]:
    """The agent kinds, in the order of the table above, then registered ones."""
    return list(_REGISTRY)


def register(kind: str, cls: type) -> None:
    """Add a user's agent class under ``kind`` (for configs and :func:`make`).

    Args:
        kind: the name configs use; must not shadow a known kind.
        cls: a class whose instances follow ``attn_env.players.Agent``; its
            optional ``market_params`` tuple names constructor arguments to fill
            from the market (see :func:`market_context`).
    """
    if not isinstance(kind, str) or not kind.isidentifier():
        raise UserError(f"agent kind must be an identifier, got {kind!r}")
    if kind in _REGISTRY or kind in ("learn", "policy"):
        raise UserError(f"agent kind {kind!r} is already taken")
    missing = [
        m for m in ("reset", "act", "observe") if not callable(getattr(cls, m, None))
    ]
    if not isinstance(cls, type) or missing:
        raise UserError(
            f"register({kind!r}, cls): cls must be a class with reset, act and "
            f"observe (attn_env.players.Agent), got {cls!r}"
        )
    _REGISTRY[kind] = cls


def _cls(kind: str) -> type:
    if kind not in _REGISTRY:
        raise UserError(f"unknown agent kind {kind!r}; known: {', '.join(names())}")
    return _REGISTRY[kind]


def make(kind: str, **params: Any) -> Agent:
    """Build agent ``kind`` with keyword parameters; unknown parameters are named."""
    cls = _cls(kind)
    sig = inspect.signature(cls)
    unknown = sorted(set(params) - set(sig.parameters))
    if unknown:
        raise UserError(
            f"agent kind {kind!r} has no parameter {', '.join(map(repr, unknown))}; "
            f"known: {', '.join(sig.parameters) or '(none)'}"
        )
    return cls(**params)


def market_context(env: EnvConfig) -> dict[str, Any]:
    """What an agent may take from the market: every env option, plus

    ``env`` (the :class:`EnvConfig` itself) and ``max_price``, the top of the
    action space (the env's ``max_bid``, as ``attn_env.core.MarketSpec``).
    """
    ctx = {f.name: getattr(env, f.name) for f in dataclasses.fields(env)}
    ctx["env"] = env
    ctx["max_price"] = float(MarketSpec.from_config(env).max_bid)
    return ctx


def for_market(kind: str, params: Mapping[str, Any], env: EnvConfig) -> Agent:
    """Build ``kind`` for a market: ``params`` win, ``market_params`` come from ``env``.

    Args:
        kind: agent kind (``names()``).
        params: the strategy's own parameters (a config's ``agents.<x>.params``).
        env: the market's :class:`EnvConfig`.
    """
    cls = _cls(kind)
    ctx = market_context(env)
    filled = {
        k: ctx[k]
        for k in getattr(cls, "market_params", ())
        if k in ctx and k not in params
    }
    return make(kind, **filled, **params)


def opponents(
    kinds: str | Mapping[str, str], env: EnvConfig, learner: str = "buyer_0"
) -> dict[str, Agent]:
    """Fixed agents for every seat but ``learner``, for the single-agent view.

    Args:
        kinds: one kind for everyone, or a mapping from agent names or roles to
            kinds (names win; anything not named is truthful).
        env: the market.
        learner: the seat left open.

    Returns:
        Agent name -> a fresh agent (one object per name).
    """
    if isinstance(kinds, str):
        kinds = {"buyer": kinds, "seller": kinds}
    agent_names = MarketSpec.from_config(env).agents
    return {
        name: for_market(kinds.get(name, kinds.get(role_of(name), "truthful")), {}, env)
        for name in agent_names
        if name != learner
    }
