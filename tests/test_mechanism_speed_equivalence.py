"""The partition path of the position auctions equals the full-sort reference.

``PositionAuction.clear`` ranks only the top ``K + 1`` scores
(:func:`attn_env.mechanisms._base.top_desc`) and clears in blocks of markets.
It must give the same arrays as ranking every buyer with
:func:`~attn_env.mechanisms._base.rank_desc` (a full argsort, random keys for
rows with ties) in one call, and leave the tie-break generator in the same
state: tied inputs (integer bids) are the point of these tests.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attn_env import mechanisms
from attn_env.mechanisms._base import rank_desc, top_desc
from attn_env.mechanisms.outcome import Outcome
from attn_env.mechanisms.position import _suffix_sum

POSITION = ["first_price", "second_price", "gsp", "vcg"]


def reference_clear(mech, bids, alpha, quality, rng) -> Outcome:
    """The full-sort clearing: every buyer ranked, then the rule's prices."""
    n_markets, n = bids.shape
    score = bids if quality is None else bids * quality
    if mech.reserve > 0.0:
        out = bids < mech.reserve
        score = np.where(out, -1.0, score)
        order, srt = rank_desc(score, rng, ignore=out)
    else:
        order, srt = rank_desc(score, rng)
    n_slots = alpha.shape[1]
    n_win = min(n_slots, n)
    top = order[:, :n_win]
    won = srt[:, :n_win] >= 0.0
    s_pad = np.zeros((n_markets, max(n_slots, n) + 1))
    s_pad[:, :n] = np.maximum(srt, 0.0)
    q_top = None if quality is None else np.take_along_axis(quality, top, axis=1)
    price, pay = mech._price(bids, top, s_pad, q_top, alpha)
    price = np.where(won, price, 0.0)
    pay = np.where(won, pay, 0.0)
    fields = {}
    for name, fill, val in (
        ("slot", -1, np.where(won, np.arange(n_win), -1)),
        ("alloc", 0.0, np.where(won, alpha[:, :n_win], 0.0)),
        ("pay", 0.0, pay),
        ("price", 0.0, price),
    ):
        arr = np.full((n_markets, n), fill, dtype=np.int64 if name == "slot" else None)
        np.put_along_axis(arr, top, val, axis=1)
        fields[name] = arr
    slot_price = np.full(alpha.shape, np.nan)
    slot_price[:, :n_win] = np.where(won, price, np.nan)
    return Outcome(
        clearing_price=slot_price[:, 0].copy(),
        extra={"slot_price": slot_price},
        **fields,
    )


def assert_same(got: Outcome, want: Outcome) -> None:
    for field in ("slot", "alloc", "pay", "price", "clearing_price"):
        a, b = getattr(got, field), getattr(want, field)
        assert a.dtype == b.dtype and a.shape == b.shape, field
        assert a.tobytes() == b.tobytes(), field  # signed zeros and nan too
    assert got.extra["slot_price"].tobytes() == want.extra["slot_price"].tobytes()


def market(seed: int, n_markets: int, n: int, n_slots: int, levels: int):
    """Integer bids in ``0..levels-1`` (ties in most rows), half-integer quality,
    descending weights with equal neighbours."""
    data = np.random.default_rng(seed)
    bids = data.integers(0, levels, (n_markets, n)).astype(float)
    quality = data.integers(1, 4, (n_markets, n)) / 2.0
    alpha = np.sort(data.integers(0, 4, n_slots).astype(float))[::-1].copy()
    return bids, quality, alpha


