"""Checks of the ``train`` section of a config, before any model is built.

The static parts of a config (sizes against their caps, rates, ``net_arch``, the
device) are checked in ``attn_env.config.validate_train``; what needs the
training stack (the SB3 algorithm's own keywords for ``algo_params``, the
algorithm and action-map names, RLlib's options) is checked here, at the
training layer. Every error is one ``ConfigError`` line naming the key.

A config cannot hold a Python class, so ``algo_params.policy_kwargs`` names its
classes (``activation_fn: ReLU``) from the allow-list a run folder may record
(``training.policy``); :func:`resolve_sb3_kwargs` turns the names into the
classes when the model is built.
"""

from __future__ import annotations

import inspect
from typing import Any

from attn_env.checks import ConfigError, check_int, check_real, is_int, is_real, show
from attn_env.config import MAX_LAYER, MAX_PRICE, TrainConfig, validate_train
from training.actions import SQUASHES
from training.policy import _CLASSES, ALGOS, algo_class

__all__ = [
    "BACKENDS",
    "MAX_LAYER",
    "POLICY_CLASSES",
    "RLLIB_PARAMS",
    "SB3_INT_CAPS",
    "SHARES",
    "check_rllib_params",
    "check_train_config",
    "resolve_sb3_kwargs",
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
    "log_std_init": float,
}
"``train.algo_params`` the RLlib backend accepts, and their types."
RLLIB_REAL_RANGES = {"log_std_init": (-20.0, 2.0)}
"Ranges of RLlib float options narrower than ``[-MAX_PRICE, MAX_PRICE]``."
RLLIB_INT_CAPS = {
    "num_env_runners": (0, 256),
    "num_envs_per_env_runner": (1, 16_384),
    "num_epochs": (1, 1_000),
    "minibatch_size": (1, 100_000_000),
}
"Ranges of RLlib's integer options (``num_env_runners``: Ray worker processes)."
SB3_INT_CAPS: dict[str, tuple[int, int]] = {
    "n_epochs": (1, 1_000),
    "gradient_steps": (-1, 1_000),
    "buffer_size": (1, 10_000_000),
    "learning_starts": (0, 10**12),
    "n_steps": (1, 2**20),
    "train_freq": (1, 2**20),
    "target_update_interval": (1, 2**20),
    "sde_sample_freq": (-1, 2**20),
    "stats_window_size": (1, 2**20),
    "seed": (0, 2**32 - 1),
}
"Ranges of SB3's integer keywords (others: ``[-1, 2**20]``): what ``algo_params``"
" may set and what a run folder's manifest may record (``training.sb3``), one"
" table, so a run trained from a config can always be resumed."
SET_BY_TRAINER = (
    "policy",
    "env",
    "device",
    "tensorboard_log",
    "verbose",
    "_init_setup_model",
)
"SB3 keywords the trainer itself passes: neither a config nor a manifest sets them."
_SET_BY_TRAIN = {
    "gamma": "train.gamma",
    "learning_rate": "train.learning_rate",
    "batch_size": "train.batch_size",
    "seed": "the config's seed",
}
"SB3 keywords a ``train`` option sets: one place for each setting."
OBJECTS = ("rollout_buffer_class", "replay_buffer_class", "action_noise")
"SB3 keywords that take classes or objects: a config cannot give them, a"
" manifest can only leave them unset."
BUFFER_KWARGS = ("rollout_buffer_kwargs", "replay_buffer_kwargs")
"Arguments of those classes: not from a config (a manifest: unset or a mapping)."
POLICY_CLASSES: dict[str, tuple[str, ...]] = {k: v[1] for k, v in _CLASSES.items()}
"Class-valued ``policy_kwargs`` and the class names a config may give them."


