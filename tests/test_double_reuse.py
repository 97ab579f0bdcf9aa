"""The sealed double auctions clear into their last outcome's memory only
when no one holds it.

``SealedDouble`` keeps the one block its :class:`Outcome` arrays are cut from
(``double._Kept``) and reuses it at the next call when its reference count
shows no holder. These tests hold outcomes, or single fields of them, across
calls and check that they never change; check that a dropped outcome's block
is reused (a weak reference to it, which does not count as a holder, still
sees the new outcome's base); that batches of other sizes and shapes, ties
redrawn after the blocks and errors half-way through give the bytes a fresh
mechanism gives; and that a second thread never shares a block.
"""

from __future__ import annotations

import copy
import itertools
import pickle
import threading
import weakref

import numpy as np
import pytest

from attn_env import mechanisms
from attn_env.errors import UserError
from attn_env.mechanisms import double
from tests.test_mechanism_speed_equivalence import DOUBLE_FIELDS

DOUBLE = ["k_double", "mcafee", "call_market"]


def book(n_markets: int, n: int, m: int, seed: int, levels: int = 4):
    """Bids and asks on a grid of ``levels`` values: many markets tied at the
    margin (the redraw after the blocks), some with no trade."""
    data = np.random.default_rng(seed)
    return (
        data.integers(0, levels, (n_markets, n)) / levels,
        data.integers(0, levels, (n_markets, m)) / levels,
    )


def snapshot(out) -> dict[str, bytes]:
    """Every field's bytes, ``extra`` included (copies: they must not move)."""
    got = {name: getattr(out, name).tobytes() for name in DOUBLE_FIELDS}
    got.update({name: arr.tobytes() for name, arr in out.extra.items()})
    return got


def base(out) -> np.ndarray:
    """The block every field of a sealed double auction's outcome views."""
    return out.pay.base


def calls(n_calls: int = 3):
    """``(bids, asks, kwargs)`` of successive calls: tied books, a reserve in
    the mechanism, activity masks on some calls."""
    for i in range(n_calls):
        bids, asks = book(300, 6, 5, seed=i)
        kwargs = {}
        if i % 2:
            mask = np.random.default_rng(100 + i).random(bids.shape) < 0.8
            kwargs["buyer_active"] = mask
        yield bids, asks, kwargs


@pytest.mark.parametrize("name", DOUBLE)
def test_a_held_outcome_never_changes(name):
    mech = mechanisms.make(name, seed=3, reserve=0.25)
    reference = mechanisms.make(name, seed=3, reserve=0.25)
    held, expected = [], []
    for bids, asks, kwargs in calls():
        out = mech.clear(bids, asks, **kwargs)
        # the reference's outcomes are copied and dropped at once: it reuses
        expected.append(snapshot(reference.clear(bids, asks, **kwargs)))
        assert snapshot(out) == expected[-1]
        held.append(out)
    for out, want in zip(held, expected, strict=True):
        assert snapshot(out) == want
    for a, b in itertools.pairwise(held):
        assert not np.shares_memory(base(a), base(b))
    assert mech._rng.bit_generator.state == reference._rng.bit_generator.state


@pytest.mark.parametrize("field", ["pay", "slot", "seller_receipt", "walrasian_low"])
def test_one_held_field_keeps_its_values(field):
    mech = mechanisms.make("mcafee", seed=0)
    bids, asks = book(500, 8, 8, seed=1)
    out = mech.clear(bids, asks)
    kept = out.extra[field] if field.startswith("walrasian") else getattr(out, field)
    want = kept.copy()
    del out
    for seed in (2, 3):
        later = mech.clear(*book(500, 8, 8, seed=seed))
        assert np.array_equal(kept, want, equal_nan=True)
        assert not np.shares_memory(kept, base(later))
        del later
    assert np.array_equal(kept, want, equal_nan=True)


@pytest.mark.parametrize("name", DOUBLE)
def test_a_dropped_outcome_is_cleared_into(name):
    mech = mechanisms.make(name, seed=0)
    bids, asks = book(400, 7, 6, seed=0)
    out = mech.clear(bids, asks)
    block = weakref.ref(base(out))  # a weak reference holds nothing
    first = snapshot(out)
    del out
    out = mech.clear(*book(400, 7, 6, seed=1))
    assert block() is not None and base(out) is block()
    del out
    # a batch within half of the block's size reuses its first entries
    out = mech.clear(*book(250, 7, 6, seed=2))
    assert base(out) is block()
    del out
    # the block is only cleared into: what it holds is the newest outcome's
    fresh = mechanisms.make(name, seed=0)
    fresh._rng.bit_generator.state = mech._rng.bit_generator.state
    assert snapshot(mech.clear(bids, asks)) == snapshot(fresh.clear(bids, asks))
    assert block() is not None
    assert first == snapshot(mechanisms.make(name, seed=0).clear(bids, asks))


