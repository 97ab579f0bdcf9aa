"""The call market on step schedules: against brute force, its invariants, its
errors, and the compute-market scenario built on it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attn_env import mechanisms
from attn_env.errors import ConfigError, UserError
from attn_env.mechanisms.schedules import RULES, ScheduleCallMarket, unit_schedules

# --- brute force: every candidate price of one market, by the definitions ----


def brute_force(bp, bq, ap, aq, k: float) -> dict[str, float]:
    """Efficient volume, Walrasian interval, uniform price and the largest
    gains from trade of one market, from a sweep of every step price.

    ``D(p) = sum q [bid >= p]``, ``S(p) = sum q [ask <= p]``; ``p`` is
    Walrasian when ``Q*`` lies in ``[D^+(p), D(p)]`` and in ``[S^-(p), S(p)]``.
    The largest gains from trade are ``min_p sum q (b - p)^+ + sum q (p - a)^+``
    (LP duality: the welfare of a competitive equilibrium).
    """
    bp, bq, ap, aq = (np.ravel(x) for x in (bp, bq, ap, aq))
    bp, bq = bp[bq > 0], bq[bq > 0]
    ap, aq = ap[aq > 0], aq[aq > 0]
    cands = np.unique(np.concatenate([bp, ap, [0.0]]))
    d = np.array([bq[bp >= p].sum() for p in cands])
    d_plus = np.array([bq[bp > p].sum() for p in cands])
    s = np.array([aq[ap <= p].sum() for p in cands])
    s_minus = np.array([aq[ap < p].sum() for p in cands])
    q = max(float(np.minimum(d, s).max()), 0.0)
    dual = [
        (bq * np.maximum(bp - p, 0)).sum() + (aq * np.maximum(p - ap, 0)).sum()
        for p in cands
    ]
    if q == 0:
        low = bp.max(initial=0.0)
        high = ap.min(initial=np.inf)
        return {"q": 0.0, "low": low, "high": high, "price": np.nan, "welfare": 0.0}
    ok = (d_plus <= q) & (q <= d) & (s_minus <= q) & (q <= s)
    low, high = cands[ok].min(), cands[ok].max()
    return {
        "q": q,
        "low": low,
        "high": high,
        "price": k * high + (1 - k) * low,
        "welfare": float(min(dual)),
    }


def random_book(rng, n_markets, n, m, steps, grid=None):
    """Random schedules with integer quantities (exact sums); prices on a grid
    of ``grid`` values when given (ties), else continuous."""

    def prices(shape):
        if grid:
            return rng.integers(0, grid, shape) / grid
        return rng.random(shape)

    bp = prices((n_markets, n, steps))
    ap = prices((n_markets, m, steps))
    bq = rng.integers(0, 4, (n_markets, n, steps)).astype(float)
    aq = rng.integers(0, 4, (n_markets, m, steps)).astype(float)
    return bp, bq, ap, aq


books = st.builds(
    lambda seed, n, m, steps, grid: random_book(
        np.random.default_rng(seed), 4, n, m, steps, grid
    ),
    st.integers(0, 2**32 - 1),
    st.integers(1, 5),
    st.integers(1, 5),
    st.integers(1, 3),
    st.sampled_from([None, 3, 10]),
)


@settings(max_examples=60, deadline=None)
@given(book=books, k=st.sampled_from([0.0, 0.3, 1.0]))
def test_uniform_price_equals_brute_force(book, k):
    out = ScheduleCallMarket(k=k).clear(*book)
    for b in range(book[0].shape[0]):
        ref = brute_force(*(x[b] for x in book), k)
        assert out.efficient_volume[b] == ref["q"]
        assert out.volume[b] == ref["q"]
        assert out.walrasian_low[b] == ref["low"]
        assert out.walrasian_high[b] == ref["high"]
        if ref["q"] > 0:
            assert out.clearing_price[b] == pytest.approx(ref["price"], abs=1e-12)
            # the allocation is efficient: the gains from trade are the largest
            welfare = out.welfare(book[0], book[2])[b]
            assert welfare == pytest.approx(ref["welfare"], abs=1e-9)
        else:
            assert np.isnan(out.clearing_price[b])


@settings(max_examples=60, deadline=None)
@given(book=books, rule=st.sampled_from(RULES), k=st.floats(0, 1))
def test_invariants_of_every_rule(book, rule, k):
    bp, bq, ap, aq = book
    out = ScheduleCallMarket(rule=rule, k=k).clear(*book)
    # no step trades more than asked, nothing negative
    assert (out.bid_fill >= 0).all() and (out.bid_fill <= bq + 1e-12).all()
    assert (out.ask_fill >= 0).all() and (out.ask_fill <= aq + 1e-12).all()
    # what is bought is what is sold, never above supply or demand
    np.testing.assert_allclose(out.buyer_qty.sum(1), out.volume, atol=1e-9)
    np.testing.assert_allclose(out.seller_qty.sum(1), out.volume, atol=1e-9)
    assert (out.volume <= aq.sum(axis=(1, 2)) + 1e-9).all()
    assert (out.volume <= bq.sum(axis=(1, 2)) + 1e-9).all()
    assert (out.volume <= out.efficient_volume + 1e-9).all()
    # budget: balanced at one price, a surplus under trade reduction
    if rule == "trade_reduction":
        assert (out.budget_surplus >= -1e-9).all()
    else:
        np.testing.assert_allclose(out.budget_surplus, 0.0, atol=1e-9)
    # individual rationality of truthful schedules, step by step
    traded = out.volume > 0
    bpr = out.buyer_price[traded, None, None]
    spr = out.seller_price[traded, None, None]
    assert ((out.bid_fill[traded] > 0) <= (bp[traded] >= bpr - 1e-12)).all()
    assert ((out.ask_fill[traded] > 0) <= (ap[traded] <= spr + 1e-12)).all()
    buyer_value = (out.bid_fill * bp).sum(axis=2)
    seller_cost = (out.ask_fill * ap).sum(axis=2)
    assert (out.buyer_pay <= buyer_value + 1e-9).all()
    assert (out.seller_receipt >= seller_cost - 1e-9).all()
    # the price lies between the marginal ask and the marginal bid
    assert (out.buyer_price[traded] <= out.marginal_bid[traded] + 1e-12).all()
    assert (out.seller_price[traded] >= out.marginal_ask[traded] - 1e-12).all()


def test_hand_written_books():
    mk = ScheduleCallMarket(k=0.5)
    # one buyer: 10 units at 5; one seller: 4 units at 1. The buyer is on the
    # long side at any p < 5, so the only Walrasian price is 5
    out = mk.clear([[[5.0]]], [[[10.0]]], [[[1.0]]], [[[4.0]]])
    assert out.volume[0] == 4 and out.walrasian_low[0] == out.walrasian_high[0] == 5
    # two buyers at 5 and 4 (10 units each), 4 units at 1: price priority gives
    # all 4 to the buyer at 5; the buyer at 4 wants none at p in [4, 5]
    out = mk.clear([[[5.0], [4.0]]], [[[10.0], [10.0]]], [[[1.0]]], [[[4.0]]])
    np.testing.assert_array_equal(out.buyer_qty, [[4.0, 0.0]])
    assert (out.walrasian_low[0], out.walrasian_high[0]) == (5.0, 5.0)
    # two buyers tied at 3 (2 and 6 units), 4 units at 1 and 2 units at 3.5:
    # pro rata at the margin, 1 and 3 units; the price interval is [3, 3]
    out = mk.clear(
        [[[3.0], [3.0]]], [[[2.0], [6.0]]], [[[1.0], [3.5]]], [[[4.0], [2.0]]]
    )
    np.testing.assert_allclose(out.buyer_qty, [[1.0, 3.0]])
    np.testing.assert_allclose(out.seller_qty, [[4.0, 0.0]])
    assert out.clearing_price[0] == 3.0
    # demand met exactly: buyer steps 2 @ 6 and 2 @ 4; supply 4 @ 1, 3 @ 5.
    # Q* = 4, every bid filled, the next ask is 5 -> interval [1, 4]
    out = mk.clear([[[6.0, 4.0]]], [[[2.0, 2.0]]], [[[1.0], [5.0]]], [[[4.0], [3.0]]])
    assert (out.walrasian_low[0], out.walrasian_high[0]) == (1.0, 4.0)
    assert out.clearing_price[0] == 2.5
    # no trade: the interval runs from the best bid to the best ask
    out = mk.clear([[[1.0]]], [[[1.0]]], [[[2.0]]], [[[1.0]]])
    assert out.volume[0] == 0 and np.isnan(out.clearing_price[0])
    assert (out.walrasian_low[0], out.walrasian_high[0]) == (1.0, 2.0)


def test_rounding_of_decimal_quantities_keeps_the_interval():
    # 0.1 + 0.2 != 0.3 in floating point; the market still sees demand met
    # exactly at Q* = 0.3 and leaves the interval [1, 4] (see Dust)
    out = ScheduleCallMarket().clear(
        [[[5.0, 4.0]]], [[[0.1, 0.2]]], [[[1.0], [6.0]]], [[[0.3], [1.0]]]
    )
    assert (out.walrasian_low[0], out.walrasian_high[0]) == (1.0, 4.0)


@pytest.mark.parametrize(
    ("rule", "unit"), [("uniform", "call_market"), ("k_double", "k_double")]
)
def test_unit_traders_reproduce_the_unit_double_auctions(rule, unit):
    rng = np.random.default_rng(3)
    bids, asks = rng.random((500, 6)), rng.random((500, 4))
    out = ScheduleCallMarket(rule=rule, k=0.3).clear(*unit_schedules(bids, asks))
    ref = mechanisms.make(unit, k=0.3).clear(bids, asks)
    np.testing.assert_array_equal(out.buyer_qty, ref.alloc)
    np.testing.assert_array_equal(out.seller_qty, ref.seller_alloc)
    np.testing.assert_allclose(out.buyer_pay, ref.pay)
    np.testing.assert_allclose(out.clearing_price, ref.clearing_price)


def test_trade_reduction_is_mcafee_for_unit_traders():
    rng = np.random.default_rng(4)
    bids, asks = rng.random((2000, 5)), rng.random((2000, 5))
    out = ScheduleCallMarket(rule="trade_reduction").clear(*unit_schedules(bids, asks))
    ref = mechanisms.make("mcafee").clear(bids, asks)
    np.testing.assert_array_equal(out.buyer_qty, ref.alloc)
    np.testing.assert_array_equal(out.seller_qty, ref.seller_alloc)
    np.testing.assert_allclose(out.buyer_pay, ref.pay)
    np.testing.assert_allclose(out.seller_receipt, ref.seller_receipt)
    # both branches happen: all q trade at p0, or q - 1 at (b_q, s_q)
    reduced = out.volume < out.efficient_volume
    assert 0.1 < reduced.mean() < 0.9


def test_trade_reduction_is_truthful_for_unit_traders():
    """No buyer or seller of a one-unit market gains by any report on a grid
    that holds every other trader's value and a point either side of it."""
    rng = np.random.default_rng(5)
    mk = ScheduleCallMarket(rule="trade_reduction")
    for _ in range(40):
        n, m = rng.integers(1, 5, 2)
        v, c = rng.random(n), rng.random(m)
        pts = np.concatenate([v, c, [0.0, 1.0]])
        grid = np.unique(np.clip(np.concatenate([pts, pts - 1e-3, pts + 1e-3]), 0, 2))
        g = grid.size
        for i in range(n):
            bids = np.tile(v, (g, 1))
            bids[:, i] = grid
            out = mk.clear(*unit_schedules(bids, np.tile(c, (g, 1))))
            gain = out.buyer_qty[:, i] * v[i] - out.buyer_pay[:, i]
            truth = mk.clear(*unit_schedules(v[None], c[None]))
            base = truth.buyer_qty[0, i] * v[i] - truth.buyer_pay[0, i]
            assert gain.max() <= base + 1e-12
        for j in range(m):
            asks = np.tile(c, (g, 1))
            asks[:, j] = grid
            out = mk.clear(*unit_schedules(np.tile(v, (g, 1)), asks))
            gain = out.seller_receipt[:, j] - out.seller_qty[:, j] * c[j]
            truth = mk.clear(*unit_schedules(v[None], c[None]))
            base = truth.seller_receipt[0, j] - truth.seller_qty[0, j] * c[j]
            assert gain.max() <= base + 1e-12


