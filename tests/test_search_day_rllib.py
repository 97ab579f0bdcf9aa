"""``train: {backend: rllib}`` on the search day: RLlib PPO into the SB3 run folder.

The env and weight tests need ``ray[rllib]`` importable (no Ray is started);
the training test starts a local Ray and is marked ``integration``. All are
skipped where Ray is missing; the config checks need no Ray.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from attn_env.errors import ConfigError
from attn_env.scenarios.search_config import from_data
from attn_env.scenarios.search_env import SearchDayVectorEnv
from attn_market.cli import main
from tests.search_helpers import small_market

SMALL = {
    "scenario": "search_day",
    "traffic": {"impressions": 2000, "periods": 4},
    "advertisers": {"n": 4},
    "auction": {"slots": 3},
    "train": {
        "backend": "rllib",
        "timesteps": 300,
        "parallel_days": 2,
        "batch_size": 16,
        "n_epochs": 2,
        "eval_every": 100,
        "eval_days": 2,
    },
}


def _write(tmp_path: Path, **train) -> Path:
    data = json.loads(json.dumps(SMALL))
    data["train"].update(train)
    path = tmp_path / "day.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


# -- bad input: one line, no Ray needed ------------------------------------------------


def test_a_misspelt_backend_is_one_line_naming_the_key(tmp_path, capsys):
    with pytest.raises(
        ConfigError, match=r"train\.backend must be one of sb3, rllib, got 'rllbi'"
    ):
        from_data({"train": {"backend": "rllbi"}})
    assert from_data({}).train.backend == "sb3"
    code = main(
        ["train", str(_write(tmp_path, backend="rllbi")), "--out", str(tmp_path / "r")]
    )
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "train.backend" in err and "'rllbi'" in err, err
    assert not (tmp_path / "r").exists()


def test_address_needs_the_rllib_backend(tmp_path, capsys):
    path = _write(tmp_path, backend="sb3")
    code = main(["train", str(path), "--out", str(tmp_path / "r"), "--address", "x:1"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "need train.backend: rllib" in err, err
    assert not (tmp_path / "r").exists()


# -- the env and the weights: ray.rllib imported, no Ray started ----------------------


def test_env_plays_the_vector_env_day_for_day():
    """Agent ``<advertiser>/<e>`` is advertiser i of day e; rewards, day ends and
    the next day's first observations are the vector env's (same seed)."""
    pytest.importorskip("ray.rllib")
    from training.search_day import multipliers
    from training.search_day_rllib import SearchDayMultiAgentEnv

    m = small_market(advertisers={"n": 4}, traffic={"impressions": 2000, "periods": 3})
    env = SearchDayMultiAgentEnv({"config": m.config, "market": m, "parallel_days": 2})
    ref = SearchDayVectorEnv(2, market=m)
    names = m.advertisers.names
    assert env.agents == [f"{a}/{e}" for e in range(2) for a in names]
    obs, _ = env.reset(seed=5)
    want = ref.reset(seed=5)
    rng = np.random.default_rng(0)
    for _ in range(2):  # two batches of days: the reset between them too
        for t in range(3):
            for e in range(2):
                for i, a in enumerate(names):
                    np.testing.assert_array_equal(obs[f"{a}/{e}"], want[e, i])
            raw = rng.uniform(-1.3, 1.3, (2, 4))  # outside [-1, 1]: clipped as SB3's
            act = {
                f"{a}/{e}": raw[e, i : i + 1]
                for e in range(2)
                for i, a in enumerate(names)
            }
            obs, rew, term, trunc, _ = env.step(act)
            want, want_rew, done, info = ref.step(multipliers(raw, m.config.lambda_max))
            for e in range(2):
                for i, a in enumerate(names):
                    assert rew[f"{a}/{e}"] == want_rew[e, i]
            assert term == {"__all__": t == 2} and trunc == {"__all__": False}
        # the day's last observations, then the next days' first from reset()
        for e in range(2):
            for i, a in enumerate(names):
                np.testing.assert_array_equal(obs[f"{a}/{e}"], info["final_obs"][e, i])
        assert done.all()
        obs, _ = env.reset()


def test_module_weights_load_into_the_sb3_policy():
    """The SB3 policy built from an RLModule's weights has its action mean,
    ``log_std`` and value on every observation (weights perturbed: no zeros),
    and the other way round."""
    pytest.importorskip("ray.rllib")
    import torch

    from training.search_day import new_model
    from training.search_day_rllib import (
        load_module_state,
        module_spec,
        module_state_of,
    )

    m = small_market(
        advertisers={"n": 4},
        traffic={"impressions": 2000, "periods": 4},
        train={"batch_size": 16},
    )
    module = module_spec(m.config).build()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen))
    model = new_model(m.config, m, "cpu")
    load_module_state(model, module.get_state())
    obs = torch.as_tensor(
        np.random.default_rng(1).normal(size=(64, 13)), dtype=torch.float32
    )
    with torch.no_grad():
        out = module.forward_inference({"obs": obs})["action_dist_inputs"]
        value = module.compute_values({"obs": obs})
        dist = model.policy.get_distribution(obs).distribution
        sb3_value = model.policy.predict_values(obs)
    torch.testing.assert_close(dist.mean, out[:, :1])
    torch.testing.assert_close(dist.stddev.log(), out[:, 1:])
    torch.testing.assert_close(sb3_value.reshape(-1), value.reshape(-1))
    assert float(out[:, 1:].abs().min()) > 0  # log_std was perturbed away from 0
    # and back: a fresh SB3 policy's weights into the module (RLlib's start)
    fresh = new_model(m.config, m, "cpu")
    module.set_state(module_state_of(fresh, module.get_state()))
    with torch.no_grad():
        out = module.forward_inference({"obs": obs})["action_dist_inputs"]
        dist = fresh.policy.get_distribution(obs).distribution
    torch.testing.assert_close(dist.mean, out[:, :1])
    torch.testing.assert_close(dist.stddev.log(), out[:, 1:])


# -- a run: local Ray, the CLI, evaluate ----------------------------------------------


def _descendants() -> set[int]:
    """Pids of this process's descendants (a local Ray's gcs, raylet, workers)."""
    out = subprocess.run(["ps", "-eo", "pid=,ppid="], capture_output=True, text=True)
    children: dict[int, list[int]] = {}
    for line in out.stdout.splitlines():
        pid, ppid = map(int, line.split())
        children.setdefault(ppid, []).append(pid)
    found, todo = set(), [os.getpid()]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting to be reaped does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


@pytest.fixture
def ray_pids(monkeypatch) -> set[int]:
    """The Ray processes a training run started (recorded once PPO is built)."""
    import training.search_day_rllib as trainer

    pids: set[int] = set()
    build = trainer._build_algo
    before = _descendants()  # a subprocess of an earlier test in this worker

    def recording(*args, **kwargs):
        algo = build(*args, **kwargs)
        pids.update(_descendants() - before)
        return algo

    monkeypatch.setattr(trainer, "_build_algo", recording)
    return pids


def _no_ray_left(ray, pids: set[int]) -> None:
    assert pids, "the run started no Ray process"
    assert not ray.is_initialized()
    deadline = time.monotonic() + 10  # workers exit after the driver shuts Ray down
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [p for p in pids if _alive(p)], "Ray processes left behind"


@pytest.mark.integration
def test_rllib_run_is_an_sb3_run_folder(tmp_path, capsys, ray_pids):
    """``attn-market train`` with ``backend: rllib`` writes the SB3 trainer's run
    folder; ``load_search_policy`` and ``evaluate_scenario`` read it; Ray is gone."""
    ray = pytest.importorskip("ray")
    from stable_baselines3 import PPO

    from runner.scenarios import evaluate_scenario
    from training.search_day import load_search_policy

    path = _write(tmp_path)
    run = tmp_path / "run"
    assert main(["train", str(path), "--out", str(run), "--no-progress"]) == 0
    _no_ray_left(ray, ray_pids)
    names = {p.name for p in run.iterdir()}
    assert {"config.yaml", "policy.zip", "search_day.json"} <= names
    assert not [n for n in names if n.startswith(".policy.zip")]  # staging renamed
    record = json.loads((run / "search_day.json").read_text())
    per_iter = 4 * 2 * 4  # periods x parallel_days x advertisers
    assert record["backend"] == "rllib" and record["scenario"] == "search_day"
    assert record["timesteps"] == math.ceil(300 / per_iter) * per_iter
    steps = [p["timesteps"] for p in record["curve"]]
    # an evaluation once 100 more advertiser-periods are done, and at the end
    assert steps == [128, 256, 320]
    assert all(np.isfinite(p["score"]) for p in record["curve"])
    model = PPO.load(run / "policy.zip", device="cpu")
    assert model.num_timesteps == record["timesteps"]
    assert [
        m.out_features
        for m in model.policy.mlp_extractor.policy_net
        if hasattr(m, "out_features")
    ] == [64, 64]

    config = from_data(yaml.safe_load(path.read_text()))
    bidder = load_search_policy(run, config.lambda_max)
    lam = bidder(np.zeros((3, 13), np.float32))
    assert lam.shape == (3,) and np.all((lam >= 1 / 4) & (lam <= 4))
    out = evaluate_scenario("search_day", config, run, days=2)
    assert set(out["by_bidders"]) == {"policy", "pid", "onlinelp", "pacing", "truthful"}
    # the saved policy is the one the record keeps: its validation score is
    # the curve's point at the kept step
    from attn_env.scenarios.search_market import build_market
    from training.search_day import evaluate_policy

    kept = [p for p in record["curve"] if p["timesteps"] == record["kept"]["timesteps"]]
    again = evaluate_policy(
        config, build_market(config), bidder, config.train.eval_days
    )
    assert again["score"] == pytest.approx(kept[0]["score"])


@pytest.mark.integration
def test_a_failure_mid_run_leaves_no_ray_and_no_lock(tmp_path, monkeypatch, ray_pids):
    """An error after Ray started (here in the first evaluation) stops PPO's
    actors, shuts Ray down and releases the run folder's lock."""
    import fcntl

    ray = pytest.importorskip("ray")
    import training.search_day_rllib as trainer

    def boom(*args, **kwargs):
        raise RuntimeError("evaluation failed")

    monkeypatch.setattr(trainer.Curve, "point", boom)
    m = small_market(advertisers={"n": 4}, traffic={"impressions": 2000, "periods": 4})
    config = from_data(SMALL)
    run = tmp_path / "run"
    with pytest.raises(RuntimeError, match="evaluation failed"):
        trainer.train_search_day_rllib(config, run, progress=False, market=m)
    _no_ray_left(ray, ray_pids)
    assert not (run / "policy.zip").exists() and not (run / "search_day.json").exists()
    fd = os.open(run / ".lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError if still held
    finally:
        os.close(fd)
