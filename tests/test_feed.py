"""The ``feed`` scenario (``attn_env/scenarios/feed.py``, ``feed_rules.py``):
amortised fair ranking shrinks the exposure/merit gap, the assignment is
optimal (brute force and the library's ``assignment``), its payments are the
Myerson payments and truthful bidding is a best response, exposure never
passes the budget, truthful bidders are individually rational, config errors
are one line."""

from __future__ import annotations

import dataclasses
import itertools
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attn_env import mechanisms
from attn_env.config import from_dict
from attn_env.errors import ConfigError
from attn_env.scenarios import feed as fd
from attn_env.scenarios import feed_rules as fr

PROPS = settings(max_examples=60, deadline=None)


@pytest.fixture(scope="module")
def feeds():
    return fd.load(fd.FeedConfig())


def small(**kw):
    base = {"populations": 16, "sessions": 240, "user_models": ["attention"]}
    return fd.validate(dataclasses.replace(fd.FeedConfig(), **{**base, **kw}))


# --- amortised fairness ----------------------------------------------------------


@pytest.mark.parametrize("model", ["attention", "cascade"])
def test_fair_ranking_shrinks_the_amortised_gap_against_merit_ranking(feeds, model):
    c = small()
    d = fd.draw(feeds, c)
    merit = fd.run(feeds, d, c, "gsp", 0.0, model, np.random.default_rng(0))
    fair = fd.run(feeds, d, c, "fair_ranking", 1.0, model, np.random.default_rng(0))
    g_merit = np.nanmean(merit["gap_curve"], axis=1)
    g_fair = np.nanmean(fair["gap_curve"], axis=1)
    # merit ranking stays unfair: the gap settles well above 0
    assert g_merit[-1] > 0.05
    # the fair rule's gap falls over the sessions, to a fraction of merit's
    assert g_fair[-1] < g_fair[0] / 3
    assert g_fair[-1] < g_merit[-1] / 5
    # the gap is the library's measure of the cumulative records
    gap = fd.tv_gap(fair["cum_exposure"], fair["cum_merit"])
    np.testing.assert_allclose(gap, fair["gap_curve"][-1])
    from attn_env.integrity.fairness import exposure_merit_gap

    e, u = fair["cum_exposure"], fair["cum_merit"]
    want = [exposure_merit_gap(e[i : i + 1], u[i : i + 1]) for i in range(len(e))]
    np.testing.assert_allclose(gap, want, rtol=1e-12)


def test_fair_bonus_is_the_deficit_against_merit_proportional_exposure():
    e = np.array([[3.0, 1.0, 0.0]])
    u = np.array([[1.0, 1.0, 2.0]])  # target shares 1/4, 1/4, 1/2 of E = 4
    np.testing.assert_allclose(fr.fair_bonus(e, u, 2.0), [[-4.0, 0.0, 4.0]])
    assert fr.fair_bonus(e, u, 2.0).sum() == pytest.approx(0.0)


# --- assignment: optimality and payments -----------------------------------------


def brute_force(score, w):
    """Best ``sum score_i w_k`` over every injective map of positions to items."""
    n, k = score.size, w.size
    best = 0.0
    for m in range(min(n, k) + 1):
        for items in itertools.permutations(range(n), m):
            best = max(best, sum(score[i] * w[j] for j, i in enumerate(items)))
    return best


@st.composite
def instance(draw):
    n = draw(st.integers(1, 5))
    k = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    r = rng.uniform(0.05, 1.0, (1, n))
    b = rng.random((1, n)) * (rng.random((1, n)) < 0.8)
    bonus = rng.random((1, n)) * draw(st.sampled_from([0.0, 0.5, 1.0]))
    pos = -np.sort(-rng.uniform(0.2, 1.0, (1, k)), axis=1)
    budget = rng.uniform(0.3, k, 1)
    w = fr.budget_cut(pos, budget)  # non-increasing, zeros past the budget
    return r, b, bonus, w


def welfare(order, score, w):
    o = order[0]
    return float(np.where(o >= 0, score[0, np.maximum(o, 0)], 0.0) @ w[0])