def test_a_held_outcome_is_not_cleared_into_and_the_fresh_block_is_kept():
    mech = mechanisms.make("k_double", seed=0)
    first = mech.clear(*book(300, 5, 5, seed=0))
    second = mech.clear(*book(300, 5, 5, seed=1))
    assert not np.shares_memory(base(first), base(second))
    block = weakref.ref(base(second))
    del second
    third = mech.clear(*book(300, 5, 5, seed=2))
    assert base(third) is block()  # the fresh block was kept
    assert not np.shares_memory(base(first), base(third))


def test_shapes_and_sizes_in_any_order_match_a_fresh_mechanism():
    blocks = max(1, double._BLOCK // 10)
    shapes = [
        (300, 5, 5),
        (200, 5, 5),  # smaller: reuses the block's first entries
        (300, 7, 3),  # other n and m: a new workspace
        (10, 5, 5),  # far smaller: a fresh block
        (2 * blocks + 7, 5, 5),  # several blocks, ties redrawn after them
        (2 * blocks + 7, 5, 5),
        (0, 5, 5),
        (300, 1, 9),
        (300, 5, 5),
    ]
    for name in DOUBLE:
        params = {} if name == "mcafee" else {"k": 0.3}
        mech = mechanisms.make(name, seed=11, **params)
        for i, (n_markets, n, m) in enumerate(shapes):
            bids, asks = book(n_markets, n, m, seed=i, levels=3 + i)
            fresh = mechanisms.make(name, seed=11, **params)
            fresh._rng.bit_generator.state = mech._rng.bit_generator.state
            want = snapshot(fresh.clear(bids, asks))
            assert snapshot(mech.clear(bids, asks)) == want, (name, n_markets, n, m)
            assert mech._rng.bit_generator.state == fresh._rng.bit_generator.state


@pytest.mark.parametrize("hold", [False, True])
def test_an_error_half_way_leaves_no_half_written_block(hold):
    n, m = 5, 5
    n_markets = 3 * max(1, double._BLOCK // (n + m)) + 4
    mech = mechanisms.make("call_market", seed=0)
    reference = mechanisms.make("call_market", seed=0)
    bids, asks = book(n_markets, n, m, seed=0)
    out = mech.clear(bids, asks)
    want = snapshot(reference.clear(bids, asks))
    if not hold:
        del out
    bad = bids.copy()
    bad[-1, 0] = np.nan  # the last block fails: the first ones are written
    with pytest.raises(UserError, match="bids"):
        mech.clear(bad, asks)
    with pytest.raises(UserError, match="bids"):
        reference.clear(bad, asks)
    if hold:
        assert snapshot(out) == want
    later = mech.clear(*book(n_markets, n, m, seed=1))
    assert snapshot(later) == snapshot(reference.clear(*book(n_markets, n, m, seed=1)))
    if hold:
        assert not np.shares_memory(base(out), base(later))
        assert snapshot(out) == want


def test_a_second_thread_clears_into_its_own_memory():
    mech = mechanisms.make("k_double", seed=0)
    block = weakref.ref(base(mech.clear(*book(300, 6, 6, seed=0))))
    assert block() is not None  # kept, no one holds it
    # another call in progress holds the lock: this one allocates its own
    assert mech._kept.lock.acquire(blocking=False)
    try:
        out = mech.clear(*book(300, 6, 6, seed=1))
    finally:
        mech._kept.lock.release()
    assert block() is not None and base(out) is not block()
    assert not np.shares_memory(base(out), block())


def test_threads_clearing_at_once_agree_with_one_thread():
    mech = mechanisms.make("mcafee", seed=0)
    books = [book(3000, 10, 10, seed=s, levels=50) for s in range(4)]
    want = [
        snapshot(mechanisms.make("mcafee").clear(*pair, rng=np.random.default_rng(s)))
        for s, pair in enumerate(books)
    ]
    got: dict[int, list] = {i: [] for i in range(len(books))}
    start = threading.Barrier(len(books))

    def work(i: int) -> None:
        start.wait()
        for _ in range(5):
            out = mech.clear(*books[i], rng=np.random.default_rng(i))
            got[i].append(out)  # held: every result must stay as it was

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(books))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, outs in got.items():
        assert [snapshot(out) for out in outs] == [want[i]] * 5


def test_copies_and_pickles_start_with_nothing_kept():
    mech = mechanisms.make("k_double", seed=4)
    out = mech.clear(*book(100, 4, 4, seed=0))
    copies = [copy.deepcopy(mech), pickle.loads(pickle.dumps(mech))]
    bids, asks = book(100, 4, 4, seed=1)
    want = snapshot(mech.clear(bids, asks))  # the generators are copies too
    for other in copies:
        assert other._kept is not mech._kept
        again = other.clear(bids, asks)
        assert not np.shares_memory(base(again), base(out))
        assert snapshot(again) == want
