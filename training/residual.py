"""A residual policy: a frozen PPO actor plus a learned correction per value.

``ResidualPolicy`` is an SB3 ``ActorCriticPolicy`` whose action mean is

    mean(obs) = base_mean(obs) + w . hat(obs[:, VALUE])

``base_mean`` the actor of the policy it starts from (frozen: its weights do
not train), ``hat`` a triangular (hat) basis of :data:`RESIDUAL_BINS`
evenly spaced centres over the value's range in the observation space
(``[0, vmax]``; the env clips observations into it), ``w`` the one trained weight per
centre (0 at the start, so the residual policy first acts exactly as its
base). The critic and the log std are an ordinary PPO's. Between two centres
the hat weights sum to 1, so the correction is ``w`` interpolated linearly;
values outside the range would take the nearest end's.

It is ``exploit``'s best responder in single-round markets
(``runner.exploit``): there the value is the only entry of the observation
that varies, so a bid function of the value is the whole strategy, and the
responder only has to learn where to bid differently from the policy.

Saved and loaded as any policy: :meth:`ResidualPolicy._get_constructor_parameters`
adds ``residual_bins`` to the spec
(``training.policy.policy_spec``), ``training.policy.build_policy`` rebuilds
the class from them and the safetensors hold ``w`` as
``action_net.residual``, beside the base's keys under their usual names.
"""

from __future__ import annotations

from typing import Any

import torch as th
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import MlpExtractor
from torch import nn

from attn_env.observation import VALUE

__all__ = ["RESIDUAL_BINS", "BasisExtractor", "ResidualHead", "ResidualPolicy", "hat"]

RESIDUAL_BINS = 64
"""Centres of the value basis. Each region of values has its own weight, so
lifting the bids near the top of the value range (where a first-price best
response jumps above the opponent's highest bid) leaves those in the middle
where they were: a network fine-tuned from the policy moved them together, and
with its exploration noise annealed the middle drifted away from the best
response while the top approached it (docs/training.md, "Exploitability").
64 bins are 1/63 of the range wide, finer than the first-price kink's
neighbourhood the best response needs; measured on a first-price n = 2
policy they reached 0.93-0.95 of the exact best response's gain over three
seeds (``runner.exploit.RESIDUAL_EXPLORATION``)."""


def hat(values: th.Tensor, bins: int, low: float, high: float) -> th.Tensor:
    """``[N] -> [N, bins]``: each value's hat-basis weights over ``bins``
    centres evenly spaced on ``[low, high]`` (values clamped into it); each
    row is non-negative and sums to 1, at most two entries non-zero."""
    # in units of the spacing, against integer centres (exact in floating
    # point): a value's weights vanish exactly outside its two neighbours
    u = (values.clamp(low, high) - low) * ((bins - 1) / (high - low))
    k = th.arange(bins, device=values.device, dtype=values.dtype)
    return (1.0 - (u.unsqueeze(-1) - k).abs()).clamp(min=0.0)


class BasisExtractor(MlpExtractor):
    """SB3's ``MlpExtractor`` whose actor latent also carries the value's hat
    basis: ``[policy_net(features), hat(features[:, VALUE])]``."""

    def __init__(
        self,
        feature_dim: int,
        net_arch: Any,
        activation_fn: type[nn.Module],
        device: th.device | str,
        bins: int,
        low: float,
        high: float,
    ) -> None:
        super().__init__(feature_dim, net_arch, activation_fn, device)
        self.base_dim = self.latent_dim_pi
        self.bins, self.low, self.high = bins, low, high
        self.latent_dim_pi = self.base_dim + bins

    def forward_actor(self, features: th.Tensor) -> th.Tensor:
        basis = hat(features[:, VALUE], self.bins, self.low, self.high)
        return th.cat([self.policy_net(features), basis], dim=1)


