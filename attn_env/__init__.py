"""attn-market: markets for attention.

Batched mechanisms (``attn_env.mechanisms``), a PettingZoo environment of an
attention market (``parallel_env``, ``env``, ``raw_env``), its vectorised form
(``vector_env``) and valuation sources (``attn_env.valuations``), uniform or from
a transformer's attention maps.

The single-agent gymnasium view is registered as ``AttentionMarket-v0``
(``gymnasium.make("AttentionMarket-v0", mechanism="gsp", ...)`` after ``import
attn_env``, or ``gymnasium.make("attn_env:AttentionMarket-v0", ...)``); the
registration is data (a string entry point), so the env's modules load only when
it is made.

Importing this package is cheap (gymnasium, about 0.1 s; nothing else): torch and
transformers load only on the attention path.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "GYM_ID",
    "env",
    "mechanisms",
    "parallel_env",
    "raw_env",
    "single_agent_env",
    "vector_env",
]
__version__ = "0.1.0"

#: gymnasium id of :class:`attn_env.single_agent.SingleAgentMarketEnv`.
GYM_ID = "AttentionMarket-v0"


def _register_gymnasium() -> None:
    """Register the single-agent view with gymnasium (once per process)."""
    import gymnasium

    if GYM_ID not in gymnasium.registry:
        gymnasium.register(
            id=GYM_ID, entry_point="attn_env.single_agent:SingleAgentMarketEnv"
        )


_register_gymnasium()


def parallel_env(**options: Any):
    """PettingZoo ``ParallelEnv`` of an attention market (``attn_env.market_env``)."""
    from attn_env.market_env import parallel_env as _make

    return _make(**options)


def raw_env(**options: Any):
    """The AEC form, without PettingZoo's wrappers."""
    from attn_env.market_env import raw_env as _make

    return _make(**options)


def env(**options: Any):
    """The AEC form with PettingZoo's standard wrappers."""
    from attn_env.market_env import env as _make

    return _make(**options)


def vector_env(num_envs: int, **options: Any):
    """Many markets stepped in one numpy call (see ``attn_env.vector``)."""
    from attn_env.vector import vector_env as _make

    return _make(num_envs=num_envs, **options)


def single_agent_env(**options: Any):
    """A gymnasium view: one learner, the other agents fixed policies."""
    from attn_env.single_agent import SingleAgentMarketEnv

    return SingleAgentMarketEnv(**options)


def __getattr__(name: str) -> Any:
    if name == "mechanisms":
        import importlib

        return importlib.import_module("attn_env.mechanisms")
    raise AttributeError(f"module 'attn_env' has no attribute {name!r}")
