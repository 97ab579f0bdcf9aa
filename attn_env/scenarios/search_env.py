"""The search day as a PettingZoo parallel env (one agent per advertiser) and as
a vector env of several days at once.

==================  =============================================================
agents              ``advertiser_0 .. advertiser_{N-1}`` (``advertisers.n``)
action              ``Box(0, lambda_max, (1,))``: the period's bid multiplier
                    (``bid = lambda * V * pConv``)
observation         ``Box(-inf, inf, (13,))``: see
                    :mod:`attn_env.scenarios.search_state`
reward              the period's conversions / target conversions; the last
                    period adds the AuctionNet penalty, so a day's return is the
                    score in units of target conversions
episode             one day of ``traffic.periods`` periods (all agents end together)
==================  =============================================================

Every ``reset`` draws a new day (traffic and tie-breaks) from the env's
generator; ``reset(seed=s)`` reseeds it. An action outside ``[0, lambda_max]``,
NaN, or of the wrong shape is refused with a message naming the agent; it is
never clipped.

Version history: ``search_day_v0``, the first.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from gymnasium.spaces import Box
from gymnasium.utils import seeding
from numpy.typing import NDArray
from pettingzoo import ParallelEnv

from attn_env.checks import check_agent_actions
from attn_env.errors import UserError
from attn_env.scenarios.search_config import SearchDayConfig
from attn_env.scenarios.search_market import SearchMarket, build_market
from attn_env.scenarios.search_state import OBS_SIZE, Day

__all__ = ["SearchDayEnv", "SearchDayVectorEnv", "check_multipliers"]


def check_multipliers(lam: Any, n: int, lambda_max: float, names: list[str]) -> NDArray:
    """``lam`` as ``float64 [n]`` if every entry is in ``[0, lambda_max]``, else one
    line naming the first bad agent."""
    a = np.asarray(lam, dtype=np.float64).reshape(-1)
    if a.shape != (n,):
        raise UserError(
            f"expected {n} bid multipliers (one per agent), got shape {np.shape(lam)}"
        )
    return check_agent_actions(
        a, names, 0.0, lambda_max, f"a bid multiplier in [0, {lambda_max:g}]"
    )


class SearchDayEnv(ParallelEnv):
    """A day of sponsored search; every advertiser is an agent."""

    metadata = {"name": "search_day_v0", "render_modes": [], "is_parallelizable": True}

    def __init__(
        self, config: SearchDayConfig | None = None, market: SearchMarket | None = None
    ) -> None:
        self.market = market or build_market(config or SearchDayConfig())
        self.config = self.market.config
        self.possible_agents = list(self.market.advertisers.names)
        self.agents: list[str] = []
        self.np_random, self.np_random_seed = seeding.np_random(self.config.seed)
        self.day: Day | None = None

    @functools.cache  # noqa: B019 - one space object per agent, as the API test wants
    def observation_space(self, agent: str) -> Box:
        return Box(-np.inf, np.inf, shape=(OBS_SIZE,), dtype=np.float32)

    @functools.cache  # noqa: B019
    def action_space(self, agent: str) -> Box:
        return Box(0.0, self.config.lambda_max, shape=(1,), dtype=np.float32)

    def reset(self, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self.np_random, self.np_random_seed = seeding.np_random(seed)
        self.day = Day(self.market, int(self.np_random.integers(2**32)))
        self.agents = self.possible_agents[:]
        obs = self.day.observe()
        return self._by_agent(obs), {a: {} for a in self.agents}

    def step(self, actions: dict[str, Any]):
        if self.day is None or not self.agents:
            raise UserError("step() called before reset() or after the day ended")
        missing = [a for a in self.agents if a not in actions]
        if missing:
            raise UserError(
                f"no action for {missing[0]} (every agent acts each period)"
            )
        lam = check_multipliers(
            [
                np.asarray(actions[a], dtype=np.float64).reshape(-1)[:1]
                for a in self.agents
            ],
            len(self.agents),
            self.config.lambda_max,
            self.agents,
        )
        res = self.day.step(lam)
        rewards = self.day.rewards(res)
        obs = self._by_agent(self.day.observe())
        done = self.day.done
        info = {
            a: {"spend": float(res.spend[i]), "conversions": float(res.conversions[i])}
            for i, a in enumerate(self.agents)
        }
        out = (
            obs,
            {a: float(rewards[i]) for i, a in enumerate(self.agents)},
            dict.fromkeys(self.agents, done),
            dict.fromkeys(self.agents, False),
            info,
        )
        if done:
            self.agents = []
        return out

    def _by_agent(self, obs: NDArray[np.float32]) -> dict[str, NDArray[np.float32]]:
        return {a: obs[i] for i, a in enumerate(self.possible_agents)}


class SearchDayVectorEnv:
    """``E`` days of one market stepped together: ``obs [E, N, 13]``.

    All days have the same length, so they end together; ``step`` then resets
    them all and returns the first observations of the new days, with the
    finished days' last observations in ``infos["final_obs"]``.
    """

    def __init__(
        self,
        num_envs: int,
        config: SearchDayConfig | None = None,
        market: SearchMarket | None = None,
    ) -> None:
        self.market = market or build_market(config or SearchDayConfig())
        self.config = self.market.config
        self.num_envs = int(num_envs)
        self.n_agents = self.market.n
        self.single_observation_space = Box(-np.inf, np.inf, (OBS_SIZE,), np.float32)
        self.single_action_space = Box(0.0, self.config.lambda_max, (1,), np.float32)
        self._rng = np.random.default_rng(self.config.seed)
        self.days: list[Day] = []

    def reset(self, seed: int | None = None) -> NDArray[np.float32]:
        """Draw ``E`` new days; ``obs [E, N, 13]``."""
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        seeds = self._rng.integers(2**32, size=self.num_envs)
        self.days = [Day(self.market, int(s)) for s in seeds]
        return np.stack([d.observe() for d in self.days])

    def step(self, lam: NDArray) -> tuple[NDArray, NDArray, NDArray, dict[str, Any]]:
        """Multipliers ``[E, N]`` -> ``obs [E, N, 13]``, ``rewards [E, N]``,
        ``done [E]`` and infos (``final_obs`` and ``scores`` when days end)."""
        lam = np.asarray(lam, dtype=np.float64)
        if lam.shape != (self.num_envs, self.n_agents):
            raise UserError(
                f"expected multipliers of shape ({self.num_envs}, {self.n_agents}), "
                f"got {lam.shape}"
            )
        names = self.market.advertisers.names
        rewards = np.empty((self.num_envs, self.n_agents))
        for e, day in enumerate(self.days):
            checked = check_multipliers(
                lam[e], self.n_agents, self.config.lambda_max, names
            )
            rewards[e] = day.rewards(day.step(checked))
        obs = np.stack([d.observe() for d in self.days])
        done = np.array([d.done for d in self.days])
        infos: dict[str, Any] = {}
        if done.all():
            infos["final_obs"] = obs
            infos["scores"] = np.stack([d.scores() for d in self.days])
            obs = self.reset()
        return obs, rewards, done, infos
