"""Trained policies as plain bidders: ``load_policy(DIR).act(obs) -> bids``.

A run folder (``training.checkpoint``) holds one SB3 model per learner: one per
role with parameter sharing (``share: role``), one per agent otherwise. The
loaded object maps observations ``[N, obs_dim]`` to absolute bids or asks
``[N, 1]``: it picks the buyer or seller model by the role flag ``obs[:, 3]``
and applies the learner's action map (``training.actions``), deterministically
(the mean of the policy's action distribution).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from attn_env.observation import OBS_BASE_DIM, ROLE, role_of
from training.actions import ActionMap
from training.checkpoint import read_manifest

__all__ = [
    "RolePolicy",
    "TrainedPolicy",
    "freeze",
    "load_policy",
    "resolve_device",
]

ALGOS = ("ppo", "sac")


def resolve_device(device: str = "auto") -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``; others pass through."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def algo_class(name: str):
    """The SB3 algorithm class for ``ppo`` or ``sac``."""
    if name == "ppo":
        from stable_baselines3 import PPO

        return PPO
    if name == "sac":
        from stable_baselines3 import SAC

        return SAC
    raise ValueError(f"unknown algo {name!r}; known: {', '.join(ALGOS)}")


def freeze(policy: Any) -> Any:
    """An independent, inference-mode copy of an SB3 policy (same weights).

    ``copy.deepcopy`` fails on a policy mid-training (non-leaf tensors), so the
    copy is rebuilt from the constructor parameters, as ``BasePolicy.load`` does.
    """
    import torch

    clone = type(policy)(**policy._get_constructor_parameters())
    with torch.no_grad():
        clone.load_state_dict(policy.state_dict())
    clone.to(policy.device)
    clone.set_training_mode(False)
    clone.requires_grad_(False)
    return clone


class RolePolicy:
    """One SB3 policy and its action map: observations ``[M, D]`` -> bids/asks.

    Also an agent (``attn_env.players.Agent`` protocol), so a frozen copy can sit
    in a market seat during training.

    Args:
        policy: an SB3 ``BasePolicy``.
        action_map: how the policy's raw output becomes a bid or ask.
        deterministic: act with the distribution's mean (evaluation) or sample
            from it (frozen opponents during training keep exploring).
    """

    def __init__(
        self, policy: Any, action_map: ActionMap, deterministic: bool = True
    ) -> None:
        self.policy = policy
        self.action_map = action_map
        self.deterministic = deterministic
        self.obs_dim = int(np.prod(policy.observation_space.shape))

    def raw(self, obs: NDArray) -> NDArray[np.float32]:
        """The policy's raw actions ``[M, 1]``, clipped to the action bounds."""
        obs = np.asarray(obs, dtype=np.float32)
        if obs.ndim != 2 or obs.shape[1] != self.obs_dim:
            raise ValueError(
                f"obs must have shape [N, {self.obs_dim}], got {obs.shape}"
            )
        if len(obs) == 0:
            return np.zeros((0, 1), dtype=np.float32)
        actions, _ = self.policy.predict(obs, deterministic=self.deterministic)
        lo, hi = self.action_map.bounds
        return np.clip(np.asarray(actions, dtype=np.float32).reshape(-1, 1), lo, hi)

    def act(
        self, obs: NDArray, rng: np.random.Generator | None = None
    ) -> NDArray[np.float32]:
        """Bids (buyers) or asks (sellers) ``[M, 1]``."""
        return self.action_map.to_bid(self.raw(obs), obs)

    def reset(self, num_envs: int, rng: np.random.Generator) -> None:
        """Stateless: nothing to reset."""

    def observe(self, feedback: dict[str, Any]) -> None:
        """Stateless: feedback is ignored."""


class TrainedPolicy:
    """What :func:`load_policy` returns: a deterministic bidder for every learning role.

    It follows the agent protocol (``attn_env.players.Agent``), so it can play any
    seat of its roles in ``simulate`` or the single-agent view as it is.

    Attributes:
        by_role: ``buyer``/``seller`` -> the :class:`RolePolicy` used by :meth:`act`.
        by_agent: agent name -> its :class:`RolePolicy` (every learning agent).
        manifest: the run's manifest (algo, timesteps, learners, ...).
    """

    def __init__(
        self,
        by_role: dict[str, RolePolicy],
        by_agent: dict[str, RolePolicy],
        manifest: dict[str, Any],
    ) -> None:
        self.by_role = by_role
        self.by_agent = by_agent
        self.manifest = manifest

    @property
    def roles(self) -> list[str]:
        return list(self.by_role)

    def reset(self, num_envs: int, rng: np.random.Generator) -> None:
        """Stateless: nothing to reset."""

    def observe(self, feedback: dict[str, Any]) -> None:
        """Stateless: feedback is ignored."""

    def act(
        self, obs_batch: NDArray, rng: np.random.Generator | None = None
    ) -> NDArray[np.float32]:
        """``[N, obs_dim] -> [N, 1]`` bids/asks, by the role flag ``obs[:, 3]``."""
        obs = np.asarray(obs_batch, dtype=np.float32)
        if obs.ndim != 2 or obs.shape[1] < OBS_BASE_DIM:
            raise ValueError(
                f"obs_batch must have shape [N, obs_dim>={OBS_BASE_DIM}], "
                f"got {obs.shape}"
            )
        out = np.zeros((len(obs), 1), dtype=np.float32)
        seller = obs[:, ROLE] >= 0.5
        for role, rows in (("buyer", ~seller), ("seller", seller)):
            if not rows.any():
                continue
            if role not in self.by_role:
                raise ValueError(
                    f"obs rows have role flag of a {role}, but this run trained only "
                    f"{', '.join(self.by_role)}"
                )
            out[rows] = self.by_role[role].act(obs[rows])
        return out

    def for_agent(self, agent: str) -> RolePolicy:
        """The policy of one agent name (its own model with ``share: none``)."""
        if agent in self.by_agent:
            return self.by_agent[agent]
        role = role_of(agent)
        if role in self.by_role:
            return self.by_role[role]
        raise ValueError(
            f"no policy for agent {agent!r}; trained: {', '.join(self.by_agent)}"
        )


def action_map_from(entry: dict[str, Any]) -> ActionMap:
    """The action map of a manifest's learner entry."""
    a = entry["action"]
    return ActionMap(a["mode"], a["role"], float(a["low"]), float(a["high"]))


def load_policy(path: str | Path, device: str = "auto") -> TrainedPolicy:
    """Load the current checkpoint of a run folder written by ``attn-market train``.

    Args:
        path: the run folder (``--out DIR`` of ``train``).
        device: torch device; ``auto`` picks cuda when present, else cpu.

    Returns:
        A :class:`TrainedPolicy`; ``act(obs_batch)`` is deterministic.
    """
    path = Path(path)
    manifest = read_manifest(path)
    ckpt = path / manifest["checkpoint"]
    device = resolve_device(device)
    by_role: dict[str, RolePolicy] = {}
    by_agent: dict[str, RolePolicy] = {}
    for name, entry in manifest["learners"].items():
        model = algo_class(entry["algo"]).load(ckpt / f"{name}.zip", device=device)
        model.policy.set_training_mode(False)
        pol = RolePolicy(model.policy, action_map_from(entry), deterministic=True)
        by_role.setdefault(entry["role"], pol)
        for agent in entry["seats"]:
            by_agent[agent] = pol
    return TrainedPolicy(by_role, by_agent, manifest)
