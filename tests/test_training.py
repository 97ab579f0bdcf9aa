"""Training: action maps, analytic BNE, evaluation math, the SB3 adapter, smoke runs.

The smoke runs train for a few thousand agent-steps (seconds): they check
shapes, checkpoint round trips, resume, determinism and crash safety, not
learning quality (that is ``benchmarks/learning.py``).
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from attn_env.config import AgentSpec, EnvConfig, ExperimentConfig, TrainConfig
from attn_env.equilibria import (
    CS_EFFICIENCY,
    bne_strategy,
    chatterjee_samuelson,
    first_price_bne,
)
from attn_env.fileio import atomic_save
from attn_env.observation import ACTIVE, OBS_BASE_DIM, ROLE, VALUE
from attn_env.strategy_metrics import bne_l2, utility_loss, value_grid
from training.actions import ActionMap, action_map_for
from training.checkpoint import MANIFEST, read_manifest, write_checkpoint

pytest.importorskip("stable_baselines3")

TINY = {
    "total_timesteps": 1024,
    "num_envs": 8,
    "n_steps": 32,
    "batch_size": 128,
    "net_arch": [16],
    "alternate_every": 512,
    "checkpoint_every": 512,
    "device": "cpu",
    "algo_params": {"n_epochs": 2},
}


pytestmark = pytest.mark.usefixtures("restore_torch_threads")


def fpsb(n: int = 2, seed: int = 0, **train) -> ExperimentConfig:
    return ExperimentConfig(
        seed=seed,
        env=EnvConfig(mechanism="first_price", n_buyers=n, action="shade"),
        agents={"buyer": AgentSpec(kind="learn")},
        episodes=200,
        train=TrainConfig(**{**TINY, **train}),
    )


def bilateral(**train) -> ExperimentConfig:
    return ExperimentConfig(
        seed=1,
        env=EnvConfig(mechanism="k_double", n_buyers=1, n_sellers=1, action="shade"),
        agents={"buyer": AgentSpec(kind="learn"), "seller": AgentSpec(kind="learn")},
        episodes=200,
        train=TrainConfig(**{**TINY, **train}),
    )


def grid_obs(values, role: float = 0.0) -> np.ndarray:
    obs = np.zeros((len(values), OBS_BASE_DIM), dtype=np.float32)
    obs[:, VALUE] = values
    obs[:, ROLE] = role
    obs[:, ACTIVE] = 1.0
    return obs


# -- action maps -------------------------------------------------------------------


def test_shade_clip_map_buyer_and_seller():
    v = np.array([0.2, 0.5, 1.0])
    buyer = ActionMap("shade_clip", "buyer", 0.0, 1.0)
    # bid = s * value on [0, 1]
    np.testing.assert_allclose(
        buyer.to_bid([[0.5], [0.5], [1.0]], grid_obs(v))[:, 0], [0.1, 0.25, 1.0]
    )
    seller = ActionMap("shade_clip", "seller", 0.0, 1.0)
    # ask = 1 - s (1 - cost): s = 1 truthful, s = 0 asks the top
    np.testing.assert_allclose(
        seller.to_bid([[1.0], [0.0], [0.5]], grid_obs(v, 1.0))[:, 0], [0.2, 1.0, 1.0]
    )
    # raw actions outside [0, 1] are clipped as SB3 clips them
    np.testing.assert_allclose(
        buyer.to_bid([[-3.0], [7.0], [0.5]], grid_obs(v))[:, 0], [0.0, 0.5, 0.5]
    )


def test_shade_map_is_a_sigmoid_starting_near_truthful():
    v = np.array([0.2, 0.5, 1.0])
    amap = ActionMap("shade", "buyer", 0.0, 1.0)
    s = amap.shade(np.array([0.0, -8.0, 8.0]))
    assert s[0] == pytest.approx(0.9)  # an untrained policy (raw 0) bids 0.9 v
    assert s[1] < 0.005 and s[2] > 0.9999
    np.testing.assert_allclose(
        amap.to_bid([[0.0]] * 3, grid_obs(v))[:, 0], 0.9 * v, rtol=1e-6
    )
    assert amap.bounds == (-8.0, 8.0)


@pytest.mark.parametrize("mode", ["shade", "shade_clip"])
def test_shade_map_inverse_round_trip(mode):
    rng = np.random.default_rng(0)
    for role in ("buyer", "seller"):
        amap = ActionMap(mode, role, 0.2, 1.4)
        v = rng.uniform(0.25, 1.35, 50)
        raw = amap.from_bid(
            amap.to_bid(rng.uniform(-1, 1, (50, 1)), grid_obs(v))[:, 0], v
        )
        bid = amap.to_bid(raw[:, None], grid_obs(v))[:, 0]
        np.testing.assert_allclose(amap.from_bid(bid, v), raw, atol=1e-4)
        # the BNE of first price, n = 3, on U[0.2, 1.4] is a constant s = 2/3
        star = 0.2 + 2 / 3 * (v - 0.2)
        if role == "buyer":
            np.testing.assert_allclose(
                amap.shade(amap.from_bid(star, v)), 2 / 3, atol=1e-6
            )


def test_absolute_map_and_bad_names():
    amap = ActionMap("absolute", "buyer", 0.0, 2.0)
    assert amap.bounds == (0.0, 2.0)
    np.testing.assert_allclose(
        amap.to_bid([[3.0], [0.7]], grid_obs([0.1, 0.1]))[:, 0], [2.0, 0.7]
    )
    with pytest.raises(ValueError, match="unknown action map 'bogus'"):
        ActionMap("bogus", "buyer", 0.0, 1.0)
    with pytest.raises(ValueError, match="low < high"):
        ActionMap("shade", "buyer", 1.0, 1.0)


# -- analytic equilibria ----------------------------------------------------------


def test_first_price_bne_closed_forms():
    v = np.linspace(0.01, 1, 7)
    np.testing.assert_allclose(first_price_bne(2)(v), v / 2)
    np.testing.assert_allclose(first_price_bne(5)(v), 0.8 * v)
    # n = 3, K = 2: E[min of 2 others | min < v] = (v - 2v^2/3) / (2 - v), by hand
    np.testing.assert_allclose(
        first_price_bne(3, 2)(v), (v - 2 * v**2 / 3) / (2 - v), rtol=1e-9
    )
    # U[1, 3]: affine image of U[0, 1]
    np.testing.assert_allclose(
        first_price_bne(2, 1, 1.0, 3.0)(np.array([1.0, 3.0])), [1.0, 2.0]
    )


def test_first_price_bne_against_monte_carlo():
    """K = 2: E[Y | Y < v], Y the 2nd highest of the n-1 others (brute force)."""
    rng = np.random.default_rng(3)
    others = np.sort(rng.uniform(size=(400_000, 3)), axis=1)[:, -2]  # n = 4, K = 2
    for v in (0.3, 0.7, 0.95):
        mc = others[others < v].mean()
        assert abs(first_price_bne(4, 2)(np.array([v]))[0] - mc) < 3e-3


def test_chatterjee_samuelson_k_half():
    v = np.array([0.0, 0.25, 1.0])
    np.testing.assert_allclose(
        chatterjee_samuelson(0.5, "buyer")(v), 2 * v / 3 + 1 / 12
    )
    np.testing.assert_allclose(
        chatterjee_samuelson(0.5, "seller")(v), 2 * v / 3 + 1 / 4
    )
    # trade iff b(v) >= s(c)  <=>  v >= c + 1/4
    assert chatterjee_samuelson(0.5, "buyer")(np.array([0.5]))[0] == pytest.approx(
        chatterjee_samuelson(0.5, "seller")(np.array([0.25]))[0]
    )
    assert CS_EFFICIENCY == pytest.approx(27 / 32)


def test_bne_strategy_dispatch():
    assert (
        bne_strategy(EnvConfig(mechanism="second_price", n_buyers=3), "buyer")(
            np.array([0.3])
        )[0]
        == 0.3
    )
    assert (
        bne_strategy(EnvConfig(mechanism="gsp", n_buyers=3, n_slots=2), "buyer") is None
    )
    # with a reserve r (one slot): b(v) = v/2 + r^2 / (2v) above r (Krishna 2.5)
    reserve = EnvConfig(mechanism="first_price", mechanism_params={"reserve": 0.2})
    assert bne_strategy(reserve, "buyer")(np.array([0.5]))[0] == pytest.approx(0.29)
    k = EnvConfig(mechanism="k_double", n_buyers=1, n_sellers=1)
    assert bne_strategy(k, "seller")(np.array([0.0]))[0] == pytest.approx(0.25)
    assert (
        bne_strategy(dataclasses.replace(k, n_buyers=2, n_sellers=2), "buyer") is None
    )


# -- evaluation math ---------------------------------------------------------------


def test_bne_l2_truthful_in_first_price_is_closed_form():
    env = EnvConfig(mechanism="first_price", n_buyers=2)
    grid = value_grid(env, "buyer", 1000)
    star = bne_strategy(env, "buyer")
    assert bne_l2(star, star, grid) == 0.0
    # truthful vs v/2: sqrt(E[(v/2)^2]) = sqrt(1/12) on U[0, 1]
    assert bne_l2(lambda v: v, star, grid) == pytest.approx(np.sqrt(1 / 12), abs=1e-6)


def test_utility_loss_of_bne_is_small_and_of_truthful_is_one():
    env = EnvConfig(mechanism="first_price", n_buyers=2)
    star = bne_strategy(env, "buyer")
    res = utility_loss(env, [star, star], 0, np.random.default_rng(0), samples=4000)
    assert 0.0 <= res["utility_loss"] < 0.01
    assert res["u_learned"] == pytest.approx(
        1 / 6, rel=0.03
    )  # E[u] at the BNE: v^2/2 -> 1/6
    # truthful bidding in first price earns nothing: the loss is total
    res = utility_loss(
        env, [lambda v: v, star], 0, np.random.default_rng(0), samples=2000
    )
    assert res["utility_loss"] == pytest.approx(1.0)


def test_utility_loss_truthful_second_price_is_zero():
    """Truthful is dominant: no grid bid beats it on any opponent profile."""
    env = EnvConfig(mechanism="second_price", n_buyers=3)
    res = utility_loss(
        env, [lambda v: v] * 3, 1, np.random.default_rng(1), samples=2000
    )
    assert res["utility_loss"] == pytest.approx(0.0, abs=1e-9)


def test_utility_loss_bilateral_cs_equilibrium():
    env = EnvConfig(mechanism="k_double", n_buyers=1, n_sellers=1)
    b, s = bne_strategy(env, "buyer"), bne_strategy(env, "seller")
    for agent in (0, 1):
        res = utility_loss(env, [b, s], agent, np.random.default_rng(2), samples=4000)
        assert res["utility_loss"] < 0.02


# -- checkpoint atomicity -------------------------------------------------------------


def test_atomic_save_keeps_old_file_on_crash(tmp_path):
    target = tmp_path / "model.zip"
    atomic_save(target, lambda p: p.write_bytes(b"good"))

    def crash(p):
        p.write_bytes(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_save(target, crash)
    assert target.read_bytes() == b"good"
    assert [p.name for p in tmp_path.iterdir()] == ["model.zip"]  # no temp left
    plain = tmp_path / "plain"
    plain.write_bytes(b"")
    assert target.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777


def test_write_checkpoint_crash_leaves_last_good(tmp_path):
    write_checkpoint(
        tmp_path, 10, {"buyer.safetensors": lambda p: p.write_bytes(b"v10")}, {"x": 1}
    )
    first = read_manifest(tmp_path)

    def crash(p):
        p.write_bytes(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_checkpoint(tmp_path, 20, {"buyer.safetensors": crash}, {"x": 2})
    assert read_manifest(tmp_path) == first
    weights = tmp_path / first["checkpoint"] / "buyer.safetensors"
    assert weights.read_bytes() == b"v10"
    # later checkpoints prune older ones but keep the newest two
    for t in (30, 40, 50):
        write_checkpoint(
            tmp_path,
            t,
            {"buyer.safetensors": lambda p, t=t: p.write_bytes(b"%d" % t)},
            {},
        )
    dirs = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert dirs == ["000000000040-0", "000000000050-0"]
    plain = tmp_path / "plain"
    plain.mkdir()
    mode = (tmp_path / "checkpoints" / dirs[-1]).stat().st_mode & 0o777
    assert mode == plain.stat().st_mode & 0o777


# -- the SB3 adapter ------------------------------------------------------------------


def test_market_vec_env_shapes_and_seat_mapping():
    import attn_env
    from attn_env.players import Seats
    from training.vec_adapter import MarketVecEnv

    # the learner's seats act in the env's units (s); the fixed seat 1 bids
    venv = attn_env.vector_env(
        4, mechanism="first_price", n_buyers=3, action="shade", fixed_agents=["buyer_1"]
    )

    class Zero:
        def reset(self, n, rng): ...
        def act(self, obs, rng):
            return np.zeros((len(obs), 1), np.float32)

        def observe(self, fb):
            self.fb = fb

    zero = Zero()
    seats = np.array([[0, 2]] * 4)
    amap = ActionMap("shade", "buyer", 0.0, 1.0)
    env = MarketVecEnv(venv, seats, amap, Seats([None, zero, None], 3), seed=3)
    assert env.num_envs == 8
    obs = env.reset()
    assert obs.shape == (8, OBS_BASE_DIM) and obs.dtype == np.float32
    assert env.observation_space.contains(obs[0])
    # full truthfulness from seats 0 and 2; seat 1 bids 0 and never wins
    obs2, rew, done, infos = env.step(np.full((8, 1), 8.0, np.float32))
    assert rew.shape == (8,) and rew.dtype == np.float32 and done.shape == (8,)
    assert done.all() and all("terminal_observation" in i for i in infos)
    np.testing.assert_allclose(env.last_actions[:, 0], 1.0, rtol=1e-3)
    assert (rew >= 0).all() and (rew < 1e-3).all()  # winners pay (almost) their value
    assert (zero.fb["own_alloc"] == 0).all()
    # shade 1/2 -> the higher of seats 0 and 2 wins and keeps half its value
    half = amap.from_bid(np.full(8, 0.5), np.ones(8))[:, None]
    _, rew, _, _ = env.step(half.astype(np.float32))
    v = obs2[:, VALUE].reshape(4, 2)
    win = v.max(axis=1)
    np.testing.assert_allclose(rew.reshape(4, 2).max(axis=1), win / 2, rtol=1e-5)
    # seeding: same seed -> same first observation
    env.seed(7)
    a = env.reset()
    env.seed(7)
    np.testing.assert_array_equal(a, env.reset())


def test_market_vec_env_refuses_next_step_autoreset():
    from gymnasium.vector import AutoresetMode

    import attn_env
    from training.vec_adapter import MarketVecEnv

    venv = attn_env.vector_env(2, mechanism="first_price", n_buyers=2)
    venv.metadata = {**venv.metadata, "autoreset_mode": AutoresetMode.NEXT_STEP}
    with pytest.raises(ValueError, match=r"same step.*NEXT_STEP"):
        MarketVecEnv(venv, np.array([[0]] * 2), ActionMap("shade", "buyer", 0, 1))


def test_adapter_refuses_an_env_in_other_action_units():
    import attn_env
    from training.vec_adapter import MarketVecEnv

    venv = attn_env.vector_env(2, mechanism="first_price", n_buyers=2)  # absolute
    with pytest.raises(ValueError, match=r"action is 'absolute'.*action='shade'"):
        MarketVecEnv(venv, np.array([[0]] * 2), ActionMap("shade", "buyer", 0, 1))


def test_ppo_learns_on_adapter():
    # First price, n = 2: an untrained shade policy bids 0.9 x value; PPO on the
    # adapter must move it to the BNE's 0.5 (30k agent-steps, about 1 s).
    from stable_baselines3 import PPO

    import attn_env
    from training.policy import RolePolicy
    from training.sb3 import set_run_logger
    from training.vec_adapter import MarketVecEnv

    venv = attn_env.vector_env(64, mechanism="first_price", n_buyers=2, action="shade")
    amap = ActionMap("shade", "buyer", 0.0, 1.0)
    env = MarketVecEnv(venv, np.array([[0, 1]] * 64), amap, seed=0)
    model = PPO(
        "MlpPolicy",
        env,
        n_steps=16,
        batch_size=256,
        n_epochs=4,
        gamma=0.0,
        learning_rate=1e-3,
        policy_kwargs={"net_arch": [32]},
        seed=0,
        device="cpu",
    )
    obs = env.reset()

    def mean_shade() -> float:
        bids = RolePolicy(model.policy, amap).act(obs)[:, 0]
        return float(np.mean(bids / np.maximum(obs[:, VALUE], 1e-6)))

    assert mean_shade() == pytest.approx(0.9, abs=0.02)
    set_run_logger(model, None)  # else SB3 makes a folder in the system's temp
    model.learn(30_000)
    assert 0.4 < mean_shade() < 0.65
    assert len(model.ep_info_buffer) > 0  # episode infos reach SB3's logger


# -- smoke training runs ----------------------------------------------------------


def test_train_checkpoint_round_trip(tmp_path):
    from training import load_policy
    from training.sb3 import Trainer

    trainer = Trainer(fpsb(), tmp_path / "run", progress=False)
    manifest = trainer.run()
    assert manifest["timesteps"] >= 1024 and manifest["finished"]
    assert (tmp_path / "run" / "config.yaml").is_file()
    assert any((tmp_path / "run" / "tb").iterdir())
    pi = load_policy(tmp_path / "run")
    v = np.linspace(0.0, 1.0, 33)
    obs = grid_obs(v)
    bids = pi.act(obs)
    assert bids.shape == (33, 1) and bids.dtype == np.float32
    assert (bids[:, 0] >= 0).all() and (
        bids[:, 0] <= v + 1e-6
    ).all()  # shading: 0 <= bid <= v
    learner = trainer.learners[0]
    raw, _ = learner.model.predict(obs, deterministic=True)
    np.testing.assert_allclose(bids, learner.action_map.to_bid(raw, obs), rtol=1e-6)
    assert bids[-1, 0] > 0.5  # starts near truthful (s = 0.9), not at 0


def test_same_seed_same_bids_other_seed_other_bids(tmp_path):
    from training import load_policy, train

    obs = grid_obs(np.linspace(0, 1, 21))
    bids, weights = [], []
    for i, seed in enumerate((5, 5, 6)):
        train(fpsb(seed=seed, total_timesteps=512), tmp_path / f"r{i}", progress=False)
        pi = load_policy(tmp_path / f"r{i}")
        bids.append(pi.act(obs))
        state = pi.by_role["buyer"].policy.state_dict()
        weights.append(np.concatenate([t.numpy().ravel() for t in state.values()]))
    np.testing.assert_array_equal(bids[0], bids[1])
    np.testing.assert_array_equal(weights[0], weights[1])
    assert not np.array_equal(weights[0], weights[2])
    assert not np.array_equal(bids[0], bids[2])


def test_resume_continues_step_count(tmp_path):
    from training import load_policy, train

    run = tmp_path / "run"
    first = train(fpsb(total_timesteps=512), run, progress=False)
    with pytest.raises(ValueError, match="already holds a trained run"):
        train(fpsb(total_timesteps=512), run, progress=False)
    second = train(fpsb(total_timesteps=1536), run, resume=True, progress=False)
    assert first["timesteps"] == 512
    assert second["timesteps"] == 1536
    assert second["learners"]["buyer"]["timesteps"] == 1536
    assert second["turns"] > first["turns"]
    assert load_policy(run).act(grid_obs([0.5])).shape == (1, 1)


def test_crash_during_checkpoint_keeps_last_good(tmp_path, monkeypatch):
    import training.sb3
    from training import load_policy
    from training.sb3 import Trainer

    trainer = Trainer(fpsb(total_timesteps=512), tmp_path / "run", progress=False)
    trainer.run()
    obs = grid_obs(np.linspace(0, 1, 11))
    good = load_policy(tmp_path / "run").act(obs)
    manifest = json.loads((tmp_path / "run" / MANIFEST).read_text())
    trainer.step()  # the in-memory model moves on

    def crash(path, *args, **kwargs):
        Path(path).write_bytes(b"truncated weights")
        raise KeyboardInterrupt

    monkeypatch.setattr(training.sb3, "save_tensors", crash)
    with pytest.raises(KeyboardInterrupt):
        trainer.save()
    assert json.loads((tmp_path / "run" / MANIFEST).read_text()) == manifest
    np.testing.assert_array_equal(load_policy(tmp_path / "run").act(obs), good)


def test_two_roles_learn_in_turn(tmp_path):
    from training import load_policy, train

    manifest = train(bilateral(), tmp_path / "run", progress=True)  # bar over turns
    learners = manifest["learners"]
    assert set(learners) == {"buyer", "seller"}
    assert learners["buyer"]["timesteps"] > 0 and learners["seller"]["timesteps"] > 0
    pi = load_policy(tmp_path / "run")
    obs = np.concatenate([grid_obs([0.5, 0.9]), grid_obs([0.2, 0.6], role=1.0)])
    acts = pi.act(obs)[:, 0]
    assert (acts[:2] <= [0.5, 0.9]).all()  # buyers bid at most their value
    assert (
        acts[2:] >= [0.2 - 1e-6, 0.6 - 1e-6]
    ).all()  # sellers ask at least their cost


def test_independent_learners_and_self_play(tmp_path):
    from training import load_policy, train

    none = train(fpsb(share="none"), tmp_path / "none", progress=False)
    assert set(none["learners"]) == {"buyer_0", "buyer_1"}
    pi = load_policy(tmp_path / "none")
    assert pi.for_agent("buyer_1") is not pi.for_agent("buyer_0")

    sp = train(fpsb(n=3, self_play_pool=2), tmp_path / "sp", progress=False)
    pool = sp["pool"]["buyer"]
    assert 1 <= len(pool) <= 2
    pool_dir = tmp_path / "sp" / "pool" / "buyer"
    files = sorted(p.name for p in pool_dir.glob("*.safetensors"))
    assert files == sorted(pool)


def test_sac_smoke(tmp_path):
    from training import load_policy, train

    cfg = fpsb(
        algo="sac",
        total_timesteps=256,
        batch_size=64,
        algo_params={"learning_starts": 64},
    )
    manifest = train(cfg, tmp_path / "sac", progress=False)
    assert manifest["algo"] == "sac" and manifest["timesteps"] >= 256
    assert load_policy(tmp_path / "sac").act(grid_obs([0.4])).shape == (1, 1)


def test_bad_train_configs(tmp_path):
    from training import train

    with pytest.raises(ValueError, match="no agent has kind: learn"):
        cfg = dataclasses.replace(fpsb(), agents={"buyer": AgentSpec(kind="truthful")})
        train(cfg, tmp_path / "a", progress=False)
    with pytest.raises(ValueError, match=r"train\.share must be one of"):
        train(fpsb(share="everyone"), tmp_path / "b", progress=False)
    with pytest.raises(FileNotFoundError, match=r"no manifest\.json"):
        train(fpsb(), tmp_path / "c", resume=True, progress=False)


def test_cli_train_and_evaluate_json(tmp_path, capsys):
    import argparse

    import yaml

    from attn_market.commands.training import register

    cfg = fpsb(total_timesteps=512).to_dict()
    path = tmp_path / "fpsb.yaml"
    path.write_text(yaml.safe_dump(cfg))
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["train", str(path), "--out", str(tmp_path / "run"), "--no-progress"]
    )
    assert args.func(args) == 0
    capsys.readouterr()
    plot = tmp_path / "bids.png"
    args = parser.parse_args(
        [
            "evaluate",
            str(path),
            "--policy",
            str(tmp_path / "run"),
            "--json",
            "--plot",
            str(plot),
            "--samples",
            "500",
        ]
    )
    assert args.func(args) == 0
    result = json.loads(capsys.readouterr().out)
    for key in (
        "bne_l2",
        "utility_loss",
        "efficiency",
        "revenue",
        "welfare",
        "mean_price",
        "mean_utility",
    ):
        assert key in result
    assert 0.0 <= result["bne_l2"] <= 1.0 and 0.0 <= result["utility_loss"] <= 1.0
    assert result["reference"] == "analytic"  # first price: the closed form
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_import_training_is_cheap():
    code = (
        "import sys, training; "
        "print(int('torch' in sys.modules or 'stable_baselines3' in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "0"


def test_action_map_for_uses_role_ranges():
    env = EnvConfig(
        mechanism="k_double", n_buyers=1, n_sellers=1, value_high=2.0, cost_low=0.5
    )
    assert action_map_for(env, "buyer", "shade").high == 2.0
    assert action_map_for(env, "seller", "absolute").bounds == (0.5, 1.0)


def test_resume_restores_self_play_pool(tmp_path):
    from training import train
    from training.sb3 import Trainer

    run = tmp_path / "sp"
    first = train(fpsb(n=3, self_play_pool=2, total_timesteps=512), run, progress=False)
    trainer = Trainer(
        fpsb(n=3, self_play_pool=2, total_timesteps=1024), run, resume=True
    )
    pool = trainer.learners[0].pool
    assert pool.files == first["pool"]["buyer"] and len(pool) == len(pool.files) >= 1
    second = trainer.run()
    assert second["timesteps"] == 1024 and len(second["pool"]["buyer"]) == 2


def test_evaluate_two_roles_reports_each_role(tmp_path):
    from runner.evaluate import evaluate
    from training import train

    cfg = bilateral(total_timesteps=512)
    train(cfg, tmp_path / "run", progress=False)
    res = evaluate(cfg, tmp_path / "run", episodes=200, samples=500)
    assert set(res["bne_l2_by_learner"]) == {"buyer", "seller"}
    assert set(res["utility_loss_by_learner"]) == {"buyer", "seller"}
    # shading never bids above value / asks below cost: 0.024 per role from CS
    # over the whole range, all of it where no CS ask (bid) can be met, so the
    # payoff-relevant floor is 0
    for floor in res["bne_l2_floor_by_learner"].values():
        assert floor == pytest.approx(0.0, abs=1e-9)
    assert res["bne_l2"] == max(res["bne_l2_by_learner"].values())
    assert res["bne_l2_all"] == max(res["bne_l2_all_by_learner"].values()) >= 0.024
    with pytest.raises(ValueError, match="sealed-bid"):
        utility_loss(EnvConfig(mechanism="assignment"), [], 0, np.random.default_rng(0))


def test_trainer_steps_the_env_in_its_own_action_units(tmp_path):
    # env.action: shade: the learner's env actions are s (its ActionMap squashes
    # the raw sample), the env turns them into bids with its own formula, and
    # the fixed truthful agent bids beside it
    from attn_env.actions import shade_to_price
    from training.sb3 import Trainer

    config = dataclasses.replace(
        fpsb(3),
        agents={"buyer_0": AgentSpec(kind="learn"), "buyer": AgentSpec("truthful")},
    )
    trainer = Trainer(config, tmp_path / "run", progress=False)
    env = trainer.learners[0].env
    assert env.venv.config.action == "shade" and env.venv.fixed_columns == (1, 2)
    env.seed(0)
    obs = env.reset()
    raw = np.array([[-1.0], [0.0], [2.0], [9.0]] * 2, np.float32)
    seen = {}
    step = env.venv.step
    env.venv.step = lambda a: seen.setdefault("out", step(a))
    env.step(raw)
    s = env.last_actions[:, 0]
    np.testing.assert_allclose(s, trainer.learners[0].action_map.shade(raw)[:, 0])
    bids = seen["out"][4]["bid"]
    np.testing.assert_allclose(
        bids[:, 0], shade_to_price(s, obs[:, VALUE], 0.0, 1.0, seller=False), rtol=1e-6
    )
    np.testing.assert_allclose(bids[:, 1:], seen["out"][4]["value"][:, 1:])


def test_absolute_learners_are_warned_about():
    from training.sb3 import plan_learners

    env = EnvConfig(mechanism="first_price", action="absolute")
    config = dataclasses.replace(fpsb(), env=env)
    with pytest.warns(
        UserWarning, match=r"env\.action is absolute.*env\.action: shade"
    ):
        (lr,) = plan_learners(config, ["buyer_0", "buyer_1"])
    assert lr.action_map.mode == "absolute"


def test_default_action_trains_shading_factors(tmp_path):
    # env.action left out (auto): the env faces take bids, learners shade
    import warnings

    from training.sb3 import Trainer

    env = EnvConfig(mechanism="first_price", n_buyers=2)
    assert env.action == "auto"
    train = TrainConfig(**{**TINY, "squash": "clip"})
    config = dataclasses.replace(fpsb(), env=env, train=train)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no absolute-bid warning
        trainer = Trainer(config, tmp_path / "run", progress=False)
    (lr,) = trainer.learners
    assert lr.action_map.mode == "shade_clip"
    assert lr.env.venv.config.action == "shade"


def test_cli_prints_library_warnings_as_one_line(tmp_path, capsys):
    # learners under env.action: absolute train, with the library's warning as
    # one line naming the command, not a file path and source line
    import yaml

    from attn_market.cli import main

    config = fpsb().to_dict()
    config["env"]["action"] = "absolute"
    path = tmp_path / "absolute.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "run"
    assert main(["train", str(path), "--out", str(out), "--no-progress"]) == 0
    warned = [ln for ln in capsys.readouterr().err.splitlines() if "warning" in ln]
    assert warned == [
        "attn-market train: warning: env.action is absolute: the learners' policies "
        "output bids, which collapse toward 0 in first price "
        "(docs/design.md#the-action-recipe); "
        "set env.action: shade (or leave it out) to learn shading factors"
    ]


def test_save_tensors_stores_numpy_as_tensors(tmp_path):
    # RLlib hands optimizer states out as numpy: arrays come back as tensors of
    # the same values and dtype, numpy scalars as plain numbers
    import torch

    from training.checkpoint import load_tensors, save_tensors

    tree = {"m": np.arange(4.0).reshape(2, 2), "step": np.float32(3.0), "t": (1, "x")}
    save_tensors(tmp_path / "w.safetensors", tree)
    back = load_tensors(tmp_path / "w.safetensors")
    assert torch.equal(back["m"], torch.arange(4.0, dtype=torch.float64).reshape(2, 2))
    assert back["step"] == 3.0 and type(back["step"]) is float
    assert back["t"] == (1, "x")


# -- SB3's private API, in one adapter -------------------------------------------------


@pytest.mark.parametrize("algo", ["ppo", "sac"])
def test_sb3_internals_still_exist(algo):
    """Fails loudly, naming the attribute, when an SB3 release moves an internal."""
    import gymnasium as gym

    from training.policy import algo_class
    from training.sb3_internals import (
        check_internals,
        constructor_parameters,
        counters,
        model_state,
        set_counters,
        torch_variables,
    )

    env = gym.make("Pendulum-v1")
    model = algo_class(algo)("MlpPolicy", env, device="cpu", seed=0)
    check_internals(model)
    set_counters(model, 7, 3)
    assert counters(model) == {"n_updates": 7, "episode_num": 3}
    names = torch_variables(model)
    assert names == (["log_ent_coef"] if algo == "sac" else [])
    assert sorted(model_state(model)["pytorch_variables"]) == names
    assert "observation_space" in constructor_parameters(model.policy)


def test_sb3_internals_check_names_what_moved():
    from types import SimpleNamespace

    from training.sb3_internals import check_internals

    fake = SimpleNamespace(_n_updates=0, policy=SimpleNamespace())
    with pytest.raises(AttributeError, match="_get_torch_save_params, _episode_num"):
        check_internals(fake)