def check_train_config(tc: TrainConfig) -> None:
    """``ConfigError`` naming the first bad training option."""
    validate_train(tc)
    if tc.backend not in BACKENDS:
        raise ConfigError(
            f"train.backend must be one of {', '.join(BACKENDS)}, "
            f"got {show(tc.backend)}"
        )
    if tc.backend == "rllib" and tc.algo != "ppo":
        raise ConfigError(
            f"train.algo {show(tc.algo)} is not available with backend rllib; use ppo"
        )
    if tc.algo not in ALGOS:
        raise ConfigError(
            f"train.algo must be one of {', '.join(ALGOS)}, got {show(tc.algo)}"
        )
    if tc.share not in SHARES:
        raise ConfigError(
            f"train.share must be one of {', '.join(SHARES)}, got {show(tc.share)}"
        )
    if tc.squash not in SQUASHES:
        raise ConfigError(
            f"train.squash must be one of {', '.join(SQUASHES)}, got {show(tc.squash)}"
        )
    if tc.backend == "rllib":
        if tc.opponent_draws != 1:
            raise ConfigError(
                f"train.opponent_draws {show(tc.opponent_draws)} is an SB3 option; "
                "with backend rllib leave it at 1"
            )
        check_rllib_params(tc.algo_params)
    else:
        _check_algo_params(tc.algo, tc.algo_params)


def _check_algo_params(algo: str, params: dict[str, Any]) -> None:
    """``train.algo_params`` are keywords of the SB3 class, of its defaults' types.

    A keyword whose default is a number takes a number (an integer where the
    default is one, within :data:`SB3_INT_CAPS`), a flag takes true/false, a
    string default takes a string or a number (SAC's ``ent_coef: auto``);
    ``policy_kwargs`` is checked key by key (:func:`_check_policy_kwargs`);
    keywords that take classes or objects, and those a ``train`` option sets,
    are refused by name.
    """
    if not isinstance(params, dict):
        raise ConfigError(f"train.algo_params must be a mapping, got {show(params)}")
    sig = inspect.signature(algo_class(algo).__init__)
    known = [k for k in sig.parameters if k not in ("self", *SET_BY_TRAINER)]
    set_by_train = dict(_SET_BY_TRAIN)
    if algo == "ppo":
        set_by_train["n_steps"] = "train.n_steps"
    for key, value in params.items():
        where = f"train.algo_params.{key}"
        if key in SET_BY_TRAINER:
            raise ConfigError(f"{where} is set by the trainer; drop it")
        if key in set_by_train:
            raise ConfigError(f"{where} is set by {set_by_train[key]}; set it there")
        if key not in known:
            raise ConfigError(
                f"train.algo_params: unknown keyword {key!r} for {algo}; "
                f"known: {', '.join(k for k in known if k not in set_by_train)}"
            )
        if key in (*OBJECTS, *BUFFER_KWARGS):
            raise ConfigError(
                f"{where} takes a Python class or object, which a config cannot "
                "give; drop it"
            )
        if key == "policy_kwargs":
            _check_policy_kwargs(algo, value)
            continue
        _check_sb3_value(where, key, value, sig.parameters[key].default)


