"""The blocked clearing of the sealed double auctions checks its input as the
one-call clearing did and hands back arrays that share no memory.

``SealedDouble.clear`` checks the values of ``bids`` and ``asks`` block by
block (:func:`~attn_env.mechanisms._crossing.in_range`, while the block is in
cache) and, on a block that fails, checks the whole batch with
:func:`~attn_env.mechanisms._crossing.check_two_sided`, so the error is the
one the whole batch always gave: the first bad entry, bids before asks, the
book before the activity masks. The outcome's arrays are cut from one
allocation and must stay disjoint.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attn_env import mechanisms
from attn_env.errors import UserError
from attn_env.mechanisms import double
from attn_env.mechanisms._crossing import check_two_sided, in_range
from tests.test_mechanism_speed_equivalence import (
    assert_same_double,
    reference_double,
)

DOUBLE = ["k_double", "mcafee", "call_market"]
BAD = [np.nan, np.inf, -1.0, -1e-200, 1e-200, 5e-324, 1e200]


def error_of(fn) -> str | None:
    """The message of the UserError ``fn()`` raises, None if it raises none."""
    try:
        fn()
    except UserError as err:
        return str(err)
    return None


def book(n_markets: int, n: int, m: int, seed: int = 0):
    data = np.random.default_rng(seed)
    return data.random((n_markets, n)), data.random((n_markets, m))


def blocks_of(n: int, m: int) -> int:
    """Markets per block of the blocked clearing."""
    return max(1, double._BLOCK // (n + m))


@pytest.mark.parametrize("name", DOUBLE)
@pytest.mark.parametrize("value", BAD)
def test_a_bad_entry_in_a_late_block_gives_the_whole_batch_error(name, value):
    n, m = 10, 7
    n_markets = 3 * blocks_of(n, m) + 5
    for side, row in itertools.product(("bids", "asks"), (n_markets - 1, 0)):
        bids, asks = book(n_markets, n, m)
        (bids if side == "bids" else asks)[row, 3] = value
        # a second bad entry in an earlier block of the other side: the
        # message names the bids' first bad entry before any ask
        (asks if side == "bids" else bids)[blocks_of(n, m) + 1, 2] = -2.0
        want = error_of(lambda b=bids, a=asks: check_two_sided(b, a))
        assert want is not None
        for kw in ({}, {"reserve": 0.5}):
            mech = mechanisms.make(name, seed=0, **kw)
            got = error_of(lambda b=bids, a=asks, mech=mech: mech.clear(b, a))
            assert got == want


@pytest.mark.parametrize("name", DOUBLE)
def test_the_book_is_reported_before_the_masks(name):
    n_markets = 2 * blocks_of(6, 6) + 1
    bids, asks = book(n_markets, 6, 6)
    asks[-1, -1] = np.nan
    mech = mechanisms.make(name, seed=0)
    wrong_shape = np.ones((n_markets, 5), dtype=bool)
    got = error_of(lambda: mech.clear(bids, asks, buyer_active=wrong_shape))
    assert got == error_of(lambda: check_two_sided(bids, asks))
    # with a good book the mask's own error comes through
    asks[-1, -1] = 0.5
    got = error_of(lambda: mech.clear(bids, asks, buyer_active=wrong_shape))
    assert got is not None and "buyer_active" in got


@pytest.mark.parametrize("name", DOUBLE)
def test_a_failed_check_leaves_the_generator_alone(name):
    n_markets = 2 * blocks_of(4, 4) + 3
    data = np.random.default_rng(5)
    bids = data.integers(0, 3, (n_markets, 4)) / 2.0  # ties in most markets
    asks = data.integers(0, 3, (n_markets, 4)) / 2.0
    bids[-1, 0] = -1.0
    gen = np.random.default_rng(11)
    before = gen.bit_generator.state
    mech = mechanisms.make(name, seed=0)
    with pytest.raises(UserError, match="bids must be >= 0"):
        mech.clear(bids, asks, rng=gen)
    assert gen.bit_generator.state == before


@settings(max_examples=100, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    n_rows=st.integers(1, 6),
    n=st.integers(1, 9),
    specials=st.lists(st.sampled_from([*BAD, 0.0, -0.0, 1e-150, 1e150]), max_size=3),
)
def test_in_range_is_what_check_two_sided_accepts(seed, n_rows, n, specials):
    data = np.random.default_rng(seed)
    x = data.random((n_rows, n)) * 10.0 ** data.integers(-3, 4, (n_rows, n))
    for value in specials:
        x[data.integers(n_rows), data.integers(n)] = value
    accepted = error_of(lambda: check_two_sided(x, x)) is None
    srt = np.sort(x, axis=1)
    assert in_range(x) == accepted
    assert in_range(x, (srt[:, 0], srt[:, -1])) == accepted


@pytest.mark.parametrize("name", DOUBLE)
def test_outcome_arrays_share_no_memory(name):
    bids, asks = book(2 * blocks_of(5, 3) + 7, 5, 3)
    out = mechanisms.make(name, seed=0).clear(bids, asks)
    arrays = {
        "slot": out.slot,
        "alloc": out.alloc,
        "pay": out.pay,
        "price": out.price,
        "clearing_price": out.clearing_price,
        "seller_alloc": out.seller_alloc,
        "seller_receipt": out.seller_receipt,
        **out.extra,
    }
    for (a_name, a), (b_name, b) in itertools.combinations(arrays.items(), 2):
        assert not np.shares_memory(a, b), (a_name, b_name)
    for arr in arrays.values():
        assert arr.flags.c_contiguous and arr.flags.writeable
    out.pay[:] = -7.0  # writing one leaves the others as they were
    assert (out.price >= 0).all() and (out.alloc >= 0).all()


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # np.matrix
@pytest.mark.parametrize("name", DOUBLE)
def test_a_matrix_clears_as_its_array(name):
    """Array subclasses go through the whole-batch check, which converts them
    (``np.matrix`` would keep two axes on every row it indexes)."""
    data = np.random.default_rng(2)
    bids = data.integers(0, 4, (2 * blocks_of(6, 6) + 9, 6)) / 2.0  # ties too
    asks = data.integers(0, 4, bids.shape) / 2.0
    got = mechanisms.make(name, seed=4).clear(np.asmatrix(bids), np.asmatrix(asks))
    want = mechanisms.make(name, seed=4).clear(bids, asks)
    for field in ("slot", "alloc", "pay", "price", "clearing_price", "seller_receipt"):
        a, b = getattr(got, field), getattr(want, field)
        assert type(a) is np.ndarray and a.tobytes() == b.tobytes(), field


@settings(max_examples=40, deadline=None)
@given(
    name=st.sampled_from(DOUBLE),
    seed=st.integers(0, 2**31),
    n=st.integers(1, 12),
    m=st.integers(1, 12),
    reserve=st.sampled_from([0.0, 0.5]),
    masks=st.booleans(),
)
def test_negative_zeros_sort_as_np_sort(name, seed, n, m, reserve, masks):
    """The books are sorted as int64 bits, exact for floats >= +0 and for the
    -1 of an order out of the book; -0.0 is not, and its blocks are sorted as
    floats: books of zeros of both signs (and halves, so ties and trades)
    clear as the one-call reference does, over several blocks."""
    data = np.random.default_rng(seed)
    n_markets = blocks_of(n, m) + 3 + int(data.integers(0, 30))

    def side(cols):
        x = data.integers(0, 3, (n_markets, cols)) / 2.0
        flip = (x == 0) & (data.random(x.shape) < 0.5)
        x[flip] = -0.0
        x[: blocks_of(n, m)] = np.abs(x[: blocks_of(n, m)])  # a block of +0 only
        return x

    bids, asks = side(n), side(m)
    kw = (
        {
            "buyer_active": data.random((n_markets, n)) < 0.8,
            "seller_active": data.random((n_markets, m)) < 0.8,
        }
        if masks
        else {}
    )
    mech = mechanisms.make(name, reserve=reserve, seed=seed)
    ref = mechanisms.make(name, reserve=reserve, seed=seed)
    got = mech.clear(bids, asks, **kw)
    assert_same_double(got, reference_double(ref, bids, asks, ref._rng, **kw))
    assert mech._rng.bit_generator.state == ref._rng.bit_generator.state
