"""A gymnasium view of the attention market: one learner, every other agent fixed.

``SingleAgentMarketEnv(learner="buyer_0", others=None, **options)`` is a
``gymnasium.Env`` whose observation and action spaces are one agent's spaces of
``attn_env.parallel_env(**options)`` (same options, rewards and dynamics; see the
``attn_env.market_env`` docstring). Each ``step(action)`` plays one round: the
other agents act through the ``attn_env.players.Agent`` protocol on their own
observations, the round clears, the learner gets its utility as reward, and the
fixed agents ``observe`` the round's public feedback. The episode terminates
after ``rounds`` rounds. With ``action="shade"`` the learner's action is a
shading factor in ``[0, 1]`` (``attn_env.actions``); the fixed agents bid as
always. ``info`` holds the learner's flat keys of the parallel env
(``attn_env.market_env.INFO_KEYS``), the same at ``reset`` and every ``step``.

``others`` holds the fixed agents, objects of the :class:`attn_env.players.Agent`
protocol (a rule of the ``agents`` package, a trained policy, your own class):
a mapping from an agent name (``"buyer_1"``) or a role (``"buyer"``,
``"seller"``) to an agent; names win over roles, and anything not named bids
truthfully (:class:`attn_env.players.TruthfulAgent`). One object plays one
agent name. To build agents from kind names, use ``agents.opponents``::

    import agents, attn_env
    cfg = attn_env.config.make_config(mechanism="cda", n_buyers=3)
    env = attn_env.single_agent_env(
        config=cfg, others=agents.opponents("zi_c", cfg, learner="buyer_0")
    )

The fixed agents draw their randomness from the env's generator, so
``reset(seed=s)`` makes whole episodes reproducible.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium
import numpy as np
from gymnasium.spaces import Box

from attn_env.config import EnvConfig, make_config
from attn_env.core import MarketCore
from attn_env.errors import UserError
from attn_env.market_env import (
    RENDER_MODES,
    agent_infos,
    check_render_mode,
    render_out,
)
from attn_env.observation import role_of
from attn_env.players import Agent, Seats, TruthfulAgent

__all__ = ["SingleAgentMarketEnv"]


class SingleAgentMarketEnv(gymnasium.Env):
    """One learning agent in an attention market of fixed agents."""

    metadata = {"render_modes": list(RENDER_MODES), "render_fps": 4}  # noqa: RUF012

    def __init__(
        self,
        learner: str = "buyer_0",
        others: Mapping[str, Agent] | None = None,
        config: EnvConfig | None = None,
        render_mode: str | None = None,
        **options: Any,
    ) -> None:
        self.config = make_config(config, **options)
        self.render_mode = check_render_mode(render_mode)
        self.core = MarketCore(self.config, num_envs=1)
        spec = self.core.spec
        self.agents = spec.agents
        if learner not in self.agents:
            raise UserError(
                f"unknown learner {learner!r}; agents: {', '.join(self.agents)}"
            )
        self.learner = learner
        self._li = self.agents.index(learner)
        self.observation_space = Box(spec.obs_low, spec.obs_high, dtype=np.float32)
        self.action_space = Box(0.0, spec.action_high, shape=(1,), dtype=np.float32)
        self.others = self._build_others(others)
        self._obs: np.ndarray | None = None

    def _build_others(self, others: Mapping[str, Agent] | None) -> Seats:
        if others is None:
            others = {}
        elif not isinstance(others, Mapping):
            raise UserError(
                "others must be None or a mapping from agent names or roles to agent "
                f"objects (agents.opponents builds one from kinds), got {others!r}"
            )
        names = set(self.agents) | {"buyer", "seller"}
        unknown = sorted(set(others) - names)
        if unknown:
            raise UserError(
                f"others names unknown agent(s) {', '.join(map(repr, unknown))}; "
                f"agents: {', '.join(self.agents)} or roles buyer, seller"
            )
        if self.learner in others:
            raise UserError(f"{self.learner!r} is the learner; it cannot be in others")
        players: list[Agent | None] = []
        seen: dict[int, str] = {}
        for name in self.agents:
            if name == self.learner:
                players.append(None)
                continue
            agent = others.get(name, others.get(role_of(name)))
            if agent is None:
                agent = TruthfulAgent()
            elif isinstance(agent, str):
                raise UserError(
                    f"others[{name!r}] is the kind name {agent!r}; pass agent objects "
                    "(agents.opponents(kind, config, learner) builds them)"
                )
            if id(agent) in seen:
                raise UserError(
                    f"one agent object would play both {seen[id(agent)]!r} and "
                    f"{name!r}; give each agent name its own object"
                )
            seen[id(agent)] = name
            players.append(agent)
        return Seats(players, n_buyers=self.core.spec.n_buyers)

    def reset(
        self, *, seed: int | None = None, options: dict | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode; ``seed`` reseeds the market and the fixed agents."""
        super().reset(seed=seed)
        self.core.reset(self.np_random)
        self.others.reset(1, self.np_random)
        self._obs = self.core.observe()
        info = agent_infos(self.core, {self.learner: self._li})[self.learner]
        return self._obs[0, self._li].copy(), info

    def step(self, action: Any):
        """One round: the learner's ``action`` (bid or ask) against the rest."""
        if self._obs is None:
            raise UserError("step() called before reset()")
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.size != 1:
            raise UserError(f"action must hold one number, got {action!r}")
        row = self.others.act(self._obs, self.np_random)[..., 0].astype(np.float64)
        row[0, self._li] = a[0]
        row = self.core.to_bids(row, columns=[self._li])
        rew, done, info = self.core.step(row, self.np_random)
        self.others.observe(info)
        self._obs = self.core.observe()
        li = self._li
        terminated = bool(done[0])
        out = agent_infos(self.core, {self.learner: li}, info)
        out = out[self.learner]
        if self.render_mode == "human":
            self.render()
        return self._obs[0, li].copy(), float(rew[0, li]), terminated, False, out

    def render(self) -> str | np.ndarray | None:
        """The last round: ``ansi`` a table, ``human`` printed, ``rgb_array`` image."""
        if self.render_mode is None:
            gymnasium.logger.warn("render() called without a render_mode; pass one")
        return render_out(self.render_mode, self.core, self.agents)
