"""Market metrics: hand-written cases, brute force on small markets, closed forms."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attn_env import metrics


def _brute_one_sided(v, alpha):
    """Best assignment of buyers to slots by enumeration (a buyer may get no slot)."""
    n, k = len(v), len(alpha)
    best = 0.0
    for perm in itertools.permutations(range(n), min(n, k)):
        best = max(best, sum(v[i] * alpha[j] for j, i in enumerate(perm)))
    return best


def _brute_two_sided(v, c):
    """Best set of buyer-seller pairs by enumeration of partial matchings."""
    n, m = len(v), len(c)
    best = 0.0
    for size in range(min(n, m) + 1):
        for buyers in itertools.permutations(range(n), size):
            for sellers in itertools.combinations(range(m), size):
                best = max(
                    best, sum(v[i] - c[j] for i, j in zip(buyers, sellers, strict=True))
                )
    return best


def test_welfare_hand_case():
    values = [[0.9, 0.5]]
    alloc = [[1.0, 0.0]]
    costs, sold = [[0.2, 0.7]], [[1.0, 0.0]]
    assert metrics.welfare(values, alloc)[0] == pytest.approx(0.9)
    assert metrics.welfare(values, alloc, costs, sold)[0] == pytest.approx(0.7)


def test_optimal_welfare_hand_cases():
    # one-sided: 0.9 on the big slot, 0.5 on the half slot
    assert metrics.optimal_welfare([[0.2, 0.9, 0.5]], alpha=[1.0, 0.5])[
        0
    ] == pytest.approx(1.15)
    # two-sided: pairs (0.9, 0.1) and (0.6, 0.5) gain; (0.3, 0.7) would lose
    opt = metrics.optimal_welfare([[0.9, 0.6, 0.3]], costs=[[0.1, 0.5, 0.7]])
    assert opt[0] == pytest.approx(0.9)


@pytest.mark.parametrize("n,k", [(1, 1), (3, 1), (3, 2), (2, 3), (4, 4)])
def test_optimal_one_sided_matches_brute_force(n, k):
    rng = np.random.default_rng(n * 10 + k)
    v = rng.random((20, n))
    alpha = -np.sort(-rng.random((20, k)), axis=1)
    got = metrics.optimal_welfare(v, alpha=alpha)
    want = [_brute_one_sided(v[b], alpha[b]) for b in range(20)]
    np.testing.assert_allclose(got, want)


@pytest.mark.parametrize("n,m", [(1, 1), (3, 2), (2, 3), (4, 4)])
def test_optimal_two_sided_matches_brute_force(n, m):
    rng = np.random.default_rng(n * 10 + m)
    v, c = rng.random((20, n)), rng.random((20, m))
    got = metrics.optimal_welfare(v, costs=c)
    want = [_brute_two_sided(v[b], c[b]) for b in range(20)]
    np.testing.assert_allclose(got, want)


def test_optimal_welfare_needs_one_side():
    with pytest.raises(ValueError, match="exactly one"):
        metrics.optimal_welfare([[0.5]])


def test_efficiency_is_ratio_of_sums():
    assert metrics.efficiency([1.0, 0.0, 2.0], [2.0, 0.0, 2.0]) == pytest.approx(0.75)
    assert np.isnan(metrics.efficiency([0.0], [0.0]))


def test_revenue_and_budget_surplus():
    pay = [[0.3, 0.2], [0.0, 0.0]]
    receipt = [[0.4, 0.0], [0.0, 0.1]]
    np.testing.assert_allclose(metrics.revenue(pay), [0.5, 0.0])
    np.testing.assert_allclose(metrics.budget_surplus(pay, receipt), [0.1, -0.1])
    np.testing.assert_allclose(metrics.budget_surplus(pay), [0.5, 0.0])


def test_ir_violations_counts_rational_agents_only():
    u = [[-0.1, 0.2, -0.3], [0.0, -1e-12, 0.5]]
    rational = [[True, True, False], [True, True, True]]
    np.testing.assert_array_equal(metrics.ir_violations(u, rational), [1, 0])
    np.testing.assert_array_equal(metrics.ir_violations(u), [2, 0])
    with pytest.raises(ValueError, match="shape"):
        metrics.ir_violations(u, [[True]])


def test_price_stats_ignore_no_trade():
    mean, std = metrics.price_stats([0.2, np.nan, 0.4])
    assert mean == pytest.approx(0.3)
    assert std == pytest.approx(0.1)
    assert all(np.isnan(metrics.price_stats([np.nan])))


def test_walrasian_interval_hand_cases():
    # two-sided: values 0.9, 0.6, 0.3 vs costs 0.1, 0.5, 0.7: q = 2,
    # low = max(s_2, b_3) = max(0.5, 0.3), high = min(b_2, s_3) = min(0.6, 0.7)
    lo, hi = metrics.walrasian_interval([[0.9, 0.6, 0.3]], [[0.1, 0.5, 0.7]])
    assert (lo[0], hi[0]) == pytest.approx((0.5, 0.6))
    # one slot, three bidders: between the second and the first value
    lo, hi = metrics.walrasian_interval([[0.2, 0.9, 0.5]], alpha=[1.0])
    assert (lo[0], hi[0]) == pytest.approx((0.5, 0.9))
    # two equal slots: between the third and the second value
    lo, hi = metrics.walrasian_interval([[0.2, 0.9, 0.5]], alpha=[1.0, 1.0])
    assert (lo[0], hi[0]) == pytest.approx((0.2, 0.5))
    with pytest.raises(ValueError, match="exactly one"):
        metrics.walrasian_interval([[0.5]])


def test_slot_price_intervals_hand_case():
    # values 0.9, 0.5, 0.2 and slots 1, 0.5 (steps 0.5, 0.5):
    # slot 1: [0.5*0.5 + 0.5*0.2, 0.5*0.9 + 0.5*0.5] = [0.35, 0.7] per unit
    # slot 2: [0.5*0.2, 0.5*0.5] / 0.5 = [0.2, 0.5] per unit
    low, high = metrics.slot_price_intervals([[0.2, 0.9, 0.5]], [1.0, 0.5])
    np.testing.assert_allclose(low, [[0.35, 0.2]])
    np.testing.assert_allclose(high, [[0.7, 0.5]])
    # fewer buyers than slots: the empty slot is free
    low, high = metrics.slot_price_intervals([[0.8]], [1.0, 0.5])
    np.testing.assert_allclose(low, [[0.0, 0.0]])
    np.testing.assert_allclose(high, [[0.4, 0.0]])


def test_walrasian_interval_clears_the_market():
    rng = np.random.default_rng(1)
    v, c = rng.random((200, 5)), rng.random((200, 4))
    lo, hi = metrics.walrasian_interval(v, c)
    assert np.all(lo <= hi + 1e-12)
    mid = (lo + hi) / 2
    inside = hi > lo + 1e-9
    demand = (v >= mid[:, None]).sum(axis=1)
    supply = (c <= mid[:, None]).sum(axis=1)
    np.testing.assert_array_equal(demand[inside], supply[inside])


def test_walrasian_distance():
    d = metrics.walrasian_distance([0.1, 0.5, 0.9, np.nan], [0.4] * 4, [0.6] * 4)
    np.testing.assert_allclose(d[:3], [0.3, 0.0, 0.3])
    assert np.isnan(d[3])


def test_gini_closed_forms():
    assert metrics.gini([1.0, 1.0, 1.0]) == pytest.approx(0.0)
    assert metrics.gini([0.0, 0.0, 0.0, 5.0]) == pytest.approx(0.75)
    assert metrics.gini([1.0, 2.0, 3.0]) == pytest.approx(2 / 9)
    assert metrics.gini([0.0, 0.0]) == 0.0
    with pytest.raises(ValueError, match="non-negative"):
        metrics.gini([-1.0, 1.0])


def test_gini_matches_mean_absolute_difference():
    x = np.random.default_rng(2).random((7, 6))
    pair = np.abs(x[:, :, None] - x[:, None, :]).sum(axis=(1, 2))
    want = pair / (2 * 6**2 * x.mean(axis=1))
    np.testing.assert_allclose(metrics.gini(x), want)


def test_exposure_share_and_mean_utility():
    alloc = [[1.0, 0.0, 0.0], [1.0, 0.0, 1.0]]
    np.testing.assert_allclose(metrics.exposure_share(alloc), [2 / 3, 0.0, 1 / 3])
    np.testing.assert_allclose(metrics.exposure_share([[0.0, 0.0]]), [0.0, 0.0])
    np.testing.assert_allclose(
        metrics.mean_utility([[1.0, 2.0], [3.0, 0.0]]), [2.0, 1.0]
    )


# mechanisms accept 0 or magnitudes in [1e-150, 1e150]: tinier floats read as 0
unit = st.floats(0.0, 1.0, allow_nan=False).map(lambda x: x if x >= 1e-150 else 0.0)


@settings(max_examples=60, deadline=None)
@given(
    v=st.lists(unit, min_size=1, max_size=6),
    alpha=st.lists(unit, min_size=1, max_size=4),
    seed=st.integers(0, 2**16),
)
def test_optimum_beats_any_feasible_allocation(v, alpha, seed):
    # a random one-to-one assignment of buyers to slots never beats the optimum
    rng = np.random.default_rng(seed)
    vals, a = np.array([v]), np.array([sorted(alpha, reverse=True)])
    k = min(len(v), len(alpha))
    buyers = rng.permutation(len(v))[:k]
    slots = rng.permutation(len(alpha))[:k]
    alloc = np.zeros_like(vals)
    alloc[0, buyers] = a[0, slots]
    assert (
        metrics.welfare(vals, alloc)[0]
        <= metrics.optimal_welfare(vals, alpha=a)[0] + 1e-12
    )


@settings(max_examples=60, deadline=None)
@given(x=st.lists(st.floats(0.0, 1e3, allow_nan=False), min_size=1, max_size=8))
def test_gini_bounds_and_scale_invariance(x):
    g = metrics.gini(x)
    n = len(x)
    assert -1e-12 <= g <= 1 - 1 / n + 1e-12
    if sum(x) > 1e-6:
        assert metrics.gini(np.array(x) * 3.0) == pytest.approx(g, abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(
    v=st.lists(unit, min_size=1, max_size=6),
    c=st.lists(unit, min_size=1, max_size=6),
)
def test_walrasian_interval_supports_the_efficient_trades(v, c):
    lo, hi = metrics.walrasian_interval([v], [c])
    assert lo[0] <= hi[0] + 1e-12
    vs, cs = np.sort(v)[::-1], np.sort(c)
    depth = min(len(v), len(c))
    q = int((vs[:depth] >= cs[:depth]).sum())  # efficient quantity
    # at every price of the interval demand and supply can both be q (ties aside)
    for p in (lo[0], (lo[0] + hi[0]) / 2, hi[0]):
        assert sum(x > p for x in v) <= q <= sum(x >= p for x in v)
        assert sum(y < p for y in c) <= q <= sum(y <= p for y in c)


@settings(max_examples=60, deadline=None)
@given(
    v=st.lists(unit, min_size=1, max_size=5),
    alpha=st.lists(st.floats(0.01, 1.0), min_size=1, max_size=4),
    end=st.sampled_from(["low", "high"]),
)
def test_slot_prices_are_envy_free_and_low_is_vcg(v, alpha, end):
    vals = np.array([v])
    a = np.array([sorted(alpha, reverse=True)])
    low, high = metrics.slot_price_intervals(vals, a)
    price = (low if end == "low" else high)[0] * a[0]  # total price of each slot
    order = np.argsort(-vals[0], kind="stable")
    k = min(len(v), len(alpha))
    # assortative assignment: buyer order[j] in slot j; nobody envies another slot
    for rank, i in enumerate(order):
        own = vals[0, i] * a[0, rank] - price[rank] if rank < k else 0.0
        best_other = max(vals[0, i] * a[0, j] - price[j] for j in range(len(alpha)))
        assert own >= best_other - 1e-9
    # the least competitive prices are the VCG prices of the position auction
    from attn_env import mechanisms

    out = mechanisms.make("vcg").clear(vals, weights=a, rng=np.random.default_rng(0))
    won = out.slot[0] >= 0
    np.testing.assert_allclose(
        np.sort(out.pay[0][won]), np.sort(low[0, :k] * a[0, :k])[: won.sum()], atol=1e-9
    )
