"""The env contract generic RL libraries rely on (issue 10 items 1, 2).

Infos: the same flat keys with the same types at reset and every step, for every
mechanism and form, never ``None``. ``rgb_array`` renders an image. The
``action: shade`` option passes PettingZoo's and gymnasium's checkers and trains
through SB3's ``make_vec_env`` and PettingZoo's SuperSuit recipe.
"""

from __future__ import annotations

import warnings

import gymnasium
import numpy as np
import pytest
from pettingzoo.test import api_test, parallel_api_test

import attn_env
from attn_env import mechanisms
from attn_env.actions import shade_to_price
from attn_env.market_env import INFO_KEYS
from attn_env.single_agent import SingleAgentMarketEnv

NAMES = mechanisms.names()


def options(name: str, **kw) -> dict:
    out = {"mechanism": name, "n_buyers": 2, "rounds": 3}
    if mechanisms.family(name) == "two_sided":
        out["n_sellers"] = 2
    return out | kw


def _types(info: dict) -> dict:
    return {k: type(v) for k, v in info.items()}


def _check_info(info: dict) -> None:
    assert tuple(info) == INFO_KEYS
    assert None not in info.values()
    for k, v in info.items():
        assert type(v) is (bool if k in ("active", "traded") else float), k


@pytest.mark.parametrize("name", NAMES)
def test_parallel_infos_same_keys_and_types(name):
    e = attn_env.parallel_env(**options(name))
    _, infos = e.reset(seed=0)
    want = _types(infos["buyer_0"])
    for _ in range(2):
        while e.agents:
            for info in infos.values():
                _check_info(info)
                assert _types(info) == want
            acts = {a: e.action_space(a).sample() for a in e.agents}
            _, _, _, _, infos = e.step(acts)
        for info in infos.values():
            _check_info(info)
        _, infos = e.reset()
    # the last step's episode metrics are the episode's
    assert np.isfinite(info["episode_welfare"])


@pytest.mark.parametrize("name", NAMES)
def test_aec_infos_same_keys_and_types(name):
    e = attn_env.env(**options(name, action="shade"))
    e.reset(seed=1)
    for agent in e.agent_iter(max_iter=40):
        for info in e.infos.values():
            _check_info(info)
        _, _, term, trunc, _ = e.last()
        e.step(None if term or trunc else e.action_space(agent).sample())


@pytest.mark.parametrize("name", NAMES)
def test_gymnasium_view_infos_same_keys_and_types(name):
    e = SingleAgentMarketEnv(**options(name, action="shade"))
    _, info = e.reset(seed=2)
    _check_info(info)
    for _ in range(7):
        _, _, term, _, info = e.step(e.action_space.sample())
        _check_info(info)
        if term:
            _, info = e.reset()
            _check_info(info)


def _is_image(img) -> bool:
    return (
        isinstance(img, np.ndarray)
        and img.dtype == np.uint8
        and img.ndim == 3
        and img.shape[2] == 3
        and img.shape[0] > 50
        and img.std() > 0
    )


def test_rgb_array_in_every_form():
    kw = {"mechanism": "k_double", "n_buyers": 2, "render_mode": "rgb_array"}
    p = attn_env.parallel_env(**kw)
    p.reset(seed=0)
    assert _is_image(p.render())  # before the first round: values only
    p.step(dict.fromkeys(p.agents, 0.5))
    assert _is_image(p.render())
    a = attn_env.env(**kw)
    a.reset(seed=0)
    assert _is_image(a.render())
    v = attn_env.vector_env(3, **kw)
    v.reset(seed=0)
    v.step(np.full((3, v.n_agents), 0.5))
    assert _is_image(v.render())
    g = SingleAgentMarketEnv(**kw)
    g.reset(seed=0)
    g.step(np.array([0.4]))
    assert _is_image(g.render())