@settings(max_examples=80, deadline=None)
@given(
    name=st.sampled_from(POSITION),
    seed=st.integers(0, 2**31),
    n_markets=st.integers(1, 40),
    n=st.integers(1, 20),
    n_slots=st.integers(1, 7),
    levels=st.integers(1, 30),
    reserve=st.sampled_from([0.0, 1.0, 2.5]),
    with_quality=st.booleans(),
)
def test_position_equals_full_sort(
    name, seed, n_markets, n, n_slots, levels, reserve, with_quality
):
    if name == "second_price":
        n_slots = 1
    bids, quality, alpha = market(seed, n_markets, n, n_slots, levels)
    q = quality if with_quality else None
    mech = mechanisms.make(name, reserve=reserve, n_slots=n_slots)
    g_got, g_want = np.random.default_rng(seed), np.random.default_rng(seed)
    got = mech.clear(bids, weights=alpha, quality=q, rng=g_got)
    full = np.broadcast_to(alpha, (n_markets, n_slots))
    want = reference_clear(mech, bids, full, q, g_want)
    assert_same(got, want)
    assert g_got.bit_generator.state == g_want.bit_generator.state


@pytest.mark.parametrize("name", POSITION)
@pytest.mark.parametrize("n", [48, 130])
def test_blocks_draw_as_one_call(name, n):
    """Thousands of tied markets: several blocks, the keys drawn as one call."""
    n_slots = 1 if name == "second_price" else 5
    bids, quality, alpha = market(n, 4000, n, n_slots, levels=60)
    for reserve, q in ((0.0, None), (20.0, quality)):
        mech = mechanisms.make(name, reserve=reserve, n_slots=n_slots)
        g_got, g_want = np.random.default_rng(1), np.random.default_rng(1)
        got = mech.clear(bids, weights=alpha, quality=q, rng=g_got)
        full = np.broadcast_to(alpha, (len(bids), n_slots))
        assert_same(got, reference_clear(mech, bids, full, q, g_want))
        assert g_got.bit_generator.state == g_want.bit_generator.state


@settings(max_examples=100, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    n_rows=st.integers(1, 30),
    n=st.integers(1, 40),
    n_top=st.integers(1, 45),
    levels=st.integers(1, 50),
    ignore_negative=st.booleans(),
    continuous=st.booleans(),
)
def test_top_desc_is_the_head_of_rank_desc(
    seed, n_rows, n, n_top, levels, ignore_negative, continuous
):
    data = np.random.default_rng(seed)
    if continuous:
        score = data.random((n_rows, n))
    else:
        score = data.integers(0, levels, (n_rows, n)).astype(float)
    if ignore_negative:  # entries out of the market, any negative value
        score = np.where(data.random((n_rows, n)) < 0.4, -data.random() - 0.5, score)
    g_top, g_full = np.random.default_rng(seed), np.random.default_rng(seed)
    order, srt = top_desc(score, n_top, g_top, ignore_negative=ignore_negative)
    ignore = (score < 0) if ignore_negative else None
    full_order, full_srt = rank_desc(score, g_full, ignore=ignore)
    k = min(n_top, n)
    assert order.shape == srt.shape == (n_rows, k)
    assert srt.tobytes() == full_srt[:, :k].tobytes()
    # entries out of the market may fill the ranks past the last one in it,
    # in any order; every other rank is the reference's buyer
    inside = srt >= 0 if ignore_negative else np.ones_like(srt, dtype=bool)
    assert np.array_equal(order[inside], full_order[:, :k][inside])
    assert (score[np.arange(n_rows)[:, None], order] == srt).all()
    assert g_top.bit_generator.state == g_full.bit_generator.state


def test_near_ties_take_the_exact_path():
    """Scores equal up to the mantissa bits the column replaces stay ordered:
    the higher of two such neighbours sits in the lower column here, so the
    column bits alone would rank them the wrong way round."""
    base = 0.7
    near = np.nextafter(base, 1.0)  # one ulp above: the same high bits
    score = np.array([[near, base, 0.1, near + 1e-9, 0.3]])
    order, srt = top_desc(score, 3, np.random.default_rng(0))
    assert order.tolist() == [[3, 0, 1]]
    assert srt.tolist() == [[near + 1e-9, near, base]]


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    n_rows=st.integers(0, 30),
    n_slots=st.integers(1, 12),
    cut=st.integers(1, 12),
    scale=st.sampled_from([1.0, 1e-150, 1e150]),
)
def test_suffix_sum_is_the_reversed_cumsum(seed, n_rows, n_slots, cut, scale):
    """VCG's column-by-column suffix sum adds as ``np.cumsum`` does: the same
    bits, on values spread over many magnitudes (rounding shows)."""
    data = np.random.default_rng(seed)
    x = data.random((n_rows, n_slots)) * 10.0 ** data.integers(-8, 9, (n_rows, n_slots))
    x *= scale
    n_cols = min(cut, n_slots)
    want = np.cumsum(x[:, ::-1], axis=1)[:, ::-1][:, :n_cols]
    assert _suffix_sum(x, n_cols).tobytes() == np.ascontiguousarray(want).tobytes()


