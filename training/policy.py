"""Trained policies as plain bidders: ``load_policy(DIR).act(obs) -> bids``.

A run folder (``training.checkpoint``) holds one SB3 model per learner: one per
role with parameter sharing (``share: role``), one per agent otherwise. The
loaded object maps observations ``[N, obs_dim]`` to absolute bids or asks
``[N, 1]``: it picks the buyer or seller model by the role flag ``obs[:, 3]``
and applies the learner's action map (``training.actions``), deterministically
(the mean of the policy's action distribution).

Loading runs no code from the run folder: each policy is rebuilt from the JSON
description in the manifest (:func:`policy_spec`, :func:`build_policy`; class
names only from a fixed allow-list) and its weights are read from safetensors
(``training.checkpoint.load_tensors``). A PPO policy is SB3's
``ActorCriticPolicy`` or ``training.residual.ResidualPolicy`` (``exploit``'s
residual best responder: the policy's actor plus a correction per value, its
basis recorded in the spec), so a best responder's run folder loads as the
full bid function it plays.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from attn_env.errors import UserError
from attn_env.observation import OBS_BASE_DIM, ROLE, role_of
from training.actions import ActionMap
from training.checkpoint import (
    check_run_manifest,
    inside_run,
    load_tensors,
    read_manifest,
)
from training.sb3_internals import constructor_parameters

__all__ = [
    "RolePolicy",
    "TrainedPolicy",
    "build_policy",
    "freeze",
    "load_policy",
    "load_weights",
    "policy_spec",
    "resolve_device",
]

ALGOS = ("ppo", "sac")
POLICY_CLASSES = {"ppo": "ActorCriticPolicy", "sac": "SACPolicy"}
"The SB3 policy class each algorithm's ``MlpPolicy`` is."
RESIDUAL_CLASS = "ResidualPolicy"
"A PPO policy class a spec may also name: ``training.residual.ResidualPolicy``."
_CLASSES = {
    "activation_fn": (
        "torch.nn",
        ("Tanh", "ReLU", "ELU", "LeakyReLU", "GELU", "SiLU", "Sigmoid", "Identity"),
    ),
    "optimizer_class": ("torch.optim", ("Adam", "AdamW", "SGD", "RMSprop")),
    "features_extractor_class": (
        "stable_baselines3.common.torch_layers",
        ("FlattenExtractor",),
    ),
}
"Constructor arguments that are classes: where they live and the names allowed."
_BOX_DTYPES = ("float32", "float64")


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
    raise UserError(f"unknown algo {name!r}; known: {', '.join(ALGOS)}")


def _policy_class(algo: str, name: str | None = None) -> type:
    """The policy class of ``algo`` (``name``: :data:`RESIDUAL_CLASS` picks the
    residual PPO policy; any other name, the algorithm's own)."""
    if algo == "ppo" and name == RESIDUAL_CLASS:
        from training.residual import ResidualPolicy

        return ResidualPolicy
    if algo == "ppo":
        from stable_baselines3.common.policies import ActorCriticPolicy

        return ActorCriticPolicy
    if algo == "sac":
        from stable_baselines3.sac.policies import SACPolicy

        return SACPolicy
    raise UserError(f"unknown algo {algo!r}; known: {', '.join(ALGOS)}")


def policy_spec(policy: Any) -> dict[str, Any]:
    """A JSON description of an SB3 policy from which :func:`build_policy` rebuilds it.

    Spaces become ``{box: {low, high, shape, dtype}}``, classes their names
    (from a fixed allow-list); the learning-rate schedule is left out.
    """
    kwargs = {
        key: _encode_param(key, value)
        for key, value in constructor_parameters(policy).items()
        if key != "lr_schedule"
    }
    return {"class": type(policy).__name__, "kwargs": kwargs}


def _encode_param(key: str, value: Any) -> Any:
    from gymnasium import spaces

    if isinstance(value, spaces.Box):
        return {
            "box": {
                "low": value.low.tolist(),
                "high": value.high.tolist(),
                "shape": list(value.shape),
                "dtype": str(value.dtype),
            }
        }
    if isinstance(value, type):
        where = _CLASSES.get(key)
        if where is None or value.__name__ not in where[1]:
            raise TypeError(f"cannot record policy argument {key}={value!r}")
        return {"class": value.__name__}
    if isinstance(value, dict):
        return {str(k): _encode_param(key, v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_encode_param(key, v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"cannot record policy argument {key}={value!r}")


def _decode_param(key: str, value: Any) -> Any:
    import importlib

    if isinstance(value, dict) and set(value) == {"box"}:
        return _box(value["box"])
    if isinstance(value, dict) and set(value) == {"class"}:
        where = _CLASSES.get(key)
        if where is None or value["class"] not in where[1]:
            raise UserError(f"{key}: class {value['class']!r} is not allowed")
        return getattr(importlib.import_module(where[0]), value["class"])
    if isinstance(value, dict):
        return {k: _decode_param(key, v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode_param(key, v) for v in value]
    return value


def _box(d: Any) -> Any:
    from gymnasium import spaces

    if not isinstance(d, dict) or set(d) != {"low", "high", "shape", "dtype"}:
        raise UserError("a space must be {box: {low, high, shape, dtype}}")
    if d["dtype"] not in _BOX_DTYPES:
        raise UserError(f"space dtype {d['dtype']!r} is not one of {_BOX_DTYPES}")
    shape = tuple(int(n) for n in d["shape"])
    low = np.asarray(d["low"], dtype=d["dtype"]).reshape(shape)
    high = np.asarray(d["high"], dtype=d["dtype"]).reshape(shape)
    return spaces.Box(low, high, shape=shape, dtype=d["dtype"])


def build_policy(algo: str, spec: Any) -> Any:
    """A fresh SB3 policy (CPU, weights to load) as :func:`policy_spec` describes it.

    Raises:
        ValueError: the description is malformed or names a class outside the
            allow-list (one line).
    """
    cls = _policy_class(algo, spec.get("class") if isinstance(spec, dict) else None)
    if not isinstance(spec, dict) or spec.get("class") != cls.__name__:
        raise UserError(
            f"policy class must be {cls.__name__!r} for algo {algo!r}, got "
            f"{spec.get('class') if isinstance(spec, dict) else spec!r}"
        )
    kwargs = spec.get("kwargs")
    if not isinstance(kwargs, dict):
        raise UserError("policy kwargs must be an object")
    try:
        params = {k: _decode_param(k, v) for k, v in kwargs.items()}
        if "ortho_init" in params:
            # every weight is overwritten by the checkpoint's: skip the QR-based
            # orthogonal init (most of the load time of a [64, 64] policy)
            params["ortho_init"] = False
        return cls(**params, lr_schedule=_zero_schedule)
    except (TypeError, ValueError, RuntimeError, OverflowError) as err:
        text = " ".join(str(err).split())
        raise UserError(f"cannot rebuild the {cls.__name__}: {text}") from None


def _zero_schedule(_progress: float) -> float:
    return 0.0


def load_weights(module: Any, path: Path, part: str = "policy") -> None:
    """Load the state dict ``part`` of safetensors file ``path`` into ``module``.

    Raises:
        FileNotFoundError, ValueError: one line naming ``path``.
    """
    state = load_tensors(path, part)
    try:
        module.load_state_dict(state)
    except (RuntimeError, TypeError, ValueError, KeyError) as err:
        text = " ".join(str(err).split())[:200]
        raise UserError(f"{path}: weights do not fit the policy ({text})") from None


def freeze(policy: Any) -> Any:
    """An independent, inference-mode copy of an SB3 policy (same weights).

    ``copy.deepcopy`` fails on a policy mid-training (non-leaf tensors), so the
    copy is rebuilt from the constructor parameters, as ``BasePolicy.load`` does.
    """
    import torch

    clone = type(policy)(**constructor_parameters(policy))
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
        env_units: :meth:`act` returns the env's actions (``env.action``: ``s``
            under ``shade``), for a seat of a learner in the trainer's env;
            ``False`` (default): bids and asks, for a market stepped with bids.
    """

    def __init__(
        self,
        policy: Any,
        action_map: ActionMap,
        deterministic: bool = True,
        env_units: bool = False,
    ) -> None:
        self.policy = policy
        self.action_map = action_map
        self.deterministic = deterministic
        self.env_units = env_units
        self.obs_dim = int(np.prod(policy.observation_space.shape))

    def raw(self, obs: NDArray) -> NDArray[np.float32]:
        """The policy's raw actions ``[M, 1]``, clipped to the action bounds."""
        obs = np.asarray(obs, dtype=np.float32)
        if obs.ndim != 2 or obs.shape[1] != self.obs_dim:
            raise UserError(f"obs must have shape [N, {self.obs_dim}], got {obs.shape}")
        if len(obs) == 0:
            return np.zeros((0, 1), dtype=np.float32)
        actions, _ = self.policy.predict(obs, deterministic=self.deterministic)
        lo, hi = self.action_map.bounds
        return np.clip(np.asarray(actions, dtype=np.float32).reshape(-1, 1), lo, hi)

    def act(
        self, obs: NDArray, rng: np.random.Generator | None = None
    ) -> NDArray[np.float32]:
        """Bids (buyers) or asks (sellers) ``[M, 1]``, or the env's actions."""
        if self.env_units:
            return self.action_map.to_action(self.raw(obs))
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
            raise UserError(
                f"obs_batch must have shape [N, obs_dim>={OBS_BASE_DIM}], "
                f"got {obs.shape}"
            )
        out = np.zeros((len(obs), 1), dtype=np.float32)
        seller = obs[:, ROLE] >= 0.5
        for role, rows in (("buyer", ~seller), ("seller", seller)):
            if not rows.any():
                continue
            if role not in self.by_role:
                raise UserError(
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
        raise UserError(
            f"no policy for agent {agent!r}; trained: {', '.join(self.by_agent)}"
        )


def action_map_from(entry: dict[str, Any]) -> ActionMap:
    """The action map of a manifest's learner entry."""
    a = entry["action"]
    return ActionMap(a["mode"], a["role"], float(a["low"]), float(a["high"]))


def load_policy(path: str | Path, device: str = "auto") -> TrainedPolicy:
    """Load the current checkpoint of a run folder written by ``attn-market train``.

    Only the manifest and the weights files it names are read; nothing is
    unpickled (see ``docs/security.md``).

    Args:
        path: the run folder (``--out DIR`` of ``train``).
        device: torch device; ``auto`` picks cuda when present, else cpu.

    Returns:
        A :class:`TrainedPolicy`; ``act(obs_batch)`` is deterministic.

    Raises:
        FileNotFoundError: no run in ``path``, or a weights file it names is gone.
        ValueError: one line naming the bad file (old format, malformed manifest,
            a path outside the run folder, weights that are not safetensors).
    """
    path = Path(path)
    manifest = read_manifest(path)
    check_run_manifest(path, manifest)
    ckpt = manifest["checkpoint"]
    device = resolve_device(device)
    by_role: dict[str, RolePolicy] = {}
    by_agent: dict[str, RolePolicy] = {}
    for name, entry in manifest["learners"].items():
        try:
            policy = build_policy(entry["algo"], entry["policy"])
            amap = action_map_from(entry)
        except (ValueError, TypeError, KeyError) as err:
            text = " ".join(str(err).split())
            raise UserError(
                f"{path / 'manifest.json'}: learner {name!r}: {text}"
            ) from None
        load_weights(policy, inside_run(path, f"{ckpt}/{entry['model']}", "model"))
        policy.to(device)
        policy.set_training_mode(False)
        pol = RolePolicy(policy, amap, deterministic=True)
        by_role.setdefault(entry["role"], pol)
        for agent in entry["seats"]:
            by_agent[agent] = pol
    return TrainedPolicy(by_role, by_agent, manifest)
