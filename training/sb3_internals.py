"""Every use of stable-baselines3's private API, in one place.

SB3 keeps a few things a checkpoint needs outside its public API: the names of
the "pytorch variables" saved beside the state dicts (SAC's entropy
coefficient), the update and episode counters, and a policy's constructor
arguments. Reading them anywhere else would break silently when SB3 moves one;
here :func:`check_internals` names each one, and ``tests/test_training.py``
calls it on real PPO and SAC models, so an SB3 release that moves an internal
fails that test loudly (``pyproject.toml`` also caps SB3 below its next major).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from attn_env.errors import UserError

__all__ = [
    "check_internals",
    "constructor_parameters",
    "counters",
    "model_state",
    "set_counters",
    "set_model_state",
    "torch_variables",
]

_MODEL_ATTRS = ("_get_torch_save_params", "_n_updates", "_episode_num")
"Private attributes of an SB3 algorithm object this module reads or writes."
_POLICY_ATTRS = ("_get_constructor_parameters",)
"Private attributes of an SB3 policy this module reads."


def check_internals(model: Any) -> None:
    """``AttributeError`` naming every private SB3 attribute ``model`` lacks.

    Call it on a freshly built model (tests do, for PPO and SAC).
    """
    missing = [a for a in _MODEL_ATTRS if not hasattr(model, a)]
    missing += [f"policy.{a}" for a in _POLICY_ATTRS if not hasattr(model.policy, a)]
    if missing:
        import stable_baselines3

        raise AttributeError(
            f"stable-baselines3 {stable_baselines3.__version__} moved "
            f"{', '.join(missing)}; update training/sb3_internals.py"
        )
    names = torch_variables(model)
    if not all(isinstance(n, str) for n in names):
        raise AttributeError("_get_torch_save_params no longer lists variable names")


def torch_variables(model: Any) -> list[str]:
    """Dotted names of the tensors SB3 saves beside the state dicts."""
    _, names = model._get_torch_save_params()
    return list(names)


def counters(model: Any) -> dict[str, int]:
    """The model's update and episode counters (``n_updates``, ``episode_num``)."""
    return {
        "n_updates": int(model._n_updates),
        "episode_num": int(model._episode_num),
    }


def set_counters(model: Any, n_updates: int, episode_num: int) -> None:
    """Restore :func:`counters` (resuming a run)."""
    model._n_updates = int(n_updates)
    model._episode_num = int(episode_num)


def constructor_parameters(policy: Any) -> dict[str, Any]:
    """The keyword arguments that rebuild an SB3 policy like ``policy``."""
    return dict(policy._get_constructor_parameters())


def _attr(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def model_state(model: Any) -> dict[str, Any]:
    """Everything of an SB3 model that training changes, as tensors and numbers.

    ``get_parameters`` gives the policy's and optimizers' state dicts; SAC's
    entropy coefficient lives outside them (SB3's "pytorch variables").
    """
    state = dict(model.get_parameters())
    state["pytorch_variables"] = {n: _attr(model, n) for n in torch_variables(model)}
    return state


def set_model_state(model: Any, state: Any, path: Path) -> None:
    """Load :func:`model_state`'s dict back into a freshly built model.

    Raises:
        UserError: the state does not fit the model (one line naming ``path``).
    """
    import torch

    try:
        variables = state.pop("pytorch_variables")
        names = torch_variables(model)
        if sorted(variables) != sorted(names):
            raise ValueError(f"expected variables {names}, got {sorted(variables)}")
        model.set_parameters(state, exact_match=True, device=model.device)
        with torch.no_grad():
            for name, value in variables.items():
                _attr(model, name).data = value.to(model.device)
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as err:
        text = " ".join(str(err).split())[:200]
        raise UserError(f"{path}: cannot resume from these weights ({text})") from None
