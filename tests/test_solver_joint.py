"""Correlated values in the solver (``solve.prior``): known answers and brute force.

- second price with affiliated values (and with the attention bank's joint
  draws): truthful bidding stays dominant, so the solver must return b(v) = v;
- first price with ``w = 0`` is the independent uniform case, ``v / 2``;
- first price with affiliated values ``v_i = (c + e_i) / 2``: a brute-force best
  response computed from the prior itself
  (``equilibria.affiliated_best_reply_gain``, no solver code) gains under 0.01
  against the solved strategy, and over 0.01 against the independent-values
  ``v / 2``;
- the payoff formulas against direct enumeration.
"""

from __future__ import annotations

import numpy as np
import pytest

from attn_env.checks import ConfigError
from attn_env.config import EnvConfig, SolveConfig, SolvePrior
from attn_env.equilibria import affiliated_best_reply_gain
from attn_env.solver import game_from_config, solve
from attn_env.solver.cache import _key
from attn_env.solver.joint import JointValues, pure_payoffs, strategy_payoffs


def test_second_price_affiliated_is_truthful():
    env = EnvConfig(mechanism="second_price", n_buyers=2)
    sol = solve(env, SolveConfig(cache=False, prior=SolvePrior("common_noise", 0.5)))
    r = sol.roles["buyer"]
    v, b = np.asarray(r.values), np.asarray(r.bids)
    inner = (v > 0.05) & (v < 0.95)  # the ends: few draws, any bid near v is fine
    assert np.abs(b - v)[inner].max() <= 0.015  # 1.5 grid steps
    assert r.utility_loss < 0.005 and sol.converged


def test_first_price_without_common_part_is_independent():
    env = EnvConfig(n_buyers=2)
    sol = solve(env, SolveConfig(cache=False, prior=SolvePrior("common_noise", 0.0)))
    v, b = np.asarray(sol.roles["buyer"].values), np.asarray(sol.roles["buyer"].bids)
    assert np.sqrt(np.mean((b - v / 2) ** 2)) <= 0.01


@pytest.mark.slow
def test_first_price_affiliated_brute_force_best_response():
    env = EnvConfig(n_buyers=2)
    sol = solve(env, SolveConfig(cache=False, prior=SolvePrior("common_noise", 0.5)))
    assert sol.converged
    assert affiliated_best_reply_gain(sol.bid_function("buyer"), 0.5) < 0.01
    # the independent-values equilibrium is not one here: the check can fail
    assert affiliated_best_reply_gain(lambda v: np.asarray(v) / 2, 0.5) > 0.01


def test_attention_bank_joint_draws_second_price_truthful():
    env = EnvConfig(mechanism="second_price", n_buyers=2, valuation="attention")
    s = SolveConfig(cache=False, prior=SolvePrior("source", draws=16384))
    sol = solve(env, s)
    r = sol.roles["buyer"]
    v, b = np.asarray(r.values), np.asarray(r.bids)
    inner = (v > np.quantile(v, 0.05)) & (v < np.quantile(v, 0.95))
    assert np.abs(b - v)[inner].max() <= 0.015
    assert sol.market["prior"]["kind"] == "source"


def _random_strategy(rng, v, g):
    s = rng.random((v, g)) ** 4
    return s / s.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("rule", ["first_price", "second_price", "all_pay"])
def test_pair_law_equals_per_observation_payoffs(rule):
    """Two buyers take the [V, V] pair-law shortcut; it must equal the mean over
    the observations that more buyers use."""
    rng = np.random.default_rng(3)
    prof = rng.random((2000, 2))
    prof[:, 1] = 0.5 * prof[:, 0] + 0.5 * prof[:, 1]
    joint = JointValues.build(prof, prof, 8)
    obs = joint.solve
    bids = np.linspace(0.0, 1.0, 11)
    strat = _random_strategy(rng, 8, 11)
    fast = strategy_payoffs(rule, obs, strat, bids, 0.7, 0.2)
    import dataclasses

    slow = strategy_payoffs(
        rule, dataclasses.replace(obs, pair=None), strat, bids, 0.7, 0.2
    )
    np.testing.assert_allclose(fast[0], slow[0], atol=1e-12)
    np.testing.assert_allclose(fast[1], slow[1], atol=1e-12)