# --- sealed double auctions --------------------------------------------------------

DOUBLE = ["k_double", "mcafee", "call_market"]


def reference_double(mech, bids, asks, rng, buyer_active=None, seller_active=None):
    """The one-call clearing the blocked path replaced: sort both sides into
    padded arrays, cross, price by the rule, draw ties over the whole batch
    (buyers' markets, then sellers'), pair traders in index order."""
    n_markets, n = bids.shape
    m = asks.shape[1]
    live = bids
    dropped = mech.reserve > 0.0 or buyer_active is not None
    if dropped:
        keep = bids >= mech.reserve
        if buyer_active is not None:
            keep &= buyer_active
        live = np.where(keep, bids, -1.0)
    if seller_active is not None:
        asks = np.where(seller_active, asks, np.inf)
    b_srt = np.sort(live, axis=1)[:, ::-1]
    s_srt = np.sort(asks, axis=1)
    depth = min(n, m)
    q = np.count_nonzero(b_srt[:, :depth] >= s_srt[:, :depth], axis=1)
    b = np.concatenate(
        [
            np.full((n_markets, 1), np.inf),
            np.maximum(b_srt, 0.0) if dropped else b_srt,
            np.zeros((n_markets, 1)),
        ],
        axis=1,
    )
    s = np.concatenate(
        [np.zeros((n_markets, 1)), s_srt, np.full((n_markets, 1), np.inf)], axis=1
    )
    rows = np.arange(n_markets)
    bid, ask = (lambda r: b[rows, r]), (lambda r: s[rows, r])
    low = np.maximum(ask(q), bid(q + 1))
    high = np.minimum(bid(q), ask(q + 1))
    if mech.name == "k_double":
        p = np.where(q > 0, mech.k * bid(q) + (1.0 - mech.k) * ask(q), np.nan)
        trades, b_price, s_price, clearing = q, p, p, p
    elif mech.name == "call_market":
        p = np.where(q > 0, mech.k * high + (1.0 - mech.k) * low, np.nan)
        trades, b_price, s_price, clearing = q, p, p, p
    else:  # mcafee
        p0 = 0.5 * (bid(q + 1) + ask(q + 1))
        keep = (q > 0) & (ask(q) <= p0) & (p0 <= bid(q))
        trades = np.where(keep, q, np.maximum(q - 1, 0))
        b_price = np.maximum(np.where(keep, p0, bid(q)), mech.reserve)
        s_price = np.where(keep, p0, ask(q))
        b_price = np.where(trades == 0, np.nan, b_price)
        s_price = np.where(trades == 0, np.nan, s_price)
        clearing = 0.5 * (b_price + s_price)
    some = trades > 0

    def top(values, threshold):
        chosen = values >= threshold[:, None]
        over = np.flatnonzero(np.count_nonzero(chosen, axis=1) > trades)
        if over.size:
            vals, thr = values[over], threshold[over, None]
            above = vals > thr
            need = trades[over] - above.sum(axis=1)
            key = np.where(vals == thr, rng.random(vals.shape), -1.0)
            cut = -np.sort(-key, axis=1)[np.arange(over.size), need - 1]
            chosen[over] = above | (key >= cut[:, None])
        return chosen

    buyers = top(live, np.where(some, bid(trades), np.inf))
    sellers = top(-asks, -np.where(some, ask(trades), -np.inf))
    slot = np.full((n_markets, n), -1, dtype=np.int64)
    slot.reshape(-1)[np.flatnonzero(buyers)] = np.nonzero(sellers)[1]
    alloc = buyers.astype(np.float64)
    seller_alloc = sellers.astype(np.float64)
    price = alloc * np.where(some, b_price, 0.0)[:, None]
    return Outcome(
        slot=slot,
        alloc=alloc,
        pay=price.copy(),
        price=price,
        clearing_price=np.where(some, clearing, np.nan),
        seller_alloc=seller_alloc,
        seller_receipt=seller_alloc * np.where(some, s_price, 0.0)[:, None],
        extra={"walrasian_low": low, "walrasian_high": high},
    )


