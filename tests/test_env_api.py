"""PettingZoo API and seeding conformance of the attention market, every mechanism."""

from __future__ import annotations

import numpy as np
import pytest
from pettingzoo.test import api_test, parallel_api_test, parallel_seed_test, seed_test

from attn_env import env, mechanisms, parallel_env, raw_env
from tests.helpers import nan_equal


def options(name: str) -> dict:
    """A small market of each family, several rounds, with history and a budget."""
    kw = {"mechanism": name, "n_buyers": 3, "rounds": 3, "history": 2, "budget": 1.5}
    fam = mechanisms.family(name)
    if fam == "two_sided":
        kw |= {"n_sellers": 2, "redraw": "episode" if name == "cda" else "round"}
    else:
        kw["n_slots"] = 1 if name == "second_price" else 2
    return kw


NAMES = mechanisms.names()


@pytest.mark.parametrize("name", NAMES)
def test_parallel_api(name):
    parallel_api_test(parallel_env(**options(name)), num_cycles=30)


@pytest.mark.parametrize("name", NAMES)
def test_aec_api(name):
    api_test(env(**options(name)), num_cycles=30)


@pytest.fixture
def nan_aware_seed_test(monkeypatch):
    """PettingZoo's seed tests compare infos with ``==``, under which the NaN of an
    undefined info number (the env's contract: NaN, never None) differs from
    itself; compare NaN as equal, everything else as PettingZoo does."""
    import sys

    st = sys.modules["pettingzoo.test.seed_test"]  # the package shadows the module
    monkeypatch.setattr(st, "data_equivalence", nan_equal)


@pytest.mark.parametrize("name", NAMES)
def test_parallel_seed(name, nan_aware_seed_test):
    parallel_seed_test(lambda: parallel_env(**options(name)), num_cycles=30)


@pytest.mark.parametrize("name", NAMES)
def test_aec_seed(name, nan_aware_seed_test):
    seed_test(lambda: env(**options(name)), num_cycles=30)


@pytest.mark.parametrize("name", NAMES)
def test_agents_and_spaces(name):
    e = parallel_env(**options(name))
    n_sellers = 2 if mechanisms.family(name) == "two_sided" else 0
    assert e.possible_agents == [f"buyer_{i}" for i in range(3)] + [
        f"seller_{j}" for j in range(n_sellers)
    ]
    obs_space = e.observation_space("buyer_0")
    act_space = e.action_space("buyer_0")
    assert obs_space.shape == (8 + 2,) and obs_space.dtype == np.float32
    assert act_space.shape == (1,) and act_space.dtype == np.float32
    assert np.isfinite(obs_space.high).all() and np.isfinite(act_space.high).all()
    for a in e.possible_agents:  # one shared space object (parameter sharing)
        assert e.observation_space(a) is obs_space
        assert e.action_space(a) is act_space
    obs, _ = e.reset(seed=1)
    for a, o in obs.items():
        assert obs_space.contains(o)
        assert o[3] == (1.0 if a.startswith("seller") else 0.0)  # role flag


def test_default_two_sided_sellers_equal_buyers():
    e = parallel_env(mechanism="k_double", n_buyers=4)
    assert e.possible_agents[-1] == "seller_3" and len(e.possible_agents) == 8


def test_raw_env_and_metadata():
    r = raw_env(mechanism="gsp", n_buyers=2, n_slots=2)
    assert r.metadata["name"] == "attention_market_v1"
    assert set(r.metadata["render_modes"]) == {"ansi", "human", "rgb_array"}
    r.reset(seed=0)
    assert r.agent_selection == "buyer_0"


def test_render_ansi_table():
    e = parallel_env(mechanism="k_double", n_buyers=2, render_mode="ansi")
    obs, _ = e.reset(seed=3)
    e.step({a: o[:1] for a, o in obs.items()})
    text = e.render()
    lines = text.splitlines()
    assert lines[0].startswith("k_double  round 1/1")
    assert "bid" in lines[1] and "payment" in lines[1]
    assert [ln.split()[0] for ln in lines[2:]] == e.possible_agents


