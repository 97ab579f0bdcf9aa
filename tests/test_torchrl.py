"""TorchRL's ``PettingZooWrapper`` around the env, and the TorchRL PPO example.

Issue 10 items 1 and 4: ``torchrl.envs.utils.check_env_specs`` passes on every
mechanism (absolute and shaded actions, sellers in two-sided markets), a rollout
steps through whole episodes, and ``examples/torchrl_ppo.py`` learns: its
``bne_l2`` goes down from the initial policy's.
"""

from __future__ import annotations

import importlib.util
import math
import warnings
from pathlib import Path

import numpy as np
import pytest

import attn_env
from attn_env import mechanisms
from attn_env.market_env import INFO_KEYS

torch = pytest.importorskip("torch")
pytest.importorskip("torchrl")

from torchrl.envs.libs.pettingzoo import PettingZooWrapper  # noqa: E402
from torchrl.envs.utils import MarlGroupMapType, check_env_specs  # noqa: E402

pytestmark = pytest.mark.integration
NAMES = mechanisms.names()
ROOT = Path(__file__).resolve().parents[1]


def options(name: str, **kw) -> dict:
    out = {"mechanism": name, "n_buyers": 3, "rounds": 3, "history": 2, "seed": 0}
    if mechanisms.family(name) == "two_sided":
        out["n_sellers"] = 2
    return out | kw


def wrap(market, **kw) -> PettingZooWrapper:
    with warnings.catch_warnings():  # "tested with PettingZoo 1.24.3"
        warnings.simplefilter("ignore", UserWarning)
        return PettingZooWrapper(market, **kw)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_ten_mechanisms():
    assert NAMES == mechanisms.names() and len(NAMES) >= 10


@pytest.mark.parametrize("action", ["shade", "absolute"])
@pytest.mark.parametrize("name", NAMES)
def test_check_env_specs(name, action):
    market = attn_env.parallel_env(**options(name, action=action))
    env = wrap(market, return_state=True)
    groups = {"buyer": [f"buyer_{i}" for i in range(3)]}
    if mechanisms.family(name) == "two_sided":
        groups["seller"] = ["seller_0", "seller_1"]
    assert env.group_map == groups
    check_env_specs(env, seed=0)
    for group, agents in groups.items():
        spec = env.full_action_spec[group, "action"]
        assert spec.shape == (len(agents), 1)
        high = market.action_space(agents[0]).high[0]
        if action == "shade":
            assert high == 1.0
        assert float(spec.space.high.max()) == pytest.approx(high)
        assert set(env.observation_spec[group, "info"].keys()) == set(INFO_KEYS)


@pytest.mark.parametrize("name", NAMES)
def test_rollout_whole_episodes(name):
    """Random actions through two episodes: shapes, rewards, dones, infos."""
    market = attn_env.parallel_env(**options(name, action="shade"))
    env = wrap(market, return_state=True)
    td = env.rollout(6, break_when_any_done=False)
    assert td.batch_size == (6,)
    done = td["next", "done"].reshape(-1).tolist()
    assert done == [False, False, True, False, False, True]
    for group, agents in env.group_map.items():
        reward = td["next", group, "reward"]
        assert reward.shape == (6, len(agents), 1)
        assert torch.isfinite(reward).all()
        info = td["next", group, "info"]
        assert np.isfinite(info["value"].numpy()).all()
        obs_dim = market.observation_space(agents[0]).shape[0]
        assert td[group, "observation"].shape == (6, len(agents), obs_dim)
    assert td["state"].shape[-1] == market.state_space.shape[0]


def test_one_group_per_agent_and_aec():
    """TorchRL's other group maps, and the AEC form of the env."""
    market = attn_env.parallel_env(**options("k_double", action="shade"))
    env = wrap(market, group_map=MarlGroupMapType.ONE_GROUP_PER_AGENT)
    assert set(env.group_map) == set(market.possible_agents)
    check_env_specs(env, seed=0)
    aec = wrap(attn_env.env(**options("first_price", action="shade")), use_mask=True)
    check_env_specs(aec, seed=0)
    assert aec.rollout(9, break_when_any_done=False).batch_size == (9,)