def _check_sb3_value(where: str, key: str, value: Any, default: Any) -> None:
    """One SB3 keyword's value against the type of its default, bounded."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {show(value)}")
    elif isinstance(default, int):
        check_int(value, where, *SB3_INT_CAPS.get(key, (-1, 2**20)))
    elif isinstance(default, float) or default is None:
        # float defaults; None defaults left are clip_range_vf and target_kl
        if default is None and value is None:
            return
        check_real(value, where, -MAX_PRICE, MAX_PRICE)
    elif isinstance(default, str):
        if isinstance(value, str) and len(value) <= 32:
            return
        if not is_real(value):
            raise ConfigError(
                f"{where} must be of type str or a number (like its default "
                f"{default!r}), got {show(value)}"
            )
        check_real(value, where, -MAX_PRICE, MAX_PRICE)
    else:
        raise ConfigError(f"{where} cannot be set from a config")


def _policy_class_params(algo: str) -> dict[str, Any]:
    """Keywords of the SB3 policy ``algo`` builds, and their defaults."""
    if algo == "ppo":
        from stable_baselines3.common.policies import ActorCriticPolicy as cls
    else:
        from stable_baselines3.sac.policies import SACPolicy as cls
    skip = ("self", "observation_space", "action_space", "lr_schedule")
    return {
        k: p.default
        for k, p in inspect.signature(cls.__init__).parameters.items()
        if k not in skip
    }


def _check_policy_kwargs(algo: str, kwargs: Any) -> None:
    """``algo_params.policy_kwargs``: keywords of the SB3 policy, plain values.

    Classes by name from :data:`POLICY_CLASSES` (``activation_fn: ReLU``);
    ``optimizer_kwargs`` keywords of that optimizer; ``net_arch`` is
    ``train.net_arch``'s.
    """
    base = "train.algo_params.policy_kwargs"
    if kwargs is None:
        return
    if not isinstance(kwargs, dict):
        raise ConfigError(f"{base} must be a mapping, got {show(kwargs)}")
    params = _policy_class_params(algo)
    for key, value in kwargs.items():
        where = f"{base}.{key}"
        if key == "net_arch":
            raise ConfigError(f"{where} is set by train.net_arch; set it there")
        if key not in params:
            raise ConfigError(
                f"{base}: unknown keyword {key!r} for the {algo} policy; known: "
                f"{', '.join(k for k in params if k != 'net_arch')}"
            )
        if key in POLICY_CLASSES:
            allowed = POLICY_CLASSES[key]
            if value not in allowed:
                raise ConfigError(
                    f"{where} must name one of {', '.join(allowed)}, got {show(value)}"
                )
        elif key == "optimizer_kwargs":
            _check_optimizer_kwargs(where, kwargs.get("optimizer_class", "Adam"), value)
        elif key == "features_extractor_kwargs":
            if value:
                raise ConfigError(
                    f"{where}: FlattenExtractor takes no keywords, got {show(value)}"
                )
        else:
            _check_sb3_value(where, key, value, params[key])


def _check_optimizer_kwargs(where: str, optimizer: str, value: Any) -> None:
    """Keywords of the torch optimizer ``optimizer_class`` names: numbers, flags."""
    import torch

    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a mapping, got {show(value)}")
    cls = getattr(torch.optim, optimizer)
    known = [
        k
        for k in inspect.signature(cls.__init__).parameters
        if k not in ("self", "params", "lr")
    ]
    for key, v in value.items():
        if key not in known:
            raise ConfigError(
                f"{where}: unknown keyword {key!r} for {optimizer}; known: "
                f"{', '.join(known)}"
            )
        if isinstance(v, list | tuple):  # betas
            if len(v) > 8:
                raise ConfigError(f"{where}.{key}: too long, got {show(v)}")
            for i, x in enumerate(v):
                check_real(x, f"{where}.{key}[{i}]", -MAX_PRICE, MAX_PRICE)
        elif not (isinstance(v, bool) or v is None):
            check_real(v, f"{where}.{key}", -MAX_PRICE, MAX_PRICE)


def resolve_sb3_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` with ``policy_kwargs``' class names replaced by the classes.

    The JSON form (names) is what configs and run manifests hold; SB3 takes the
    classes. Names outside :data:`POLICY_CLASSES` were refused when the config
    was checked; here they are refused again, by name, never imported.
    """
    import importlib

    pk = kwargs.get("policy_kwargs")
    if not isinstance(pk, dict):
        return kwargs
    out = dict(pk)
    for key, (module, allowed) in _CLASSES.items():
        name = out.get(key)
        if isinstance(name, str):
            if name not in allowed:
                raise ConfigError(
                    f"policy_kwargs.{key} must name one of {', '.join(allowed)}, "
                    f"got {show(name)}"
                )
            out[key] = getattr(importlib.import_module(module), name)
    return {**kwargs, "policy_kwargs": out}


def check_rllib_params(params: Any) -> None:
    """``ConfigError`` (one line) unless ``params`` are known RLlib PPO options."""
    if not isinstance(params, dict):
        raise ConfigError(f"train.algo_params must be a mapping, got {show(params)}")
    for key, value in params.items():
        tp = RLLIB_PARAMS.get(key)
        where = f"train.algo_params.{key}"
        if tp is None:
            raise ConfigError(
                f"train.algo_params: unknown keyword {key!r} for backend rllib; "
                f"known: {', '.join(RLLIB_PARAMS)}"
            )
        if tp is bool:
            if not isinstance(value, bool):
                raise ConfigError(f"{where} must be of type bool, got {show(value)}")
        elif tp is int:
            low, high = RLLIB_INT_CAPS[key]
            if not is_int(value):
                raise ConfigError(
                    f"{where} must be of type int in [{low}, {high:,}], "
                    f"got {show(value)}"
                )
            check_int(value, where, low, high)
        else:
            low, high = RLLIB_REAL_RANGES.get(key, (-MAX_PRICE, MAX_PRICE))
            check_real(value, where, low, high)