@pytest.mark.parametrize("name", ["gsp", "cda"])
def test_state(name):
    from pettingzoo.test import state_test

    state_test(env(**options(name)), parallel_env(**options(name)), num_cycles=20)
    p = parallel_env(**options(name))
    obs, _ = p.reset(seed=0)
    np.testing.assert_array_equal(
        p.state(), np.concatenate([obs[a] for a in p.possible_agents])
    )


def test_supersuit_parameter_sharing_pipeline_into_sb3():
    # Shared spaces: SuperSuit's standard pipeline needs no padding wrappers.
    ss = pytest.importorskip("supersuit")
    from stable_baselines3 import PPO

    from training.sb3 import set_run_logger

    e = parallel_env(mechanism="k_double", n_buyers=2, rounds=3)
    ve = ss.pettingzoo_env_to_vec_env_v1(e)
    ve = ss.concat_vec_envs_v1(ve, 2, num_cpus=0, base_class="stable_baselines3")
    assert ve.num_envs == 8 and ve.reset().shape == (8, 8)
    model = PPO("MlpPolicy", ve, n_steps=8, batch_size=32, n_epochs=1, device="cpu")
    set_run_logger(model, None)  # no SB3-<time> folder in the system temp
    model.learn(64)
    assert model.num_timesteps >= 64


def test_render_human_prints(capsys):
    e = parallel_env(mechanism="first_price", n_buyers=2, render_mode="human")
    obs, _ = e.reset(seed=0)
    e.step({a: o[:1] for a, o in obs.items()})
    out = capsys.readouterr().out
    assert "first_price  round 1/1" in out and "buyer_1" in out


def test_building_and_stepping_every_view_loads_neither_torch_nor_transformers():
    import subprocess
    import sys

    code = """
import sys
import numpy as np
import gymnasium
import agents
import attn_env
from attn_env.config import EnvConfig, ExperimentConfig, make_config
from runner.simulate import play

heavy = ("torch", "transformers")
assert not any(m in sys.modules for m in heavy), "import attn_env"
for name in attn_env.mechanisms.names():
    p = attn_env.parallel_env(mechanism=name, n_buyers=2)
    obs, _ = p.reset(seed=0)
    p.step({a: o[:1] for a, o in obs.items()})
    a = attn_env.env(mechanism=name, n_buyers=2)
    a.reset(seed=0)
    a.step(a.observe(a.agent_selection)[:1])
    attn_env.raw_env(mechanism=name).reset(seed=0)
    v = attn_env.vector_env(4, mechanism=name, n_buyers=2)
    obs, _ = v.reset(seed=0)
    v.step(obs[..., :1])
    cfg = make_config(mechanism=name)
    s = attn_env.single_agent_env(config=cfg, others=agents.opponents("zi_c", cfg))
    obs, _ = s.reset(seed=0)
    s.step(obs[:1])
    g = gymnasium.make("AttentionMarket-v0", mechanism=name)
    g.reset(seed=0)
    play(ExperimentConfig(env=EnvConfig(mechanism=name)), episodes=2, progress=False)
print(",".join(m for m in heavy if m in sys.modules))
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "", f"loaded {res.stdout.strip()}"


def test_envs_are_collected_after_del():
    """Spaces are plain attributes: asking for them keeps no env alive."""
    import gc
    import weakref

    refs = []
    for _ in range(20):
        e = parallel_env(mechanism="first_price", n_buyers=2)
        for a in e.possible_agents:
            assert e.observation_space(a) is e.observation_space(a)
            assert e.action_space(a) is e.action_space(a)
        refs.append(weakref.ref(e))
        del e
    gc.collect()
    assert sum(r() is not None for r in refs) == 0