class ResidualHead(nn.Module):
    """The action head ``weight . latent + bias + residual . basis`` over the
    :class:`BasisExtractor`'s latent; ``weight`` and ``bias`` are the base
    head's (same names and shapes as SB3's ``nn.Linear``), ``residual`` the
    trained correction ``[actions, bins]``."""

    def __init__(self, base_dim: int, bins: int, actions: int) -> None:
        super().__init__()
        self.base_dim = base_dim
        self.weight = nn.Parameter(th.zeros(actions, base_dim))
        self.bias = nn.Parameter(th.zeros(actions))
        self.residual = nn.Parameter(th.zeros(actions, bins))

    def forward(self, latent: th.Tensor) -> th.Tensor:
        base, basis = latent[:, : self.base_dim], latent[:, self.base_dim :]
        return nn.functional.linear(base, self.weight, self.bias) + basis @ (
            self.residual.T
        )


class ResidualPolicy(ActorCriticPolicy):
    """An ``ActorCriticPolicy`` whose actor is frozen and corrected per value.

    Args:
        residual_bins: centres of the value basis (:data:`RESIDUAL_BINS`),
            spanning the observation space's bounds of the value.
        *args, **kwargs: ``ActorCriticPolicy``'s (a Gaussian action).

    Only ``action_net.residual``, the critic and the log std train; the
    base actor (``mlp_extractor.policy_net``, ``action_net.weight``,
    ``action_net.bias``) keeps the weights it is given.
    """

    def __init__(
        self,
        *args: Any,
        residual_bins: int = RESIDUAL_BINS,
        **kwargs: Any,
    ) -> None:
        if isinstance(residual_bins, bool) or not isinstance(residual_bins, int):
            raise ValueError(f"residual_bins must be an int, got {residual_bins!r}")
        if residual_bins < 2:
            raise ValueError(f"residual_bins must be >= 2, got {residual_bins}")
        self.residual_bins = residual_bins
        super().__init__(*args, **kwargs)

    def _build_mlp_extractor(self) -> None:
        space = self.observation_space
        low, high = float(space.low[VALUE]), float(space.high[VALUE])
        if not low < high < float("inf"):
            raise ValueError(
                f"the value's observation bounds [{low}, {high}] span no range"
            )
        self.mlp_extractor = BasisExtractor(
            self.features_dim,
            self.net_arch,
            self.activation_fn,
            self.device,
            self.residual_bins,
            low,
            high,
        )

    def _build(self, lr_schedule: Any) -> None:
        super()._build(lr_schedule)  # action_net: a Linear over the wider latent
        plain = self.action_net
        if not isinstance(plain, nn.Linear):
            raise ValueError("a residual policy needs a Gaussian (Box) action")
        ext = self.mlp_extractor
        head = ResidualHead(ext.base_dim, ext.bins, plain.out_features)
        with th.no_grad():
            head.weight.copy_(plain.weight[:, : ext.base_dim])
            head.bias.copy_(plain.bias)
        self.action_net = head.to(plain.weight.device)
        for p in (*ext.policy_net.parameters(), head.weight, head.bias):
            p.requires_grad_(False)
        trained = [p for p in self.parameters() if p.requires_grad]
        self.optimizer = self.optimizer_class(
            trained, lr=lr_schedule(1), **self.optimizer_kwargs
        )

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data["residual_bins"] = self.residual_bins
        return data

    def load_base(self, policy: ActorCriticPolicy) -> None:
        """Take ``policy``'s weights (actor, critic, log std) as the base; the
        residual is set to 0, so this policy then acts exactly as ``policy``.

        Raises:
            ValueError: ``policy``'s weights do not fit (another net_arch).
        """
        state = dict(policy.state_dict())
        state["action_net.residual"] = th.zeros_like(self.action_net.residual)
        mine = self.state_dict()
        if set(state) != set(mine) or any(
            state[k].shape != mine[k].shape for k in mine
        ):
            raise ValueError("the policy's network does not fit the residual policy")
        self.load_state_dict(state)
