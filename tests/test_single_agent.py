"""The gymnasium single-agent view: env checkers, fixed opponents, reproducibility."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from attn_env.single_agent import SingleAgentMarketEnv
from tests.helpers import nan_equal

CASES = [
    {"mechanism": "first_price", "n_buyers": 2},
    {
        "mechanism": "gsp",
        "n_buyers": 4,
        "n_slots": 2,
        "rounds": 3,
        "budget": 1.0,
        "history": 2,
    },
    {
        "mechanism": "cda",
        "n_buyers": 3,
        "rounds": 4,
        "redraw": "episode",
        "learner": "seller_1",
        "others": "zi_c",  # a kind: built by agents.opponents below
    },
    {"mechanism": "assignment", "n_buyers": 3, "n_slots": 2},
]


def _env(kw, **extra):
    import agents
    from attn_env.config import make_config

    kw = dict(kw)
    learner, kind = kw.pop("learner", "buyer_0"), kw.pop("others", None)
    cfg = make_config(**kw)
    others = agents.opponents(kind, cfg, learner) if kind else None
    return SingleAgentMarketEnv(learner=learner, others=others, config=cfg, **extra)


@pytest.mark.parametrize("kw", CASES, ids=lambda kw: kw["mechanism"])
def test_gymnasium_check_env(kw, monkeypatch):
    # The checker compares infos with ``==``; an undefined info number is NaN (the
    # env's contract), which differs from itself (a CDA round often trades nothing).
    import gymnasium.utils.env_checker as checker

    monkeypatch.setattr(checker, "data_equivalence", nan_equal)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no spec" notice of the checker
        check_env(_env(kw, render_mode="ansi"), skip_render_check=False)


@pytest.mark.parametrize("kw", CASES, ids=lambda kw: kw["mechanism"])
def test_sb3_check_env(kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SB3 recommends a [-1, 1] action box
        sb3_check_env(_env(kw), warn=False)


def test_truthful_learner_in_second_price_earns_the_vickrey_surplus():
    # Against a truthful rival, bidding the value wins iff v > v', paying v'.
    e = SingleAgentMarketEnv(mechanism="second_price", n_buyers=2)
    e.reset(seed=0)
    for _ in range(200):
        obs, _ = e.reset()
        _, r, term, trunc, info = e.step(obs[:1])
        assert term and not trunc
        assert r == pytest.approx(info["value"] * info["alloc"] - info["payment"])
        assert r >= -1e-6  # truthful is dominant: never a loss
        assert set(info) >= {
            "episode_efficiency",
            "episode_revenue",
            "episode_welfare",
            "episode_mean_price",
        }


def test_others_by_name_role_and_object():
    import agents

    shade = agents.make("shading", shade=0.5)
    e = SingleAgentMarketEnv(
        mechanism="first_price",
        n_buyers=3,
        others={"buyer_2": shade, "buyer": agents.make("shading", shade=0.8)},
    )
    assert e.others.players[2] is shade
    e.reset(seed=1)
    e.step(np.zeros(1, dtype=np.float32))
    bids = e.core.state.last_round["bid"][0]
    values = e.core.state.last_round["value"][0]
    assert bids[2] == pytest.approx(0.5 * values[2], rel=1e-6)  # by name
    assert bids[1] == pytest.approx(0.8 * values[1], rel=1e-6)  # by role
    # anyone not named bids truthfully
    e = SingleAgentMarketEnv(
        mechanism="first_price", n_buyers=3, others={"buyer_2": shade}
    )
    e.reset(seed=1)
    e.step(np.zeros(1, dtype=np.float32))
    last = e.core.state.last_round
    assert last["bid"][0, 1] == pytest.approx(last["value"][0, 1], rel=1e-6)


def test_bad_learner_and_others():
    with pytest.raises(ValueError, match="unknown learner 'seller_0'"):
        SingleAgentMarketEnv(learner="seller_0", mechanism="gsp")
    with pytest.raises(ValueError, match="is the learner"):
        SingleAgentMarketEnv(others={"buyer_0": _Recorder()}, mechanism="gsp")
    with pytest.raises(ValueError, match="unknown agent"):
        SingleAgentMarketEnv(others={"buyer_9": _Recorder()}, mechanism="gsp")
    with pytest.raises(ValueError, match="pass agent objects"):
        SingleAgentMarketEnv(others={"buyer": "zi_c"}, mechanism="gsp")
    with pytest.raises(ValueError, match="must be None or a mapping"):
        SingleAgentMarketEnv(others="zi_c", mechanism="gsp")
    with pytest.raises(ValueError, match=r"must follow attn_env\.players\.Agent"):
        SingleAgentMarketEnv(others={"buyer_1": object()}, mechanism="gsp")
    one = _Recorder()
    with pytest.raises(ValueError, match="one agent object would play both"):
        SingleAgentMarketEnv(others={"buyer": one}, mechanism="gsp", n_buyers=3)


def test_episodes_reproducible_with_adaptive_others():
    import agents
    from attn_env.config import make_config

    cfg = make_config(mechanism="cda", n_buyers=4, rounds=5, redraw="episode")

    def play(seed):
        e = SingleAgentMarketEnv(config=cfg, others=agents.opponents("zip", cfg))
        obs, _ = e.reset(seed=seed)
        out = []
        for _ in range(5):
            obs, r, term, _, _ = e.step(obs[:1])
            out.append(r)
        assert term
        return out

    assert play(3) == play(3)


class _Recorder:
    """A truthful agent that keeps every feedback it observes."""

    def __init__(self):
        self.seen = []

    def reset(self, num_envs, rng):
        pass

    def act(self, obs, rng):
        return obs[:, :1].copy()

    def observe(self, feedback):
        self.seen.append(feedback)


def test_fixed_agents_get_the_same_feedback_as_in_simulate():
    # Who could trade (active, seller_active) is in the feedback of the one
    # driver of fixed agents (attn_env.players.Seats) that simulate uses too.
    rec = _Recorder()
    e = SingleAgentMarketEnv(
        learner="seller_0",
        others={"buyer_1": rec},
        mechanism="cda",
        n_buyers=3,
        rounds=4,
        redraw="episode",
    )
    e.reset(seed=2)
    for _ in range(4):
        e.step(np.zeros(1, dtype=np.float32))  # asks 0: sells at once
        last = e.core.state.last_round
        fb = rec.seen[-1]
        np.testing.assert_array_equal(fb["active"], last["active"][:, :3])
        np.testing.assert_array_equal(fb["seller_active"], last["active"][:, 3:])
        np.testing.assert_array_equal(fb["bids"], last["bid"][:, :3])
        assert fb["own_value"][0] == last["value"][0, 1]
    # seller_0 sold its unit in the first round: inactive for the rest of the period
    assert [bool(f["seller_active"][0, 0]) for f in rec.seen] == [True] + [False] * 3


def test_registered_with_gymnasium():
    import gymnasium

    import attn_env

    assert attn_env.GYM_ID == "AttentionMarket-v0"
    env = gymnasium.make(
        "AttentionMarket-v0", mechanism="gsp", n_buyers=3, n_slots=2, rounds=3
    )
    assert env.spec.id == "AttentionMarket-v0"
    assert isinstance(env.unwrapped, SingleAgentMarketEnv)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a spec now: the checker has nothing to say
        check_env(env.unwrapped)
    obs, _ = env.reset(seed=0)
    steps, done = 0, False
    while not done:
        obs, _, done, _, info = env.step(obs[:1])  # truthful
        steps += 1
    assert steps == 3 and info["episode_efficiency"] == pytest.approx(1.0)
    # the module:id form imports the package itself; options reach the market
    other = gymnasium.make("attn_env:AttentionMarket-v0", mechanism="mcafee")
    assert other.unwrapped.config.mechanism == "mcafee"