def test_uniform_price_is_not_truthful_for_unit_traders():
    # the control: the same search finds a gain in the uniform-price market
    # (a buyer setting the price shades), so the search above can fail
    mk = ScheduleCallMarket(rule="uniform", k=1.0)
    v, c = np.array([1.0, 0.6]), np.array([0.2, 0.8])
    grid = np.linspace(0, 1, 101)
    bids = np.tile(v, (grid.size, 1))
    bids[:, 0] = grid
    out = mk.clear(*unit_schedules(bids, np.tile(c, (grid.size, 1))))
    gain = out.buyer_qty[:, 0] * v[0] - out.buyer_pay[:, 0]
    truth = mk.clear(*unit_schedules(v[None], c[None]))
    assert gain.max() > truth.buyer_qty[0, 0] * v[0] - truth.buyer_pay[0, 0] + 0.1


def test_reserve_drops_low_bids():
    bp, bq, ap, aq = (
        [[[0.5], [0.2]]],
        [[[1.0], [1.0]]],
        [[[0.1], [0.1]]],
        [[[1.0], [1.0]]],
    )
    out = ScheduleCallMarket(reserve=0.3).clear(bp, bq, ap, aq)
    np.testing.assert_array_equal(out.buyer_qty, [[1.0, 0.0]])