def _example():
    path = ROOT / "examples" / "torchrl_ppo.py"
    spec = importlib.util.spec_from_file_location("torchrl_ppo_example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_ppo_learns():
    """A small budget: ``bne_l2`` of the trained policy below the initial one."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        out = _example().main(total_frames=2048, seed=0)
    assert out["agent_steps"] == 4096
    assert math.isfinite(out["bne_l2_start"]) and math.isfinite(out["bne_l2_end"])
    assert out["bne_l2_end"] < out["bne_l2_start"] - 0.005, out
    assert out["agent_steps_per_s"] == pytest.approx(4096 / out["seconds"])
    assert torch.get_num_threads() == 1


# -- the batched env (training.torchrl_env) -------------------------------------


@pytest.mark.parametrize("action", ["shade", "absolute"])
@pytest.mark.parametrize("name", NAMES)
def test_batched_env_check_env_specs(name, action):
    from training.torchrl_env import MarketTorchRLEnv

    env = MarketTorchRLEnv(4, **options(name, action=action))
    groups = {"buyer": [f"buyer_{i}" for i in range(3)]}
    if mechanisms.family(name) == "two_sided":
        groups["seller"] = ["seller_0", "seller_1"]
    assert env.group_map == groups and env.batch_size == (4,)
    check_env_specs(env, seed=0)
    high = 1.0 if action == "shade" else env.venv.spec.max_bid
    assert float(env.full_action_spec["buyer", "action"].space.high.max()) == high


def test_batched_env_steps_the_vector_env():
    """Same seed and actions: the vector env's observations, rewards and infos;
    the last observation of an episode, then the next episode's first."""
    from training.torchrl_env import MarketTorchRLEnv

    kw = options("k_double", action="shade", rounds=2, history=0)
    env = MarketTorchRLEnv(5, **kw)
    ref = attn_env.vector_env(5, **kw)
    env.set_seed(7)
    td = env.reset()
    obs, info = ref.reset(seed=7)
    rng = np.random.default_rng(0)
    for t in range(5):
        cols = env.groups
        for g, c in cols.items():
            np.testing.assert_array_equal(td[g, "observation"].numpy(), obs[:, c])
            np.testing.assert_allclose(td[g, "info", "value"], info["value"][:, c])
        actions = rng.uniform(0, 1, (5, 5, 1)).astype(np.float32)
        for g, c in cols.items():
            td[g, "action"] = torch.as_tensor(actions[:, c])
        out = env.step(td)["next"]
        obs, rew, _, _, info = ref.step(actions)
        ended = t % 2 == 1
        assert out["done"].all() == ended and not (out["done"].any() and not ended)
        seen = info["final_obs"] if ended else obs
        for g, c in cols.items():
            np.testing.assert_array_equal(out[g, "observation"].numpy(), seen[:, c])
            np.testing.assert_allclose(out[g, "reward"][..., 0], rew[:, c], rtol=1e-6)
            np.testing.assert_allclose(out[g, "info", "bid"], info["bid"][:, c])
            assert out[g, "done"].all() == ended
        td = env.reset(out.clone()) if ended else out.clone()
        if ended:
            info = {"value": ref.core.values()}


def test_batched_env_group_map_all_and_bad_group_map():
    from training.torchrl_env import MarketTorchRLEnv

    env = MarketTorchRLEnv(3, group_map="all", **options("mcafee"))
    assert list(env.group_map) == ["agents"] and len(env.group_map["agents"]) == 5
    check_env_specs(env, seed=0)
    with pytest.raises(ValueError, match=r"group_map must be one of role, all.*'x'"):
        MarketTorchRLEnv(3, group_map="x")


def test_example_ppo_learns_on_the_batched_env():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        out = _example().main(total_frames=8192, seed=0, num_envs=32)
    assert out["pipeline"] == "torchrl_batched" and out["agent_steps"] == 16384
    assert out["bne_l2_end"] < out["bne_l2_start"] - 0.02, out