@pytest.mark.parametrize("rule", ["first_price", "second_price", "all_pay"])
def test_strategy_payoffs_against_enumeration(rule):
    """Three buyers, opponents' bids enumerated over the grid per observation."""
    rng = np.random.default_rng(4)
    prof = rng.random((60, 3))
    joint = JointValues.build(prof, prof, 4)
    obs = joint.solve
    bids = np.array([0.0, 0.3, 0.6, 0.9])
    strat = _random_strategy(rng, 4, 4)
    qty, money = strategy_payoffs(rule, obs, strat, bids, 1.0, 0.3)
    want_q = np.zeros((len(obs.focal), 4))
    want_m = np.zeros_like(want_q)
    for o in range(len(obs.focal)):
        b1, b2 = obs.opp[o]
        for i, x in enumerate(bids):
            for j, y in enumerate(bids):
                p = strat[b1, i] * strat[b2, j]
                for k, c in enumerate(bids):
                    if c < 0.3:
                        continue
                    top = max(x, y)
                    tied = int(x == c) + int(y == c)
                    w = 1.0 if c > top else (1.0 / (tied + 1) if c == top else 0.0)
                    price = {"first_price": c, "all_pay": c}.get(
                        rule, max(top, 0.3) if c > top else c
                    )
                    want_q[o, k] += p * w
                    want_m[o, k] += p * (c if rule == "all_pay" else w * price)
    np.testing.assert_allclose(qty, obs.mean(want_q), atol=1e-12)
    np.testing.assert_allclose(money, obs.mean(want_m), atol=1e-12)


def test_pure_payoffs_against_direct_table():
    rng = np.random.default_rng(5)
    prof = np.round(rng.random((300, 3)), 1)  # ties in the bids
    prof = prof + rng.random((300, 3)) * 1e-3
    joint = JointValues.build(prof, prof, 5)
    obs = joint.solve
    fn = lambda v: np.round(np.asarray(v), 1)  # noqa: E731
    cand = np.linspace(0.0, 1.0, 21)
    for rule in ("first_price", "second_price", "all_pay"):
        qty, money = pure_payoffs(rule, obs, fn, cand, 1.0, 0.25)
        theirs = fn(obs.others)
        top = theirs.max(axis=1)[:, None]
        ties = (theirs == top).sum(axis=1)[:, None]
        c = cand[None, :]
        win = (c >= 0.25) * ((c > top) + (c == top) / (ties + 1))
        pay = {
            "first_price": c * win,
            "all_pay": np.broadcast_to((c >= 0.25) * c, win.shape),
            "second_price": (c >= 0.25)
            * (np.maximum(top, 0.25) * (c > top) + c * (c == top) / (ties + 1)),
        }[rule]
        np.testing.assert_allclose(qty, obs.mean(win), atol=1e-12)
        np.testing.assert_allclose(money, obs.mean(np.asarray(pay)), atol=1e-12)


def test_refusals_name_the_problem():
    rng = np.random.default_rng(0)
    s = SolveConfig(prior=SolvePrior("common_noise"))
    with pytest.raises(ConfigError, match="one-slot"):
        game_from_config(EnvConfig(mechanism="gsp", n_buyers=4, n_slots=3), s, rng)
    with pytest.raises(ConfigError, match="valuation: uniform"):
        game_from_config(EnvConfig(n_buyers=2, valuation="attention"), s, rng)


def test_cache_key_has_the_prior_only_when_set():
    env = EnvConfig(n_buyers=2)
    plain = _key(env, SolveConfig(), 0)
    assert plain == _key(env, SolveConfig(prior=SolvePrior()), 0)
    assert plain != _key(env, SolveConfig(prior=SolvePrior("common_noise")), 0)
    assert _key(env, SolveConfig(prior=SolvePrior("common_noise")), 0) != _key(
        env, SolveConfig(prior=SolvePrior("common_noise", 0.3)), 0
    )