@pytest.mark.parametrize("rule", RULES)
def test_blocks_of_markets_give_the_same_bits(rule):
    # clear() works through CHUNK markets at a time; a market's outcome must not
    # depend on which block it falls in, nor on the batch around it
    from attn_env.mechanisms.schedules import CHUNK

    rng = np.random.default_rng(7)
    book = [
        np.concatenate(parts)
        for parts in zip(
            random_book(rng, CHUNK + 37, 6, 4, 3, grid=10),
            random_book(rng, CHUNK + 37, 6, 4, 3),
            strict=True,
        )
    ]
    mk = ScheduleCallMarket(rule=rule, k=0.3)
    whole = mk.clear(*book)
    cut = 2 * CHUNK + 5  # not on a block boundary
    head = mk.clear(*(x[:cut] for x in book))
    tail = mk.clear(*(x[cut:] for x in book))
    for field in dataclasses.fields(whole):
        got = getattr(whole, field.name)
        want = np.concatenate([getattr(head, field.name), getattr(tail, field.name)])
        assert np.array_equal(got, want, equal_nan=True), field.name


def test_make_by_name_and_not_in_names():
    mk = mechanisms.make("schedule_call_market", rule="k_double", k=0.25)
    assert isinstance(mk, ScheduleCallMarket) and mk.k == 0.25
    assert "schedule_call_market" not in mechanisms.names()
    with pytest.raises(ConfigError, match=r"unknown parameter.*foo"):
        mechanisms.make("schedule_call_market", foo=1)
    with pytest.raises(ConfigError, match="'pro_rata'"):
        mechanisms.make("schedule_call_market", rule="pro_rata")
    with pytest.raises(ConfigError, match="k"):
        mechanisms.make("schedule_call_market", k=1.5)


