"""Matchings of buyers to slots: ``assignment`` (VCG) and ``stable_matching``.

``values [B, n, K]``: ``values[b, i, j]`` is buyer ``i``'s bid (total value) for
slot ``j`` in market ``b``. Each buyer takes at most one slot, each slot at most
one buyer. ``alloc`` is 1 per matched slot, or ``alpha_j`` of its slot when
``weights`` are given; ``pay`` is the buyer's total payment and ``price =
pay / alloc`` (0 where ``alloc`` is 0). ``clearing_price`` is the mean ``price``
over matched buyers (``nan`` if none).

- ``assignment``: the welfare-maximising assignment of ``values - reserve``
  (a pair below the reserve is never matched), with VCG (Clarke) payments,
  which are the minimum Walrasian prices of the slots (Leonard 1983).
  ``extra["slot_price"] [B, K]`` holds these prices (``reserve`` for an unsold
  slot). Small markets enumerate every assignment in one numpy call; up to
  ``min(n, K) = 10`` a batched dynamic programme over subsets of the smaller
  side; larger ones call ``scipy.optimize.linear_sum_assignment`` per market.
  Enumeration compares assignments by per-buyer gain differences (precise
  whatever the other buyers' magnitudes); every solver caps a Clarke payment
  at the buyer's own gain, which the exact payment never exceeds, so rounding
  in markets of mixed magnitudes cannot break individual rationality.
- ``stable_matching``: buyer-proposing deferred acceptance (Gale–Shapley).
  Buyers rank slots by their values; every slot ranks buyers by their values
  for it (higher first). A buyer proposes only to slots it values above the
  reserve. Each matched buyer pays its own bid for its slot (first-price
  matching), so truthful bidders are individually rational.

Ties (equal values) are broken by a random permutation of the generator.
"""

from __future__ import annotations

import itertools
import math
from functools import cache
from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from attn_env.errors import UserError
from attn_env.mechanisms._base import Matching, rank_desc
from attn_env.mechanisms._validate import as_batch, check_nonneg, check_weights
from attn_env.mechanisms.outcome import Outcome

__all__ = ["Assignment", "StableMatching", "blocking_pairs"]

#: assignments enumerated per market at most before switching to dynamic programming.
MAX_ENUMERATED = 720
#: largest ``min(n, K)`` solved by the batched subset dynamic programme; beyond
#: it, scipy's Hungarian algorithm runs per market.
MAX_SUBSET = 10
#: elements of the ``[chunk, assignments, n]`` block enumerated in one go.
_BLOCK = 1 << 22


class _Matching(Matching):
    """Validation and outcome assembly shared by the matchings."""

    def _values(
        self, values: ArrayLike, weights: ArrayLike | None
    ) -> tuple[NDArray[np.float64], NDArray[np.float64] | None]:
        vals = as_batch(values, "values", "B, n, K")
        check_nonneg(vals, "values")
        if weights is None:
            return vals, None
        alpha = check_weights(weights, vals.shape[0])
        if alpha.shape[1] != vals.shape[2]:
            raise UserError(
                f"weights must have K={vals.shape[2]} entries (values' last axis), "
                f"got {alpha.shape[1]}"
            )
        return vals, alpha

    @staticmethod
    def _outcome(
        slot: NDArray[np.int64],
        pay: NDArray[np.float64],
        alpha: NDArray[np.float64] | None,
        extra: dict[str, NDArray],
    ) -> Outcome:
        matched = slot >= 0
        if alpha is None:
            alloc = matched.astype(np.float64)
        else:
            alloc = np.where(
                matched, np.take_along_axis(alpha, np.maximum(slot, 0), 1), 0.0
            )
        safe = np.where(alloc > 0, alloc, 1.0)
        price = np.where(alloc > 0, pay / safe, 0.0)
        n_matched = matched.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(n_matched > 0, price.sum(axis=1) / n_matched, np.nan)
        return Outcome(
            slot=slot,
            alloc=alloc,
            pay=pay,
            price=price,
            clearing_price=mean,
            extra=extra,
        )


