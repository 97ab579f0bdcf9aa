"""Baseline agents: exact formulas, bounds, best-response checks and adaptation."""

from __future__ import annotations

import numpy as np
import pytest

import agents
from attn_env.config import make_config
from attn_env.equilibria import bne_strategy
from attn_env.observation import (
    ACTIVE,
    BUDGET,
    LAST_PAY,
    OBS_BASE_DIM,
    ROLE,
    ROUND,
    VALUE,
)
from attn_env.players import Agent


def _obs(values, seller=False, budget=0.0, round_frac=0.0, active=1.0):
    v = np.asarray(values, dtype=np.float32)
    obs = np.zeros((v.size, OBS_BASE_DIM), dtype=np.float32)
    obs[:, VALUE] = v
    obs[:, ROLE] = float(seller)
    obs[:, BUDGET] = budget
    obs[:, ROUND] = round_frac
    obs[:, ACTIVE] = active
    return obs


RNG = np.random.default_rng(0)
VALUES = np.linspace(0.0, 1.0, 11)


def test_registry_lists_every_kind():
    assert agents.names() == [
        "truthful",
        "bne",
        "shading",
        "zi_c",
        "zip",
        "gd",
        "pacing",
        "shill",
        "ring",
        "wash",
        "absent",
        "equilibrium",
        "qlearn",
    ]


def test_make_errors_name_the_bad_input():
    with pytest.raises(ValueError, match=r"unknown agent kind 'nope'.*truthful"):
        agents.make("nope")
    with pytest.raises(ValueError, match=r"no parameter 'shadow'.*shade"):
        agents.make("shading", shadow=0.5)
    with pytest.raises(ValueError, match="shade"):
        agents.make("shading", shade=1.5)


@pytest.mark.parametrize("kind", ["truthful", "shading", "zi_c", "zip", "gd", "pacing"])
@pytest.mark.parametrize("seller", [False, True])
def test_every_agent_acts_in_shape_and_never_at_a_loss(kind, seller):
    agent = agents.make(kind)
    assert isinstance(agent, Agent)
    agent.reset(11, RNG)
    act = agent.act(_obs(VALUES, seller=seller, budget=10.0), RNG)
    assert act.shape == (11, 1) and act.dtype == np.float32
    if seller:
        assert np.all(act[:, 0] >= VALUES.astype(np.float32) - 1e-6)
    else:
        assert np.all(
            (act[:, 0] >= 0) & (act[:, 0] <= VALUES.astype(np.float32) + 1e-6)
        )


def test_truthful_and_shading_exact():
    np.testing.assert_allclose(
        agents.make("truthful").act(_obs(VALUES), RNG)[:, 0], VALUES, 1e-6
    )
    sh = agents.make("shading", shade=0.8, max_price=2.0)
    np.testing.assert_allclose(sh.act(_obs(VALUES), RNG)[:, 0], 0.8 * VALUES, 1e-6)
    ask = sh.act(_obs(VALUES, seller=True), RNG)[:, 0]
    np.testing.assert_allclose(ask, VALUES + 0.2 * (2.0 - VALUES), 1e-6)


def test_zi_c_within_bounds_and_uniform():
    zi = agents.make("zi_c", max_price=1.0)
    v = np.full(20_000, 0.6)
    bids = zi.act(_obs(v), RNG)[:, 0]
    asks = zi.act(_obs(np.full(20_000, 0.3), seller=True), RNG)[:, 0]
    assert bids.min() >= 0 and bids.max() <= 0.6 + 1e-6
    assert asks.min() >= 0.3 - 1e-6 and asks.max() <= 1.0
    # U[0, 0.6] has mean 0.3 and sd 0.6/sqrt(12); U[0.3, 1] has mean 0.65
    assert bids.mean() == pytest.approx(0.3, abs=4 * 0.173 / np.sqrt(20_000))
    assert asks.mean() == pytest.approx(0.65, abs=4 * 0.202 / np.sqrt(20_000))


@pytest.mark.parametrize("n", [2, 3, 5])
def test_bne_first_price_formula(n):
    bne = agents.for_market("bne", {}, make_config(mechanism="first_price", n_buyers=n))
    np.testing.assert_allclose(
        bne.act(_obs(VALUES), RNG)[:, 0], (n - 1) / n * VALUES, 1e-6
    )