GOOD = ([[[1.0]]], [[[1.0]]], [[[0.5]]], [[[1.0]]])


@pytest.mark.parametrize(
    ("pos", "bad", "match"),
    [
        (0, [[[np.nan]]], r"bid_prices must be finite, got nan at index \(0, 0, 0\)"),
        (2, [[[np.inf]]], r"ask_prices must be finite, got inf"),
        (1, [[[-2.0]]], r"bid_quantities must be >= 0, got -2.0 at index"),
        (3, [[[-1.0]]], r"ask_quantities must be >= 0, got -1.0"),
        (0, [[1.0]], r"bid_prices must have shape \[B, n, S\], got shape \(1, 1\)"),
        (1, [[[1.0, 2.0]]], r"bid_quantities must have the shape of bid_prices"),
        (2, [[[0.5]], [[0.5]]], r"same batch size B"),
        (0, [[["x"]]], r"bid_prices must be a numeric array"),
    ],
)
def test_bad_inputs_get_one_line_errors(pos, bad, match):
    args = list(GOOD)
    args[pos] = bad
    if pos == 2 and len(bad) == 2:
        args[3] = [[[1.0]], [[1.0]]]
    with pytest.raises(UserError, match=match) as err:
        ScheduleCallMarket().clear(*args)
    assert "\n" not in str(err.value)


# --- the compute-market scenario ---------------------------------------------

TINY = {
    "populations": 2,
    "markets": 8,
    "periods": 6,
    "report_last": 3,
    "n_buyers": 3,
    "n_sellers": 2,
    "jobs_per_buyer": 2,
    "cost_steps": 2,
    "docs_max": 4,
}


def test_flop_model_is_quadratic_in_length():
    from attn_env.scenarios.compute_model import flop_model

    fm = flop_model()
    assert (fm.d_model, fm.d_ff, fm.n_layers) == (384, 1536, 6)
    lengths = np.array([1.0, 2.0, 3.0])
    f = fm.flops(lengths)
    # second difference of a quadratic a L^2 + b L is 2a = 2 * 4 d * layers
    assert f[2] - 2 * f[1] + f[0] == pytest.approx(2 * 4 * 384 * 6)
    assert f[0] == 6 * (8 * 384**2 + 4 * 384 + 4 * 384 * 1536)


