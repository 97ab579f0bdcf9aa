"""Many attention markets stepped in one numpy call: ``vector_env(num_envs, **opts)``.

The same market as ``attn_env.parallel_env`` (same options, spaces, rewards and
dynamics; see the ``attn_env.market_env`` docstring), with the state of
``num_envs`` markets held as arrays (:class:`attn_env.core.MarketCore`), no
Python loop over markets. With ``num_envs=1`` and the same seed and actions it
reproduces ``parallel_env`` step for step, across episodes too.

Shapes (``N = num_envs``, ``A = n_agents``, columns in :attr:`agents` order):

- ``reset(seed=None, options=None) -> obs [N, A, obs_dim] float32, infos``
  (``infos["value"] [N, A]``, ``infos["active"] [N, A]``).
- ``step(actions [N, A, 1] or [N, A]) -> obs, rew [N, A] float64,
  terminated [N, A] bool, truncated [N, A] bool, infos``.

Actions are bids and asks, or shading factors in ``[0, 1]`` under
``action="shade"`` (``attn_env.actions``), for every agent of every market
except the ``fixed_agents``: their actions are always bids and asks. That is
how a trainer steps learners in the env's own action parameterisation beside
fixed agents of ``agents/``, which bid (``attn-market train`` does).
``render_mode`` ``ansi``, ``human`` or ``rgb_array`` renders market 0.

Autoreset: **same-step** (gymnasium 1.x ``AutoresetMode.SAME_STEP``, as SB3's
VecEnv): a market whose episode ends in a step is reset within that step; the
returned ``obs`` is the first observation of its new episode, and the last
observation of the finished one is in ``infos["final_obs"]`` (rows where
``infos["_final_obs"]`` is true; the key is present only when a market ended;
``vector_env(..., final_obs=False)`` skips it, for trainers that never bootstrap
from terminal observations, as with ``gamma = 0`` one-shot rounds).
So every call of ``step`` plays a real round in every market, which with the
default ``rounds=1`` avoids the wasted steps of next-step autoreset.

``infos`` after a step (arrays over markets and agents):

=======================  ================  ==========================================
key                      shape             meaning
=======================  ================  ==========================================
``value``                ``[N, A]``        value per unit (buyers) / cost (sellers)
``bid``                  ``[N, A]``        effective bids and asks (clipped, budget
                                           capped): the public order book
``alloc``                ``[N, A]``        attention won / units traded
``payment``              ``[N, A]``        paid (buyers) / received (sellers), >= 0
``utility``              ``[N, A]``        the reward
``traded``               ``[N, A]`` bool   won or traded something this round
``active``               ``[N, A]`` bool   could trade this round
``clearing_price``       ``[N]``           headline price, ``nan`` if nothing traded
``round``                ``[N]`` int       index of the round just played
``slot``                 ``[N, n]`` int    slot won by each buyer (two-sided: its
                                           partner seller), ``-1`` for none
``alpha``                ``[N, K]``        the round's slot attention (descending)
``theta``                ``[N, n]``        buyers' values per unit of attention
``relevance``            ``[N, n]``        buyers' relevance ``r`` (value =
                                           ``theta * r``)
``group``                ``[N, n]`` int    each buyer's ad's vertical (index into
                                           ``core.source.group_names``; only
                                           with a source that labels ads)
``lottery``              ``[N]`` bool      the exposure floor's free lottery
                                           allocated the market (only with
                                           ``exposure_floor > 0``)
``metrics``              dict of ``[N]``   metrics of the episode that ended (see
                                           ``METRIC_KEYS``), ``nan`` elsewhere
``_metrics``             ``[N]`` bool      markets whose episode ended this step
``final_obs``            ``[N, A, D]``     last observation of ended episodes
``_final_obs``           ``[N]`` bool      same mask as ``_metrics``
=======================  ================  ==========================================

Attributes: ``agents``, ``n_agents``, ``num_envs``, ``single_observation_space``
and ``single_action_space`` (the space of one agent in one market, shared by
all agents that follow ``action``: what a parameter-shared policy sees),
``observation_space`` and ``action_space`` (the batched boxes; ``fixed_agents``'
columns reach ``max_bid``), ``fixed_columns`` (their column indices),
``options`` (the resolved :class:`~attn_env.config.EnvConfig` as a dict),
``config``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium.spaces import Box
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode

from attn_env.config import EnvConfig, make_config
from attn_env.core import MarketCore
from attn_env.errors import UserError
from attn_env.market_env import RENDER_MODES, check_render_mode, render_out
from attn_env.metrics import METRIC_KEYS

__all__ = ["MarketVectorEnv", "vector_env"]


class MarketVectorEnv:
    """``num_envs`` attention markets as one batched environment."""

    metadata = {  # noqa: RUF012 - gymnasium vector envs read a class attribute
        "name": "attention_market_v1",
        "render_modes": list(RENDER_MODES),
        "autoreset_mode": AutoresetMode.SAME_STEP,
    }

    def __init__(
        self,
        num_envs: int,
        config: EnvConfig | None = None,
        render_mode: str | None = None,
        seed: int | None = None,
        final_obs: bool = True,
        fixed_agents: Sequence[str] = (),
        **options: Any,
    ) -> None:
        if (
            isinstance(num_envs, bool)
            or not isinstance(num_envs, int | np.integer)
            or num_envs < 1
        ):
            raise UserError(f"num_envs must be an integer >= 1, got {num_envs!r}")
        self.config = make_config(config, **options)
        self.options = dataclasses.asdict(self.config)
        self.render_mode = check_render_mode(render_mode)
        self.num_envs = int(num_envs)
        self.core = MarketCore(self.config, self.num_envs)
        spec = self.core.spec
        self.spec = spec
        self.agents = spec.agents
        self.possible_agents = self.agents
        self.n_agents = spec.n_agents
        self.obs_dim = spec.obs_dim
        self.single_observation_space = Box(
            spec.obs_low, spec.obs_high, dtype=np.float32
        )
        self.single_action_space = Box(
            0.0, spec.action_high, shape=(1,), dtype=np.float32
        )
        self.fixed_columns = _fixed_columns(fixed_agents, self.agents)
        self._action_columns = (
            [j for j in range(self.n_agents) if j not in self.fixed_columns]
            if self.fixed_columns
            else None
        )
        shape = (self.num_envs, self.n_agents)
        self.observation_space = Box(
            np.broadcast_to(spec.obs_low, (*shape, spec.obs_dim)),
            np.broadcast_to(spec.obs_high, (*shape, spec.obs_dim)),
            dtype=np.float32,
        )
        high = np.full((*shape, 1), spec.action_high, dtype=np.float32)
        high[:, list(self.fixed_columns)] = spec.max_bid
        self.action_space = Box(0.0, high, dtype=np.float32)
        self._default_seed = seed
        self._final_obs = bool(final_obs)
        self.np_random: np.random.Generator | None = None
        self.np_random_seed: int | None = None

    def reset(
        self, seed: int | None = None, options: dict | None = None
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Start new episodes in every market; ``seed`` reseeds the generator."""
        if seed is None and self.np_random is None:
            seed = self._default_seed
        if seed is not None or self.np_random is None:
            self.np_random, self.np_random_seed = seeding.np_random(seed)
        self.core.reset(self.np_random)
        return self.core.observe(), {
            "value": self.core.values(),
            "active": self.core.active(),
        }

    def step(self, actions: Any):
        """One round in every market, then autoreset of the finished ones."""
        if self.np_random is None:
            raise UserError("step() called before reset()")
        bids = self.core.to_bids(actions, columns=self._action_columns)
        rew, done, infos = self.core.step(bids, self.np_random)
        ended = bool(done.any())
        if ended:
            met = self.core.metrics()
            infos["metrics"] = {k: np.where(done, met[k], np.nan) for k in METRIC_KEYS}
            if self._final_obs:
                infos["final_obs"] = self.core.observe()
                infos["_final_obs"] = done
            self.core.reset(self.np_random, None if done.all() else done)
        else:
            infos["metrics"] = {k: np.full(self.num_envs, np.nan) for k in METRIC_KEYS}
        infos["_metrics"] = done
        obs = self.core.observe()
        term = np.broadcast_to(done[:, None], rew.shape).copy()
        trunc = np.zeros_like(term)
        if self.render_mode == "human":
            self.render()
        return obs, rew, term, trunc, infos

    def render(self) -> str | np.ndarray | None:
        """Market 0's last round: ``ansi`` a table, ``human`` printed, ``rgb_array``
        an RGB image ``uint8 [H, W, 3]``."""
        return render_out(self.render_mode, self.core, self.agents, market=0)

    def close(self) -> None:
        """Nothing to release."""

    def __repr__(self) -> str:
        c = self.config
        return (
            f"MarketVectorEnv(num_envs={self.num_envs}, mechanism={c.mechanism!r}, "
            f"agents={self.n_agents}, rounds={c.rounds})"
        )


def _fixed_columns(fixed: Sequence[str], agents: list[str]) -> tuple[int, ...]:
    """Column indices of ``fixed_agents``; ``ValueError`` naming an unknown one."""
    if isinstance(fixed, str):
        fixed = [fixed]
    out = []
    for name in fixed:
        if name not in agents:
            raise UserError(
                f"fixed_agents: unknown agent {name!r}; agents: {', '.join(agents)}"
            )
        out.append(agents.index(name))
    return tuple(sorted(set(out)))


def vector_env(num_envs: int, **options: Any) -> MarketVectorEnv:
    """``num_envs`` markets stepped together; options as ``attn_env.parallel_env``."""
    return MarketVectorEnv(num_envs=num_envs, **options)
