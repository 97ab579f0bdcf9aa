"""Properties every mechanism keeps, on random markets (hypothesis), the batch
contract (row i of a batch equals market i cleared alone) and bad-input errors."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from attn_env import mechanisms
from attn_env.errors import ConfigError, UserError
from attn_env.mechanisms import names_of_family
from attn_env.mechanisms._validate import IR_RTOL, MAX_MAGNITUDE, MIN_MAGNITUDE

ONE_SIDED = tuple(names_of_family("one_sided"))
TWO_SIDED = tuple(names_of_family("two_sided"))
MATCHING = tuple(names_of_family("matching"))
# share rules (attn_env/mechanisms/answer.py) sell shares of attention, not ranked
# slots: their own properties are in tests/test_answer_mechanisms.py
RANKED = tuple(
    n
    for n in ONE_SIDED
    if not getattr(mechanisms.mechanism_class(n), "share_rule", False)
)

PROPS = settings(max_examples=60, deadline=None)
# a small set of prices makes ties common; the floats make them rare (floats
# under MIN_MAGNITUDE are outside the accepted range: they read as 0 here)
PRICE = st.one_of(
    st.sampled_from([0.0, 0.25, 0.5, 1.0]),
    st.floats(0.0, 1.0, allow_nan=False).map(lambda x: x if x >= MIN_MAGNITUDE else 0),
)


@st.composite
def book(draw):
    b = draw(st.integers(1, 4))
    n = draw(st.integers(1, 6))
    k = draw(st.integers(1, 4))
    return b, n, k, draw(st.integers(0, 2**32 - 1))


def prices(draw, shape):
    return draw(arrays(np.float64, shape, elements=PRICE))


@st.composite
def one_sided(draw):
    b, n, k, seed = draw(book())
    values = prices(draw, (b, n))
    quality = draw(arrays(np.float64, (b, n), elements=st.floats(0.1, 3.0)))
    alpha = -np.sort(-prices(draw, (b, k)), axis=1)
    reserve = draw(st.sampled_from([0.0, 0.25, 0.6]))
    return values, quality, alpha, reserve, seed


@PROPS
@given(one_sided(), st.sampled_from(RANKED))
def test_one_sided_properties(market, name):
    values, quality, alpha, reserve, seed = market
    if name == "second_price":
        alpha = alpha[:, :1]
    out = mechanisms.make(name, reserve=reserve, seed=seed).clear(
        values, weights=alpha, quality=quality
    )
    won = out.slot >= 0
    # feasibility: each slot at most once, slots exist, alloc is that slot's alpha
    for row in out.slot:
        taken = row[row >= 0]
        assert len(set(taken.tolist())) == taken.size
    assert (out.slot < alpha.shape[1]).all()
    got = np.take_along_axis(alpha, np.maximum(out.slot, 0), axis=1)
    np.testing.assert_array_equal(out.alloc, np.where(won, got, 0.0))
    # only bids at the reserve or above win; losers pay nothing
    assert (values[won] >= reserve).all()
    assert (out.pay[~won] == 0).all() and (out.price[~won] == 0).all()
    # payments are >= 0 and truthful bidders are individually rational
    assert (out.pay >= 0).all()
    assert (out.pay <= values * out.alloc + 1e-12).all()
    np.testing.assert_allclose(out.pay, out.price * out.alloc, atol=1e-12)
    # every winner pays at least the reserve per unit (VCG too: each of its
    # thresholds is at least the reserve), where its slot has attention
    paid = won & (out.alloc > 0)
    assert (out.price[paid] >= reserve - 1e-12).all()
    # ranking: a winner's score is at least any eligible loser's score
    score = values * quality
    for b in range(values.shape[0]):
        losers = (~won[b]) & (values[b] >= reserve)
        if losers.any():  # an eligible buyer loses only when every slot is taken
            assert won[b].sum() == alpha.shape[1]
        if won[b].any() and losers.any():
            assert score[b][won[b]].min() >= score[b][losers].max()
        # slots go down the ranking
        order = np.argsort(out.slot[b][won[b]])
        ranked = score[b][won[b]][order]
        assert (np.diff(ranked) <= 0).all()


@st.composite
def two_sided(draw):
    b, n, m, seed = draw(book())
    reserve = draw(st.sampled_from([0.0, 0.25]))
    return prices(draw, (b, n)), prices(draw, (b, m)), reserve, seed


@PROPS
@given(two_sided(), st.sampled_from(TWO_SIDED))
def test_two_sided_properties(market, name):
    values, costs, reserve, seed = market
    out = mechanisms.make(name, reserve=reserve, seed=seed).clear(values, costs)
    traded = out.slot >= 0
    # feasibility: each seller's unit at most once, the slot names its seller
    for b in range(values.shape[0]):
        sellers = out.slot[b][traded[b]]
        assert len(set(sellers.tolist())) == sellers.size
        np.testing.assert_array_equal(
            np.flatnonzero(out.seller_alloc[b]), np.sort(sellers)
        )
    np.testing.assert_array_equal(out.alloc, traded.astype(float))
    assert set(np.unique(out.seller_alloc)) <= {0.0, 1.0}
    # individual rationality for truthful traders, payments >= 0
    assert (out.pay >= 0).all() and (out.seller_receipt >= 0).all()
    assert (out.pay <= values * out.alloc + 1e-12).all()
    assert (out.seller_receipt >= costs * out.seller_alloc - 1e-12).all()
    assert (out.pay[~traded] == 0).all()
    assert (out.seller_receipt[out.seller_alloc == 0] == 0).all()
    assert (values[traded] >= reserve).all()
    # budget balance: exact, except McAfee's surplus (never a deficit)
    if name == "mcafee":
        assert (out.budget_surplus >= -1e-12).all()
    else:
        np.testing.assert_allclose(out.budget_surplus, 0.0, atol=1e-12)
    # no trade, no price
    assert (np.isnan(out.clearing_price) == (out.alloc.sum(axis=1) == 0)).all()


@st.composite
def matching_market(draw):
    b, n, k, seed = draw(book())
    reserve = draw(st.sampled_from([0.0, 0.3]))
    return prices(draw, (b, n, k)), reserve, seed


@PROPS
@given(matching_market(), st.sampled_from(MATCHING))
def test_matching_properties(market, name):
    values, reserve, seed = market
    out = mechanisms.make(name, reserve=reserve, seed=seed).clear(values)
    matched = out.slot >= 0
    for row in out.slot:
        taken = row[row >= 0]
        assert len(set(taken.tolist())) == taken.size
    own = np.take_along_axis(values, np.maximum(out.slot, 0)[..., None], 2)[..., 0]
    assert (out.pay >= 0).all()
    assert (out.pay <= np.where(matched, own, 0.0) + 1e-12).all()
    assert (out.pay[matched] >= reserve - 1e-12).all()
    assert (out.pay[~matched] == 0).all()
    if name == "assignment":
        assert (own[matched] >= reserve).all()
        # a free slot and a buyer who wants it above the reserve cannot both remain
        for b in range(values.shape[0]):
            free = np.setdiff1d(np.arange(values.shape[2]), out.slot[b])
            lonely = ~matched[b]
            if free.size and lonely.any():
                assert (values[b][np.ix_(lonely, free)] < reserve).all()
    else:
        assert (own[matched] > reserve).all()


# --- the batch contract ---------------------------------------------------------


def market_args(name, rng, b):
    """Tie-free random arguments for ``b`` markets of each family."""
    if name in ONE_SIDED:
        k = 1 if name == "second_price" else 3
        return (rng.random((b, 6)),), {
            "weights": -np.sort(-rng.random((b, k)), axis=1),
            "quality": rng.uniform(0.5, 2, (b, 6)),
        }
    if name in TWO_SIDED:
        kw = {}
        if name == "cda":
            kw["order"] = np.argsort(rng.random((b, 11)), axis=1)
            kw["buyer_active"] = rng.random((b, 5)) < 0.8
        return (rng.random((b, 5)), rng.random((b, 6))), kw
    return (rng.random((b, 4, 3)),), {"weights": -np.sort(-rng.random((b, 3)), 1)}


def row(x, i):
    return x[i : i + 1] if isinstance(x, np.ndarray) and x.ndim > 1 else x


@pytest.mark.parametrize("name", mechanisms.names())
def test_batch_row_equals_market_alone(name):
    rng = np.random.default_rng(12)
    args, kw = market_args(name, rng, 20)
    m = mechanisms.make(name, reserve=0.1, seed=0)
    batch = m.clear(*args, **kw)
    for i in range(20):
        alone = m.clear(
            *(row(a, i) for a in args), **{k: row(v, i) for k, v in kw.items()}
        )
        if getattr(m, "randomised", False):  # draws differ; their law must not
            for field in ("expected_alloc", "expected_pay"):
                np.testing.assert_array_equal(
                    batch.extra[field][i], alone.extra[field][0]
                )
            continue
        for field in ("slot", "alloc", "pay", "price", "clearing_price"):
            np.testing.assert_array_equal(
                getattr(batch, field)[i], getattr(alone, field)[0]
            )
        if name in TWO_SIDED:
            np.testing.assert_array_equal(batch.seller_alloc[i], alone.seller_alloc[0])
            np.testing.assert_array_equal(
                batch.seller_receipt[i], alone.seller_receipt[0]
            )


@pytest.mark.parametrize("name", mechanisms.names())
def test_same_seed_same_outcome(name):
    rng = np.random.default_rng(13)
    args, kw = market_args(name, rng, 50)
    kw.pop("order", None)
    # round to a coarse grid: many ties, all broken by the seeded generator
    args = tuple(np.round(a * 4) / 4 for a in args)
    a = mechanisms.make(name, seed=5).clear(*args, **kw)
    b = mechanisms.make(name, seed=5).clear(*args, **kw)
    c = mechanisms.make(name, seed=6).clear(*args, rng=np.random.default_rng(5), **kw)
    d = mechanisms.make(name, seed=7).clear(*args, rng=np.random.default_rng(5), **kw)
    np.testing.assert_array_equal(a.slot, b.slot)
    np.testing.assert_array_equal(c.slot, d.slot)


# --- bad input ----------------------------------------------------------------------


def test_unknown_parameter_is_named():
    with pytest.raises(ValueError, match="bogus"):
        mechanisms.make("gsp", bogus=1)
    with pytest.raises(ValueError, match="n_slots"):
        mechanisms.make("mcafee", n_slots=2)
    with pytest.raises(ValueError, match="unknown mechanism 'nope'"):
        mechanisms.make("nope")


@pytest.mark.parametrize(
    ("name", "params", "match"),
    [
        ("gsp", {"reserve": -0.1}, "reserve must be"),
        ("gsp", {"reserve": float("nan")}, "reserve must be"),
        ("gsp", {"reserve": True}, "reserve must be a number >= 0.*got true"),
        ("gsp", {"reserve": 1e200}, r"reserve must be .*1e\+150\], got 1e\+200"),
        ("gsp", {"reserve": 1e-200}, r"reserve must be .*\[1e-150, .*got 1e-200"),
        ("k_double", {"k": 1.5}, r"k must be a number in \[0, 1\], got 1.5"),
        ("k_double", {"k": True}, r"k must be a number in \[0, 1\], got true"),
        ("call_market", {"k": -0.1}, "k must be a number in"),
        ("vcg", {"n_slots": 0}, "n_slots must be an integer >= 1, got 0"),
        ("vcg", {"n_slots": 2.5}, "n_slots must be an integer"),
        ("cda", {"seed": "abc"}, "seed must be an int"),
        ("cda", {"seed": -1}, "seed must be an int"),
    ],
)
def test_bad_parameters(name, params, match):
    with pytest.raises(ConfigError, match=match):
        mechanisms.make(name, **params)


GOOD = np.array([[0.5, 0.2, 0.9]])


@pytest.mark.parametrize(
    ("name", "args", "kw", "match"),
    [
        ("gsp", ([0.5, 0.2],), {}, r"bids must have shape \[B, n\].*batch axis"),
        ("gsp", (np.zeros((2, 3, 1)),), {}, r"shape \[B, n\], got shape \(2, 3, 1\)"),
        ("gsp", ([[0.5, np.nan]],), {}, "bids must be finite, got nan at index"),
        ("gsp", ([[0.5, np.inf]],), {}, "bids must be finite, got inf"),
        ("gsp", ([[0.5, -0.2]],), {}, r"bids must be >= 0, got -0.2 at index \(0, 1\)"),
        ("gsp", (GOOD,), {"weights": [0.5, 1.0]}, "weights must be sorted descending"),
        ("gsp", (GOOD,), {"weights": [1.0, -0.5]}, "weights must be >= 0"),
        ("gsp", (GOOD,), {"weights": np.ones((2, 2))}, r"\[K\] or \[B, K\] with B=1"),
        (
            "gsp",
            (GOOD,),
            {"quality": [[1.0, 0.0, 1.0]]},
            "quality must be > 0, got 0.0",
        ),
        ("gsp", (GOOD,), {"quality": [[1.0, 1.0]]}, "quality must have the shape"),
        ("gsp", ("abc",), {}, "bids must be a numeric array"),
        ("gsp", (GOOD,), {"rng": 3}, "rng must be a numpy.random.Generator"),
        ("mcafee", (GOOD, [0.1]), {}, r"asks must have shape \[B, m\]"),
        ("mcafee", (GOOD, [[0.1, -1.0]]), {}, "asks must be >= 0, got -1.0"),
        ("mcafee", (GOOD, np.ones((2, 2))), {}, "same batch size B"),
        ("cda", (GOOD, [[0.1]]), {"order": np.array([[0, 1, 1, 3]])}, "permutations"),
        ("cda", (GOOD, [[0.1]]), {"order": np.zeros((1, 3), int)}, r"order must have"),
        ("cda", (GOOD, [[0.1]]), {"buyer_active": np.ones((1, 2), bool)}, "buyer_act"),
        ("assignment", (GOOD,), {}, r"values must have shape \[B, n, K\]"),
        ("assignment", (np.ones((1, 2, 2)),), {"weights": [1.0]}, "K=2"),
        ("stable_matching", (-np.ones((1, 2, 2)),), {}, "values must be >= 0"),
    ],
)
def test_bad_input(name, args, kw, match):
    with pytest.raises(UserError, match=match):
        mechanisms.make(name).clear(*args, **kw)


CPLX = np.array([[0.5 + 1j, 0.2, 0.9]])


@pytest.mark.parametrize(
    ("name", "args", "match"),
    [
        ("gsp", (CPLX,), r"bids must be a real float64 array.*complex"),
        ("first_price", (CPLX.astype(np.complex64),), r"bids must be a real float64"),
        ("mcafee", (CPLX, [[0.1]]), r"bids must be a real float64"),
        ("cda", (GOOD, [[0.1 + 0j]]), r"asks must be a real float64.*complex"),
        ("assignment", (CPLX[..., None],), r"values must be a real float64"),
        ("stable_matching", (CPLX[..., None],), r"values must be a real float64"),
    ],
)
def test_complex_input_is_rejected_not_cut_to_real(name, args, match):
    with pytest.raises(ValueError, match=match):
        mechanisms.make(name).clear(*args)


HUGE = np.array([[1e308, 5e307, 0.5]])
TINY = np.array([[0.5, 5e-324, 0.0]])
RANGE = r"must be 0 or a magnitude in \[1e-150, 1e\+150\]"


@pytest.mark.parametrize(
    ("name", "args", "kw", "match"),
    [
        ("gsp", (HUGE,), {}, rf"bids entries {RANGE}, got 1e\+308 at index \(0, 0\)"),
        ("vcg", (HUGE,), {}, rf"bids entries {RANGE}"),
        ("vcg", (TINY,), {}, rf"bids entries {RANGE}, got 5e-324 at index \(0, 1\)"),
        (
            "gsp",
            (GOOD,),
            {"quality": [[1.0, 1e-200, 1.0]]},
            rf"quality entries {RANGE}",
        ),
        ("gsp", (GOOD,), {"weights": [1.0, 1e-300]}, rf"weights entries {RANGE}"),
        ("k_double", (GOOD, [[1e151]]), {}, rf"asks entries {RANGE}, got 1e\+151"),
        ("mcafee", (HUGE, [[0.1]]), {}, rf"bids entries {RANGE}"),
        ("cda", (GOOD, [[1e-160]]), {}, rf"asks entries {RANGE}"),
        ("assignment", (HUGE[..., None],), {}, rf"values entries {RANGE}"),
        ("stable_matching", (HUGE[..., None],), {}, rf"values entries {RANGE}"),
        (
            "stable_matching",
            (np.ones((1, 2, 2)),),
            {"weights": [1.0, 1e-300]},
            rf"weights entries {RANGE}, got 1e-300",
        ),
    ],
)
def test_out_of_range_input_is_refused_in_one_line(name, args, kw, match):
    with pytest.raises(UserError, match=match) as err:
        mechanisms.make(name).clear(*args, **kw)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name", ONE_SIDED + TWO_SIDED + MATCHING)
def test_bound_itself_is_accepted_and_payments_stay_finite(name):
    mech = mechanisms.make(name)
    big = np.array([[1e150, 0.9e150, 0.5e150]])
    if name in MATCHING:
        out = mech.clear(np.repeat(big[..., None], 2, axis=2))
    elif name in TWO_SIDED:
        out = mech.clear(big, big[:, :2] / 2)
    else:
        kw = {"weights": [1.0]} if name in ("first_price", "second_price") else {}
        out = mech.clear(big, **kw)
    assert np.isfinite(out.pay).all() and np.isfinite(out.price).all()


@pytest.mark.parametrize("shape", [(0, 3, 2), (0, 12, 12), (0, 3, 11), (0, 2, 40)])
@pytest.mark.parametrize("name", MATCHING)
def test_matching_with_no_market_is_empty(name, shape):
    out = mechanisms.make(name).clear(np.zeros(shape), weights=np.ones(shape[2]))
    _, n, k = shape
    assert out.slot.shape == out.pay.shape == out.alloc.shape == (0, n)
    assert out.price.shape == (0, n) and out.clearing_price.shape == (0,)
    if name == "assignment":
        assert out.extra["slot_price"].shape == (0, k)
        assert out.extra["welfare"].shape == (0,)


# --- the whole accepted range -----------------------------------------------------
# Every entry 0 or of magnitude in [MIN_MAGNITUDE, MAX_MAGNITUDE] = [1e-150, 1e150]
# is accepted; on all of it payments are finite, units are conserved, no winner
# pays above its bid (no trading seller receives under its ask) beyond a relative
# IR_RTOL, and budgets balance where the rule promises. The strategies mix
# magnitudes in one market (log-uniform over the range, both ends), ties (entries
# from a small pool) and zeros.

RANGE_PROPS = settings(max_examples=80, deadline=None)
MAGNITUDE = st.one_of(
    st.sampled_from([MIN_MAGNITUDE, MAX_MAGNITUDE, 1.0]),
    st.floats(math.log(MIN_MAGNITUDE), math.log(MAX_MAGNITUDE)).map(
        lambda e: min(max(math.exp(e), MIN_MAGNITUDE), MAX_MAGNITUDE)
    ),
)
RESERVE = st.one_of(st.just(0.0), MAGNITUDE)


@st.composite
def wide(draw, shape, zeros=True):
    """An array across the accepted range: ties from a pool, zeros, any magnitude."""
    pool = draw(st.lists(MAGNITUDE, min_size=1, max_size=3))
    parts = [st.sampled_from(pool), MAGNITUDE] + ([st.just(0.0)] if zeros else [])
    return draw(arrays(np.float64, shape, elements=st.one_of(*parts)))


def descending(x):
    return -np.sort(-x, axis=1)


def assert_finite(out):
    for arr in (out.pay, out.price, out.alloc, out.seller_receipt, out.seller_alloc):
        assert arr is None or np.isfinite(arr).all()
    cp = out.clearing_price
    assert (np.isfinite(cp) | np.isnan(cp)).all()
    assert not np.isinf(cp).any()


def assert_one_each(slot, n_slots):
    """Each slot (seller) is taken at most once per market, and exists."""
    assert (slot < n_slots).all()
    for row in slot:
        taken = row[row >= 0]
        assert len(set(taken.tolist())) == taken.size


@RANGE_PROPS
@given(st.data(), st.sampled_from(RANKED), st.booleans())
def test_one_sided_across_the_accepted_range(data, name, with_quality):
    b, n, k, seed = data.draw(book())
    k = 1 if name == "second_price" else k
    bids = data.draw(wide((b, n)))
    alpha = descending(data.draw(wide((b, k))))
    quality = (
        data.draw(arrays(np.float64, (b, n), elements=MAGNITUDE))
        if with_quality
        else None
    )
    reserve = data.draw(RESERVE)
    out = mechanisms.make(name, reserve=reserve, seed=seed).clear(
        bids, weights=alpha, quality=quality
    )
    assert_finite(out)
    won = out.slot >= 0
    assert_one_each(out.slot, k)
    got = np.take_along_axis(alpha, np.maximum(out.slot, 0), axis=1)
    np.testing.assert_array_equal(out.alloc, np.where(won, got, 0.0))
    assert (out.pay >= 0).all() and (out.pay[~won] == 0).all()
    # individual rationality of truthful bidders, per unit and in total
    assert (out.price[won] <= bids[won] * (1 + IR_RTOL)).all()
    assert (out.pay <= bids * out.alloc * (1 + IR_RTOL)).all()
    assert (bids[won] >= reserve).all()
    paid = won & (out.alloc > 0)
    assert (out.price[paid] >= reserve * (1 - IR_RTOL)).all()


@RANGE_PROPS
@given(st.data(), st.sampled_from(TWO_SIDED))
def test_two_sided_across_the_accepted_range(data, name):
    b, n, m, seed = data.draw(book())
    bids, asks = data.draw(wide((b, n))), data.draw(wide((b, m)))
    reserve = data.draw(RESERVE)
    out = mechanisms.make(name, reserve=reserve, seed=seed).clear(bids, asks)
    assert_finite(out)
    traded = out.slot >= 0
    # units: one per trader, as many bought as sold, each seller's unit once
    assert set(np.unique(out.alloc)) <= {0.0, 1.0}
    assert set(np.unique(out.seller_alloc)) <= {0.0, 1.0}
    np.testing.assert_array_equal(out.alloc, traded.astype(float))
    np.testing.assert_array_equal(out.alloc.sum(1), out.seller_alloc.sum(1))
    assert_one_each(out.slot, m)
    # individual rationality of truthful traders on both sides
    assert (out.pay >= 0).all() and (out.pay[~traded] == 0).all()
    assert (out.pay <= bids * out.alloc * (1 + IR_RTOL)).all()
    assert (out.seller_receipt >= asks * out.seller_alloc * (1 - IR_RTOL)).all()
    assert (bids[traded] >= reserve).all()
    # budget balance: exact for uniform prices, McAfee never in deficit, the
    # CDA's trades add the same prices in another order
    surplus = out.budget_surplus
    if name in ("k_double", "call_market"):
        assert (surplus == 0).all()
    elif name == "mcafee":
        assert (surplus >= 0).all()
    else:
        assert (np.abs(surplus) <= IR_RTOL * out.revenue).all()


def check_matching(name, values, weights, reserve, seed):
    """Clear a matching market and assert its properties on the accepted range."""
    out = mechanisms.make(name, reserve=reserve, seed=seed).clear(
        values, weights=weights
    )
    assert_finite(out)
    matched = out.slot >= 0
    assert_one_each(out.slot, values.shape[2])
    own = np.take_along_axis(values, np.maximum(out.slot, 0)[..., None], 2)[..., 0]
    assert (out.pay >= 0).all() and (out.pay[~matched] == 0).all()
    assert (out.pay <= own * (1 + IR_RTOL)).all()
    assert (own[matched] >= reserve).all()
    assert (out.pay[matched] >= reserve).all()
    alloc = (
        matched
        if weights is None
        else np.take_along_axis(
            np.broadcast_to(weights, (values.shape[0], values.shape[2])),
            np.maximum(out.slot, 0),
            axis=1,
        )
    )
    np.testing.assert_array_equal(out.alloc, np.where(matched, alloc, 0.0))
    return out


@RANGE_PROPS
@given(st.data(), st.sampled_from(MATCHING), st.booleans())
def test_matching_across_the_accepted_range(data, name, with_weights):
    b, n, k, seed = data.draw(book())
    values = data.draw(wide((b, n, k)))
    weights = descending(data.draw(wide((b, k)))) if with_weights else None
    check_matching(name, values, weights, data.draw(RESERVE), seed)


@settings(max_examples=15, deadline=None)
@given(st.data(), st.sampled_from([(8, 4), (4, 8), (11, 11)]))
def test_assignment_solvers_across_the_accepted_range(data, shape):
    """The subset programme (n = 8, K = 4 and its transpose) and scipy (11 x 11)."""
    n, k = shape
    values = data.draw(wide((2, n, k)))
    check_matching("assignment", values, None, data.draw(RESERVE), 0)


# --- the failures of issue 19, kept --------------------------------------------


def exact_assignment(values):
    """Exact (rational) optimum welfare and Clarke payments by enumeration."""
    n, k = values.shape
    vals = [[Fraction(float(x)) for x in row] for row in values]

    def welfare(skip=None):
        best, arg = Fraction(0), None
        for perm in itertools.permutations(range(k), min(n, k)):
            for buyers in itertools.permutations(range(n), len(perm)):
                if skip in buyers:
                    continue
                w = sum(
                    (vals[i][j] for i, j in zip(buyers, perm, strict=True)), Fraction(0)
                )
                if w > best or arg is None:
                    best, arg = w, dict(zip(buyers, perm, strict=True))
        return best, arg

    best, _ = welfare()
    return best, welfare, vals


@settings(max_examples=40, deadline=None)
@given(
    st.integers(2, 4),
    st.integers(2, 4),
    st.sampled_from([(0.0, 17.0), (-150.0, 150.0), (-3.0, 3.0)]),
    st.integers(0, 2**32 - 1),
)
def test_assignment_mixed_magnitudes_is_optimal_and_rational(n, k, span, seed):
    """Values over [1, 1e17] (issue 19: a buyer of value 320.5 paid 52,336)
    and over the whole range: the assignment is exactly optimal (rational
    arithmetic) and no buyer pays above its value."""
    rng = np.random.default_rng(seed)
    values = 10.0 ** rng.uniform(*span, (1, n, k))
    values = np.clip(values, MIN_MAGNITUDE, MAX_MAGNITUDE)
    out = check_matching("assignment", values, None, 0.0, seed)
    best, _, vals = exact_assignment(values[0])
    got = sum((vals[i][j] for i, j in enumerate(out.slot[0]) if j >= 0), Fraction(0))
    assert got == best


def test_issue_19_cases():
    # vcg at the top of the range with qualities and attention there too
    big = np.full((1, 3), 1e150)
    out = mechanisms.make("vcg").clear(big, weights=[1e150, 1e149], quality=big)
    assert_finite(out)
    assert (out.price <= 1e150 * (1 + IR_RTOL)).all()
    # a weight of 1e-300 is refused, the least accepted one prices finitely
    with pytest.raises(UserError, match="weights entries"):
        mechanisms.make("stable_matching").clear(np.ones((1, 2, 2)), [1, 1e-300])
    out = mechanisms.make("stable_matching").clear(
        np.full((1, 2, 2), 1e150), weights=[1.0, 1e-150]
    )
    assert_finite(out)
    # assignment with values over [1, 1e17] in one market
    rng = np.random.default_rng(0)
    for n, k in itertools.product(range(2, 6), repeat=2):
        check_matching("assignment", 10 ** rng.uniform(0, 17, (100, n, k)), None, 0, 0)


# --- typed families and declared parameters (issue 21) ---------------------------

BASES = {
    "one_sided": mechanisms.OneSided,
    "two_sided": mechanisms.TwoSided,
    "matching": mechanisms.Matching,
}


@pytest.mark.parametrize("name", mechanisms.names())
def test_family_follows_from_the_class(name):
    cls = mechanisms.mechanism_class(name)
    mine = [fam for fam, base in BASES.items() if issubclass(cls, base)]
    assert mine == [cls.family] == [mechanisms.family(name)]
    mech = mechanisms.make(name)
    assert mech.family == cls.family
    with pytest.raises(AttributeError, match="follows from its class"):
        mech.family = "matching"


@pytest.mark.parametrize("name", mechanisms.names())
def test_parameters_are_declared_with_their_defaults(name):
    params = mechanisms.parameters(name)
    assert list(params)[:2] == ["reserve", "seed"]
    mech = mechanisms.make(name, **params)  # every declared name is accepted
    for key, default in params.items():
        assert getattr(mech, key) == default
    assert mechanisms.parameters(mech) == params
    with pytest.raises(ConfigError, match=r"unknown parameter\(s\) bogus_key"):
        mechanisms.make(name, bogus_key=1)


@pytest.mark.parametrize("name", mechanisms.names())
def test_one_rule_for_the_number_of_sellers(name):
    two = mechanisms.family(name) == "two_sided"
    assert mechanisms.n_sellers(name, 4) == (4 if two else 0)
    assert mechanisms.n_sellers(name, 4, 7) == (7 if two else 0)
    assert mechanisms.n_sellers(mechanisms.make(name), 3) == (3 if two else 0)


def test_build_takes_a_name_or_an_instance():
    mech = mechanisms.make("gsp", reserve=0.2)
    assert mechanisms.build(mech, {}) is mech
    assert mechanisms.build("k_double", {"k": 0.25}).k == 0.25
    with pytest.raises(ConfigError, match=r"must be empty.*reserve"):
        mechanisms.build(mech, {"reserve": 0.1})


def test_a_family_base_requires_clear():
    class NoClear(mechanisms.OneSided):
        pass

    with pytest.raises(TypeError, match="abstract"):
        NoClear()

    class Legacy(mechanisms.Mechanism):  # the string API of plug-ins stays
        family = "two_sided"

        def clear(self, bids, asks, rng=None, buyer_active=None, seller_active=None):
            raise NotImplementedError

    assert Legacy.family == "two_sided" and Legacy.n_sellers_for(2) == 2