def test_bne_first_price_two_slots_is_conditional_mean_of_kth_rival():
    """n = 3, K = 2: b(v) = E[Y | Y < v], Y the lower of the 2 others; b(1) = 1/3."""
    env = {"mechanism": "first_price", "n_buyers": 3, "n_slots": 2}
    bne = agents.for_market("bne", {}, make_config(**env))
    assert bne.act(_obs([1.0]), RNG)[0, 0] == pytest.approx(1 / 3, abs=1e-6)
    rng = np.random.default_rng(7)
    y = rng.uniform(size=(400_000, 2)).min(axis=1)  # 2nd highest of the 2 others
    v = np.array([0.3, 0.6, 0.9])
    mc = [y[y < x].mean() for x in v]
    np.testing.assert_allclose(bne.act(_obs(v), RNG)[:, 0], mc, atol=3e-3)
    # on U[0, 2] the same game scaled: twice the bids at twice the values
    wide = agents.for_market("bne", {}, make_config(**env, value_high=2.0))
    np.testing.assert_allclose(
        wide.act(_obs(2 * v), RNG)[:, 0], 2 * bne.act(_obs(v), RNG)[:, 0], rtol=1e-5
    )


_BNE_SETTINGS = [
    {"mechanism": m, "n_buyers": n, "n_slots": k, **extra}
    for m in ("first_price", "second_price", "gsp", "vcg", "assignment")
    for n, k in ((2, 1), (4, 2), (3, 3))
    for extra in (
        {},
        {"mechanism_params": {"reserve": 0.2}},
        {"value_low": 0.5, "value_high": 2.0},
        {"value_dist": "beta"},
        {"budget": 1.0},
        {"rounds": 3, "redraw": "episode"},
    )
] + [
    {"mechanism": m, "n_buyers": n, "n_sellers": s, **extra}
    for m in ("k_double", "mcafee", "call_market", "cda")
    for n, s in ((1, 1), (3, 2))
    for extra in (
        {},
        {"mechanism_params": {"k": 0.3}} if m in ("k_double", "call_market") else {},
        {"value_high": 2.0},
        {"value_low": 0.25, "cost_low": 0.25},
    )
]


@pytest.mark.parametrize(
    "setting", _BNE_SETTINGS, ids=lambda s: "-".join(f"{v}" for v in s.values())
)
def test_bne_agent_plays_what_evaluation_measures_against(setting):
    # One source: wherever either the bne agent or evaluation answers, both do,
    # and the agent's bids (asks) on observations equal the strategy's.
    cfg = make_config(**setting)
    star = {r: bne_strategy(cfg, r) for r in ("buyer", "seller")}
    if star["buyer"] is None:
        with pytest.raises(ValueError, match="no analytic BNE"):
            agents.for_market("bne", {}, cfg)
        return
    agent = agents.for_market("bne", {}, cfg)
    lo, hi = cfg.value_low, cfg.value_high
    values = np.linspace(lo, hi, 21)
    np.testing.assert_allclose(
        agent.act(_obs(values), RNG)[:, 0], star["buyer"](values), atol=1e-6
    )
    if star["seller"] is not None:
        costs = np.linspace(cfg.cost_low, cfg.cost_high, 21)
        np.testing.assert_allclose(
            agent.act(_obs(costs, seller=True), RNG)[:, 0],
            star["seller"](costs),
            atol=1e-6,
        )


def test_bne_known_settings_by_hand():
    # which settings have an analytic BNE (the table of attn_env.equilibria)
    def known(**kw):
        return bne_strategy(make_config(**kw), "buyer") is not None

    assert known(mechanism="gsp", n_slots=1) and not known(mechanism="gsp", n_slots=2)
    assert known(mechanism="assignment", n_buyers=3, n_slots=2)
    assert known(mechanism="first_price", value_low=0.5)
    assert known(mechanism="first_price", mechanism_params={"reserve": 0.3})
    assert not known(
        mechanism="first_price",
        n_buyers=4,
        n_slots=2,
        mechanism_params={"reserve": 0.1},
    )
    assert not known(mechanism="first_price", valuation="attention")
    assert not known(mechanism="call_market", n_buyers=1)
    assert not known(mechanism="k_double", n_buyers=2, n_sellers=2)
    # first price on U[0.5, 2]: b(v) = 0.5 + (n - 1)/n (v - 0.5)
    b = bne_strategy(
        make_config(mechanism="first_price", value_low=0.5, value_high=2.0), "buyer"
    )
    np.testing.assert_allclose(b(np.array([0.5, 1.0, 2.0])), [0.5, 0.75, 1.25])