def test_shade_maps_to_the_role_ranges_in_every_form():
    kw = {"mechanism": "k_double", "n_buyers": 2, "n_sellers": 2, "action": "shade"}
    p = attn_env.parallel_env(**kw)
    assert p.action_space("buyer_0").high[0] == 1.0
    _, infos = p.reset(seed=3)
    s = {"buyer_0": 0.5, "buyer_1": 1.0, "seller_0": 0.0, "seller_1": 1.7}
    _, _, _, _, out = p.step(s)
    v = {a: infos[a]["value"] for a in s}
    assert out["buyer_0"]["bid"] == pytest.approx(0.5 * v["buyer_0"])
    assert out["buyer_1"]["bid"] == pytest.approx(v["buyer_1"])
    assert out["seller_0"]["bid"] == pytest.approx(1.0)  # cost_high
    assert out["seller_1"]["bid"] == pytest.approx(v["seller_1"])  # s clipped to 1
    # the vector env and the gymnasium view map the same way
    vec = attn_env.vector_env(1, **kw, seed=3)
    vec.reset(seed=3)
    _, _, _, _, iv = vec.step(np.array([[0.5, 1.0, 0.0, 1.7]]))
    np.testing.assert_allclose(iv["bid"][0], [out[a]["bid"] for a in s])
    g = SingleAgentMarketEnv(**kw)
    _, gi = g.reset(seed=3)
    _, _, _, _, go = g.step(np.array([0.25]))
    assert go["bid"] == pytest.approx(0.25 * gi["value"])
    # the trainer's shade_clip map is the same formula
    from training.actions import ActionMap

    m = ActionMap("shade_clip", "seller", 0.2, 0.9)
    obs = np.zeros((1, 8), np.float32)
    obs[0, 0] = 0.5
    assert m.to_bid(np.array([0.3]), obs)[0, 0] == pytest.approx(
        shade_to_price(0.3, 0.5, 0.2, 0.9, seller=True)
    )


@pytest.mark.parametrize("name", ["first_price", "k_double", "cda"])
def test_pettingzoo_api_tests_with_shade(name):
    parallel_api_test(attn_env.parallel_env(**options(name, action="shade")), 20)
    api_test(attn_env.env(**options(name, action="shade")), num_cycles=20)


def test_gymnasium_check_env_with_shade():
    from gymnasium.utils.env_checker import check_env

    env = gymnasium.make("AttentionMarket-v0", action="shade", render_mode="rgb_array")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_env(env.unwrapped, skip_render_check=False)


def test_sb3_make_vec_env_and_ppo():
    torch = pytest.importorskip("torch")
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    torch.set_num_threads(1)
    venv = make_vec_env(
        "AttentionMarket-v0", n_envs=2, env_kwargs={"action": "shade"}, seed=0
    )
    _quiet(PPO("MlpPolicy", venv, n_steps=64, batch_size=64, seed=0)).learn(256)
    assert venv.render_mode in (None, "rgb_array")


def _quiet(model):
    """``model`` with a logger that writes nowhere: without one, SB3's ``learn``
    makes an empty ``SB3-<time>`` folder in the system's temp folder."""
    from training.sb3 import set_run_logger

    set_run_logger(model, None)
    return model


def test_supersuit_tutorial_pipeline_and_seeded_wrapper():
    ss = pytest.importorskip("supersuit")
    torch = pytest.importorskip("torch")
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import VecMonitor

    from training.supersuit_vec import sb3_vec_env

    torch.set_num_threads(1)
    kw = {"mechanism": "first_price", "n_buyers": 2, "action": "shade"}
    # exactly PettingZoo's SB3 tutorial (no seed: SuperSuit's wrapper has none)
    env = ss.pettingzoo_env_to_vec_env_v1(attn_env.parallel_env(**kw))
    env = ss.concat_vec_envs_v1(env, 2, num_cpus=1, base_class="stable_baselines3")
    _quiet(PPO("MlpPolicy", VecMonitor(env), n_steps=64, batch_size=64)).learn(256)
    # the seedable helper: PPO(seed=...) works and learning moves the shade
    # from its untrained 0 (the clipped Gaussian mean) toward the BNE s = 1/2
    venv = VecMonitor(sb3_vec_env(attn_env.parallel_env(**kw), num_vec_envs=16))
    model = PPO(
        "MlpPolicy",
        venv,
        seed=0,
        n_steps=64,
        batch_size=256,
        gamma=0.0,
        learning_rate=3e-3,
        n_epochs=5,
    )
    obs = np.zeros((100, 8), np.float32)
    obs[:, 0] = np.linspace(0.05, 1.0, 100)

    def mean_shade() -> float:
        a, _ = model.predict(obs, deterministic=True)
        return float(np.clip(a, 0.0, 1.0).mean())

    before = mean_shade()
    _quiet(model).learn(20_480)
    after = mean_shade()
    assert after > before + 0.05 and after < 0.9
    assert len(model.ep_info_buffer) > 0  # VecMonitor logs ep_rew_mean


def test_the_seeded_supersuit_env_answers_render_mode_without_a_warning():
    """SB3 (and each wrapper, such as ``VecMonitor``) asks for ``render_mode``;
    SuperSuit cannot reach it and SB3 warned on every build."""
    import warnings

    pytest.importorskip("supersuit")
    from stable_baselines3.common.vec_env import VecMonitor

    from training.supersuit_vec import sb3_vec_env

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        venv = VecMonitor(sb3_vec_env(attn_env.parallel_env(n_buyers=2), 3))
    assert venv.render_mode is None
    assert venv.get_attr("render_mode") == [None] * venv.num_envs
    assert venv.get_attr("render_mode", [0, 2]) == [None, None]
