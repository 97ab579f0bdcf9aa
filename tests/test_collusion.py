"""Algorithmic collusion: the published feedback, the Q-learning bidder and the
batched collusion runs (``attn_env.feedback``, ``agents.qlearn``,
``runner.collusion``)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import agents
import attn_env
from agents.qlearn import QLearnAgent
from attn_env.checks import ConfigError
from attn_env.config import (
    ExperimentConfig,
    from_dict,
    load_config,
    validate_experiment,
)
from attn_env.feedback import published
from runner.collusion import run_collusion
from runner.simulate import play, play_log


def _case(mechanism: str, feedback: str = "none", **agent: object) -> ExperimentConfig:
    """Two qlearn bidders, common value 1, one-slot auction."""
    config = from_dict(
        ExperimentConfig,
        {
            "env": {
                "mechanism": mechanism,
                "value_low": 1.0,
                "value_high": 1.0,
                "rounds": 50,
                "feedback": feedback,
            },
            "agents": {"buyer": {"kind": "qlearn", "params": dict(agent)}},
            "episodes": 8,
        },
    )
    validate_experiment(config)
    return config


def _obs(value: float = 1.0, n: int = 1) -> np.ndarray:
    obs = np.zeros((n, 8), dtype=np.float32)
    obs[:, 0] = value
    return obs


# ------------------------------------------------------------------ feedback


def test_published_by_hand() -> None:
    bids = np.array([[0.3, 0.6, 0.6], [0.9, 0.2, 0.1]])
    alloc = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    # min bid to win one slot = the highest other bid (a tie at 0.6 in row 0)
    np.testing.assert_array_equal(
        published("min_bid_to_win", bids, alloc, 1), [[0.6, 0.6, 0.6], [0.2, 0.9, 0.9]]
    )
    # ... never under the reserve
    np.testing.assert_array_equal(
        published("min_bid_to_win", bids, alloc, 1, reserve=0.5),
        [[0.6, 0.6, 0.6], [0.5, 0.9, 0.9]],
    )
    # two slots: the 2nd highest of the others
    np.testing.assert_array_equal(
        published("min_bid_to_win", bids, alloc, 2), [[0.6, 0.3, 0.3], [0.1, 0.1, 0.2]]
    )
    # as many slots as buyers: the reserve wins
    np.testing.assert_array_equal(
        published("min_bid_to_win", bids, alloc, 3, reserve=0.25), np.full((2, 3), 0.25)
    )
    # the highest bid that won, the same for everyone; 0 when nothing sold
    np.testing.assert_array_equal(
        published("winning_bid", bids, alloc * [[1], [0]], 1),
        [[0.6, 0.6, 0.6], [0.0, 0.0, 0.0]],
    )


@pytest.mark.parametrize(
    ("mechanism", "feedback", "expected"),
    [
        # bids 0.3 and 0.6: the winner's threshold is 0.3, the loser's 0.6
        ("first_price", "min_bid_to_win", [0.6, 0.3]),
        ("second_price", "min_bid_to_win", [0.6, 0.3]),
        # winning bid 0.6 in both, though the second-price winner pays 0.3
        ("first_price", "winning_bid", [0.6, 0.6]),
        ("second_price", "winning_bid", [0.6, 0.6]),
    ],
)
def test_feedback_in_env(mechanism: str, feedback: str, expected: list) -> None:
    env = attn_env.vector_env(
        1, mechanism=mechanism, rounds=3, feedback=feedback, history=2
    )
    obs, _ = env.reset(seed=0)
    assert obs.shape == (1, 2, 8 + 2 + 2)
    obs, _, _, _, info = env.step(np.array([[[0.3], [0.6]]]))
    np.testing.assert_allclose(info["published"][0], expected, rtol=1e-6)
    # newest first after the price history; the older entry is still 0
    np.testing.assert_allclose(obs[0, :, 10], expected, rtol=1e-6)
    np.testing.assert_array_equal(obs[0, :, 11], 0.0)
    obs, *_ = env.step(np.array([[[0.5], [0.1]]]))
    np.testing.assert_allclose(obs[0, :, 11], expected, rtol=1e-6)


def test_feedback_reaches_fixed_agents() -> None:
    from attn_env.players import feedback_for

    env = attn_env.vector_env(2, mechanism="first_price", feedback="min_bid_to_win")
    env.reset(seed=0)
    *_, info = env.step(np.array([[[0.3], [0.6]], [[0.5], [0.5]]]))
    np.testing.assert_allclose(feedback_for(info, 0, 2)["published"], [0.6, 0.5])
    plain = attn_env.vector_env(2, mechanism="first_price")
    plain.reset(seed=0)
    *_, info = plain.step(np.zeros((2, 2, 1)))
    assert "published" not in feedback_for(info, 0, 2)


def test_feedback_none_keeps_observations() -> None:
    """The default layout is unchanged; feedback only appends entries."""
    rng = np.random.default_rng(3)
    actions = rng.random((6, 4, 3, 1))
    runs = {}
    for feedback in ("none", "winning_bid"):
        env = attn_env.vector_env(
            4,
            mechanism="gsp",
            n_buyers=3,
            n_slots=2,
            rounds=2,
            history=3,
            feedback=feedback,
        )
        obs, _ = env.reset(seed=7)
        seq = [obs]
        for a in actions:
            obs, *_ = env.step(a)
            seq.append(obs)
        runs[feedback] = np.stack(seq)
    assert runs["none"].shape[-1] == 8 + 3
    np.testing.assert_array_equal(runs["winning_bid"][..., :11], runs["none"])
    assert attn_env.vector_env(1).obs_dim == 8


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"mechanism": "cda", "feedback": "min_bid_to_win"}, "two_sided"),
        ({"mechanism": "assignment", "feedback": "min_bid_to_win"}, "matching"),
        ({"mechanism": "k_double", "feedback": "winning_bid"}, "two_sided"),
        ({"feedback": "everything"}, "one of none, winning_bid"),
        ({"cost_low": 1.0, "cost_high": 1.0, "mechanism": "cda"}, "cost_low < cost"),
        ({"value_low": 0.0, "value_high": 0.0}, "value_high > 0"),
    ],
)
def test_config_errors(options: dict, message: str) -> None:
    with pytest.raises(ConfigError if "feedback" in options else ValueError) as err:
        attn_env.vector_env(1, **options)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_fixed_common_value() -> None:
    env = attn_env.vector_env(3, value_low=1.0, value_high=1.0)
    obs, _ = env.reset(seed=0)
    np.testing.assert_array_equal(obs[:, :, 0], 1.0)


# ------------------------------------------------------------------ qlearn


def test_q_update_by_hand() -> None:
    a = QLearnAgent(n_bids=3, learning_rate=0.5, discount=0.9, epsilon=0.0)
    rng = np.random.default_rng(0)
    a.reset(1, rng)
    a.q[0, 0] = [0.1, 0.4, 0.2]
    bid = a.act(_obs(), rng)
    assert bid[0, 0] == pytest.approx(1 / 3)  # greedy: grid index 1 of (0, 1/3, 2/3)
    a.observe({"own_alloc": np.ones(1), "own_pay": np.array([1 / 3])})
    # r = 1 - 1/3; target = 2/3 + 0.9 * max(0.1, 0.4, 0.2) = 1.02667
    assert a.q[0, 0, 1] == pytest.approx(0.4 + 0.5 * (2 / 3 + 0.36 - 0.4))
    np.testing.assert_array_equal(a.q[0, 0, [0, 2]], [0.1, 0.2])


def test_q_update_with_memory_by_hand() -> None:
    a = QLearnAgent(n_bids=3, learning_rate=0.5, discount=0.9, epsilon=0.0, memory=1)
    rng = np.random.default_rng(0)
    a.reset(1, rng)
    assert a.q.shape == (1, 6, 3)
    a.q[0, 0] = [0.0, 0.0, 1.0]  # greedy bid 2/3 in the start state
    a.q[0, 5] = [0.3, 0.7, 0.0]  # state "bid index 2, won" = 2 + 3 * 1
    a.act(_obs(), rng)
    a.observe({"own_alloc": np.ones(1), "own_pay": np.array([2 / 3])})
    # r = 1/3; target = 1/3 + 0.9 * max Q[5] = 1/3 + 0.63
    assert a.q[0, 0, 2] == pytest.approx(1.0 + 0.5 * (1 / 3 + 0.63 - 1.0))
    assert a.state[0] == 5


@pytest.mark.parametrize(
    ("mechanism", "expected"),
    [
        # threshold 0.5 on the grid (0, .25, .5, .75): 0.5 ties, 0.75 wins
        ("first_price", [0.0, 0.0, 0.5 * 0.5, 0.25]),  # pays its bid
        ("second_price", [0.0, 0.0, 0.5 * 0.5, 0.5]),  # pays the threshold
    ],
)
def test_counterfactual_update(mechanism: str, expected: list) -> None:
    a = QLearnAgent(
        n_bids=4,
        learning_rate=1.0,
        discount=0.0,
        epsilon=0.0,
        q_init=0.0,
        mechanism=mechanism,
        feedback="min_bid_to_win",
    )
    assert a.synchronous
    rng = np.random.default_rng(0)
    a.reset(1, rng)
    a.act(_obs(), rng)  # greedy: bid 0 (ties go low), loses
    a.observe(
        {
            "own_alloc": np.zeros(1),
            "own_pay": np.zeros(1),
            "published": np.array([0.5], dtype=np.float32),
        }
    )
    np.testing.assert_allclose(a.q[0, 0], expected)


def test_initial_values_against_uniform_rivals() -> None:
    # grid (0, .5), one rival uniform on it; ties are won half the time
    fpa = QLearnAgent(n_bids=2, discount=0.5).q0
    np.testing.assert_allclose(fpa, np.array([0.5, 0.5 + 0.25]) / 2 / 0.5)
    spa = QLearnAgent(n_bids=2, discount=0.5, mechanism="second_price").q0
    np.testing.assert_allclose(spa, np.array([0.5, 1 + 0.25]) / 2 / 0.5)
    assert (QLearnAgent(q_init=2.0).q0 == 2.0).all()


def test_no_counterfactual_without_the_threshold() -> None:
    assert not QLearnAgent(feedback="winning_bid").synchronous
    assert not QLearnAgent(feedback="min_bid_to_win", mechanism="gsp").synchronous
    assert not QLearnAgent(feedback="min_bid_to_win", counterfactual=False).synchronous


def test_epsilon_decays_as_specified() -> None:
    a = QLearnAgent(epsilon=0.8, epsilon_decay=1e-2)
    rng = np.random.default_rng(0)
    a.reset(4, rng)
    assert a.epsilon == pytest.approx(0.8)
    for _ in range(50):
        a.act(_obs(n=4), rng)
        a.observe({"own_alloc": np.zeros(4), "own_pay": np.zeros(4)})
    assert a.t == 50
    assert a.epsilon == pytest.approx(0.8 * math.exp(-0.5))


def test_optimistic_greedy_sweep_finds_the_paying_bid() -> None:
    """Banchio & Skrzypacz's second-price channel, by hand: with equal optimistic
    values and no exploration, a learner facing a rival at the top bid plays its
    greedy bid until that bid's value wears below the others', so it tries every
    bid in turn and ends at the top one, the only bid that pays (the tie)."""
    g = 5
    a = QLearnAgent(n_bids=g, learning_rate=0.5, discount=0.9, epsilon=0.0, q_init=10.0)
    rng = np.random.default_rng(0)
    a.reset(1, rng)
    played = []
    for _ in range(400):
        k = int(np.rint(a.act(_obs(), rng)[0, 0] * g))
        played.append(k)
        top = k == g - 1  # a tie with the rival's top bid: won half the time
        a.observe(
            {
                "own_alloc": np.array([0.5 if top else 0.0]),
                "own_pay": np.array([0.5 * (g - 1) / g if top else 0.0]),
            }
        )
    assert set(played[:50]) == set(range(g))  # the sweep tries every bid
    assert set(played[-100:]) == {g - 1}  # and settles on the tie
    # its value is the tie's payoff forever: 0.5 * (1 - 0.8) / (1 - 0.9)
    assert a.q[0, 0, g - 1] == pytest.approx(0.5 * (1 / g) / (1 - 0.9), rel=1e-3)


def test_exploration_rate_is_epsilon() -> None:
    a = QLearnAgent(n_bids=11, epsilon=0.3, epsilon_decay=0.0, q_init=0.0)
    rng = np.random.default_rng(1)
    a.reset(20_000, rng)
    bids = a.act(_obs(n=20_000), rng)[:, 0]
    # greedy bid 0; explored bids are uniform on 11 points (1 in 11 is 0 too)
    assert np.mean(bids > 0) == pytest.approx(0.3 * 10 / 11, abs=0.01)


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"n_bids": 1}, "n_bids"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"discount": 1.0}, "discount"),
        ({"epsilon": 1.5}, "epsilon"),
        ({"epsilon_decay": -1.0}, "epsilon_decay"),
        ({"memory": 4}, "memory"),
    ],
)
def test_bad_params(params: dict, name: str) -> None:
    with pytest.raises(ValueError, match=f"qlearn {name} must be"):
        agents.make("qlearn", **params)


# ------------------------------------------------------------------ runs


def test_run_matches_simulate() -> None:
    """run_collusion's measured episode is simulate's, seed for seed, and its
    interval is the Student-t one over those seeds."""
    from scipy.stats import t

    config = _case("first_price", epsilon_decay=1e-3)
    config = from_dict(ExperimentConfig, {**config.to_dict(), "warmup": 300})
    run = run_collusion(config)
    assert run["seeds"] == 8 and run["warmup"] == 300
    # simulate's revenue of each episode (a plain mean: value + influence)
    log, _ = play_log(config, progress=False)
    est = log.estimates()["revenue"]
    per_episode = (est.value + est.influence) / config.env.rounds
    by_seed = np.asarray(run["revenue_by_seed"])
    assert np.ptp(by_seed) > 0.01  # the seeds differ: the match below is seed for seed
    np.testing.assert_allclose(by_seed, per_episode, rtol=1e-12, atol=1e-15)
    assert run["revenue"] * 50 == pytest.approx(play(config, progress=False)["revenue"])
    half = t.ppf(0.975, 7) * by_seed.std(ddof=1) / math.sqrt(8)
    assert run["revenue_se"] == pytest.approx(by_seed.std(ddof=1) / math.sqrt(8))
    assert run["revenue_ci95"] == pytest.approx(
        [by_seed.mean() - half, by_seed.mean() + half], rel=1e-12
    )
    rounds = run["path"]["round"]
    assert len(rounds) == len(run["path"]["mean"]) == len(run["path"]["q10"])
    assert rounds[-1] == 300 + 50 and np.all(np.diff(rounds) > 0)


def test_publishing_min_bid_to_win_raises_first_price_revenue() -> None:
    """A short batched run: synchronous updates end the learners' low bids."""
    out = {}
    for feedback in ("none", "min_bid_to_win"):
        config = _case("first_price", feedback, n_bids=10, epsilon_decay=1e-3)
        out[feedback] = run_collusion(config, seeds=32, warmup=3_000)
    quiet, told = out["none"], out["min_bid_to_win"]
    margin = 3 * math.hypot(quiet["revenue_se"], told["revenue_se"])
    assert quiet["revenue"] + margin < told["revenue"]


@pytest.mark.slow
def test_first_price_collusive_second_price_not() -> None:
    """The shipped configs (Banchio & Skrzypacz's learner, 500,000 rounds), 20
    seeds each: first-price revenue under second's, and second price within a
    grid step of the competitive 0.95 (several minutes per config)."""
    root = Path(__file__).resolve().parent.parent / "configs"
    fpa = run_collusion(load_config(root / "collusion_fpa.yaml"))
    spa = run_collusion(load_config(root / "collusion_spa.yaml"))
    margin = 3 * math.hypot(fpa["revenue_se"], spa["revenue_se"])
    assert fpa["revenue"] + margin < spa["revenue"]
    assert spa["revenue_ci95"][0] > 0.95 - 0.05
