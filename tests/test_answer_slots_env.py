"""The answer_slots PettingZoo env (``attn_env/scenarios/answer_env.py``) and its
episodes (``answer_play.py``): the API test, seeded and paired markets, the
economics of a step (IR, dominant truthful bidding in the share rules, shading
in GSP, the quality weight), and one-line errors."""

from __future__ import annotations

import numpy as np
import pytest
from pettingzoo.test import parallel_api_test

from attn_env.config import from_dict
from attn_env.errors import ConfigError, UserError
from attn_env.scenarios.answer_env import OBS_SIZE, AnswerSlotsEnv
from attn_env.scenarios.answer_play import constant, contexts, play
from attn_env.scenarios.answer_slots import (
    CONFIG,
    MECHANISMS,
    AnswerSlotsConfig,
    Source,
    clear,
)

SMALL = AnswerSlotsConfig(env_markets=256, env_steps=3)


@pytest.fixture(scope="module")
def source():
    return Source(SMALL.n_segments)


def _env(source, **changes):
    return AnswerSlotsEnv(from_dict(CONFIG, {**_plain(SMALL), **changes}), source)


def _plain(c):
    return {
        k: getattr(c, k)
        for k in ("env_markets", "env_steps", "mechanisms", "quality_weights")
    }


def _step(env, factor):
    acts = {a: np.array([factor - 1.0], dtype=np.float32) for a in env.agents}
    return env.step(acts)


def test_parallel_api(source):
    parallel_api_test(_env(source, env_markets=32), num_cycles=12)


def test_seeded_reset_draws_the_same_episode_whatever_the_bids(source):
    env = _env(source)
    runs = []
    for factor in (1.0, 0.4):
        env.reset(seed=5)
        ctx = (env.mechanism, env.quality_weight)
        _step(env, factor)
        runs.append((ctx, env.markets.value.copy(), env.markets.alpha.copy()))
    (c1, v1, a1), (c2, v2, a2) = runs
    assert c1 == c2
    np.testing.assert_array_equal(v1, v2)
    np.testing.assert_array_equal(a1, a2)
    env.reset(seed=6)
    _step(env, 1.0)
    assert not np.array_equal(env.markets.value, v1)


def test_reset_draws_every_context_and_options_fix_it(source):
    env = _env(source)
    seen = set()
    for s in range(300):
        env.reset(seed=s)
        seen.add((env.mechanism, env.quality_weight))
    assert seen == set(contexts(env.config))
    obs, _ = env.reset(options={"mechanism": "gsp", "quality_weight": 0.3})
    o = obs["advertiser_2"]
    assert o.shape == (OBS_SIZE,) and o.dtype == np.float32
    assert list(o[:3]) == [0.0, 0.0, 1.0]  # one-hot gsp
    assert o[3] == pytest.approx(0.3) and o[4] == 1.0 and list(o[5:]) == [0, 0, 0]


def test_reward_is_the_agents_mean_utility_and_obs_echo_it(source):
    env = _env(source)
    env.reset(
        seed=1, options={"mechanism": "prominence_auction", "quality_weight": 0.2}
    )
    factors = np.array([1.0, 0.5, 1.5, 0.0])
    acts = {a: np.array([f - 1.0]) for a, f in zip(env.agents, factors, strict=True)}
    obs, rewards, term, trunc, _ = env.step(acts)
    mk = env.markets
    np.testing.assert_allclose(env.bids, factors * mk.value)
    res = clear("prominence_auction", mk, env.bids, 0.2, env.config)
    u = (mk.value * res["x"] - res["pay"]).mean(axis=0)
    for i, a in enumerate(env.possible_agents):
        assert rewards[a] == pytest.approx(u[i], abs=1e-12)
        assert obs[a][4] == pytest.approx(factors[i])
        assert obs[a][7] == pytest.approx(u[i], abs=1e-6)
    # a zero bid takes no attention and pays nothing
    assert obs["advertiser_3"][5] == 0.0 and obs["advertiser_3"][6] == 0.0
    assert not any(term.values()) and not any(trunc.values())


