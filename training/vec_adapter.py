"""Feed stable-baselines3 from ``vector_env``: one sub-env per (market, learner seat).

``attn_env.vector_env`` steps ``N`` markets of ``A`` agents in one numpy call
(``obs [N, A, D]``). A learner (one SB3 model) controls ``k`` seats in every
market, so SB3 sees ``N * k`` sub-envs, market-major: sub-env ``m * k + i`` is
seat ``seats[m, i]`` of market ``m``. All other seats are filled by
:class:`Seats`: fixed agents, other learners' frozen policies, or frozen past
selves (self-play). The learner's raw actions are turned into the env's actions
(``s`` under ``env.action: shade``, else bids and asks) by an
:class:`~training.actions.ActionMap`; the env applies its own formula.

Seeding: ``seed(s)`` (SB3 calls it from ``PPO(seed=...)``) makes the next
``reset`` reset the markets with ``seed=s`` and reseeds the generator handed to
the fixed agents, so one seed fixes every draw of a run.

Autoreset: finished markets reset themselves within the step (the vector env's
``same_step`` mode); the adapter hands SB3 the finished episodes' last
observations from ``infos["final_obs"]``. Other autoreset modes are refused.

Opponent draws (``draws > 1``, ``train.opponent_draws``, single-round markets):
the vector env holds ``N * draws`` markets in blocks of ``draws``; each block
shares its first market's draw in the learner's seats
(``MarketCore.tie_draws``), the learner's action is played in all of them and
its reward is their mean: the expected utility of that action against the fixed
agents, estimated from ``draws`` of their values instead of one. SB3 still sees
``N * k`` sub-envs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.common.vec_env.base_vec_env import (
    VecEnvIndices,
    VecEnvStepReturn,
)

from attn_env.errors import UserError
from attn_env.players import Seats
from training.actions import ActionMap

__all__ = ["MarketVecEnv"]


class MarketVecEnv(VecEnv):
    """An SB3 ``VecEnv`` over ``N`` markets of a vector env, ``k`` learner seats each.

    Args:
        venv: a vector env as ``attn_env.vector_env`` (``reset(seed=)``, ``step``,
            ``num_envs``, ``n_agents``, ``single_observation_space``).
        seats: ``int [N, k]`` agent index of each learner seat in each market.
        action_map: raw policy action -> the env's action for the learner's role.
        others: players of the other seats (``None``: the learner holds every seat).
        seed: seed of the first reset (``seed()`` overrides it).
        draws: markets per learner market (``venv.num_envs = N * draws``); see
            the module docstring.
    """

    def __init__(
        self,
        venv: Any,
        seats: NDArray[np.integer],
        action_map: ActionMap,
        others: Seats | None = None,
        seed: int | None = None,
        draws: int = 1,
    ) -> None:
        from gymnasium.spaces import Box
        from gymnasium.vector import AutoresetMode

        mode = getattr(venv, "metadata", {}).get("autoreset_mode")
        if mode != AutoresetMode.SAME_STEP:
            raise UserError(
                f"the vector env must autoreset in the same step (as "
                f"attn_env.vector_env), got autoreset_mode={mode!r}"
            )
        config = getattr(venv, "config", None)
        units = config.actions.env if config is not None else action_map.env_action
        if units != action_map.env_action:
            raise UserError(
                f"the vector env's action is {units!r} but the learner's action map "
                f"outputs {action_map.env_action!r} actions; build the env with "
                f"action={action_map.env_action!r}"
            )
        self.venv = venv
        self.seats = np.asarray(seats, dtype=np.int64)
        self.draws = int(draws)
        if self.draws < 1 or venv.num_envs % self.draws:
            raise UserError(
                f"draws must be >= 1 and divide the vector env's {venv.num_envs} "
                f"markets, got {draws!r}"
            )
        if self.draws > 1 and getattr(venv, "core", None) is None:
            raise UserError("draws > 1 needs attn_env.vector_env (its MarketCore)")
        n_markets = int(venv.num_envs) // self.draws
        if self.seats.ndim != 2 or self.seats.shape[0] != n_markets:
            raise UserError(
                f"seats must have shape [num_envs={n_markets}, k], "
                f"got {self.seats.shape}"
            )
        n_agents = int(venv.n_agents)
        if self.seats.min() < 0 or self.seats.max() >= n_agents:
            raise UserError(
                f"seat indices must lie in [0, {n_agents}), got {self.seats.tolist()}"
            )
        self.n_markets, self.k = self.seats.shape
        self._rows = np.arange(self.n_markets)[:, None]
        # every market of the vector env, and the learner's seats in each
        self._all_rows = np.arange(n_markets * self.draws)[:, None]
        self._all_seats = np.repeat(self.seats, self.draws, axis=0)
        self._tied = np.unique(self.seats).tolist()
        self.action_map = action_map
        self.others = (
            others if others is not None else Seats([None] * n_agents, n_agents)
        )
        self.render_mode = None
        self._next_seed = seed
        self._rng = np.random.default_rng(seed)
        space = venv.single_observation_space
        obs_space = Box(
            low=np.asarray(space.low, dtype=np.float32),
            high=np.asarray(space.high, dtype=np.float32),
            dtype=np.float32,
        )
        super().__init__(self.n_markets * self.k, obs_space, action_map.space())
        self._obs: NDArray[np.float32] | None = None
        self._actions: NDArray | None = None
        self._ep_ret = np.zeros(self.num_envs)
        self._ep_len = np.zeros(self.num_envs, dtype=np.int64)
        self.last_actions: NDArray[np.float32] | None = None
        "The learner seats' env actions of the last step, ``[N * k, 1]``."

    # -- the VecEnv interface -------------------------------------------------

    def seed(self, seed: int | None = None) -> list[int | None]:
        """Seed the next reset of the markets and the fixed agents' generator."""
        self._next_seed = seed
        self._rng = np.random.default_rng(seed)
        return [seed] * self.num_envs

    def reset(self) -> NDArray[np.float32]:
        obs, _ = self.venv.reset(seed=self._next_seed)
        self._tie_draws()
        self._next_seed = None
        self.others.reset(int(self.venv.num_envs), self._rng)
        self._obs = np.asarray(obs, dtype=np.float32)
        self._ep_ret[:] = 0.0
        self._ep_len[:] = 0
        return self._learner_view(self._obs)

    def step_async(self, actions: NDArray) -> None:
        self._actions = np.asarray(actions)

    def step_wait(self) -> VecEnvStepReturn:
        if self._obs is None or self._actions is None:
            raise RuntimeError("call reset() and step_async() before step_wait()")
        obs = self._obs
        full = self.others.act(obs, self._rng)
        acts = self.action_map.to_action(self._actions.reshape(-1, 1))
        full[self._all_rows, self._all_seats] = np.repeat(
            acts.reshape(self.n_markets, self.k, 1), self.draws, axis=0
        )
        self.last_actions = acts
        nxt, rew, term, trunc, infos = self.venv.step(full)
        self._tie_draws()
        self.others.observe(infos)
        term = np.asarray(term, dtype=bool)
        trunc = np.asarray(trunc, dtype=bool)
        self._obs = np.asarray(nxt, dtype=np.float32)
        final = self._obs
        if "final_obs" in infos:  # absent with vector_env(final_obs=False)
            final = np.where(
                infos["_final_obs"][:, None, None], infos["final_obs"], self._obs
            )

        rew_all = np.asarray(rew, dtype=np.float32)[self._all_rows, self._all_seats]
        rew_l = rew_all.reshape(self.n_markets, self.draws, self.k).mean(axis=1)
        rew_l = rew_l.reshape(-1)
        first = slice(None, None, self.draws)  # each block's own market
        term_l = term[first][self._rows, self.seats].reshape(-1)
        trunc_l = trunc[first][self._rows, self.seats].reshape(-1)
        dones = term_l | trunc_l
        self._ep_ret += rew_l
        self._ep_len += 1
        out_infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        if dones.any():
            final_l = self._learner_view(final)
            for i in np.flatnonzero(dones):
                out_infos[i] = {
                    "terminal_observation": final_l[i],
                    "TimeLimit.truncated": bool(trunc_l[i] and not term_l[i]),
                    "episode": {"r": float(self._ep_ret[i]), "l": int(self._ep_len[i])},
                }
            self._ep_ret[dones] = 0.0
            self._ep_len[dones] = 0
        return self._learner_view(self._obs), rew_l, dones, out_infos

    def close(self) -> None:
        close = getattr(self.venv, "close", None)
        if close is not None:
            close()

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        # AttributeError for unknown names, as SB3 expects
        value = getattr(self, attr_name)
        return [value] * len(self._indices(indices))

    def set_attr(
        self, attr_name: str, value: Any, indices: VecEnvIndices = None
    ) -> None:
        setattr(self, attr_name, value)

    def env_method(
        self,
        method_name: str,
        *method_args,
        indices: VecEnvIndices = None,
        **method_kwargs,
    ) -> list[Any]:
        result = getattr(self.venv, method_name)(*method_args, **method_kwargs)
        return [result] * len(self._indices(indices))

    def env_is_wrapped(
        self, wrapper_class: type, indices: VecEnvIndices = None
    ) -> list[bool]:
        return [False] * len(self._indices(indices))

    # -- helpers ---------------------------------------------------------------

    def _indices(self, indices: VecEnvIndices) -> list[int]:
        if indices is None:
            return list(range(self.num_envs))
        if isinstance(indices, int):
            return [indices]
        return list(indices)

    def _tie_draws(self) -> None:
        """Each block of ``draws`` markets takes its first market's learner draw."""
        if self.draws > 1:
            self.venv.core.tie_draws(self._tied, self.draws)

    def _learner_view(self, obs: NDArray) -> NDArray[np.float32]:
        """``[N * draws, A, D] -> [N * k, D]``: the learner seats' observations
        in each block's first market."""
        own = np.asarray(obs, dtype=np.float32)[:: self.draws]
        view = own[self._rows, self.seats]
        return np.ascontiguousarray(view.reshape(self.num_envs, -1))
