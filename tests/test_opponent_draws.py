"""``train.opponent_draws``: a learner's action scored against several draws of
the fixed agents, its own draw shared (``MarketCore.tie_draws``,
``training.vec_adapter.MarketVecEnv(draws=)``)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import attn_env
from attn_env.checks import ConfigError
from attn_env.config import (
    AgentSpec,
    EnvConfig,
    ExperimentConfig,
    TrainConfig,
    validate_experiment,
)
from attn_env.observation import VALUE
from attn_env.players import Seats, TruthfulAgent

pytest.importorskip("stable_baselines3")

from training.actions import ActionMap
from training.vec_adapter import MarketVecEnv


def test_tie_draws_shares_the_learner_columns_only():
    venv = attn_env.vector_env(12, mechanism="k_double", n_buyers=2, n_sellers=2)
    venv.reset(seed=0)
    core = venv.core
    core.tie_draws([0, 3], 4)  # buyer_0 and seller_1
    v = core.values().reshape(3, 4, -1)
    # the tied columns repeat each block's first market ...
    assert (v[:, :, [0, 3]] == v[:, :1, [0, 3]]).all()
    # ... the others keep their own, independent draws
    assert (np.ptp(v[:, :, [1, 2]], axis=1) > 0).all()
    with pytest.raises(ValueError, match="12 markets do not split into blocks of 5"):
        core.tie_draws([0], 5)


def _first_price_adapter(markets: int, draws: int) -> MarketVecEnv:
    venv = attn_env.vector_env(
        markets * draws,
        mechanism="first_price",
        n_buyers=3,
        action="shade",
        fixed_agents=["buyer_1", "buyer_2"],
    )
    seats = np.zeros((markets, 1), dtype=np.int64)
    others = Seats([None, TruthfulAgent(), TruthfulAgent()], 3)
    amap = ActionMap("shade", "buyer", 0.0, 1.0)
    return MarketVecEnv(venv, seats, amap, others, seed=5, draws=draws)


def test_reward_is_the_mean_over_the_opponent_draws():
    # First price, two truthful opponents: bidding s v wins iff s v beats both
    # values, so the reward is (1 - s) v times the share of the block's draws
    # in which it does.
    markets, draws, s = 6, 64, 0.7
    env = _first_price_adapter(markets, draws)
    obs = env.reset()
    assert env.num_envs == markets and obs.shape[0] == markets
    values = env.venv.core.values().reshape(markets, draws, 3)
    own = values[:, 0, 0]
    np.testing.assert_allclose(obs[:, VALUE], own, rtol=1e-6)
    raw = env.action_map.from_bid(np.full(markets, s), np.ones(markets))[:, None]
    _, rew, done, _ = env.step(raw.astype(np.float32))
    bid = env.last_actions[:, 0].astype(np.float64) * own
    wins = (bid[:, None] > values[:, :, 1:].max(axis=2)).mean(axis=1)
    expected = (own - bid) * wins
    np.testing.assert_allclose(rew, expected, rtol=1e-5, atol=1e-7)
    assert done.all()
    assert 0.0 < wins.mean() < 1.0  # the draws differ: some win, some lose


def _experiment(**train) -> ExperimentConfig:
    env = EnvConfig(mechanism="first_price", n_buyers=2, rounds=1)
    return ExperimentConfig(
        env=env, agents={"buyer": AgentSpec("learn")}, train=TrainConfig(**train)
    )


def test_opponent_draws_is_checked():
    validate_experiment(_experiment(opponent_draws=32))
    several = _experiment(opponent_draws=4)
    several = dataclasses.replace(
        several, env=dataclasses.replace(several.env, rounds=3)
    )
    with pytest.raises(ConfigError, match=r"opponent_draws 4 needs a single-round"):
        validate_experiment(several)
    with pytest.raises(ConfigError, match=r"train.opponent_draws"):
        validate_experiment(_experiment(opponent_draws=0))
    with pytest.raises(ConfigError, match=r"num_envs x train.opponent_draws"):
        validate_experiment(_experiment(num_envs=1024, opponent_draws=64))
    from training.train_config import check_train_config

    with pytest.raises(ConfigError, match=r"opponent_draws 2 is an SB3 option"):
        check_train_config(TrainConfig(backend="rllib", opponent_draws=2))