def test_episode_ends_after_env_steps(source):
    env = _env(source, env_steps=2)
    env.reset(seed=0)
    _, _, _, trunc, _ = _step(env, 1.0)
    assert not any(trunc.values()) and env.agents
    _, _, _, trunc, _ = _step(env, 1.0)
    assert all(trunc.values()) and env.agents == []
    with pytest.raises(UserError, match="finished episode"):
        _step(env, 1.0)


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_truthful_bidders_are_individually_rational(source, mechanism):
    env = _env(source)
    for lam in (0.0, 0.2):
        env.reset(seed=2, options={"mechanism": mechanism, "quality_weight": lam})
        _, rewards, *_ = _step(env, 1.0)
        assert min(rewards.values()) >= -1e-12


@pytest.mark.parametrize("mechanism", ["segment_auction", "prominence_auction"])
def test_truthful_is_a_best_response_in_the_share_rules(source, mechanism):
    env = _env(source)
    for lam in (0.0, 0.1, 0.4):
        out = play(env, constant(1.0), mechanism, lam, [3, 4], best_response=True)
        assert out["br_gain"].max() <= 1e-12
        # and shading is not: a deviation back towards truthful gains
        out = play(env, constant(0.5), mechanism, lam, [3], best_response=True)
        assert out["br_gain"].min() > 1e-4


def test_truthful_bidding_is_not_a_best_response_in_gsp(source):
    env = _env(source)
    out = play(env, constant(1.0), "gsp", 0.0, [3, 4], best_response=True)
    assert out["br_gain"].min() > 1e-4


def test_quality_weight_buys_quality(source):
    env = _env(source)
    for mech in MECHANISMS:
        share, quality = [], []
        for lam in (0.0, 0.1, 0.4, 1.6):
            out = play(env, constant(1.0), mech, lam, [7, 8])
            share.append(out["sponsored_share"].mean())
            quality.append(out["quality"].mean())
        assert np.all(np.diff(share) < 0), (mech, share)
        assert np.all(np.diff(quality) > 0), (mech, quality)


def test_zero_bids_leave_the_organic_answer(source):
    env = _env(source)
    for mech in MECHANISMS:
        out = play(env, constant(0.0), mech, 0.2, [1])
        # (1 - organic share: the bank's alpha sums to 1 within float32 rounding)
        assert out["revenue"][0] == 0.0 and out["sponsored_share"][0] <= 1e-6
        assert out["quality_cost"][0] == pytest.approx(0.0, abs=1e-6)


def test_play_pairs_bidders_on_the_same_markets(source):
    env = _env(source)
    a = play(env, constant(1.0), "gsp", 0.1, [11, 12, 13])
    b = play(env, constant(1.0), "gsp", 0.1, [11, 12, 13])
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    c = play(env, constant(0.0), "gsp", 0.1, [11, 12, 13])
    # the organic answer's quality is the same markets' in both plays
    np.testing.assert_allclose(
        a["quality"] + a["quality_cost"], c["quality"] + c["quality_cost"]
    )


@pytest.mark.parametrize(
    ("action", "match"),
    [
        (np.array([1.5]), r"advertiser_1 must be a bid factor minus one in \[-1, 1\]"),
        (np.array([np.nan]), "advertiser_1 must be a bid factor minus one"),
        (np.array([0.1, 0.2]), "advertiser_1 must be one number"),
    ],
)
def test_bad_actions_are_refused_naming_the_agent(source, action, match):
    env = _env(source)
    env.reset(seed=0)
    acts = {a: np.zeros(1) for a in env.agents}
    acts["advertiser_1"] = action
    with pytest.raises(UserError, match=match):
        env.step(acts)
    del acts["advertiser_1"]
    with pytest.raises(UserError, match="no action for advertiser_1"):
        env.step(acts)


def test_bad_reset_options_and_config_are_one_line(source):
    env = _env(source)
    with pytest.raises(UserError, match="mechanism must be one of"):
        env.reset(options={"mechanism": "vcg"})
    with pytest.raises(UserError, match="quality_weight must be a number >= 0"):
        env.reset(options={"quality_weight": -1})
    with pytest.raises(ConfigError, match="env_markets"):
        _env(source, env_markets=0)
    with pytest.raises(ConfigError, match="env_steps"):
        _env(source, env_steps=-2)
    with pytest.raises(ConfigError, match=r"answer_slots\.train\.n_epochs"):
        AnswerSlotsEnv(from_dict(CONFIG, {"train": {"n_epochs": 0}}), source)
    with pytest.raises(ConfigError, match="unknown key 'epochs'"):
        from_dict(CONFIG, {"train": {"epochs": 3}})
    with pytest.raises(ValueError, match="bid factor must be in"):
        constant(2.5)
