"""Baseline bidding agents: ``agents.make(kind, **params)`` and ``agents.names()``.

=============  ==============================================================
kind           strategy
=============  ==============================================================
``truthful``   bid the value per unit, ask the cost
``bne``        analytic Bayes–Nash equilibrium (first price, CS k-double, truthful
               where that is dominant); ``ValueError`` elsewhere
``shading``    bid ``shade * value``; ask ``cost + (1 - shade) * (max_price - cost)``
``zi_c``       Gode–Sunder zero intelligence, constrained
``zip``        Cliff's zero intelligence plus (adaptive margin)
``gd``         Gjerstad–Dickhaut belief-based expected-surplus maximiser
``pacing``     budget pacing, ``bid = value / (1 + mu)``
``policy``     a trained checkpoint (``training.load_policy(path)``)
=============  ==============================================================

Every agent follows ``agents.base.Agent``: ``reset(num_envs, rng)``,
``act(obs [N, obs_dim], rng) -> [N, 1]`` float32 and ``observe(feedback)``.

Feedback (what ``observe`` receives after each round; built by
``attn_env.core.feedback_for``) is a dict of arrays with leading axis ``N``:
``clearing_price [N]`` (``nan`` where nothing traded), ``bids [N, n]``,
``asks [N, m]`` (two-sided; ``[N, 0]`` otherwise), ``alloc [N, n]``,
``seller_alloc [N, m]``, ``active [N, n]``, ``seller_active [N, m]`` (who could
trade), ``traded [N, n + m]``, and the agent's own ``own_alloc``, ``own_pay``,
``own_value``, ``own_action`` ``[N]``.

Parameters that describe the market (number of bidders, price range, rounds,
budget) are listed by each class in ``market_params`` and filled from the
environment options by :func:`for_market`, so a config only names the strategy's
own knobs (``shade: 0.8``).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from agents.base import Agent
from agents.baselines import (
    BNEAgent,
    PacingAgent,
    PolicyAgent,
    ShadingAgent,
    TruthfulAgent,
)
from agents.traders import GDAgent, ZICAgent, ZIPAgent

__all__ = ["Agent", "for_market", "make", "market_context", "names"]

_REGISTRY: dict[str, type] = {
    "truthful": TruthfulAgent,
    "bne": BNEAgent,
    "shading": ShadingAgent,
    "zi_c": ZICAgent,
    "zip": ZIPAgent,
    "gd": GDAgent,
    "pacing": PacingAgent,
    "policy": PolicyAgent,
}


def names() -> list[str]:
    """The agent kinds, in the order of the table above."""
    return list(_REGISTRY)


def _cls(kind: str) -> type:
    if kind not in _REGISTRY:
        raise ValueError(f"unknown agent kind {kind!r}; known: {', '.join(names())}")
    return _REGISTRY[kind]


def make(kind: str, **params: Any) -> Agent:
    """Build agent ``kind`` with keyword parameters; unknown parameters are named."""
    cls = _cls(kind)
    sig = inspect.signature(cls)
    unknown = sorted(set(params) - set(sig.parameters))
    if unknown:
        raise ValueError(
            f"agent kind {kind!r} has no parameter {', '.join(map(repr, unknown))}; "
            f"known: {', '.join(sig.parameters) or '(none)'}"
        )
    return cls(**params)


def market_context(env_options: Mapping[str, Any]) -> dict[str, Any]:
    """Environment options plus derived facts an agent may need.

    ``max_price`` is the top of the action space: the env's ``max_bid`` when set,
    else ``value_high`` (one-sided, matching) or ``max(value_high, cost_high)``
    (two-sided), as ``attn_env.core.MarketSpec``.
    """
    from attn_env.mechanisms import TWO_SIDED

    ctx = dict(env_options)
    top = ctx.get("max_bid")
    if top is None:
        two_sided = ctx.get("mechanism") in TWO_SIDED
        top = max(
            ctx.get("value_high", 1.0), ctx.get("cost_high", 1.0) if two_sided else 0.0
        )
    ctx["max_price"] = float(top)
    ctx["mechanism_params"] = dict(ctx.get("mechanism_params") or {})
    return ctx


def for_market(
    kind: str, params: Mapping[str, Any], env_options: Mapping[str, Any]
) -> Agent:
    """Build ``kind`` for a market: ``params`` win, ``market_params`` come from the env.

    Args:
        kind: agent kind (``names()``).
        params: the strategy's own parameters (a config's ``agents.<x>.params``).
        env_options: the environment's keyword options (``asdict(config.env)``).
    """
    cls = _cls(kind)
    ctx = market_context(env_options)
    filled = {
        k: ctx[k]
        for k in getattr(cls, "market_params", ())
        if k in ctx and k not in params
    }
    return make(kind, **filled, **params)
