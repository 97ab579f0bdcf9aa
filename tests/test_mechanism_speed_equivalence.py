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