@PROPS
@given(instance())
def test_rank_by_score_is_a_max_weight_assignment(inst):
    r, b, bonus, w = inst
    score = b * r + bonus
    order, _ = fr.rank_by_score(score, w.shape[1])
    best = brute_force(score[0], w[0])
    assert welfare(order, score, w) == pytest.approx(best, abs=1e-12)
    # the library's assignment on the same values reaches the same welfare
    out = mechanisms.make("assignment").clear(
        score[:, :, None] * w[:, None, :], rng=np.random.default_rng(0)
    )
    assert out.extra["welfare"][0] == pytest.approx(best, abs=1e-12)


@PROPS
@given(instance())
def test_affine_payments_are_myerson_and_individually_rational(inst):
    r, b, bonus, w = inst
    k = w.shape[1]
    score = b * r + bonus
    order, srt = fr.rank_by_score(score, k)
    price = fr.affine_payments(order, srt, w, r, bonus)
    top = welfare(order, score, w)
    for pos_k, i in enumerate(order[0]):
        if i < 0:
            continue
        pay = price[0, pos_k] * w[0, pos_k]
        # Myerson / affine VCG: (best welfare with i's bid at 0, i still in
        # with its bonus) - (this welfare without i's bid), over r_i
        zero = score.copy()
        zero[0, i] = bonus[0, i]
        o0, _ = fr.rank_by_score(zero, k)
        want = (welfare(o0, zero, w) - (top - b[0, i] * r[0, i] * w[0, pos_k])) / r[
            0, i
        ]
        assert pay == pytest.approx(want, abs=1e-9)
        assert -1e-12 <= pay <= b[0, i] * w[0, pos_k] + 1e-12


def test_truthful_bidding_is_a_best_response_in_assignment():
    rng = np.random.default_rng(3)
    m, n, k = 2000, 5, 4
    r = rng.uniform(0.05, 1.0, (m, n))
    v = rng.random((m, n))
    bonus = 0.5 * r
    w = fr.budget_cut(-np.sort(-rng.uniform(0.2, 1, (m, k)), 1), rng.uniform(1, 4, m))

    def utility(bids, i):
        order, srt = fr.rank_by_score(bids * r + bonus, k)
        price = fr.affine_payments(order, srt, w, r, bonus)
        at = order == i
        return ((v[:, i : i + 1] - price) * w * at).sum(axis=1)

    for i in range(n):
        truthful = utility(v, i)
        assert truthful.min() >= -1e-12
        for f in (0.0, 0.5, 0.9, 0.99, 1.01, 1.2, 2.0, 5.0):
            dev = v.copy()
            dev[:, i] *= f
            assert (utility(dev, i) - truthful).max() <= 1e-9


# --- GSP interleaving --------------------------------------------------------------


def test_interleave_by_hand():
    # items: creators 0, 1, 2 (merit .9, .5, .7), ads 3, 4 (r .8, .4)
    r = np.array([[0.9, 0.5, 0.7, 0.8, 0.4]])
    bids = np.array([[0.0, 0.6, 0.0, 1.0, 1.5]])  # creator 1 promotes
    sponsor = bids * r  # scores: c1 .30, ad3 .80, ad4 .60
    organic = np.array([[0.9, 0.5, 0.7, 0.0, 0.0]])
    order, price = fr.interleave(sponsor, r, organic, np.array([1, 4]), 5)
    # position 2: ad 3 (pays .60/.8), position 5: ad 4 (pays .30/.4);
    # organic by merit in 1, 3, 4: creators 0, 2, 1
    np.testing.assert_array_equal(order, [[0, 3, 2, 1, 4]])
    np.testing.assert_allclose(price, [[0, 0.75, 0, 0, 0.75]])
    # no sponsored bidder: the sponsored positions go to organic content
    order, price = fr.interleave(0 * sponsor, r, organic, np.array([1, 4]), 5)
    np.testing.assert_array_equal(order, [[0, 2, 1, -1, -1]])
    assert not price.any()


# --- attention budget and individual rationality in whole sessions ---------------


