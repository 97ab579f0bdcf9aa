"""RLlib PPO weights in the layout of an SB3 ``ActorCriticPolicy``.

PPO's RLModule (separate actor and critic MLPs of ``net_arch``, tanh, a
state-independent ``log_std``; built with ``vf_share_layers=False`` and
``free_log_std=True``) has the very layout of an SB3 ``ActorCriticPolicy`` with
the same ``net_arch``: :func:`to_sb3_state` renames its weights, and
:func:`sb3_policy` loads them into such a policy, so ``load_policy`` and
``attn-market evaluate`` read RLlib runs as SB3 ones.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from attn_env.errors import UserError

__all__ = ["sb3_policy", "to_sb3_state"]

_TO_SB3 = (
    ("encoder.actor_encoder.net.mlp.", "mlp_extractor.policy_net."),
    ("encoder.critic_encoder.net.mlp.", "mlp_extractor.value_net."),
    ("pi.net.mlp.0.", "action_net."),
    ("vf.net.mlp.0.", "value_net."),
    ("pi.log_std", "log_std"),
)


def to_sb3_state(module_state: dict[str, Any]) -> dict[str, Any]:
    """An RLlib PPO RLModule's state dict as an SB3 ``ActorCriticPolicy``'s.

    The module must have been built with ``vf_share_layers=False`` and
    ``free_log_std=True`` (as this backend builds it); RLlib's clip constants
    are dropped.
    """
    import torch

    out: dict[str, Any] = {}
    for key, value in module_state.items():
        if "clip_param_const" in key:
            continue
        for src, dst in _TO_SB3:
            if key.startswith(src):
                out[dst + key[len(src) :]] = torch.as_tensor(np.asarray(value))
                break
        else:
            raise UserError(f"unexpected RLModule weight {key!r}")
    return out


def sb3_policy(lr, net_arch: list[int], state: dict[str, Any]):
    """An SB3 ``ActorCriticPolicy`` holding the RLModule's weights."""
    import torch
    from stable_baselines3.common.policies import ActorCriticPolicy

    policy = ActorCriticPolicy(
        lr.obs_space,
        lr.action_map.space(),
        lambda _: 0.0,
        net_arch=list(net_arch),
        activation_fn=torch.nn.Tanh,
        ortho_init=False,
    )
    policy.load_state_dict(state)
    return policy
