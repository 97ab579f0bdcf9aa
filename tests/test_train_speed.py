"""The fast-trainer options: ``train.anneal_lr`` and the shipped learning configs.

``anneal_lr`` decays the learning rate linearly to 0 over the run's
``total_timesteps``, counted over the whole run (SB3's own progress restarts
with every chunk the trainer trains), and a resumed run continues the decay.
The shipped learning configs are checked to load, to pass the training checks
and to give PPO rollouts that whole minibatches divide.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from attn_env.checks import ConfigError
from attn_env.config import (
    AgentSpec,
    EnvConfig,
    ExperimentConfig,
    TrainConfig,
    load_config,
)

pytest.importorskip("stable_baselines3")

pytestmark = pytest.mark.usefixtures("restore_torch_threads")

ROOT = Path(__file__).resolve().parents[1]
LEARNING = (
    "fpsb_n2",
    "fpsb_n5",
    "second_price_learn",
    "bilateral_k05",
    "gsp3_learn",
    "cda_vs_zic",
)


def _fpsb(**train) -> ExperimentConfig:
    options = {
        "total_timesteps": 2048,
        "num_envs": 8,
        "n_steps": 16,
        "batch_size": 128,
        "net_arch": [8],
        "alternate_every": 512,
        "checkpoint_every": 1024,
        "learning_rate": 0.01,
        "device": "cpu",
        "algo_params": {"n_epochs": 1},
        **train,
    }
    return ExperimentConfig(
        seed=0,
        env=EnvConfig(mechanism="first_price", n_buyers=2, action="shade"),
        agents={"buyer": AgentSpec(kind="learn")},
        episodes=50,
        train=TrainConfig(**options),
    )


def _lr(trainer) -> float:
    return trainer.learners[0].model.policy.optimizer.param_groups[0]["lr"]


def _rates(config: ExperimentConfig, out: Path) -> list[tuple[int, float]]:
    """Train ``config`` chunk by chunk: the run's agent-steps and learning rate
    after each chunk (the rate of its last update: set before it, at the steps
    collected by then; the whole chunk is one rollout per update here)."""
    from training.sb3 import Trainer

    trainer = Trainer(config, out, progress=False)
    seen = []
    try:
        while trainer.timesteps < config.train.total_timesteps:
            trainer.step()
            seen.append((trainer.timesteps, _lr(trainer)))
    finally:
        trainer.close()
    return seen


def test_anneal_lr_decays_over_the_whole_run(tmp_path):
    seen = _rates(_fpsb(anneal_lr=True), tmp_path / "run")
    # 256 agent-steps per rollout (8 markets x 2 seats x 16 steps), 512 a chunk
    steps = [s for s, _ in seen]
    assert steps == [512, 1024, 1536, 2048]
    for done, lr in seen:
        assert lr == pytest.approx(0.01 * (1 - done / 2048))
    assert seen[-1][1] == 0.0


def test_lr_decay_steps_decays_harmonically(tmp_path):
    seen = _rates(_fpsb(lr_decay_steps=1024), tmp_path / "run")
    assert [s for s, _ in seen] == [512, 1024, 1536, 2048]
    for done, lr in seen:
        assert lr == pytest.approx(0.01 / (1 + done / 1024))
    assert seen[1][1] == pytest.approx(0.005)  # half the start at lr_decay_steps


@pytest.mark.parametrize(
    ("train", "match"),
    [
        ({"lr_decay_steps": 0}, r"train\.lr_decay_steps must be an integer >= 1"),
        ({"lr_decay_steps": 1.5}, r"train\.lr_decay_steps must be an integer"),
        (
            {"lr_decay_steps": 1000, "anneal_lr": True},
            r"train\.anneal_lr \(linear\) and train\.lr_decay_steps \(harmonic\)",
        ),
    ],
)
def test_bad_lr_decay_is_refused_in_one_line(train, match):
    from attn_env.config import validate_train

    with pytest.raises(ConfigError, match=match):
        validate_train(_fpsb(**train).train)


def test_constant_rate_without_anneal(tmp_path):
    from training.sb3 import Trainer

    trainer = Trainer(_fpsb(), tmp_path / "run", progress=False)
    try:
        trainer.step()
        trainer.step()
        assert _lr(trainer) == pytest.approx(0.01)
    finally:
        trainer.close()


def test_resumed_run_continues_the_decay(tmp_path):
    from training.sb3 import Trainer, train

    first = _fpsb(anneal_lr=True, total_timesteps=1024)
    train(first, tmp_path / "run", progress=False)
    longer = dataclasses.replace(
        first, train=dataclasses.replace(first.train, total_timesteps=4096)
    )
    trainer = Trainer(longer, tmp_path / "run", resume=True, progress=False)
    try:
        assert trainer.timesteps == 1024
        trainer.step()
        assert trainer.timesteps == 1536
        assert _lr(trainer) == pytest.approx(0.01 * (1 - 1536 / 4096))
    finally:
        trainer.close()


@pytest.mark.parametrize("name", LEARNING)
def test_shipped_learning_configs_are_consistent(name):
    from training.train_config import check_train_config

    config = load_config(ROOT / "configs" / f"{name}.yaml")
    tc = config.train
    check_train_config(tc)
    assert tc.backend == "sb3" and tc.algo == "ppo"
    # one learner seat per market under self-play, else every learning buyer
    learning = [a for a, spec in config.agents.items() if spec.kind == "learn"]
    assert learning
    # every config that learns from scratch anneals, at a rate PPO tolerates
    assert (tc.anneal_lr or tc.lr_decay_steps) and 0 < tc.learning_rate <= 0.01
    assert tc.n_epochs <= 10 and "n_epochs" not in tc.algo_params
    # whole minibatches: a rollout is a multiple of the minibatch
    seats = 1 if tc.self_play_pool else _learner_seats(config)
    assert (tc.num_envs * seats * tc.n_steps) % tc.batch_size == 0


def _learner_seats(config: ExperimentConfig) -> int:
    """Seats a single-role learner holds per market (every learning agent)."""
    from training.learners import plan_learners
    from training.skeleton import agent_names

    learners = plan_learners(config, agent_names(config))
    return len(learners[0].seats)


def test_clip_policies_start_with_a_narrow_spread(tmp_path):
    """``squash: clip`` starts at ``log_std = log(1/4)``; config keywords win."""
    import math

    from training.actions import CLIP_LOG_STD
    from training.sb3 import Trainer

    assert CLIP_LOG_STD == pytest.approx(math.log(0.25))
    cases = [
        ({"squash": "clip", "algo_params": {}}, CLIP_LOG_STD, 10),
        ({"squash": "sigmoid", "n_epochs": 3, "algo_params": {}}, 0.0, 3),
        (
            {
                "squash": "clip",
                "algo_params": {"n_epochs": 2, "policy_kwargs": {"log_std_init": -2.0}},
            },
            -2.0,
            2,
        ),
    ]
    for i, (options, log_std, epochs) in enumerate(cases):
        trainer = Trainer(_fpsb(**options), tmp_path / f"run{i}", progress=False)
        try:
            model = trainer.learners[0].model
            assert model.policy.log_std.detach().numpy() == pytest.approx([log_std])
            assert model.n_epochs == epochs
        finally:
            trainer.close()
