"""The search-day scenario: budgets, CPA accounting, prices, hindsight bounds, API."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attn_env.errors import ConfigError, UserError
from attn_env.scenarios.search_config import TrafficConfig, from_data
from attn_env.scenarios.search_env import SearchDayEnv, SearchDayVectorEnv
from attn_env.scenarios.search_landscape import grid_totals, slot_options
from attn_env.scenarios.search_play import play_day, seat_kinds
from attn_env.scenarios.search_state import Day, auctionnet_score
from attn_env.scenarios.search_traffic import diurnal_shares, period_counts
from tests.search_helpers import small_market

MECHANISMS = ("gsp", "vcg", "first_price")
CLICKS = ("attention", "pbm", "cascade")


def _brute_period(market, queries, lam, budget_left, alive):
    """One impression at a time: clear, and when a winner's spend would pass
    what it has left, drop every such winner and clear the impression again."""
    auc = market.auction
    n = market.n
    left = budget_left.copy()
    alive = alive.copy()
    spend, conv = np.zeros(n), np.zeros(n)
    rng = np.random.default_rng(0)
    for q in queries:
        while True:
            a = auc.adv_idx[q]
            bids = np.where(auc.valid[q] & alive[a], lam[a] * auc.click_value[q], 0.0)
            out = auc.mech.clear(
                bids[None],
                weights=auc.pages.pos[q][None],
                quality=auc.quality[q][None],
                rng=rng,
            )
            won = out.slot[0] >= 0
            clicks = auc.click_prob(
                out.slot,
                out.slot >= 0,
                auc.pages.relevance[q][None],
                auc.pages.pos[q][None],
            )[0]
            cost = np.where(won, out.price[0] * clicks, 0.0)
            over = won & (cost > left[a])
            if not over.any():
                break
            alive[a[over]] = False
        np.add.at(spend, a[won], cost[won])
        np.add.at(conv, a[won], (clicks * auc.pconv[q])[won])
        np.subtract.at(left, a[won], cost[won])
    return spend, conv, alive


@pytest.mark.parametrize("mechanism", MECHANISMS)
@pytest.mark.parametrize("click_model", CLICKS)
def test_period_matches_one_auction_at_a_time(mechanism, click_model):
    """The batched period (with budget re-clears) equals a loop of single auctions."""
    m = small_market(
        auction={"mechanism": mechanism},
        economics={"click_model": click_model},
        advertisers={
            "budget_conversions": [0.5, 3.0]
        },  # budgets bind within the period
    )
    day = Day(m, seed=3)
    queries = day.traffic[0][:600]
    lam = np.random.default_rng(1).uniform(0.5, 2.0, m.n)
    left = m.advertisers.budget.copy()
    alive = np.ones(m.n, dtype=bool)
    want_spend, want_conv, want_alive = _brute_period(m, queries, lam, left, alive)
    res = m.auction.clear(queries, lam, left, alive, np.random.default_rng(0))
    assert not want_alive.all(), "the check needs a budget that binds"
    np.testing.assert_allclose(res.spend, want_spend, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(res.conversions, want_conv, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(alive, want_alive)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    mechanism=st.sampled_from(MECHANISMS),
    click_model=st.sampled_from(CLICKS),
    kind=st.sampled_from(["truthful", "pacing", "pid", "onlinelp"]),
    budget=st.floats(0.2, 50.0),
)
def test_budget_never_exceeded_and_no_bidder_beats_its_bound(
    seed, mechanism, click_model, kind, budget
):
    m = small_market(
        seed=seed,
        auction={"mechanism": mechanism},
        economics={"click_model": click_model},
        advertisers={"budget_conversions": [budget, 2 * budget]},
    )
    r = play_day(m, [kind] * m.n, seed, hindsight=True)
    assert np.all(r.spend <= r.budget * (1 + 1e-12))
    assert np.all(r.score <= r.score_bound * (1 + 1e-9) + 1e-12)
    assert np.all(r.hindsight_score <= r.score_bound * (1 + 1e-9) + 1e-12)
    assert np.all(r.value <= r.conversions * m.advertisers.value * (1 + 1e-12))


def test_cpa_accounting_and_score():
    m = small_market()
    r = play_day(m, ["pid"] * m.n, 0)
    cpa = r.spend / r.conversions
    np.testing.assert_allclose(r.cpa, cpa)
    want = r.conversions * np.minimum(1.0, (r.target_cpa / cpa) ** 2)
    np.testing.assert_allclose(r.score, want)
    np.testing.assert_allclose(r.violated, cpa > r.target_cpa * (1 + 1e-9))
    assert auctionnet_score(np.array([0.0]), np.array([5.0]), np.array([1.0]))[0] == 0.0


@pytest.mark.parametrize("mechanism", MECHANISMS)
@pytest.mark.parametrize("click_model", CLICKS)
def test_landscape_at_the_played_multiplier_is_what_happened(mechanism, click_model):
    """Slot prices of the landscape (others' bids held) reproduce the auction's
    own outcome at the multiplier that was played, for every mechanism."""
    m = small_market(
        auction={"mechanism": mechanism},
        economics={"click_model": click_model},
        advertisers={"budget_conversions": [1e5, 1e5]},
    )
    day = Day(m, seed=5, keep_bids=True)
    lam = 1.3
    queries = day.traffic[0]
    res = day.step(np.full(m.n, lam))
    opts = slot_options(m.auction, queries, res.bids)
    spend, conv = grid_totals(m.auction, opts, np.array([lam]))
    np.testing.assert_allclose(spend[:, 0], res.spend, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(conv[:, 0], res.conversions, rtol=1e-9, atol=1e-12)


def test_gsp_prices_with_quality_scores_against_brute_force():
    """Rank k pays max(score of rank k+1 / own quality, reserve) per click."""
    m = small_market(auction={"mechanism": "gsp", "reserve": 0.2})
    auc = m.auction
    rng = np.random.default_rng(0)
    for q in rng.choice(m.pages.n_queries, 40):
        lam = rng.uniform(0.2, 3.0, m.n)
        a = auc.adv_idx[q]
        bids = np.where(auc.valid[q], lam[a] * auc.click_value[q], 0.0)
        out = auc.mech.clear(
            bids[None],
            weights=auc.pages.pos[q][None],
            quality=auc.quality[q][None],
            rng=rng,
        )
        score = bids * auc.quality[q]
        eligible = [i for i in range(len(bids)) if bids[i] >= 0.2]
        ranked = sorted(eligible, key=lambda i: -score[i])
        for k, i in enumerate(ranked[: m.config.auction.slots]):
            nxt = score[ranked[k + 1]] if k + 1 < len(ranked) else 0.0
            assert out.slot[0, i] == k
            assert out.price[0, i] == pytest.approx(max(nxt / auc.quality[q][i], 0.2))


def test_traffic_counts_and_curve():
    cfg = TrafficConfig(impressions=10_007, periods=48)
    counts = period_counts(cfg)
    assert counts.sum() == 10_007 and len(counts) == 48
    w = diurnal_shares(cfg)
    assert w.sum() == pytest.approx(1.0)
    assert np.argmax(w) == int(cfg.diurnal_peak * 48)
    m = small_market()
    pop = m.popularity
    assert pop.sum() == pytest.approx(1.0)
    assert pop.max() / pop.min() == pytest.approx(
        m.pages.n_queries**m.config.traffic.zipf, rel=1e-9
    )


def test_seat_kinds_follows_the_shares():
    kinds = seat_kinds(
        {"pid": 0.5, "pacing": 0.25, "truthful": 0.25}, 48, np.random.default_rng(0)
    )
    assert kinds.count("pid") == 24 and kinds.count("pacing") == 12


def test_pettingzoo_api():
    from pettingzoo.test import parallel_api_test

    env = SearchDayEnv(market=small_market())
    parallel_api_test(env, num_cycles=10)


def test_env_return_is_the_score_and_matches_play_day():
    m = small_market()
    env = SearchDayEnv(market=m)
    obs, _ = env.reset(seed=4)
    total = dict.fromkeys(env.possible_agents, 0.0)
    while env.agents:
        _, rew, *_ = env.step({a: np.array([1.0]) for a in env.agents})
        for a, x in rew.items():
            total[a] += x
    got = np.array([total[a] for a in env.possible_agents])
    want = env.day.scores() / env.day.target_conversions
    np.testing.assert_allclose(got, want, rtol=1e-9)


@pytest.mark.parametrize("bad", [np.nan, -0.1, 99.0])
def test_bad_actions_are_refused_by_agent(bad):
    env = SearchDayEnv(market=small_market())
    env.reset(seed=0)
    actions = {a: np.array([1.0]) for a in env.agents}
    actions["advertiser_3"] = np.array([bad])
    with pytest.raises(UserError, match="advertiser_3"):
        env.step(actions)


def test_vector_env_resets_days_together():
    m = small_market()
    venv = SearchDayVectorEnv(2, market=m)
    obs = venv.reset(seed=0)
    assert obs.shape == (2, m.n, 13)
    for _ in range(m.config.traffic.periods):
        obs, rew, done, info = venv.step(np.ones((2, m.n)))
    assert done.all() and info["scores"].shape == (2, m.n)
    with pytest.raises(UserError, match="shape"):
        venv.step(np.ones((3, m.n)))


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"traffic": {"impressions": 0}}, "traffic.impressions"),
        ({"traffic": {"hours": 3}}, "unknown key 'hours'"),
        ({"auction": {"reserve": 0}}, "auction.reserve"),
        ({"economics": {"click_model": "dbn"}}, "click_model"),
        ({"economics": {"pbm": [0.5, 0.9]}}, "descending"),
        ({"bidders": {"magic": 1.0}}, "bidders key"),
        ({"bidders": {"policy": 1.0}}, "bidders_policy"),
        ({"advertisers": {"target_cpa": [1.0, 0.5]}}, "target_cpa"),
    ],
)
def test_config_errors_name_the_key(data, match):
    with pytest.raises(ConfigError, match=match):
        from_data(data)


def test_a_two_sided_mechanism_is_refused():
    with pytest.raises(ConfigError, match="one-sided"):
        small_market(auction={"mechanism": "mcafee"})


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_grid_totals_against_a_pass_per_multiplier(mechanism):
    """The difference-array landscape equals ranking every entrant at every
    multiplier of the grid against the others' scores directly."""
    from attn_env.scenarios.search_landscape import LAMBDA_GRID

    m = small_market(auction={"mechanism": mechanism, "reserve": 0.3})
    day = Day(m, seed=2, keep_bids=True)
    queries = day.traffic[0]
    res = day.step(np.random.default_rng(0).uniform(0.3, 3.0, m.n))
    opts = slot_options(m.auction, queries, res.bids)
    spend, conv = grid_totals(m.auction, opts)
    bid = opts.unit_bid[:, :, None] * LAMBDA_GRID
    k = (opts.others[:, :, None, :] > (bid * opts.quality[:, :, None])[..., None]).sum(
        axis=3
    )
    slots = opts.others.shape[2]
    won = (k < slots) & (bid >= 0.3) & opts.valid[:, :, None]
    kk = np.minimum(k, slots - 1)
    clicks = np.take_along_axis(opts.clicks, kk, axis=2)
    c = np.where(won, np.take_along_axis(opts.conv, kk, axis=2), 0.0)
    if mechanism == "first_price":
        s = np.where(won, bid * clicks, 0.0)
    else:
        s = np.where(won, np.take_along_axis(opts.cost, kk, axis=2), 0.0)
    want_s, want_c = np.zeros_like(spend), np.zeros_like(conv)
    for b, mm in zip(*np.nonzero(opts.valid), strict=True):
        want_s[opts.adv[b, mm]] += s[b, mm]
        want_c[opts.adv[b, mm]] += c[b, mm]
    np.testing.assert_allclose(spend, want_s, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(conv, want_c, rtol=1e-9, atol=1e-12)
