"""SuperSuit's vector env for stable-baselines3, with the ``seed()`` it lacks.

PettingZoo's SB3 tutorial turns a parallel env into an SB3 ``VecEnv`` with
``supersuit.concat_vec_envs_v1(..., base_class="stable_baselines3")``. That
wrapper has no working ``seed()``: SB3 calls ``env.seed(seed)`` when a model is
built with ``seed=``, and the call reaches SuperSuit's concatenated env, which
has none (``AttributeError``). :func:`sb3_vec_env` builds the same pipeline with
``base_class="gymnasium"`` and wraps it in :class:`SeededSB3VecEnv`, whose
``seed(s)`` is passed to the next ``reset`` (as SB3's own vector envs do)::

    import attn_env
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import VecMonitor
    from training.supersuit_vec import sb3_vec_env

    env = attn_env.parallel_env(mechanism="first_price", n_buyers=2, action="shade")
    venv = VecMonitor(sb3_vec_env(env, num_vec_envs=8))  # logs ep_rew_mean
    PPO("MlpPolicy", venv, seed=0).learn(100_000)

Each agent of each copy of the market is one sub-env of the ``VecEnv``; all
agents share the one policy (SuperSuit's parameter sharing), which reads the
role from ``obs[3]``. Use ``action="shade"``: with absolute bids a generic
learner's bids collapse towards 0 (``attn_env.actions``).
"""

from __future__ import annotations

from typing import Any

from supersuit.vector.sb3_vector_wrapper import SB3VecEnvWrapper

__all__ = ["SeededSB3VecEnv", "sb3_vec_env"]


class SeededSB3VecEnv(SB3VecEnvWrapper):
    """SuperSuit's ``SB3VecEnvWrapper`` plus ``seed()``: the seed goes to the next
    ``reset`` (sub-env ``i`` of SuperSuit's concatenation gets ``seed + i``)."""

    def __init__(self, venv: Any) -> None:
        super().__init__(venv)
        self._next_seed: int | None = None

    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        """SuperSuit's ``get_attr``, except ``render_mode``: SuperSuit cannot
        reach the sub-envs' attribute, so SB3 (here and in every wrapper such as
        ``VecMonitor``) warned and set ``None``; this answers ``None`` itself."""
        if attr_name == "render_mode":
            n = self.num_envs if indices is None else len(self._indices(indices))
            return [None] * n
        return super().get_attr(attr_name, indices)

    def _indices(self, indices: Any) -> list[int]:
        return [indices] if isinstance(indices, int) else list(indices)

    def seed(self, seed: int | None = None) -> list[int | None]:
        """Remember ``seed`` for the next :meth:`reset`; returns the sub-env seeds."""
        self._next_seed = None if seed is None else int(seed)
        return [None if seed is None else int(seed) + i for i in range(self.num_envs)]

    def reset(self, seed: int | None = None, options: dict | None = None) -> Any:
        """Reset every sub-env (with the seed given here or to :meth:`seed`)."""
        if seed is None:
            seed, self._next_seed = self._next_seed, None
        observations, self.reset_infos = self.venv.reset(seed=seed, options=options)
        return observations


def sb3_vec_env(
    parallel_env: Any, num_vec_envs: int = 1, num_cpus: int = 1
) -> SeededSB3VecEnv:
    """PettingZoo's SuperSuit pipeline for SB3, seedable.

    ``pettingzoo_env_to_vec_env_v1`` (one sub-env per agent) then
    ``concat_vec_envs_v1(num_vec_envs copies, base_class="gymnasium")``, wrapped
    in :class:`SeededSB3VecEnv`. Wrap the result in SB3's ``VecMonitor`` to log
    episode returns.
    """
    import supersuit as ss

    venv = ss.pettingzoo_env_to_vec_env_v1(parallel_env)
    venv = ss.concat_vec_envs_v1(
        venv, num_vec_envs, num_cpus=num_cpus, base_class="gymnasium"
    )
    return SeededSB3VecEnv(venv)