@cache
def _assignments(n: int, n_slots: int) -> NDArray[np.int64]:
    """Every one-to-one assignment as ``[A, n]`` slot per buyer (``-1``: none)."""
    if n <= n_slots:
        return np.array(list(itertools.permutations(range(n_slots), n)), dtype=np.int64)
    rows = []
    for buyers in itertools.permutations(range(n), n_slots):
        row = [-1] * n
        for j, i in enumerate(buyers):
            row[i] = j
        rows.append(row)
    return np.array(rows, dtype=np.int64)


class Assignment(_Matching):
    """Max-weight buyer–slot assignment with VCG prices."""

    name = "assignment"

    def clear(
        self,
        values: ArrayLike,
        weights: ArrayLike | None = None,
        rng: np.random.Generator | None = None,
    ) -> Outcome:
        """Assign slots and price them.

        Args:
            values: ``float64 [B, n, K]`` buyers' bids for each slot, >= 0.
            weights: optional ``alpha`` ``[K]`` or ``[B, K]``, the units of ``alloc``.
            rng: tie-break generator; default the mechanism's own.

        Returns:
            :class:`Outcome` with ``extra["slot_price"] [B, K]`` and
            ``extra["welfare"] [B]`` (sum of matched values).
        """
        gen = self._gen(rng)
        vals, alpha = self._values(values, weights)
        n_markets, n, n_slots = vals.shape
        surplus = vals - self.reserve
        usable = surplus >= 0.0
        gain = np.where(usable, surplus, 0.0)
        if n_markets == 0:  # no market: nothing to solve (and nothing to reshape)
            slot, clarke = np.zeros((0, n), dtype=np.int64), np.zeros((0, n))
        elif math.perm(max(n, n_slots), min(n, n_slots)) <= MAX_ENUMERATED:
            slot, clarke = _enumerate(gain, gen)
        elif min(n, n_slots) <= MAX_SUBSET:
            slot, clarke = _subset_dp(gain, gen)
        else:
            slot, clarke = _scipy(gain, gen)
        # a chosen pair under the reserve means "unmatched" (it adds nothing)
        chosen = np.take_along_axis(usable, np.maximum(slot, 0)[..., None], 2)[..., 0]
        slot = np.where((slot >= 0) & chosen, slot, -1)
        matched = slot >= 0
        # The exact Clarke payment of an optimal assignment lies in [0, own
        # gain]; rounding in markets of mixed magnitudes can carry the computed
        # one past the gain, and individual rationality is not left to rounding.
        own = np.take_along_axis(gain, np.maximum(slot, 0)[..., None], 2)[..., 0]
        pay = np.where(matched, np.minimum(clarke, own) + self.reserve, 0.0)
        slot_price = np.full((n_markets, n_slots), self.reserve)
        rows, buyers = np.nonzero(matched)
        slot_price[rows, slot[rows, buyers]] = pay[rows, buyers]
        value = np.take_along_axis(vals, np.maximum(slot, 0)[..., None], 2)[..., 0]
        welfare = np.where(matched, value, 0.0).sum(axis=1)
        return self._outcome(
            slot, pay, alpha, {"slot_price": slot_price, "welfare": welfare}
        )


_REL_TIE = 1e-12
"""Relative gap under which two assignments' welfare counts as a tie: relative
to the gains of the buyers whose slots differ between the two, never to the
market's total (a buyer of value 300 beside one of 1e17 must not be swept into
a 'tie' of 1e5)."""