def test_bne_first_price_is_a_best_response():
    # n = 2: against b(v) = v/2 a bid b wins with probability min(2b, 1)
    grid = np.linspace(0.0, 1.0, 2001)
    bne = agents.make("bne", env=make_config(mechanism="first_price", n_buyers=2))
    for v in (0.2, 0.5, 0.9):
        best = grid[np.argmax((v - grid) * np.minimum(2 * grid, 1.0))]
        assert bne.act(_obs([v]), RNG)[0, 0] == pytest.approx(best, abs=1e-3)


def test_bne_first_price_with_reserve_closed_form():
    # n = 2, reserve r: b(v) = v/2 + r^2 / (2v) for v >= r (Krishna 2.5)
    bne = agents.make(
        "bne",
        env=make_config(
            mechanism="first_price", n_buyers=2, mechanism_params={"reserve": 0.3}
        ),
    )
    v = np.array([0.1, 0.3, 0.6, 1.0])
    want = np.where(v >= 0.3, v / 2 + 0.09 / (2 * v), 0.0)
    np.testing.assert_allclose(bne.act(_obs(v), RNG)[:, 0], want, rtol=1e-6)


def test_bne_k_double_chatterjee_samuelson():
    env = make_config(mechanism="k_double", n_buyers=1, n_sellers=1)
    bne = agents.for_market("bne", {}, env)
    np.testing.assert_allclose(
        bne.act(_obs(VALUES), RNG)[:, 0], 2 * VALUES / 3 + 1 / 12, 1e-6
    )
    np.testing.assert_allclose(
        bne.act(_obs(VALUES, seller=True), RNG)[:, 0], 2 * VALUES / 3 + 1 / 4, 1e-6
    )


def test_bne_k_double_buyer_best_responds_to_seller():
    # seller asks s(c) = 2c/3 + 1/4 with c ~ U[0,1]: asks ~ U[1/4, 11/12], p = (b + s)/2
    s = np.linspace(0.25, 11 / 12, 4001)
    grid = np.linspace(0.0, 1.0, 1001)
    bne = agents.make(
        "bne", env=make_config(mechanism="k_double", n_buyers=1, n_sellers=1)
    )
    for v in (0.5, 0.8, 1.0):
        gain = [np.mean(np.where(s <= b, v - (b + s) / 2, 0.0)) for b in grid]
        assert bne.act(_obs([v]), RNG)[0, 0] == pytest.approx(
            grid[np.argmax(gain)], abs=2e-3
        )


@pytest.mark.parametrize("mech", ["second_price", "vcg", "mcafee", "assignment"])
def test_bne_truthful_where_dominant(mech):
    bne = agents.make("bne", env=make_config(mechanism=mech, n_buyers=3))
    np.testing.assert_allclose(bne.act(_obs(VALUES), RNG)[:, 0], VALUES, 1e-6)


@pytest.mark.parametrize("mech", ["gsp", "cda", "call_market", "stable_matching"])
def test_bne_unknown_names_the_mechanism(mech):
    with pytest.raises(ValueError, match=mech):
        agents.make("bne", env=make_config(mechanism=mech, n_buyers=3, n_slots=2))


def test_pacing_spends_evenly_and_within_budget():
    # The agent always wins and pays its bid (first price with no rival).
    rounds, budget, n = 10, 2.0, 64
    pacer = agents.make("pacing", rounds=rounds, budget=budget, eta=2.0)
    pacer.reset(n, RNG)
    left, pay = np.full(n, budget), np.zeros(n)
    spent = []
    for t in range(rounds):
        obs = _obs(RNG.uniform(0.5, 1.0, n), budget=0.0, round_frac=t / rounds)
        obs[:, BUDGET], obs[:, LAST_PAY] = left, pay
        pay = pacer.act(obs, RNG)[:, 0].astype(np.float64)
        assert np.all(pay <= left + 1e-6)
        left = left - pay
        spent.append(pay.mean())
    assert np.all(left >= -1e-6)
    # unpaced, the agent would spend 0.75 a round (7.5 in all) against a budget of 2
    assert budget - left.mean() == pytest.approx(budget, rel=0.15)
    assert max(spent[2:]) < 2.5 * budget / rounds


