"""Position auctions (first_price, second_price, gsp, vcg) against theory.

Hand-written bid tables with exact expected outcomes, brute-force VCG on small
markets, and the Monte Carlo answers of docs/design.md#known-answers within
a few standard errors (fixed seeds: the checks are deterministic).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from attn_env import mechanisms

ONE = ("first_price", "second_price", "gsp", "vcg")


def clear(name, bids, **kw):
    params = {k: kw.pop(k) for k in ("reserve", "n_slots") if k in kw}
    return mechanisms.make(name, seed=0, **params).clear(np.asarray(bids, float), **kw)


# --- hand-written tables -----------------------------------------------------

# bids of 4 buyers, 2 slots of attention (1.0, 0.5), reserve 0:
# ranking 0.9 (buyer 0) > 0.7 (buyer 2) > 0.5 (buyer 1) > 0.1 (buyer 3)
TABLE = [0.9, 0.5, 0.7, 0.1]
ALPHA = [1.0, 0.5]


@pytest.mark.parametrize(
    ("name", "price", "pay"),
    [
        # pays own bid per unit
        ("first_price", [0.9, 0, 0.7, 0], [0.9, 0, 0.35, 0]),
        # slot 1 pays 0.7 (next bid), slot 2 pays 0.5
        ("gsp", [0.7, 0, 0.5, 0], [0.7, 0, 0.25, 0]),
        # top: (1 - 0.5) * 0.7 + 0.5 * 0.5 = 0.6; second: 0.5 * 0.5 = 0.25
        ("vcg", [0.6, 0, 0.5, 0], [0.6, 0, 0.25, 0]),
    ],
)
def test_two_slot_table(name, price, pay):
    out = clear(name, [TABLE], weights=ALPHA)
    np.testing.assert_array_equal(out.slot, [[0, -1, 1, -1]])
    np.testing.assert_allclose(out.alloc, [[1.0, 0, 0.5, 0]])
    np.testing.assert_allclose(out.price, [price])
    np.testing.assert_allclose(out.pay, [pay])
    np.testing.assert_allclose(out.clearing_price, [price[0]])
    np.testing.assert_allclose(out.extra["slot_price"], [[price[0], price[2]]])


def test_second_price_table():
    # winner pays the second-highest bid; with reserve 0.8 it pays the reserve
    out = clear("second_price", [[0.9, 0.5, 0.7, 0.1], [0.3, 0.2, 0.1, 0.0]])
    np.testing.assert_array_equal(out.slot, [[0, -1, -1, -1], [0, -1, -1, -1]])
    np.testing.assert_allclose(out.pay, [[0.7, 0, 0, 0], [0.2, 0, 0, 0]])
    out = clear(
        "second_price", [[0.9, 0.5, 0.7, 0.1], [0.3, 0.2, 0.1, 0.0]], reserve=0.8
    )
    np.testing.assert_array_equal(out.slot, [[0, -1, -1, -1], [-1, -1, -1, -1]])
    np.testing.assert_allclose(out.pay, [[0.8, 0, 0, 0], [0, 0, 0, 0]])
    assert np.isnan(out.clearing_price[1])
    assert out.clearing_price[0] == 0.8


def test_reserve_excludes_low_bids_and_floors_prices():
    # reserve 0.6: buyer 1 (0.5) and buyer 3 (0.1) may not win; the second
    # slot's GSP price is max(0 next eligible, 0.6) = 0.6
    out = clear("gsp", [TABLE], weights=ALPHA, reserve=0.6)
    np.testing.assert_array_equal(out.slot, [[0, -1, 1, -1]])
    np.testing.assert_allclose(out.price, [[0.7, 0, 0.6, 0]])
    # VCG: top (1 - 0.5) * 0.7 + 0.5 * 0.6 = 0.65; second 0.5 * 0.6 = 0.3
    out = clear("vcg", [TABLE], weights=ALPHA, reserve=0.6)
    np.testing.assert_allclose(out.pay, [[0.65, 0, 0.3, 0]])
    # a bid equal to the reserve wins and pays the reserve
    out = clear("first_price", [[0.6, 0.2]], reserve=0.6)
    np.testing.assert_array_equal(out.slot, [[0, -1]])
    np.testing.assert_allclose(out.pay, [[0.6, 0]])


def test_quality_ranks_by_score_and_prices_per_own_quality():
    # scores: 0.5*2 = 1.0 (buyer 0), 0.8*1 = 0.8 (buyer 1), 0.3*1 = 0.3 (buyer 2)
    bids, quality = [[0.5, 0.8, 0.3]], [[2.0, 1.0, 1.0]]
    out = clear("gsp", bids, weights=ALPHA, quality=quality)
    np.testing.assert_array_equal(out.slot, [[0, 1, -1]])
    # buyer 0 pays next score / own quality = 0.8 / 2; buyer 1 pays 0.3 / 1
    np.testing.assert_allclose(out.price, [[0.4, 0.3, 0]])
    out = clear("vcg", bids, weights=ALPHA, quality=quality)
    # buyer 0: ((1 - .5) * 0.8 + 0.5 * 0.3) / 2 = 0.275; buyer 1: 0.5 * 0.3
    np.testing.assert_allclose(out.pay, [[0.275, 0.15, 0]])


def test_more_slots_than_buyers():
    out = clear("vcg", [[0.4, 0.8]], weights=[1.0, 0.6, 0.3])
    np.testing.assert_array_equal(out.slot, [[1, 0]])
    # top: (1 - .6) * 0.4 + (.6 - .3) * 0 + .3 * 0 = 0.16; second pays 0
    np.testing.assert_allclose(out.pay, [[0.0, 0.16]])
    assert np.isnan(out.extra["slot_price"][0, 2])


def test_n_slots_parameter_and_batch_weights():
    out = clear("first_price", [[0.1, 0.2, 0.3]], n_slots=2)
    np.testing.assert_array_equal(out.slot, [[-1, 1, 0]])
    w = [[1.0, 0.5], [0.9, 0.1]]
    out = clear("gsp", [[0.1, 0.2, 0.3], [0.3, 0.2, 0.1]], weights=w)
    np.testing.assert_allclose(out.alloc, [[0, 0.5, 1.0], [0.9, 0.1, 0]])


def test_second_price_rejects_several_slots():
    with pytest.raises(ValueError, match="exactly one slot"):
        clear("second_price", [[0.1, 0.2]], weights=[1.0, 0.5])
    with pytest.raises(ValueError, match="exactly one slot"):
        mechanisms.make("second_price", n_slots=2)


def test_ties_are_random_not_by_index():
    m = mechanisms.make("first_price", seed=3)
    out = m.clear(np.full((4000, 3), 0.5))
    wins = (out.slot == 0).mean(axis=0)
    # each of three tied buyers wins a third of the time; sd ~ 0.0075
    np.testing.assert_allclose(wins, 1 / 3, atol=0.03)
    # the same seed gives the same tie-breaks
    again = mechanisms.make("first_price", seed=3).clear(np.full((4000, 3), 0.5))
    np.testing.assert_array_equal(out.slot, again.slot)


# --- brute force --------------------------------------------------------------


def brute_vcg(bids, quality, alpha):
    """Welfare-max slot assignment and Clarke payments by enumeration."""
    n, k = len(bids), len(alpha)
    score = bids * quality

    def best(people):
        top = 0.0
        for who in itertools.permutations(people, min(k, len(people))):
            top = max(top, sum(alpha[j] * score[i] for j, i in enumerate(who)))
        return top

    w_star, arg = -1.0, None
    for who in itertools.permutations(range(n), min(k, n)):
        w = sum(alpha[j] * score[i] for j, i in enumerate(who))
        if w > w_star:
            w_star, arg = w, who
    slot = np.full(n, -1)
    pay = np.zeros(n)
    for j, i in enumerate(arg):
        slot[i] = j
        others = [o for o in range(n) if o != i]
        pay[i] = (best(others) - (w_star - alpha[j] * score[i])) / quality[i]
    return slot, pay, w_star


def test_vcg_equals_brute_force():
    rng = np.random.default_rng(11)
    for _ in range(60):
        n, k = rng.integers(1, 6), rng.integers(1, 4)
        bids = rng.random(n)
        quality = rng.uniform(0.5, 2.0, n)
        alpha = np.sort(rng.random(k))[::-1]
        out = clear("vcg", bids[None], weights=alpha, quality=quality[None])
        slot, pay, w_star = brute_vcg(bids, quality, alpha)
        np.testing.assert_array_equal(out.slot[0], slot)
        np.testing.assert_allclose(out.pay[0], pay, atol=1e-12)
        welfare = (out.alloc[0] * bids * quality).sum()
        assert welfare == pytest.approx(w_star)


def test_vcg_no_profitable_deviation():
    rng = np.random.default_rng(5)
    n, b = 4, 300
    alpha = np.array([1.0, 0.6, 0.3])
    values = rng.random((b, n))
    quality = rng.uniform(0.5, 2.0, (b, n))
    m = mechanisms.make("vcg", reserve=0.1, seed=0)
    truth = m.clear(values, weights=alpha, quality=quality)
    u_truth = values * truth.alloc - truth.pay
    for i in range(n):
        for dev in np.linspace(0.0, 1.2, 25):
            bids = values.copy()
            bids[:, i] = dev
            out = m.clear(bids, weights=alpha, quality=quality)
            u = values[:, i] * out.alloc[:, i] - out.pay[:, i]
            assert (u <= u_truth[:, i] + 1e-12).all()


def test_gsp_truthful_revenue_at_least_vcg():
    rng = np.random.default_rng(7)
    bids = rng.random((5000, 6))
    alpha = np.sort(rng.random((5000, 3)), axis=1)[:, ::-1]
    gsp = clear("gsp", bids, weights=alpha)
    vcg = clear("vcg", bids, weights=alpha)
    np.testing.assert_array_equal(gsp.slot, vcg.slot)
    assert (gsp.revenue >= vcg.revenue - 1e-12).all()
    assert (gsp.revenue > vcg.revenue + 1e-6).mean() > 0.9


def test_gsp_envy_free_equilibrium_has_vcg_revenue():
    # Edelman–Ostrovsky–Schwarz: in the lowest locally envy-free equilibrium the
    # buyer in position k + 1 bids the VCG per-unit price of position k.
    rng = np.random.default_rng(8)
    n, k = 5, 3
    values = -np.sort(-rng.random((2000, n)), axis=1)
    alpha = np.array([1.0, 0.7, 0.2])
    vcg = clear("vcg", values, weights=alpha)
    bids = values.copy()
    bids[:, 1 : k + 1] = vcg.pay[:, :k] / alpha[:k]
    gsp = clear("gsp", bids, weights=alpha)
    np.testing.assert_array_equal(gsp.slot, vcg.slot)
    np.testing.assert_allclose(gsp.revenue, vcg.revenue, atol=1e-12)
    # and no buyer gains by moving to another position at its GSP price
    u = values * gsp.alloc - gsp.pay
    for pos in range(k):
        # moving down to pos pays the bid just below it; moving up pays pos's bid
        price_pos = np.where(np.arange(n) <= pos, bids[:, [pos + 1]], bids[:, [pos]])
        gain = values * alpha[pos] - price_pos * alpha[pos]
        assert (gain <= u + 1e-9).all()


# --- Monte Carlo, docs/design.md#known-answers ------------------------------------


def assert_mean(samples, expected, z=4.0):
    se = samples.std(ddof=1) / np.sqrt(samples.size)
    assert abs(samples.mean() - expected) < z * se, (samples.mean(), expected, se)


def test_first_price_bne_is_best_response():
    # against n - 1 rivals bidding (n-1)/n v, bidding (n-1)/n v beats other shadings
    n, rng = 3, np.random.default_rng(4)
    values = rng.random((100_000, n))
    bids = (n - 1) / n * values
    u = {}
    for shade in (0.5, 0.6, 2 / 3, 0.75, 0.85):
        own = bids.copy()
        own[:, 0] = shade * values[:, 0]
        out = clear("first_price", own)
        u[shade] = (values[:, 0] * out.alloc[:, 0] - out.pay[:, 0]).mean()
    assert max(u, key=u.get) == 2 / 3


def test_second_price_truthful_dominant():
    rng = np.random.default_rng(9)
    values = rng.random((2000, 3))
    m = mechanisms.make("second_price", seed=0)
    truth = m.clear(values)
    u_truth = values[:, 0] * truth.alloc[:, 0] - truth.pay[:, 0]
    for dev in np.linspace(0, 1.5, 31):
        bids = values.copy()
        bids[:, 0] = dev
        out = m.clear(bids)
        u = values[:, 0] * out.alloc[:, 0] - out.pay[:, 0]
        assert (u <= u_truth + 1e-12).all()


def test_one_slot_rules_refuse_more_slots_in_one_line():
    """second_price and all_pay sell one slot: at construction and at clear."""
    from attn_env.errors import UserError
    from attn_env.solver.formats import AllPay

    with pytest.raises(
        UserError,
        match=r"^second_price sells exactly one slot, got K=2 "
        r"\(use gsp or vcg for several slots\)$",
    ):
        mechanisms.make("second_price", n_slots=2)
    with pytest.raises(UserError, match=r"^all_pay sells exactly one slot, got K=3$"):
        AllPay(n_slots=3)
    with pytest.raises(UserError, match="second_price sells exactly one slot, got K=2"):
        mechanisms.make("second_price").clear(np.ones((1, 3)), weights=[0.6, 0.4])
    mechanisms.make("gsp", n_slots=3)  # a several-slot rule takes any K