def _enumerate(
    gain: NDArray[np.float64], rng: np.random.Generator
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Brute force over every assignment, batched; returns slot and Clarke pay.

    Welfare is compared between two assignments through the per-buyer
    differences of their gains (a buyer in the same slot in both adds an exact
    0), so the comparison is as precise as the gains that move, whatever the
    other buyers' magnitudes. ``W_-i`` minus the others' welfare in the chosen
    assignment ``A*``, i.e. the Clarke payment, is the best over all
    assignments ``A`` of ``sum_{j != i} (g_j(A) - g_j(A*))``: dropping ``i``
    from any assignment leaves one of the others, and every assignment of the
    others is reached that way (gains are >= 0, so an empty slot is never
    worse).
    """
    n_markets, n, n_slots = gain.shape
    table = _assignments(n, n_slots)  # [A, n]
    n_assign = table.shape[0]
    # flat index into [n, K + 1] with column K a zero: "no slot"
    flat = np.arange(n)[None, :] * (n_slots + 1) + np.where(table < 0, n_slots, table)
    flat = flat.ravel()
    padded = np.zeros((n_markets, n, n_slots + 1))
    padded[:, :, :n_slots] = gain
    padded = padded.reshape(n_markets, -1)
    slot = np.empty((n_markets, n), dtype=np.int64)
    clarke = np.empty((n_markets, n))
    chunk = max(1, _BLOCK // (n_assign * n))
    for lo in range(0, n_markets, chunk):
        hi = min(lo + chunk, n_markets)
        part = padded[lo:hi].take(flat, axis=1).reshape(hi - lo, n_assign, n)
        rows = np.arange(hi - lo)
        pick = _best_assignment(part, rng)
        d = part - part[rows, pick][:, None, :]  # [c, A, n], 0 where i stays
        others = d.sum(axis=2)[:, :, None] - d  # sum over j != i
        slot[lo:hi] = table[pick]
        clarke[lo:hi] = others.max(axis=1)
    return slot, np.maximum(clarke, 0.0)


def _best_assignment(
    part: NDArray[np.float64], rng: np.random.Generator
) -> NDArray[np.int64]:
    """A welfare-maximising assignment per market, ties drawn at random.

    ``part [c, A, n]`` holds each buyer's gain under each assignment. Starting
    from the assignment of the largest float total, the per-buyer differences
    to the current reference decide: an assignment better by more than
    :data:`_REL_TIE` of the gains that differ becomes the reference (at most a
    few rounds: each strictly raises the welfare), and those within it of the
    reference are its ties.
    """
    rows = np.arange(part.shape[0])
    ref = part.sum(axis=2).argmax(axis=1)
    for _ in range(part.shape[1]):
        d = part - part[rows, ref][:, None, :]
        diff = d.sum(axis=2)  # [c, A]: welfare of A minus the reference's
        tol = _REL_TIE * np.abs(d).sum(axis=2)
        better = diff > tol
        if not better.any():
            break
        ref = np.where(
            better.any(axis=1), np.where(better, diff, -np.inf).argmax(1), ref
        )
    optimal = diff >= -tol
    pick = ref.copy()
    tied = np.flatnonzero(optimal.sum(axis=1) > 1)
    if tied.size:  # a random optimal assignment, not the first one listed
        key = np.where(optimal[tied], rng.random((tied.size, part.shape[1])), -1.0)
        pick[tied] = key.argmax(axis=1)
    return pick


def _subset_tables(gain: NDArray[np.float64]) -> NDArray[np.float64]:
    """Best welfare of the first ``t`` rows using only columns in each subset.

    ``gain [B, I, J]`` (>= 0) is processed row by row; ``tables[t, b, S]`` is the
    best total of rows ``0..t-1`` matched one-to-one to columns in the bit set
    ``S`` (any subset of it, so tables are monotone in ``S``).

    Returns:
        ``float64 [I + 1, B, 2**J]``.
    """
    n_markets, n_rows, n_cols = gain.shape
    states = np.arange(1 << n_cols)
    tables = np.zeros((n_rows + 1, n_markets, 1 << n_cols))
    for i in range(n_rows):
        prev, cur = tables[i], tables[i + 1]
        cur[:] = prev
        for j in range(n_cols):
            with_j = states[(states >> j) & 1 == 1]
            cand = prev[:, with_j ^ (1 << j)] + gain[:, i, j, None]
            cur[:, with_j] = np.maximum(cur[:, with_j], cand)
    return tables


def _subset_backtrack(
    tables: NDArray[np.float64], gain: NDArray[np.float64], rng: np.random.Generator
) -> NDArray[np.int64]:
    """The column of each row in an optimal matching, ties chosen at random."""
    n_markets, n_rows, n_cols = gain.shape
    rows = np.arange(n_markets)
    state = np.full(n_markets, (1 << n_cols) - 1)
    col = np.full((n_markets, n_rows), -1, dtype=np.int64)
    bits = 1 << np.arange(n_cols)
    for i in range(n_rows - 1, -1, -1):
        now = tables[i + 1][rows, state]
        prev = tables[i]
        ok = np.empty((n_markets, n_cols + 1), dtype=bool)
        ok[:, n_cols] = prev[rows, state] == now  # row i unmatched
        has = (state[:, None] & bits) != 0
        without = np.where(has, state[:, None] ^ bits, state[:, None])
        # the same float sums as in the forward pass: equality is exact
        ok[:, :n_cols] = has & (
            prev[rows[:, None], without] + gain[:, i] == now[:, None]
        )
        pick = np.where(ok, rng.random(ok.shape), -1.0).argmax(axis=1)
        took = pick < n_cols
        col[took, i] = pick[took]
        state = np.where(took, state ^ (1 << np.minimum(pick, n_cols - 1)), state)
    return col


def _subset_dp(
    gain: NDArray[np.float64], rng: np.random.Generator
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Batched dynamic programme over subsets of the smaller side.

    Rows are the larger side and states the subsets of the smaller one
    (``2**min(n, K)`` states). With buyers as rows, ``W_-i`` joins the best of
    the buyers before ``i`` on a set of slots with the best of those after it on
    the other slots; with slots as rows, it is the final table on the set of
    all buyers but ``i``.
    """
    n_markets, n, n_slots = gain.shape
    slot = np.empty((n_markets, n), dtype=np.int64)
    clarke = np.empty((n_markets, n))
    small = min(n, n_slots)
    chunk = max(1, _BLOCK // ((max(n, n_slots) + 1) << small))
    for lo in range(0, n_markets, chunk):
        g = gain[lo : lo + chunk]
        c = g.shape[0]
        if n_slots <= n:  # buyers are rows
            fwd = _subset_tables(g)
            bwd = _subset_tables(g[:, ::-1])
            slot[lo : lo + c] = _subset_backtrack(fwd, g, rng)
            full = (1 << n_slots) - 1
            states = np.arange(1 << n_slots)
            best = fwd[n][:, full]
            for i in range(n):
                without = (fwd[i] + bwd[n - 1 - i][:, full ^ states]).max(axis=1)
                mine = np.where(
                    slot[lo : lo + c, i] >= 0,
                    g[np.arange(c), i, np.maximum(slot[lo : lo + c, i], 0)],
                    0.0,
                )
                clarke[lo : lo + c, i] = without - (best - mine)
        else:  # slots are rows, buyers the states
            gt = g.transpose(0, 2, 1)
            fwd = _subset_tables(gt)
            buyer_of = _subset_backtrack(fwd, gt, rng)  # [c, K]
            s = np.full((c, n), -1, dtype=np.int64)
            r, j = np.nonzero(buyer_of >= 0)
            s[r, buyer_of[r, j]] = j
            slot[lo : lo + c] = s
            full = (1 << n) - 1
            best = fwd[n_slots][:, full]
            mine = np.where(
                s >= 0,
                np.take_along_axis(g, np.maximum(s, 0)[..., None], 2)[..., 0],
                0.0,
            )
            without = fwd[n_slots][:, full ^ (1 << np.arange(n))]
            clarke[lo : lo + c] = without - (best[:, None] - mine)
    return slot, np.maximum(clarke, 0.0)


def _scipy(
    gain: NDArray[np.float64], rng: np.random.Generator
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Per-market Hungarian algorithm for markets too large to enumerate."""
    from scipy.optimize import linear_sum_assignment  # only the largest markets

    n_markets, n, n_slots = gain.shape
    slot = np.full((n_markets, n), -1, dtype=np.int64)
    clarke = np.zeros((n_markets, n))
    for b in range(n_markets):
        # random relabelling of buyers and slots: ties are not broken by index
        pb, ps = rng.permutation(n), rng.permutation(n_slots)
        g = gain[b][np.ix_(pb, ps)]
        r, c = linear_sum_assignment(g, maximize=True)
        total = g[r, c].sum()
        for i, j in zip(r, c, strict=True):
            rest = np.delete(g, i, axis=0)
            rr, cc = linear_sum_assignment(rest, maximize=True)
            clarke[b, pb[i]] = rest[rr, cc].sum() - (total - g[i, j])
            slot[b, pb[i]] = ps[j]
    return slot, np.maximum(clarke, 0.0)


class StableMatching(_Matching):
    """Buyer-proposing deferred acceptance; matched buyers pay their bid.

    Args:
        reserve: a buyer proposes only to slots it values above the reserve.
    """

    name = "stable_matching"
    params: ClassVar[dict[str, Any]] = {}

    def clear(
        self,
        values: ArrayLike,
        weights: ArrayLike | None = None,
        rng: np.random.Generator | None = None,
    ) -> Outcome:
        """Run deferred acceptance in ``B`` markets at once.

        Args:
            values: ``float64 [B, n, K]`` buyers' bids for each slot, >= 0.
            weights: optional ``alpha`` ``[K]`` or ``[B, K]``, the units of ``alloc``.
            rng: tie-break generator; default the mechanism's own.

        Returns:
            :class:`Outcome`; ``extra["priority"] [B, K, n]`` is each slot's rank
            of each buyer after tie-breaks (higher is preferred).
        """
        gen = self._gen(rng)
        vals, alpha = self._values(values, weights)
        slot, priority = _deferred_acceptance(vals, self.reserve, gen)
        value = np.take_along_axis(vals, np.maximum(slot, 0)[..., None], 2)[..., 0]
        pay = np.where(slot >= 0, value, 0.0)
        return self._outcome(slot, pay, alpha, {"priority": priority})


def _deferred_acceptance(
    vals: NDArray[np.float64], reserve: float, rng: np.random.Generator
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Gale–Shapley with buyers proposing, batched over markets.

    Every pass, each free buyer with an untried acceptable slot proposes to the
    best such slot; each slot keeps the best of its holder and its proposers.
    Returns the slot of each buyer ``[B, n]`` and the slots' priorities
    ``[B, K, n]`` (a permutation of ``0..n-1`` per slot, higher preferred).
    """
    n_markets, n, n_slots = vals.shape
    pref = rank_desc(vals.reshape(-1, n_slots), rng)[0].reshape(n_markets, n, n_slots)
    n_ok = (vals > reserve).sum(axis=2)
    by_slot = vals.transpose(0, 2, 1).reshape(-1, n)
    order = rank_desc(by_slot, rng)[0]  # best buyer first
    prio = np.empty_like(order)
    np.put_along_axis(prio, order, np.arange(n - 1, -1, -1)[None, :], axis=1)
    prio = prio.reshape(n_markets, n_slots, n)
    prio_bj = prio.transpose(0, 2, 1)  # [B, n, K]: slot j's priority of buyer i

    match = np.full((n_markets, n), -1, dtype=np.int64)
    holder = np.full((n_markets, n_slots), -1, dtype=np.int64)
    tried = np.zeros((n_markets, n), dtype=np.int64)
    slots = np.arange(n_slots)
    active = np.arange(n_markets)
    while active.size:
        m_, t_, h_ = match[active], tried[active], holder[active]
        free = (m_ < 0) & (t_ < n_ok[active])
        busy = free.any(axis=1)
        active, free, m_, t_, h_ = (
            active[busy],
            free[busy],
            m_[busy],
            t_[busy],
            h_[busy],
        )
        if not active.size:
            break
        target = np.take_along_axis(
            pref[active], np.minimum(t_, n_slots - 1)[..., None], 2
        )[..., 0]
        tried[active] = t_ + free
        proposes = free[..., None] & (target[..., None] == slots)  # [a, n, K]
        cand = np.where(proposes, prio_bj[active], -1)
        best_i = cand.argmax(axis=1)  # [a, K]
        best_p = np.take_along_axis(cand, best_i[:, None, :], 1)[:, 0, :]
        held_p = np.where(
            h_ >= 0,
            np.take_along_axis(prio[active], np.maximum(h_, 0)[..., None], 2)[..., 0],
            -1,
        )
        take = best_p > held_p  # [a, K]
        rows, cols = np.nonzero(take & (h_ >= 0))
        match[active[rows], h_[rows, cols]] = -1
        rows, cols = np.nonzero(take)
        match[active[rows], best_i[rows, cols]] = cols
        holder[active] = np.where(take, best_i, h_)
    return match, prio


def blocking_pairs(
    values: ArrayLike, slot: ArrayLike, reserve: float = 0.0
) -> NDArray[np.int64]:
    """Number of blocking pairs of a matching, per market (0: stable).

    Buyer ``i`` and slot ``j`` block when ``i`` values ``j`` above the reserve and
    above its own slot (unmatched buyers hold the reserve), and ``j`` is free or
    values ``i`` above its holder, slots ranking buyers by their bids as in
    ``stable_matching``. Exact ties do not block.

    Args:
        values: ``float64 [B, n, K]`` bids of buyers for slots.
        slot: ``int [B, n]`` slot of each buyer, ``-1`` for none (``Outcome.slot``);
            no two buyers of a market may share a slot.
        reserve: the reserve of the mechanism.

    Returns:
        ``int64 [B]``.

    Raises:
        ValueError: bad shapes or dtypes, or two buyers in one slot.
    """
    vals = as_batch(values, "values", "B, n, K")
    s = np.asarray(slot)
    if s.shape != vals.shape[:2] or not np.issubdtype(s.dtype, np.integer):
        raise UserError(
            f"slot must be an int array of shape {vals.shape[:2]}, got "
            f"{s.dtype} {s.shape}"
        )
    n_markets, _, n_slots = vals.shape
    if ((s < -1) | (s >= n_slots)).any():
        raise UserError(f"slot entries must lie in -1..{n_slots - 1}")
    matched = s >= 0
    # a matching: each slot holds at most one buyer
    count = np.zeros((n_markets, n_slots + 1), dtype=np.int64)
    np.add.at(count, (np.arange(n_markets)[:, None], np.where(matched, s, n_slots)), 1)
    shared = count[:, :n_slots] > 1
    if shared.any():
        b, j = (int(i) for i in np.argwhere(shared)[0])
        raise UserError(
            f"slot is not a matching: market {b}, slot {j} holds "
            f"{int(count[b, j])} buyers (at most one each)"
        )
    own = np.take_along_axis(vals, np.maximum(s, 0)[..., None], 2)[..., 0]
    own = np.where(matched, own, reserve)
    held = np.full((n_markets, n_slots), reserve)
    rows, buyers = np.nonzero(matched)
    held[rows, s[rows, buyers]] = vals[rows, buyers, s[rows, buyers]]
    blocks = (vals > own[..., None]) & (vals > held[:, None, :]) & (vals > reserve)
    return blocks.sum(axis=(1, 2))