def test_pacing_without_budget_is_truthful_and_restarts_each_episode():
    free = agents.make("pacing", rounds=5, budget=None)
    np.testing.assert_allclose(free.act(_obs(VALUES), RNG)[:, 0], VALUES, 1e-6)
    pacer = agents.make("pacing", rounds=4, budget=1.0, eta=5.0)
    pacer.reset(1, RNG)
    obs = _obs([1.0], budget=1.0, round_frac=0.5)
    obs[:, LAST_PAY] = 1.0  # overspent: mu rises, the bid falls
    assert pacer.act(obs, RNG)[0, 0] < 1.0
    # round 0 of a new episode: mu back to 0, truthful bid up to the budget
    assert pacer.act(_obs([0.7], budget=1.0, round_frac=0.0), RNG)[
        0, 0
    ] == pytest.approx(0.7)


def test_zip_buyer_learns_down_to_the_price():
    zip_ = agents.make("zip")
    zip_.reset(200, np.random.default_rng(1))
    for _ in range(60):
        zip_.act(_obs(np.ones(200)), RNG)
        # the market keeps clearing at 0.5 and the buyer trades: it overpays
        zip_.observe({"clearing_price": np.full(200, 0.5), "own_alloc": np.ones(200)})
    bid = zip_.act(_obs(np.ones(200)), RNG)[:, 0]
    assert 0.40 < bid.mean() < 0.56  # targets R*0.5 + A, R in [.95, 1], A in [-.05, 0]


def test_zip_seller_without_trades_lowers_its_ask():
    zip_ = agents.make("zip")
    zip_.reset(100, np.random.default_rng(2))
    obs = _obs(np.full(100, 0.4), seller=True)
    first = zip_.act(obs, RNG)[:, 0].copy()
    for _ in range(30):
        zip_.act(obs, RNG)
        zip_.observe({"clearing_price": np.full(100, np.nan)})
    last = zip_.act(obs, RNG)[:, 0]
    assert np.all(last <= first + 1e-6) and last.mean() < first.mean()
    assert np.all(last >= 0.4 - 1e-6)


def test_gd_belief_and_best_bid_hand_case():
    gd = agents.make("gd", grid=11, memory=3)
    gd.reset(1, RNG)
    # one round: a bid at 0.5 traded, a bid at 0.2 did not; no sellers' orders
    gd.observe(
        {
            "clearing_price": np.array([0.5]),
            "bids": np.array([[0.5, 0.2]]),
            "alloc": np.array([[1.0, 0.0]]),
        }
    )
    q, _ = gd.beliefs()
    # b <= 0.2: one rejected bid above, nothing accepted below -> 0;
    # 0.2 < b < 0.5: no evidence -> prior b; b >= 0.5: the accepted bid -> 1
    want = [0, 0, 0, 0.3, 0.4, 1, 1, 1, 1, 1, 1]
    np.testing.assert_allclose(q[0], want)
    # value 0.8: (0.8 - b) q(b) peaks at b = 0.5 (0.3 against 0.16 at b = 0.4)
    assert gd.act(_obs([0.8]), RNG)[0, 0] == pytest.approx(0.5)


def test_gd_seller_belief_and_memory_bound():
    gd = agents.make("gd", grid=11, memory=2)
    gd.reset(1, RNG)
    for _ in range(5):
        gd.observe(
            {
                "clearing_price": np.array([0.6]),
                "bids": np.array([[0.6]]),
                "asks": np.array([[0.6, 0.9]]),
                "alloc": np.array([[1.0]]),
                "seller_alloc": np.array([[1.0, 0.0]]),
            }
        )
    assert len(gd._history) == 2
    _, p = gd.beliefs()
    # a <= 0.6: taken ask / bid at 0.6 above, no rejected ask below -> 1;
    # 0.6 < a < 0.9: no evidence -> prior 1 - a; a >= 0.9: rejected asks only -> 0
    np.testing.assert_allclose(p[0], [1] * 7 + [0.3, 0.2, 0, 0])
    assert gd.act(_obs([0.3], seller=True), RNG)[0, 0] == pytest.approx(0.6)


def test_for_market_fills_market_params_and_params_win():
    env = make_config(mechanism="first_price", n_buyers=4, value_high=2.0, rounds=7)
    assert agents.for_market("zi_c", {}, env).max_price == 2.0
    assert agents.for_market("zi_c", {"max_price": 3.0}, env).max_price == 3.0
    assert agents.for_market("pacing", {"eta": 0.5}, env).rounds == 7
    bne = agents.for_market("bne", {}, env)
    np.testing.assert_allclose(bne.act(_obs([1.0]), RNG)[0, 0], 0.75)
