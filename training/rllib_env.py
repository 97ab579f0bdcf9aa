"""The RLlib env of the RLlib backend: :class:`MarketMultiAgentEnv`.

An RLlib ``MultiAgentEnv`` over one ``attn_env.vector_env`` batch of
``num_envs`` markets: agent ids are ``"<agent>/<market>"`` for every learner
seat of every market, so one env step is ``num_envs x seats`` agent-steps.
Fixed agents play their kinds inside the env; each learner's raw Gaussian
action is turned into the env's action (``env.action``) by its
:class:`~training.actions.ActionMap` (``train.squash``), exactly as for SB3.
Under self-play a learner's other seats play a pool of its past policies,
which the trainer pushes with :meth:`MarketMultiAgentEnv.set_pool`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from attn_env.config import ExperimentConfig
from attn_env.observation import role_of
from training.rllib_weights import sb3_policy
from training.selfplay import plays_pool

__all__ = [
    "SEP",
    "MarketMultiAgentEnv",
    "module_by_agent",
    "module_by_role",
    "multi_agent_env_base",
    "seats_per_market",
]

SEP = "/"
"Agent ids of the RLlib env: ``<agent name>/<market index>``."


def multi_agent_env_base() -> type:
    """RLlib's ``MultiAgentEnv`` where Ray is installed, else ``object`` (the
    module imports without Ray; the env needs it)."""
    try:
        from ray.rllib.env.multi_agent_env import MultiAgentEnv
    except ImportError:  # the module imports without ray; the env needs it
        return object
    return MultiAgentEnv


class MarketMultiAgentEnv(multi_agent_env_base()):
    """An RLlib ``MultiAgentEnv`` over a ``vector_env`` batch of markets.

    With ``train.self_play_pool: P > 0``, a learner holding several seats
    controls one seat per market (seat ``m mod n_seats`` in market ``m``, as
    ``training.sb3``); its other seats are played by :attr:`pools`, frozen past
    policies that the trainer pushes with :meth:`set_pool` after every
    training iteration (one drawn per market and round, sampling, acting in the
    env's units).

    Args:
        env_config: ``{"experiment": ExperimentConfig, "num_envs": int}``
            (``num_envs`` defaults to ``train.num_envs``); RLlib's
            ``EnvContext`` adds ``worker_index``, which offsets the seed so every
            env runner plays its own markets.
    """

    def __init__(self, env_config: dict[str, Any] | None = None) -> None:
        super().__init__()
        from agents import for_market
        from attn_env.config import make_config
        from attn_env.core import MarketSpec
        from attn_env.players import Seats
        from training.learners import plan_learners, training_env
        from training.selfplay import PoolPlayer, SnapshotPool, seat_matrix

        # RLlib's EnvContext carries the runner's index as attributes
        worker = int(getattr(env_config, "worker_index", 0))
        vector_index = int(getattr(env_config, "vector_index", 0))
        env_config = dict(env_config or {})
        config: ExperimentConfig = env_config["experiment"]
        n = int(env_config.get("num_envs", config.train.num_envs))
        names = MarketSpec.from_config(make_config(config.env)).agents
        self.learners = plan_learners(config, names)
        action = self.learners[0].action_map.env_action  # one env.action for all
        self.venv = training_env(config, n, action)
        self.n_markets = n
        self.net_arch = list(config.train.net_arch)
        owner = {s: lr for lr in self.learners for s in lr.seats}
        self.pools: dict[str, SnapshotPool] = {
            lr.name: SnapshotPool(config.train.self_play_pool, lr.action_map)
            for lr in self.learners
            if plays_pool(lr.seats, config.train.self_play_pool)
        }
        self._tags: dict[str, list[Any]] = {name: [] for name in self.pools}
        players = []
        for j, name in enumerate(names):
            spec = config.agent_spec(name)
            if j not in owner:
                players.append(for_market(spec.kind, spec.params, config.env))
            elif owner[j].name in self.pools:
                # every seat of its role; the learner's own seats are overwritten
                players.append(PoolPlayer(self.pools[owner[j].name]))
            else:
                players.append(None)
        self.others = Seats(players, n_buyers=config.env.n_buyers)
        self._seed: int | None = config.seed + 1_000_003 * worker + 7919 * vector_index
        self._rng = np.random.default_rng(self._seed)
        # (seat, agent name, learner, markets where the learner plays that seat)
        self._seats = []
        for j in sorted(owner):
            lr = owner[j]
            plays = seat_matrix(lr.seats, n, config.train.self_play_pool)
            markets = np.flatnonzero((plays == j).any(axis=1))
            if len(markets):
                self._seats.append((j, names[j], lr, markets))
        self._ids = {
            j: [f"{name}{SEP}{m}" for m in markets]
            for j, name, _, markets in self._seats
        }
        space = self.venv.single_observation_space
        from gymnasium.spaces import Box

        obs_space = Box(
            np.asarray(space.low, np.float32),
            np.asarray(space.high, np.float32),
            dtype=np.float32,
        )
        for lr in self.learners:
            lr.obs_space = obs_space
        self.agents = [a for j, *_ in self._seats for a in self._ids[j]]
        self.possible_agents = list(self.agents)
        self.observation_spaces = dict.fromkeys(self.agents, obs_space)
        self.action_spaces = {
            a: lr.action_map.space()
            for j, _, lr, _ in self._seats
            for a in self._ids[j]
        }
        self._obs: np.ndarray | None = None
        self._pending: np.ndarray | None = None
        self._board: str | None = env_config.get("pool_board")

    def set_pool(self, name: str, members: list[tuple[Any, dict[str, Any]]]) -> int:
        """Replace learner ``name``'s self-play pool: ``[(tag, SB3 state dict)]``.

        State dicts hold numpy arrays (an SB3 ``ActorCriticPolicy``'s, as
        :func:`to_sb3_state` gives); members already held (same tag) are kept.
        Returns the pool's size.
        """
        import torch

        pool = self.pools[name]
        lr = next(x for x in self.learners if x.name == name)
        held = dict(zip(self._tags[name], pool.members, strict=True))
        pool.members, self._tags[name] = [], []
        for tag, state in members[-pool.size :]:
            member = held.get(tag)
            if member is None:
                weights = {k: torch.as_tensor(np.asarray(v)) for k, v in state.items()}
                member = pool.as_member(sb3_policy(lr, self.net_arch, weights))
            pool.members.append(member)
            self._tags[name].append(tag)
        return len(pool.members)

    def _view(self, obs: np.ndarray) -> dict[str, np.ndarray]:
        return {
            a: obs[m, j]
            for j, _, _, markets in self._seats
            for m, a in zip(markets, self._ids[j], strict=True)
        }

    def _pull_pools(self) -> None:
        """Fill empty pools from the trainer's pool board (a restarted runner)."""
        if not self._board or all(p.members for p in self.pools.values()):
            return
        import ray

        payload = ray.get(ray.get_actor(self._board).get.remote())
        for name, members in payload.items():
            if name in self.pools and members:
                self.set_pool(name, members)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        self._pull_pools()
        if seed is not None:
            self._seed, self._pending = seed, None
            self._rng = np.random.default_rng(seed)
        if self._pending is not None:
            # the vector env already started the next episode (same-step autoreset)
            obs, self._pending = self._pending, None
        else:
            obs, _ = self.venv.reset(seed=self._seed)
            self._seed = None
        self.others.reset(self.n_markets, self._rng)
        self._obs = np.asarray(obs, dtype=np.float32)
        return self._view(self._obs), {}

    def step(self, action_dict: dict[str, Any]):
        obs = self._obs
        full = self.others.act(obs, self._rng)
        for j, _, lr, markets in self._seats:
            raw = np.asarray([action_dict[a] for a in self._ids[j]], np.float64)
            full[markets, j, :] = lr.action_map.to_action(raw.reshape(-1, 1))
        nxt, rew, term, trunc, info = self.venv.step(full)
        self.others.observe(info)
        done = bool(np.any(term) or np.any(trunc))
        nxt = np.asarray(nxt, dtype=np.float32)
        if done:
            # every market plays the same number of rounds: all end together
            final = np.asarray(info.get("final_obs", nxt), dtype=np.float32)
            self._pending, out = nxt, final
        else:
            self._obs = out = nxt
        rew = np.asarray(rew, dtype=np.float64)
        rewards = {
            a: float(rew[m, j])
            for j, _, _, markets in self._seats
            for m, a in zip(markets, self._ids[j], strict=True)
        }
        return (
            self._view(out),
            rewards,
            {"__all__": done},
            {"__all__": False},
            {},
        )


def seats_per_market(lr, tc) -> int:
    """Seats ``lr`` plays in each market: one under self-play, else all of them."""
    return 1 if plays_pool(lr.seats, tc.self_play_pool) else len(lr.seats)


def module_by_role(agent_id, *args, **kwargs) -> str:
    return role_of(str(agent_id).rsplit(SEP, 1)[0])


def module_by_agent(agent_id, *args, **kwargs) -> str:
    return str(agent_id).rsplit(SEP, 1)[0]
