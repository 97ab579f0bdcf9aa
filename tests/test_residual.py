"""``training.residual``: the residual policy (a frozen actor plus a per-value
correction on a hat basis) and its round trip through ``build_policy``.

Fast: the basis against its definition, the residual at 0 acting exactly as
its base, a weight on one centre moving only the bids within that centre's
support (by the amount the weight says at the centre), which parameters
train, and the spec rebuilding the same policy bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("stable_baselines3")

import torch as th
from gymnasium import spaces

from attn_env.observation import OBS_BASE_DIM, VALUE
from training.actions import ActionMap
from training.policy import RolePolicy, build_policy, freeze, policy_spec
from training.residual import RESIDUAL_BINS, ResidualPolicy, hat

pytestmark = pytest.mark.usefixtures("restore_torch_threads")

VMAX = 1.0
BINS = 8


def spaces_kwargs() -> dict:
    """A buyer's observation (the value in ``[0, VMAX]``) and a raw action."""
    high = np.ones(OBS_BASE_DIM, dtype=np.float32)
    high[VALUE] = VMAX
    return {
        "observation_space": spaces.Box(0.0 * high, high, dtype=np.float32),
        "action_space": spaces.Box(-8.0, 8.0, shape=(1,), dtype=np.float32),
        "lr_schedule": lambda _: 1e-3,
        "net_arch": [16, 16],
    }


def base_policy(seed: int = 0):
    from stable_baselines3.common.policies import ActorCriticPolicy

    th.manual_seed(seed)
    policy = ActorCriticPolicy(**spaces_kwargs())
    with th.no_grad():  # a policy whose mean depends on the value, not ~0
        policy.action_net.weight.mul_(100.0)
    return policy


def residual_of(base, bins: int = BINS) -> ResidualPolicy:
    policy = ResidualPolicy(**spaces_kwargs(), residual_bins=bins)
    policy.load_base(base)
    return policy


def observations(values: np.ndarray, seed: int = 1) -> np.ndarray:
    """Rows of random other entries with the given values."""
    obs = np.random.default_rng(seed).uniform(0, 1, (len(values), OBS_BASE_DIM))
    obs[:, VALUE] = values
    return obs.astype(np.float32)


def mean_action(policy, obs: np.ndarray) -> np.ndarray:
    with th.no_grad():
        dist = policy.get_distribution(th.as_tensor(obs))
        return dist.distribution.mean.numpy().reshape(-1)


def test_the_hat_basis_interpolates_between_its_centres():
    """At a centre one weight is 1; between two neighbours the weights are
    linear and sum to 1; outside the range the nearest end's."""
    centres = np.linspace(0.0, 1.0, BINS)
    at = hat(th.as_tensor(centres), BINS, 0.0, 1.0).numpy()
    np.testing.assert_allclose(at, np.eye(BINS), atol=1e-12)
    v = np.random.default_rng(0).uniform(0, 1, 1000)
    w = hat(th.as_tensor(v), BINS, 0.0, 1.0).numpy()
    assert (w >= 0).all() and ((w > 0).sum(axis=1) <= 2).all()
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(w @ centres, v, atol=1e-12)  # linear in v
    out = hat(th.as_tensor([-0.5, 1.5]), BINS, 0.0, 1.0).numpy()
    np.testing.assert_array_equal(out, np.eye(BINS)[[0, -1]])


def test_a_residual_at_zero_acts_exactly_as_its_base():
    base = base_policy()
    policy = residual_of(base)
    obs = observations(np.random.default_rng(2).uniform(0, VMAX, 512))
    np.testing.assert_array_equal(mean_action(policy, obs), mean_action(base, obs))
    with th.no_grad():  # the critic and the noise are the base's too
        t = th.as_tensor(obs)
        np.testing.assert_array_equal(
            policy.predict_values(t).numpy(), base.predict_values(t).numpy()
        )
    np.testing.assert_array_equal(policy.log_std.detach(), base.log_std.detach())
    amap = ActionMap("shade", "buyer", 0.0, 1.0)
    np.testing.assert_array_equal(
        RolePolicy(policy, amap).act(obs), RolePolicy(base, amap).act(obs)
    )


