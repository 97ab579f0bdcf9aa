"""Checks of the ``train`` section of a config, before any model is built.

The static parts of a config are checked in ``attn_env.config``; what needs the
training stack (the SB3 algorithm's own keywords for ``algo_params``, the
algorithm and action-map names) is checked here, at the training layer.
"""

from __future__ import annotations

from typing import Any

from attn_env.checks import check_device, is_real
from attn_env.config import TrainConfig
from training.actions import SQUASHES
from training.policy import ALGOS, algo_class

__all__ = [
    "BACKENDS",
    "MAX_LAYER",
    "RLLIB_PARAMS",
    "SHARES",
    "check_rllib_params",
    "check_train_config",
]

BACKENDS = ("sb3", "rllib")
"Training libraries: stable-baselines3 (the default) and Ray RLlib."
SHARES = ("role", "none")
"Parameter sharing: one policy per role, or one per agent."
RLLIB_PARAMS: dict[str, type] = {
    "num_env_runners": int,
    "num_envs_per_env_runner": int,
    "num_epochs": int,
    "minibatch_size": int,
    "lambda_": float,
    "clip_param": float,
    "vf_clip_param": float,
    "vf_loss_coeff": float,
    "entropy_coeff": float,
    "use_kl_loss": bool,
    "kl_coeff": float,
    "kl_target": float,
    "grad_clip": float,
}
"``train.algo_params`` the RLlib backend accepts, and their types."


def check_train_config(tc: TrainConfig) -> None:
    """``ValueError`` naming the first bad training option."""
    if tc.backend not in BACKENDS:
        raise ValueError(
            f"train.backend must be one of {', '.join(BACKENDS)}, got {tc.backend!r}"
        )
    if tc.backend == "rllib" and tc.algo != "ppo":
        raise ValueError(
            f"train.algo {tc.algo!r} is not available with backend rllib; use ppo"
        )
    if tc.algo not in ALGOS:
        raise ValueError(
            f"train.algo must be one of {', '.join(ALGOS)}, got {tc.algo!r}"
        )
    if tc.share not in SHARES:
        raise ValueError(
            f"train.share must be one of {', '.join(SHARES)}, got {tc.share!r}"
        )
    if tc.squash not in SQUASHES:
        raise ValueError(
            f"train.squash must be one of {', '.join(SQUASHES)}, got {tc.squash!r}"
        )
    for name in (
        "threads",
        "total_timesteps",
        "num_envs",
        "n_steps",
        "batch_size",
        "checkpoint_every",
        "alternate_every",
    ):
        if getattr(tc, name) < 1:
            raise ValueError(f"train.{name} must be >= 1, got {getattr(tc, name)!r}")
    if tc.self_play_pool < 0:
        raise ValueError(
            f"train.self_play_pool must be >= 0, got {tc.self_play_pool!r}"
        )
    if not 0.0 <= tc.gamma <= 1.0:
        raise ValueError(f"train.gamma must be in [0, 1], got {tc.gamma!r}")
    if not (is_real(tc.learning_rate) and tc.learning_rate > 0):
        raise ValueError(
            f"train.learning_rate must be a finite number > 0, got {tc.learning_rate!r}"
        )
    if not tc.net_arch or not all(1 <= n <= MAX_LAYER for n in tc.net_arch):
        raise ValueError(
            f"train.net_arch must be a non-empty list of layer sizes in "
            f"[1, {MAX_LAYER}], got {tc.net_arch!r}"
        )
    check_device(tc.device, "train.device")
    if tc.backend == "rllib":
        check_rllib_params(tc.algo_params)
    else:
        _check_algo_params(tc.algo, tc.algo_params)


MAX_LAYER = 65_536
"Widest hidden layer ``net_arch`` may ask for."
_SET_BY_TRAINER = (
    "policy",
    "env",
    "device",
    "tensorboard_log",
    "verbose",
    "_init_setup_model",
)


def _check_algo_params(algo: str, params: dict[str, Any]) -> None:
    """``train.algo_params`` are keywords of the SB3 class, of its defaults' types.

    A keyword whose default is a number takes a number (an integer where the
    default is one), a flag takes true/false, a string default takes a string or
    a number (SAC's ``ent_coef: auto``); ``None`` defaults take plain data.
    """
    import inspect

    if not isinstance(params, dict):
        raise ValueError(f"train.algo_params must be a mapping, got {params!r}")
    sig = inspect.signature(algo_class(algo).__init__)
    known = [k for k in sig.parameters if k not in ("self", *_SET_BY_TRAINER)]
    for key, value in params.items():
        if key in _SET_BY_TRAINER:
            raise ValueError(f"train.algo_params.{key} is set by the trainer; drop it")
        if key not in known:
            raise ValueError(
                f"train.algo_params: unknown keyword {key!r} for {algo}; "
                f"known: {', '.join(known)}"
            )
        default = sig.parameters[key].default
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif isinstance(default, float):
            ok = is_real(value)
        elif isinstance(default, str):
            ok = isinstance(value, str) or is_real(value)
        else:
            ok = value is None or isinstance(value, str | dict) or is_real(value)
        if not ok:
            expected = type(default).__name__ if default is not None else "plain data"
            raise ValueError(
                f"train.algo_params.{key} must be of type {expected} "
                f"(like its default {default!r}), got {value!r}"
            )


def check_rllib_params(params: Any) -> None:
    """``ValueError`` (one line) unless ``params`` are known RLlib PPO options."""
    if not isinstance(params, dict):
        raise ValueError(f"train.algo_params must be a mapping, got {params!r}")
    for key, value in params.items():
        tp = RLLIB_PARAMS.get(key)
        if tp is None:
            raise ValueError(
                f"train.algo_params: unknown keyword {key!r} for backend rllib; "
                f"known: {', '.join(RLLIB_PARAMS)}"
            )
        if tp is bool:
            ok = isinstance(value, bool)
        elif tp is int:
            ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
        else:
            ok = (
                isinstance(value, int | float)
                and not isinstance(value, bool)
                and is_real(value)
            )
        if not ok:
            raise ValueError(
                f"train.algo_params.{key} must be of type {tp.__name__}"
                f"{' >= 0' if tp is int else ''}, got {value!r}"
            )
