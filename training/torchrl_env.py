"""The market as a batched TorchRL env: ``MarketTorchRLEnv(num_envs, **options)``.

TorchRL's ``PettingZooWrapper`` steps one PettingZoo market per call and builds
a TensorDict per step (339 agent-steps/s of PPO in ``benchmarks/pipelines.py``).
This env steps ``num_envs`` markets of ``attn_env.vector_env`` in one numpy call
behind TorchRL's ``EnvBase``, with the keys of TorchRL's multi-agent convention
that ``PettingZooWrapper`` also uses, so the same modules (``MultiAgentMLP``,
``ProbabilisticActor``, ``ClipPPOLoss``) work unchanged:

- ``batch_size = [num_envs]``; one group per role (``buyer``, ``seller``) or,
  with ``group_map="all"``, one group ``agents``;
- per group ``g`` holding ``k`` agents: ``(g, "observation") [N, k, D]``,
  ``(g, "action") [N, k, 1]`` (the env's ``action`` option: bids, or shading
  factors in ``[0, 1]``), ``(g, "reward") [N, k, 1]``, and ``(g, "done" |
  "terminated" | "truncated") [N, k, 1]``; ``done``/``terminated``/
  ``truncated`` ``[N, 1]`` at the root; ``(g, "info", key) [N, k]`` for the
  round keys of the PettingZoo infos (``value``, ``bid``, ``alloc``,
  ``payment``, ``utility`` float32, ``nan`` before the first round except
  ``value``; ``active``, ``traded`` bool), as ``PettingZooWrapper`` reports
  them;
- after a step that ends an episode, ``observation`` is the episode's last one
  (the vector env's ``final_obs``); the next ``reset`` (TorchRL sends
  ``_reset`` for the finished markets) hands out the new episode's first
  observation, which the vector env drew in that same step.

All markets play the same number of rounds, so episodes end together; a
partial ``_reset`` is honoured all the same. ``set_seed(s)`` seeds the next
reset.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.data import Bounded, Categorical, Composite, Unbounded
from torchrl.envs import EnvBase

import attn_env
from attn_env.errors import UserError
from attn_env.observation import role_of

__all__ = ["GROUP_MAPS", "MarketTorchRLEnv"]

GROUP_MAPS = ("role", "all")
"``group_map`` values: one group per role, or one group ``agents``."
_FLAGS = ("done", "terminated", "truncated")
_INFO_FLOATS = ("value", "bid", "alloc", "payment", "utility")
_INFO_FLAGS = ("active", "traded")


class MarketTorchRLEnv(EnvBase):
    """``num_envs`` attention markets as one batched TorchRL env.

    Args:
        num_envs: markets stepped together (the env's batch size).
        group_map: ``role`` (groups ``buyer``, ``seller``) or ``all``
            (one group ``agents``).
        device: torch device of the tensors (``cpu`` default).
        seed: seed of the first reset.
        **options: env options, as ``attn_env.vector_env`` (``config=``,
            ``mechanism=``, ``action=``, ...).
    """

    def __init__(
        self,
        num_envs: int,
        group_map: str = "role",
        device: str | torch.device = "cpu",
        seed: int | None = None,
        **options: Any,
    ) -> None:
        if group_map not in GROUP_MAPS:
            raise UserError(
                f"group_map must be one of {', '.join(GROUP_MAPS)}, got {group_map!r}"
            )
        venv = attn_env.vector_env(num_envs, **options)
        super().__init__(device=device, batch_size=torch.Size([venv.num_envs]))
        self.venv = venv
        self.groups: dict[str, list[int]] = {}
        for j, name in enumerate(venv.agents):
            key = role_of(name) if group_map == "role" else "agents"
            self.groups.setdefault(key, []).append(j)
        self.group_map = {
            g: [venv.agents[j] for j in cols] for g, cols in self.groups.items()
        }
        self._seed = seed
        self._obs: np.ndarray | None = None
        self._pending: np.ndarray | None = None
        self._make_specs()

    # -- specs -------------------------------------------------------------------

    def _make_specs(self) -> None:
        n, dev = self.venv.num_envs, self.device
        space = self.venv.single_observation_space
        act_high = float(self.venv.single_action_space.high[0])
        obs, act, rew, done = {}, {}, {}, {}
        for g, cols in self.groups.items():
            k = len(cols)
            shape = (n, k)
            obs[g] = Composite(
                observation=Bounded(
                    torch.tensor(np.broadcast_to(space.low, (*shape, len(space.low)))),
                    torch.tensor(
                        np.broadcast_to(space.high, (*shape, len(space.high)))
                    ),
                    shape=(*shape, len(space.low)),
                    dtype=torch.float32,
                    device=dev,
                ),
                info=Composite(
                    {
                        **{
                            key: Unbounded(shape=shape, dtype=torch.float32, device=dev)
                            for key in _INFO_FLOATS
                        },
                        **{key: _flag(shape, dev) for key in _INFO_FLAGS},
                    },
                    shape=shape,
                ),
                shape=shape,
            )
            act[g] = Composite(
                action=Bounded(
                    0.0, act_high, shape=(*shape, 1), dtype=torch.float32, device=dev
                ),
                shape=shape,
            )
            rew[g] = Composite(
                reward=Unbounded(shape=(*shape, 1), dtype=torch.float32, device=dev),
                shape=shape,
            )
            done[g] = Composite(
                {f: _flag((*shape, 1), dev) for f in _FLAGS}, shape=shape
            )
        self.observation_spec = Composite(obs, shape=(n,))
        self.action_spec = Composite(act, shape=(n,))
        self.reward_spec = Composite(rew, shape=(n,))
        root = {f: _flag((n, 1), dev) for f in _FLAGS}
        self.done_spec = Composite({**root, **done}, shape=(n,))

    # -- reset and step ------------------------------------------------------------

    def _set_seed(self, seed: int | None) -> None:
        self._seed = seed
        self._pending = None

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs):
        mask = self._reset_mask(tensordict)
        if self._pending is None or self._obs is None:
            obs, _ = self.venv.reset(seed=self._seed)
            self._seed = None
            self._obs = np.asarray(obs, dtype=np.float32)
        else:
            # the vector env began the finished markets' next episodes in the
            # step that ended them (same-step autoreset)
            rows = slice(None) if mask is None else mask
            self._obs = self._obs.copy()
            self._obs[rows] = self._pending[rows]
            self._pending = None
        core = self.venv.core
        info = {"value": core.values(), "active": core.active()}
        false = np.zeros(self.venv.num_envs, dtype=bool)
        return self._out(self._obs, None, false, false, info)

    def _reset_mask(self, tensordict: TensorDictBase | None) -> np.ndarray | None:
        """Markets to reset (any ``_reset`` flag, root or group), ``None``: all."""
        if tensordict is None:
            return None
        flags = [
            tensordict.get(key).reshape(self.venv.num_envs, -1).any(-1)
            for key in ("_reset", *((g, "_reset") for g in self.groups))
            if key in tensordict.keys(True)
        ]
        if not flags:
            return None
        return torch.stack(flags).any(0).cpu().numpy()

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        n, a = self.venv.num_envs, self.venv.n_agents
        actions = np.zeros((n, a, 1), dtype=np.float32)
        for g, cols in self.groups.items():
            actions[:, cols] = tensordict.get((g, "action")).detach().cpu().numpy()
        obs, rew, term, trunc, info = self.venv.step(actions)
        obs = np.asarray(obs, dtype=np.float32)
        term = np.asarray(term, dtype=bool).any(1)  # per market
        trunc = np.asarray(trunc, dtype=bool).any(1)
        ended = term | trunc
        if ended.any():
            final = np.where(ended[:, None, None], info["final_obs"], obs)
            self._pending, self._obs = obs, np.asarray(final, dtype=np.float32)
        else:
            self._obs = obs
        return self._out(
            self._obs, np.asarray(rew, dtype=np.float32), term, trunc, info
        )

    def _out(
        self,
        obs: np.ndarray,
        rew: np.ndarray | None,
        term: np.ndarray,
        trunc: np.ndarray,
        info: dict[str, Any],
    ) -> TensorDict:
        n, dev = self.venv.num_envs, self.device
        term_t = torch.as_tensor(term, device=dev).reshape(n, 1)
        trunc_t = torch.as_tensor(trunc, device=dev).reshape(n, 1)
        flags = {"done": term_t | trunc_t, "terminated": term_t, "truncated": trunc_t}
        data: dict[str, Any] = dict(flags)
        for g, cols in self.groups.items():
            k = len(cols)
            entry = {
                "observation": torch.as_tensor(obs[:, cols], device=dev),
                # every agent of a market shares its market's flags
                **{f: v[:, None].expand(n, k, 1).clone() for f, v in flags.items()},
            }
            if rew is not None:
                entry["reward"] = torch.as_tensor(rew[:, cols, None], device=dev)
            entry["info"] = TensorDict(
                {
                    key: _column(info, key, cols, n, dev)
                    for key in _INFO_FLOATS + _INFO_FLAGS
                },
                batch_size=(n, k),
                device=dev,
            )
            data[g] = TensorDict(entry, batch_size=(n, k), device=dev)
        return TensorDict(data, batch_size=(n,), device=dev)


def _column(
    info: dict[str, Any], key: str, cols: list[int], n: int, device: Any
) -> torch.Tensor:
    """``info[key]``'s group columns ``[N, k]`` (``nan`` / ``False`` if absent)."""
    flag = key in _INFO_FLAGS
    if key in info:
        out = np.asarray(info[key])[:, cols]
    else:
        out = np.full((n, len(cols)), False if flag else np.nan)
    return torch.as_tensor(out.astype(bool if flag else np.float32), device=device)


def _flag(shape: tuple[int, ...], device: Any) -> Categorical:
    return Categorical(2, shape=shape, dtype=torch.bool, device=device)