DOUBLE_FIELDS = (
    "slot",
    "alloc",
    "pay",
    "price",
    "clearing_price",
    "seller_alloc",
    "seller_receipt",
)
"The array fields of a sealed double auction's outcome (``extra`` aside)."


def assert_same_double(got: Outcome, want: Outcome) -> None:
    for field in DOUBLE_FIELDS:
        a, b = getattr(got, field), getattr(want, field)
        assert a.dtype == b.dtype and a.shape == b.shape, field
        assert a.tobytes() == b.tobytes(), field  # signed zeros and nan too
        assert not np.shares_memory(a, got.pay) or field == "pay", field
    assert list(got.extra) == list(want.extra)
    for key in want.extra:
        assert got.extra[key].tobytes() == want.extra[key].tobytes(), key


def book(seed, n_markets, n, m, levels):
    """Bids and asks in ``levels`` steps of 1/4 (ties in most rows when
    ``levels`` is small; 0 means uniform, tie-free), activity masks."""
    data = np.random.default_rng(seed)
    if levels:
        bids = data.integers(0, levels, (n_markets, n)) / 4.0
        asks = data.integers(0, levels, (n_markets, m)) / 4.0
    else:
        bids, asks = data.random((n_markets, n)), data.random((n_markets, m))
    return (
        bids,
        asks,
        data.random((n_markets, n)) < 0.8,
        data.random((n_markets, m)) < 0.8,
    )


@settings(max_examples=80, deadline=None)
@given(
    name=st.sampled_from(DOUBLE),
    k=st.sampled_from([0.0, 0.3, 0.5, 1.0]),
    seed=st.integers(0, 2**31),
    n_markets=st.integers(0, 40),
    n=st.integers(1, 12),
    m=st.integers(1, 12),
    levels=st.sampled_from([0, 1, 2, 3, 8, 30]),
    reserve=st.sampled_from([0.0, 0.35, 1.0]),
    masks=st.booleans(),
)
def test_double_equals_one_call(name, k, seed, n_markets, n, m, levels, reserve, masks):
    bids, asks, b_act, s_act = book(seed, n_markets, n, m, levels)
    params = {} if name == "mcafee" else {"k": k}
    mech = mechanisms.make(name, reserve=reserve, **params)
    kw = {"buyer_active": b_act, "seller_active": s_act} if masks else {}
    g_got, g_want = np.random.default_rng(seed), np.random.default_rng(seed)
    got = mech.clear(bids, asks, rng=g_got, **kw)
    assert_same_double(got, reference_double(mech, bids, asks, g_want, **kw))
    assert g_got.bit_generator.state == g_want.bit_generator.state


@pytest.mark.parametrize("name", DOUBLE)
@pytest.mark.parametrize(("n", "m"), [(10, 10), (48, 30), (3, 130)])
def test_double_blocks_draw_as_one_call(name, n, m):
    """Thousands of tied markets over several blocks: the ties of every block
    are drawn after the last, buyers' then sellers', as in one call."""
    bids, asks, b_act, s_act = book(n + m, 6000, n, m, levels=6)
    for reserve, kw in (
        (0.0, {}),
        (0.5, {"buyer_active": b_act, "seller_active": s_act}),
    ):
        mech = mechanisms.make(name, reserve=reserve, seed=3)
        got = mech.clear(bids, asks, **kw)
        ref = mechanisms.make(name, reserve=reserve, seed=3)
        assert_same_double(got, reference_double(ref, bids, asks, ref._rng, **kw))
        assert mech._rng.bit_generator.state == ref._rng.bit_generator.state