def test_jobs_count_real_tokens():
    from attn_env.scenarios.compute_model import (
        draw_jobs,
        draw_requests,
        flop_model,
        token_counts,
    )

    tc = token_counts()
    assert tc.query.size == 320 and tc.cand.size == 3000 and tc.query.min() >= 1
    rng = np.random.default_rng(0)
    pool = draw_requests(rng, 500, docs_min=1, docs_max=1)
    # one passage: [CLS] q [SEP] d [SEP] is at least 3 + 2 tokens long and at
    # most the longest query plus the longest passage plus 3
    assert pool.tokens.min() >= 5
    assert pool.tokens.max() <= tc.query.max() + tc.cand.max() + 3
    np.testing.assert_allclose(pool.gflop, flop_model().flops(pool.tokens) / 1e9)
    more = draw_requests(rng, 500, docs_min=6, docs_max=6)
    assert more.tokens.mean() > pool.tokens.mean() + 5 * tc.cand.min()
    jobs = draw_jobs(
        rng,
        (400,),
        pool,
        batch_max=1,
        value_median=2.0,
        value_sigma=0.0,
        deadline_max=2,
    )
    assert set(np.unique(jobs.deadline)) <= {1, 2}
    np.testing.assert_allclose(jobs.value, 2.0)
    assert np.isin(jobs.tokens, pool.tokens).all()


def test_simulate_tiny_config_is_consistent():
    import json

    from attn_env import scenarios

    mod = scenarios.scenario_module("compute_market")
    out = mod.simulate({"scenario": "compute_market", **TINY})
    json.dumps(out, allow_nan=False)
    runs = out["runs"]
    assert set(runs) == {
        "schedule_truthful",
        "schedule_learning",
        "unit_truthful",
        "unit_learning",
    }
    truthful = runs["schedule_truthful"]
    # truthful schedules on a uniform price: efficient, at the Walrasian
    # price, the efficient volume, budget balanced, all gains split
    assert truthful["efficiency"]["mean"] == pytest.approx(1.0)
    assert truthful["abs_price_gap"]["mean"] == pytest.approx(0.0, abs=1e-12)
    assert truthful["volume_ratio"]["mean"] == pytest.approx(1.0)
    assert truthful["budget_surplus"]["mean"] == pytest.approx(0.0, abs=1e-9)
    shares = truthful["buyer_share"]["mean"] + truthful["seller_share"]["mean"]
    assert shares == pytest.approx(1.0)
    for run in runs.values():
        assert 0.0 <= run["utilisation"]["mean"] <= 1.0 + 1e-12  # volume <= capacity
        assert run["efficiency"]["mean"] <= 1.0 + 1e-12
    served = truthful["served_value_share"]["mean"]
    expired = truthful["expired_value_share"]["mean"]
    assert 0.0 < served and served + expired <= 1.0 + 1e-12
    assert len(out["curves"]["schedule_learning"]["efficiency"]) == TINY["periods"]
    # the learner moved from shade_init (0.2) on a grid of shade_step (0.02)
    learned = out["shading"]["schedule_learning"]["buyers"]
    assert learned != 0.2 and out["shading"]["schedule_truthful"]["buyers"] == 0.0


def test_simulate_is_seeded():
    from attn_env.scenarios import compute_market

    cfg = {**TINY, "compare_unit": False, "periods": 3, "report_last": 2}
    assert compute_market.simulate(cfg) == compute_market.simulate(cfg)


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("rule", "vickrey", r"rule must be one of uniform"),
        ("shade_init", 0.95, r"shade_init must be in \[0, shade_max\]"),
        ("report_last", 99, r"report_last must be in \[1, periods\]"),
        ("markets", 0, r"markets must be an int in \[1,"),
        ("colour", 1, r"unknown key 'colour'"),
        ("scenario", "search_day", r"scenario must be 'compute_market'"),
    ],
)
def test_scenario_config_refuses_bad_values(key, value, match):
    from attn_env.scenarios import compute_market

    with pytest.raises(ConfigError, match=match):
        compute_market.load({**TINY, key: value})


def test_shipped_config_reads():
    from pathlib import Path

    from attn_env.config import read_config_yaml
    from attn_env.scenarios import compute_market

    path = Path(__file__).resolve().parents[1] / "configs/scenarios/compute_market.yaml"
    data = read_config_yaml(path)
    assert data["scenario"] == "compute_market"
    assert compute_market.load(data) == compute_market.CONFIG()
