"""The feed's PettingZoo env (``attn_env/scenarios/feed_env.py``), its learners'
counterfactual feedback, and its commands (``runner/scenario_commands/feed.py``):
the API test, a seeded reset, a step equal to the scenario's own clearing, the
deviations equal to re-clearing by hand, learners that bid truthfully where
truthful bidding is dominant, train -> evaluate -> compare -> audit end to end
on a tiny config, and errors that name the bad input."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from pettingzoo.test import parallel_api_test

from attn_env.errors import ConfigError, UserError
from attn_env.scenarios import feed as fd
from attn_env.scenarios.feed_env import FeedEnv, check_factors, episode
from attn_env.scenarios.feed_rules import fair_bonus


@pytest.fixture(scope="module")
def feeds():
    return fd.load(fd.FeedConfig())


def tiny(**kw):
    base = {
        "populations": 4,
        "sessions": 6,
        "env_markets": 8,
        "env_sessions": 3,
        "user_models": ["attention"],
        "mechanisms": ["assignment", "gsp"],
        "fairness_weights": [0.3],
    }
    return fd.validate(dataclasses.replace(fd.FeedConfig(), **{**base, **kw}))


# --- the env ---------------------------------------------------------------------


@pytest.mark.parametrize("rule", fd.MECHANISMS)
def test_env_passes_the_parallel_api_test(feeds, rule):
    mechs = [rule] + [m for m in fd.MECHANISMS if m != rule]
    parallel_api_test(FeedEnv(tiny(mechanisms=mechs), feeds), num_cycles=8)


def test_reset_is_seeded_and_a_step_is_the_scenarios_clearing(feeds):
    c = tiny(mechanisms=["fair_assignment"], user_models=["cascade"])
    env = FeedEnv(c, feeds)
    o1, _ = env.reset(seed=5)
    act = {a: np.array([0.3 + 0.1 * i], np.float32) for i, a in enumerate(env.agents)}
    _, r1, *_ = env.step(act)
    o2, _ = env.reset(seed=5)
    _, r2, *_ = env.step(act)
    assert all((o1[a] == o2[a]).all() for a in o1) and r1 == r2
    # replay the step from the env's generator with the scenario's own code
    env.reset(seed=9)
    state = np.random.default_rng()
    state.bit_generator.state = env.np_random.bit_generator.state
    theta, cat = env.theta.copy(), env.cat.copy()
    _, rew, *_ = env.step(act)
    q = state.integers(env.feeds.n_queries, size=c.env_markets)
    budget = state.uniform(c.budget_low, c.budget_high, size=c.env_markets)
    r = feeds.rel[cat, q]
    value = theta[None, :] * r
    f = np.array([act[a][0] for a in env.possible_agents], dtype=np.float64)
    zero = fair_bonus(np.zeros((8, c.n_creators)), np.zeros((8, c.n_creators)), 0.3)
    _, _, got, paid = fd.clear(
        "fair_assignment", "cascade", r, f * value, feeds.pos[q], budget, zero, c
    )
    want = (value * got - paid).mean(axis=0)
    np.testing.assert_allclose([rew[a] for a in env.possible_agents], want)


def test_env_refuses_bad_actions_by_agent(feeds):
    env = FeedEnv(tiny(), feeds)
    env.reset(seed=0)
    acts = {a: np.array([1.0], np.float32) for a in env.agents}
    with pytest.raises(UserError, match="advertiser_0 must be a bid factor"):
        env.step({**acts, "advertiser_0": np.array([2.5], np.float32)})
    with pytest.raises(UserError, match="no action for creator_0"):
        env.step({a: v for a, v in acts.items() if a != "creator_0"})
    with pytest.raises(UserError, match="expected 2 bid factors"):
        check_factors([1.0], ["a", "b"])
    with pytest.raises(ConfigError, match="env_markets"):
        FeedEnv(dataclasses.replace(fd.FeedConfig(), env_markets=0), feeds)
    with pytest.raises(ConfigError, match="feedback"):
        fd.validate(dataclasses.replace(fd.FeedConfig(), feedback="oracle"))
    with pytest.raises(ConfigError, match=r"feed\.train\.n_epochs"):
        cfg = fd.FeedConfig()
        fd.validate(
            dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, n_epochs=0))
        )


# --- counterfactual feedback -------------------------------------------------------


@pytest.mark.parametrize("rule", fd.MECHANISMS)
@pytest.mark.parametrize("model", ["attention", "cascade"])
def test_deviations_equal_re_clearing_one_agent_at_a_time(feeds, rule, model):
    c = tiny(populations=6)
    d = fd.draw(feeds, c)
    rng = np.random.default_rng(1)
    q, budget = d.query[0], d.budget[0]
    r = feeds.rel[d.cat, q]
    value = d.theta * r
    bids = value * rng.uniform(0.3, 1.5, size=value.shape)
    bonus = rng.normal(0, 0.1, size=(6, c.n_creators))
    levels = fd._agent_levels(c)
    dev = fd.deviations(
        rule, model, r, value, bids, feeds.pos[q], budget, bonus, c, levels
    )
    for i in (0, 5, c.n_creators, r.shape[1] - 1):
        for k in range(levels.shape[1]):
            b = bids.copy()
            b[:, i] = levels[i, k] * value[:, i]
            _, _, got, paid = fd.clear(
                rule, model, r, b, feeds.pos[q], budget, bonus, c
            )
            np.testing.assert_allclose(
                dev[:, i, k], value[:, i] * got[:, i] - paid[:, i]
            )


def test_counterfactual_learners_bid_truthfully_where_it_is_dominant(feeds):
    """In ``assignment`` bidding the value is dominant: counterfactual learners
    end on factor 1 (or a tie with it: an agent whose bid never mattered),
    where bandit learners cannot tell the levels apart in the noise."""
    c = tiny(populations=24, sessions=120, bidders="learner", explore=0.1)
    d = fd.draw(feeds, c)
    res = fd.run(feeds, d, c, "assignment", 0.0, "attention", np.random.default_rng(0))
    assert res["ad_factor"].mean() > 0.95 and res["promo_factor"].mean() > 0.9
    band = dataclasses.replace(c, feedback="bandit")
    res_b = fd.run(
        feeds, d, band, "assignment", 0.0, "attention", np.random.default_rng(0)
    )
    assert res_b["ad_factor"].mean() < res["ad_factor"].mean() - 0.1


def test_full_information_bandit_ties_are_random_not_first():
    b = fd.Bandit([0.5, 1.0], p=400, n=1, explore=0.0)
    b.update_all(np.ones((400, 1), bool), np.zeros((400, 1, 2)))
    share = (b.final(np.random.default_rng(0)) == 1.0).mean()
    assert 0.4 < share < 0.6
    b.update_all(np.ones((400, 1), bool), np.tile([0.0, 1e-6], (400, 1, 1)))
    assert (b.final(np.random.default_rng(0)) == 1.0).all()


# --- the commands ------------------------------------------------------------------


def test_episode_profiles_and_fairness(feeds):
    env = FeedEnv(tiny(mechanisms=["fair_ranking"], fairness_weights=[1.0]), feeds)
    truthful = episode(env, 3, lambda o, e: np.ones(len(o)))
    shaded = episode(env, 3, lambda o, e: np.full(len(o), 0.5))
    assert truthful["factor"].mean() == 1.0 and shaded["factor"].mean() == 0.5
    # gsp's sponsored price is the next score over own relevance: halving every
    # bid halves every price on the same sessions and allocation
    assert shaded["revenue"] == pytest.approx(truthful["revenue"] / 2)
    assert 0.0 <= truthful["fairness_gap"] <= 1.0


def test_train_evaluate_compare_audit_end_to_end(tmp_path, feeds):
    from runner.scenario_commands import feed as cmd

    tc = dataclasses.replace(
        fd.FeedConfig().train,
        timesteps=300,
        num_envs=1,
        n_steps=16,
        batch_size=32,
        n_epochs=1,
        eval_every=300,
        eval_episodes=1,
        device="cpu",
    )
    c = tiny(train=tc, n_creators=4, n_advertisers=2)
    rec = cmd.train(c, tmp_path / "run", progress=False)
    assert rec["timesteps"] >= 300 and len(rec["curve"]) == 2
    # the summary speaks of the policy the run kept, not the last one trained
    kept = next(p for p in rec["curve"] if p["timesteps"] == rec["kept"]["timesteps"])
    assert f"validation utility against truthful others {kept['score']:.4f}" in (
        cmd.train_summary(rec)
    )
    ev = cmd.evaluate(c, tmp_path / "run", 2)
    json.dumps(ev)
    truth = ev["by_bidders"]["truthful"]
    assert truth["ad_factor"]["mean"] == 1.0 and truth["creator_factor"]["mean"] == 1.0
    assert [d["label"] for d in ev["differences"]] == [
        "policy - truthful",
        "learner - truthful",
    ]
    fair = dataclasses.replace(c, mechanisms=["fair_assignment"])
    cmp_ = cmd.compare([("assignment", c), ("fair", fair), ("same", c)])
    json.dumps(cmp_)
    same = cmp_["differences"][1]
    assert same["user_welfare"]["mean"] == 0.0 and same["revenue"]["mean"] == 0.0
    with pytest.raises(UserError, match="same seed, populations and sessions"):
        cmd.compare([("a", c), ("b", dataclasses.replace(c, sessions=7))])
    au = cmd.audit(c)
    json.dumps(au)
    rows = {r["label"]: r for r in au["rules"]}
    # assignment: no deviation of any agent gains (truthful is dominant)
    assert rows["attention assignment 0"]["largest_gain"] <= 1e-9
    assert rows["attention assignment 0"]["best_response_factor_ad"]["mean"] == 1.0
    for inv in au["invariants"]:
        assert inv["ir"] == inv["repeat"] == inv["budget"] == inv["overpay"] == 0


def test_gsp_rewards_shading_in_the_audit():
    from runner.scenario_commands import feed as cmd

    au = cmd.audit(tiny(populations=16, sessions=20, mechanisms=["gsp"]))
    (row,) = au["rules"]
    assert row["largest_gain"] > 1e-3
    assert row["best_response_factor_ad"]["mean"] < 1.0


def test_best_factor_prefers_truthful_among_ties():
    from runner.scenario_commands.feed import DEVIATIONS, best_factor

    flat = np.zeros((2, len(DEVIATIONS)))
    flat[1, 3] = 1.0
    np.testing.assert_array_equal(best_factor(flat), [1.0, DEVIATIONS[3]])


@pytest.mark.parametrize(
    ("path", "rule"),
    [
        ("configs/scenarios/feed.yaml", "assignment"),
        ("configs/scenarios/feed_gsp.yaml", "gsp"),
    ],
)
def test_shipped_configs_read_and_name_the_envs_rule(path, rule, feeds):
    from runner.scenarios import read_scenario

    name, cfg = read_scenario(path)
    assert name == "feed" and cfg.train.timesteps > 0
    assert FeedEnv(cfg, feeds).rule == rule