@pytest.mark.parametrize("centre", [0, 3, BINS - 1])
def test_lifting_one_centre_moves_only_the_bids_in_its_support(centre):
    """``w = lift`` at centre ``i`` and 0 elsewhere: the raw mean moves by
    ``lift * hat_i(v)``, so bids change exactly where ``|v - c_i| < width``
    and by ``lift`` at ``c_i``; everywhere else they are the base's bit for bit."""
    base = base_policy()
    policy = residual_of(base)
    lift = 0.5
    with th.no_grad():
        policy.action_net.residual[0, centre] = lift
    width = VMAX / (BINS - 1)
    c = centre * width
    values = np.linspace(0.0, VMAX, 701)
    obs = observations(values)
    moved = mean_action(policy, obs) - mean_action(base, obs)
    inside = np.abs(values - c) < width - 1e-6
    assert (np.abs(moved[inside & (np.abs(values - c) > 1e-6)]) > 0).all()
    np.testing.assert_array_equal(moved[~inside], 0.0)
    want = lift * np.clip(1 - np.abs(values - c) / width, 0, None)
    np.testing.assert_allclose(moved, want, atol=1e-5)
    amap = ActionMap("shade", "buyer", 0.0, 1.0)  # a sigmoid: bids move with it
    bids = RolePolicy(policy, amap).act(obs).reshape(-1)
    old = RolePolicy(base, amap).act(obs).reshape(-1)
    np.testing.assert_array_equal(bids[~inside], old[~inside])
    assert (bids[inside & (values > 0)] > old[inside & (values > 0)]).all()


def test_only_the_residual_the_critic_and_the_noise_train():
    policy = residual_of(base_policy())
    trained = {n for n, p in policy.named_parameters() if p.requires_grad}
    assert "action_net.residual" in trained and "log_std" in trained
    assert any(n.startswith("mlp_extractor.value_net") for n in trained)
    assert any(n.startswith("value_net") for n in trained)
    frozen = {"action_net.weight", "action_net.bias"}
    frozen |= {n for n, _ in policy.named_parameters() if ".policy_net." in n}
    assert not trained & frozen and len(frozen) > 2
    in_optimizer = {id(p) for g in policy.optimizer.param_groups for p in g["params"]}
    assert in_optimizer == {id(p) for p in policy.parameters() if p.requires_grad}
    # a PPO step on the residual's loss moves the residual, never the base actor
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    obs = th.as_tensor(observations(np.linspace(0, VMAX, 64)))
    _, log_prob, _ = policy.evaluate_actions(obs, th.full((64, 1), 3.0))
    policy.optimizer.zero_grad()
    (-log_prob.mean()).backward()
    policy.optimizer.step()
    after = policy.state_dict()
    for name in frozen:
        assert th.equal(after[name], before[name]), name
    assert not th.equal(after["action_net.residual"], before["action_net.residual"])


def test_the_spec_rebuilds_the_residual_policy_bit_for_bit():
    """``policy_spec`` records the basis; ``build_policy`` (``load_policy``'s
    path) and ``freeze`` (the trainer's snapshots) rebuild it exactly."""
    policy = residual_of(base_policy(), bins=RESIDUAL_BINS)
    with th.no_grad():
        policy.action_net.residual.copy_(th.linspace(-1, 1, RESIDUAL_BINS))
    spec = policy_spec(policy)
    assert spec["class"] == "ResidualPolicy"
    assert spec["kwargs"]["residual_bins"] == RESIDUAL_BINS
    import json

    rebuilt = build_policy("ppo", json.loads(json.dumps(spec)))
    assert isinstance(rebuilt, ResidualPolicy)
    rebuilt.load_state_dict(policy.state_dict())
    obs = observations(np.random.default_rng(3).uniform(0, VMAX, 256))
    want = mean_action(policy, obs)
    np.testing.assert_array_equal(mean_action(rebuilt, obs), want)
    np.testing.assert_array_equal(mean_action(freeze(policy), obs), want)
    plain = policy_spec(base_policy())
    assert plain["class"] == "ActorCriticPolicy"
    assert "residual_bins" not in plain["kwargs"]


def test_bad_residual_arguments_are_refused():
    from attn_env.errors import UserError

    with pytest.raises(ValueError, match="residual_bins must be >= 2"):
        ResidualPolicy(**spaces_kwargs(), residual_bins=1)
    spec = policy_spec(residual_of(base_policy()))
    spec["kwargs"]["residual_bins"] = "64"
    with pytest.raises(UserError, match="residual_bins must be an int"):
        build_policy("ppo", spec)
    with pytest.raises(UserError, match="must be 'SACPolicy' for algo 'sac'"):
        build_policy("sac", {**spec, "class": "ResidualPolicy"})
    with pytest.raises(ValueError, match="does not fit"):
        small = ResidualPolicy(**{**spaces_kwargs(), "net_arch": [4]})
        small.load_base(base_policy())
