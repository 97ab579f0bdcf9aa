"""Matchings (assignment, stable_matching) against brute force and theory."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.optimize import linprog

from attn_env import mechanisms
from attn_env.mechanisms import matching


def clear(name, values, **kw):
    params = {k: kw.pop(k) for k in ("reserve",) if k in kw}
    return mechanisms.make(name, seed=0, **params).clear(
        np.asarray(values, float), **kw
    )


# --- hand-written tables -----------------------------------------------------


def test_assignment_table():
    # buyer 0 values slots (5, 3), buyer 1 (4, 1). Best: b0 -> s1, b1 -> s0 (7).
    # Clarke: b0 pays 4 - 4 = 0; b1 pays 5 - 3 = 2. Slot prices (2, 0).
    out = clear("assignment", [[[5, 3], [4, 1]]])
    np.testing.assert_array_equal(out.slot, [[1, 0]])
    np.testing.assert_allclose(out.pay, [[0, 2]])
    np.testing.assert_allclose(out.extra["slot_price"], [[2, 0]])
    np.testing.assert_allclose(out.extra["welfare"], [7])


def test_assignment_one_slot_is_second_price():
    out = clear("assignment", [[[0.9], [0.5], [0.7]]])
    np.testing.assert_array_equal(out.slot, [[0, -1, -1]])
    np.testing.assert_allclose(out.pay, [[0.7, 0, 0]])
    out = clear("assignment", [[[0.9], [0.5]]], reserve=0.6)
    np.testing.assert_allclose(out.pay, [[0.6, 0]])
    out = clear("assignment", [[[0.9], [0.5]]], reserve=0.95)
    np.testing.assert_array_equal(out.slot, [[-1, -1]])
    np.testing.assert_allclose(out.extra["slot_price"], [[0.95]])


def test_assignment_weights_set_units():
    out = clear("assignment", [[[5, 3], [4, 1]]], weights=[1.0, 0.5])
    np.testing.assert_allclose(out.alloc, [[0.5, 1.0]])
    np.testing.assert_allclose(out.price, [[0, 2]])


def test_stable_matching_table():
    # both buyers like slot 0 best; slot 0 prefers buyer 1 (bid .9 > .8);
    # buyer 0 then takes slot 1. Each pays its own bid.
    out = clear("stable_matching", [[[0.8, 0.6], [0.9, 0.1]]])
    np.testing.assert_array_equal(out.slot, [[1, 0]])
    np.testing.assert_allclose(out.pay, [[0.6, 0.9]])
    # with reserve .65 buyer 0 does not propose to slot 1
    out = clear("stable_matching", [[[0.8, 0.6], [0.9, 0.1]]], reserve=0.65)
    np.testing.assert_array_equal(out.slot, [[-1, 0]])


# --- assignment against brute force ---------------------------------------------


def brute_assignment(v, reserve):
    """Best partial assignment and Clarke payments, enumerating everything."""
    n, k = v.shape
    g = v - reserve

    def best(people):
        top, arg = 0.0, {}
        for size in range(min(len(people), k) + 1):
            for who in itertools.permutations(people, size):
                for where in itertools.permutations(range(k), size):
                    pairs = list(zip(who, where, strict=True))
                    if any(g[i, j] < 0 for i, j in pairs):
                        continue
                    w = sum(g[i, j] for i, j in pairs)
                    if w > top + 1e-12:
                        top, arg = w, dict(pairs)
        return top, arg

    w_star, arg = best(list(range(n)))
    slot, pay = np.full(n, -1), np.zeros(n)
    for i, j in arg.items():
        slot[i] = j
        w_minus, _ = best([o for o in range(n) if o != i])
        pay[i] = w_minus - (w_star - g[i, j]) + reserve
    return slot, pay


def test_assignment_equals_brute_force():
    rng = np.random.default_rng(1)
    for _ in range(40):
        n, k = rng.integers(1, 5), rng.integers(1, 5)
        v = rng.random((n, k))
        reserve = float(rng.choice([0.0, 0.3]))
        out = clear("assignment", v[None], reserve=reserve)
        slot, pay = brute_assignment(v, reserve)
        np.testing.assert_array_equal(out.slot[0], slot)
        np.testing.assert_allclose(out.pay[0], pay, atol=1e-12)


@pytest.mark.parametrize("scale", [1e-9, 1e-12, 1e6])
def test_assignment_is_efficient_and_ir_at_any_value_scale(scale):
    # position values (value x slot attention) scaled by 1e-9 .. 1e6: the choice
    # and the prices scale with them (an absolute tie tolerance once let it
    # pick assignments 0.5 % worse and charge 1.6x a truthful buyer's value)
    rng = np.random.default_rng(3)
    v = rng.random((2000, 4, 1)) * np.array([1.0, 0.6, 0.3]) * scale
    out = clear("assignment", v)
    best = np.zeros(len(v))
    for p in itertools.permutations(range(4), 3):
        best = np.maximum(best, sum(v[:, p[j], j] for j in range(3)))
    np.testing.assert_allclose(out.extra["welfare"], best, rtol=1e-12)
    won = np.take_along_axis(v, np.maximum(out.slot, 0)[..., None], 2)[..., 0]
    assert (out.pay <= np.where(out.slot >= 0, won, 0.0) * (1 + 1e-12)).all()


@pytest.mark.parametrize("shape", [(4, 3), (3, 5), (5, 5)])
def test_three_solvers_agree(monkeypatch, shape):
    # enumeration, the subset dynamic programme and scipy's Hungarian algorithm
    rng = np.random.default_rng(2)
    v = rng.random((50, *shape))
    enum = clear("assignment", v, reserve=0.2)
    monkeypatch.setattr(matching, "MAX_ENUMERATED", 0)
    dp = clear("assignment", v, reserve=0.2)
    monkeypatch.setattr(matching, "MAX_SUBSET", 0)
    hungarian = clear("assignment", v, reserve=0.2)
    for other in (dp, hungarian):
        np.testing.assert_array_equal(enum.slot, other.slot)
        np.testing.assert_allclose(enum.pay, other.pay, atol=1e-12)


@pytest.mark.parametrize("shape", [(10, 5), (4, 9), (8, 8)])
def test_subset_dp_equals_scipy_on_larger_markets(monkeypatch, shape):
    rng = np.random.default_rng(3)
    v = rng.random((40, *shape))
    dp = clear("assignment", v, reserve=0.3)
    monkeypatch.setattr(matching, "MAX_SUBSET", 0)
    hungarian = clear("assignment", v, reserve=0.3)
    np.testing.assert_array_equal(dp.slot, hungarian.slot)
    np.testing.assert_allclose(dp.pay, hungarian.pay, atol=1e-12)


def test_subset_dp_ties_are_random(monkeypatch):
    # two identical buyers, one slot that matters: each wins about half the time
    monkeypatch.setattr(matching, "MAX_ENUMERATED", 0)
    v = np.zeros((4000, 2, 3))
    v[:, :, 0] = 0.5
    out = mechanisms.make("assignment", seed=4).clear(v)
    share = (out.slot[:, 0] == 0).mean()
    assert abs(share - 0.5) < 0.04
    np.testing.assert_allclose(out.pay[out.slot == 0], 0.5)


def test_large_assignment_is_optimal():
    # 12 x 11 is past the enumeration and subset limits: scipy path
    rng = np.random.default_rng(3)
    v = rng.random((5, 12, 11))
    out = clear("assignment", v)
    from scipy.optimize import linear_sum_assignment

    for b in range(5):
        r, c = linear_sum_assignment(v[b], maximize=True)
        assert out.extra["welfare"][b] == pytest.approx(v[b][r, c].sum())
    assert ((out.slot >= 0).sum(axis=1) == 11).all()


def min_walrasian_prices(v, slot, reserve):
    """Minimum competitive prices supporting ``slot`` (an LP over p, u)."""
    n, k = v.shape
    # variables: p_0..p_{k-1}, u_0..u_{n-1}; minimise sum p
    cost = np.r_[np.ones(k), np.zeros(n)]
    a_ub, b_ub = [], []
    for i in range(n):
        for j in range(k):  # u_i + p_j >= v_ij
            row = np.zeros(k + n)
            row[j] = row[k + i] = -1.0
            a_ub.append(row)
            b_ub.append(-v[i, j])
    a_eq, b_eq = [], []
    for i in range(n):
        row = np.zeros(k + n)
        row[k + i] = 1.0
        if slot[i] >= 0:  # u_i = v_i,slot - p_slot
            row[slot[i]] = 1.0
            b_eq.append(v[i, slot[i]])
        else:
            b_eq.append(0.0)
        a_eq.append(row)
    for j in set(range(k)) - set(slot.tolist()):  # unsold: price = reserve
        row = np.zeros(k + n)
        row[j] = 1.0
        a_eq.append(row)
        b_eq.append(reserve)
    bounds = [(reserve, None)] * k + [(0, None)] * n
    res = linprog(cost, a_ub, b_ub, a_eq, b_eq, bounds=bounds, method="highs")
    assert res.success
    return res.x[:k]


def test_vcg_prices_are_minimum_walrasian_prices():
    rng = np.random.default_rng(4)
    v = rng.random((30, 4, 3))
    out = clear("assignment", v, reserve=0.1)
    for b in range(30):
        expected = min_walrasian_prices(v[b], out.slot[b], 0.1)
        np.testing.assert_allclose(out.extra["slot_price"][b], expected, atol=1e-9)


@pytest.mark.parametrize("reserve", [0.0, 0.3])
def test_assignment_no_profitable_deviation(reserve):
    rng = np.random.default_rng(5)
    v = rng.random((200, 3, 3))
    truth = clear("assignment", v, reserve=reserve)

    def value(out):
        won = np.take_along_axis(v, np.maximum(out.slot, 0)[..., None], 2)[..., 0]
        return won * (out.slot >= 0)

    u_truth = value(truth) - truth.pay
    for _ in range(30):
        i = rng.integers(3)
        lie = v.copy()
        lie[:, i] = rng.random((200, 3)) * 1.5
        out = clear("assignment", lie, reserve=reserve)
        assert (value(out)[:, i] - out.pay[:, i] <= u_truth[:, i] + 1e-12).all()


# --- Gale–Shapley -----------------------------------------------------------------


def reference_da(v, reserve):
    """Textbook buyer-proposing deferred acceptance for one market (no ties)."""
    n, k = v.shape
    prefs = [[j for j in np.argsort(-v[i]) if v[i, j] > reserve] for i in range(n)]
    nxt, holder, slot = [0] * n, [-1] * k, [-1] * n
    free = list(range(n))
    while free:
        i = free.pop()
        if nxt[i] >= len(prefs[i]):
            continue
        j = prefs[i][nxt[i]]
        nxt[i] += 1
        if holder[j] < 0 or v[i, j] > v[holder[j], j]:
            if holder[j] >= 0:
                slot[holder[j]] = -1
                free.append(holder[j])
            holder[j], slot[i] = i, j
        else:
            free.append(i)
    return slot


def test_stable_matching_equals_textbook_and_has_no_blocking_pair():
    rng = np.random.default_rng(6)
    for n, k in [(4, 3), (3, 5), (6, 6)]:
        v = rng.random((300, n, k))
        out = clear("stable_matching", v, reserve=0.2)
        for b in range(300):
            assert out.slot[b].tolist() == reference_da(v[b], 0.2)
        holder = np.full((300, k), -1)
        rows, buyers = np.nonzero(out.slot >= 0)
        holder[rows, out.slot[rows, buyers]] = buyers
        own = np.where(
            out.slot >= 0,
            np.take_along_axis(v, np.maximum(out.slot, 0)[..., None], 2)[..., 0],
            0.2,  # unmatched: anything above the reserve is better
        )
        for j in range(k):
            held = holder[:, j]
            held_value = np.where(
                held >= 0, v[np.arange(300), np.maximum(held, 0), j], -np.inf
            )
            wants = v[:, :, j] > own[:, :, None][..., 0]
            accepted = v[:, :, j] > held_value[:, None]
            assert not (wants & accepted).any()  # no blocking pair (i, j)
        assert (out.pay <= np.where(out.slot >= 0, own, 0.0) + 1e-12).all()
        # each slot at most once
        for b in range(0, 300, 37):
            s = out.slot[b][out.slot[b] >= 0]
            assert len(set(s.tolist())) == s.size


def test_stable_matching_ties_are_random():
    v = np.full((4000, 2, 1), 0.5)
    out = mechanisms.make("stable_matching", seed=1).clear(v)
    share = (out.slot[:, 0] == 0).mean()
    assert abs(share - 0.5) < 0.04
    assert ((out.slot >= 0).sum(axis=1) == 1).all()


def test_assignment_ties_are_random():
    # two identical buyers for one slot: each wins half the time, pays 0.5
    out = mechanisms.make("assignment", seed=2).clear(np.full((4000, 2, 1), 0.5))
    assert abs((out.slot[:, 0] == 0).mean() - 0.5) < 0.04
    assert ((out.slot >= 0).sum(axis=1) == 1).all()
    np.testing.assert_allclose(out.revenue, 0.5)


def test_blocking_pairs_table():
    # buyer 0 values (0.8, 0.6), buyer 1 (0.9, 0.1)
    v = np.array([[[0.8, 0.6], [0.9, 0.1]]] * 3)
    slot = np.array(
        [
            [1, 0],  # stable: slot 0 prefers buyer 1, buyer 0 has slot 1
            [0, 1],  # buyer 1 wants slot 0 and slot 0 prefers buyer 1: blocks
            [-1, -1],  # nobody matched: all three pairs above 0 block
        ]
    )
    np.testing.assert_array_equal(mechanisms.blocking_pairs(v, slot), [0, 1, 4])
    # with reserve .65 the pair (0, 1) at .6 is not acceptable
    np.testing.assert_array_equal(mechanisms.blocking_pairs(v, slot, 0.65), [0, 1, 2])
    with pytest.raises(ValueError, match="slot must be an int array of shape"):
        mechanisms.blocking_pairs(v, slot[:, :1])


def test_blocking_pairs_of_stable_and_assignment():
    rng = np.random.default_rng(9)
    v = rng.random((500, 5, 4))
    stable = clear("stable_matching", v, reserve=0.1)
    assert (mechanisms.blocking_pairs(v, stable.slot, 0.1) == 0).all()
    # the welfare-maximising assignment ignores slots' rankings: often unstable
    best = clear("assignment", v, reserve=0.1)
    assert (mechanisms.blocking_pairs(v, best.slot, 0.1) > 0).mean() > 0.2


def test_blocking_pairs_rejects_two_buyers_in_one_slot():
    vals = np.random.default_rng(0).random((2, 3, 2))
    ok = matching.blocking_pairs(vals, np.array([[0, 1, -1], [1, -1, 0]]))
    assert ok.shape == (2,)
    with pytest.raises(ValueError, match="market 1, slot 1 holds 2 buyers"):
        matching.blocking_pairs(vals, np.array([[0, 1, -1], [1, -1, 1]]))
