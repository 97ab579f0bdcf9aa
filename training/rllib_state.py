"""RLlib learner state: RLModule weights and optimizer states, in and out.

The RLlib backend keeps each learner's RLModule state (part ``rllib``) and its
optimizer state (part ``optimizer``: Adam's buffers as tensors, its steps and
``param_groups`` in the safetensors file's JSON index) for ``--resume``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["from_storable", "module_states", "optimizer_states", "set_states"]


def module_states(algo) -> dict[str, dict[str, Any]]:
    """Each trained RLModule's state dict (numpy), from the learner."""
    from ray.rllib.core import COMPONENT_LEARNER, COMPONENT_RL_MODULE

    state = algo.learner_group.get_state(
        components=f"{COMPONENT_LEARNER}/{COMPONENT_RL_MODULE}"
    )
    return state[COMPONENT_LEARNER][COMPONENT_RL_MODULE]


def optimizer_states(algo) -> dict[str, dict[str, Any]]:
    """The learner's optimizers: ``{name: {"module_id", "state"}}``, numpy inside.

    ``state`` is torch's ``Optimizer.state_dict()`` as RLlib returns it: per
    parameter buffers (Adam's ``exp_avg``, ``exp_avg_sq``) as numpy arrays,
    ``step`` and the ``param_groups`` as plain numbers, tuples and lists.
    """
    from ray.rllib.core import COMPONENT_LEARNER, COMPONENT_OPTIMIZER

    state = algo.learner_group.get_state(
        components=f"{COMPONENT_LEARNER}/{COMPONENT_OPTIMIZER}"
    )
    return state[COMPONENT_LEARNER][COMPONENT_OPTIMIZER]


def from_storable(obj: Any) -> Any:
    """What :func:`save_tensors` gave back, with tensors as numpy arrays again, as
    RLlib hands optimizer states out (``save_tensors`` stores numpy as tensors)."""
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.numpy()
    if isinstance(obj, dict):
        return {k: from_storable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(from_storable(v) for v in obj)
    return obj


def set_states(
    algo,
    modules: dict[str, dict[str, Any]],
    optimizers: dict[str, dict[str, Any]] | None = None,
) -> None:
    """Load RLModule weights (and optimizer states) into the learner; sync runners."""
    from ray.rllib.core import (
        COMPONENT_LEARNER,
        COMPONENT_OPTIMIZER,
        COMPONENT_RL_MODULE,
    )

    state: dict[str, Any] = {COMPONENT_RL_MODULE: modules}
    if optimizers:
        state[COMPONENT_OPTIMIZER] = optimizers
    algo.learner_group.set_state({COMPONENT_LEARNER: state})
    algo.env_runner_group.sync_weights(
        from_worker_or_learner_group=algo.learner_group, inference_only=True
    )