@PROPS
@given(
    st.integers(0, 2**31),
    st.sampled_from(fr.USER_MODELS),
    st.floats(0.0, 1.0),
    st.floats(0.01, 6.0),
)
def test_exposure_never_exceeds_the_budget(seed, model, stop, budget):
    rng = np.random.default_rng(seed)
    p, n, k = 64, 6, 5
    pos = -np.sort(-rng.uniform(0.1, 1.0, (p, k)), axis=1)
    pos[:, 0] = 1.0
    r = rng.random((p, n))
    order = np.where(rng.random((p, k)) < 0.8, rng.integers(n, size=(p, k)), -1)
    b = np.full(p, budget)
    x = fr.exposure(model, pos, order, r, b, stop)
    assert (x >= 0).all()
    assert (x.sum(axis=1) <= b + 1e-12).all()
    full = fr.exposure(model, pos, order, r, np.full(p, 1e9), stop)
    assert (x <= full + 1e-15).all()
    # the user stops only once the budget is spent
    short = x.sum(axis=1) < full.sum(axis=1) - 1e-12
    np.testing.assert_allclose(x.sum(axis=1)[short], b[short])


@pytest.mark.parametrize("rule", fd.MECHANISMS)
@pytest.mark.parametrize("model", fr.USER_MODELS)
def test_truthful_bidders_are_individually_rational(feeds, rule, model):
    c = small(sessions=30, populations=64, reserve=0.05)
    d = fd.draw(feeds, c)
    n = feeds.rel.shape[2]
    rng = np.random.default_rng(1)
    for s in range(c.sessions):
        q = d.query[s]
        r = feeds.rel[d.cat, q]
        value = d.theta * r
        pos = feeds.pos[q]
        w = fr.budget_cut(pos, d.budget[s])
        bonus = rng.normal(0, 0.3, (c.populations, c.n_creators))
        order, price = fd.allocate(rule, r, value, w, bonus, c)
        x = fr.exposure(model, pos, order, r, d.budget[s], c.cascade_stop)
        got = fr.item_exposure(order, x, n)
        paid = fr.item_exposure(order, price * x, n)
        assert (paid >= -1e-12).all()
        assert (value * got - paid).min() >= -1e-12
        assert (x.sum(axis=1) <= d.budget[s] + 1e-12).all()
        # each item at most once, only items that take part
        shown = np.where(order >= 0, r[np.arange(len(r))[:, None], order], 1.0)
        assert (shown > 0).all()
        for row in order:
            kept = row[row >= 0]
            assert len(set(kept)) == len(kept)


# --- the learner and the scenario ------------------------------------------------


def test_bandit_settles_on_the_best_factor():
    rng = np.random.default_rng(0)
    b = fd.Bandit([0.2, 0.5, 0.8], p=50, n=3, explore=0.1)
    for _ in range(200):
        f = b.choose(rng)
        b.update(np.ones((50, 3), dtype=bool), -((f - 0.5) ** 2))  # best: 0.5
    assert (b.final() == 0.5).all()


def test_the_scenario_runs_from_its_config_and_is_json():
    from runner.scenarios import read_scenario, simulate_scenario

    name, cfg = read_scenario("configs/scenarios/feed.yaml")
    assert name == "feed"
    cfg = dataclasses.replace(
        cfg, populations=8, sessions=20, fairness_weights=[1.0], bidders="learner"
    )
    res = simulate_scenario(name, cfg)
    json.dumps(res)
    rows = {(r["user_model"], r["mechanism"]): r for r in res["rows"]}
    assert len(rows) == 8
    assert "cost" in rows[("attention", "fair_ranking")]
    for r in res["rows"]:
        assert r["attention"]["mean"] <= cfg.budget_high
        assert 0.0 <= r["ad_factor"] <= 1.0


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"positions": 9}, "positions must be at most 5"),
        ({"ad_slots": [0]}, "ad_slots entry"),
        ({"ad_slots": [2, 2]}, "distinct"),
        ({"user_models": ["pbm"]}, "user_models"),
        ({"mechanisms": ["vcg"]}, "mechanisms"),
        ({"fairness_weights": [-1]}, "fairness_weights entry"),
        ({"budget_high": 1.0}, "budget_high"),
        ({"bidders": "random"}, "bidders"),
        ({"populations": 1}, "populations"),
        ({"ad_catalogue_share": 1.0}, "ad_catalogue_share"),
    ],
)
def test_config_errors_are_one_line(change, needle):
    cfg = from_dict(fd.CONFIG, {"scenario": "feed", **change}, "feed")
    with pytest.raises(ConfigError) as err:
        fd.simulate(cfg)
    msg = str(err.value)
    assert needle in msg and "\n" not in msg
    with pytest.raises(ConfigError, match="unknown key 'slots'"):
        from_dict(fd.CONFIG, {"slots": 3}, "feed")
