"""Markets cleared per second: batched mechanisms against a per-market Python loop.

Each mechanism clears ``--markets`` random markets (uniform values; n = 10
buyers and K = 5 slots of attention; two-sided 10 x 10; assignment n = K = 5
and n = 10, K = 5; stable matching n = 10, K = 5) in one call, best of
``--repeat`` runs. Beside it, a straightforward per-market Python
implementation of the same rule clears ``--loop-markets`` of those markets,
and the two must agree on every market's allocation and payments (the data
are tie-free). Prints a table.

A second table (``--bound``, on by default) times every mechanism against its
own numpy lower bound, the selection it cannot avoid, measured in the same
run and interleaved with it (min over ``--repeat`` rounds of each, the load
average printed before and after): sealed-bid mechanisms at n = 2, 10, 48,
128 buyers and batches of 10k and 100k (``--sizes``, ``--batches``), the CDA
at n = m = 10 and the matchings at their sizes above. See :data:`BOUNDS`.

The bound of a sealed double auction is the two sorted books up to their
crossing: the efficient quantity ``q`` compares the k-th highest bid with the
k-th lowest ask for every k up to ``q``, and ``q`` is not known beforehand,
so no selection of a fixed rank will do (``np.partition`` at one rank is no
faster than ``np.sort`` on rows this short, and ``q`` would take several).
Each side is sorted once and the crossing counted: what every k-double,
McAfee or call market must do before it prices anything. The bound writes
nothing else; a double auction's :class:`Outcome` is six ``[B, n]`` arrays
(slot, alloc, pay, price, seller_alloc, seller_receipt) that no clearing can
skip, so a row ``six outputs`` times allocating and writing just those
against the same bound: the share of the budget they take.

A double auction clears into the memory of its last outcome when no one
holds that outcome any more (the benchmark drops each before the next call),
so it pays no fresh pages, while the bound's ``np.sort`` copies are fresh
pages on every call. ``--bound-reuse`` compares like with like: the bound
sorts into arrays allocated once (a copy and an in-place sort, which is what
``np.sort`` does) and the ``six outputs`` row writes kept arrays.

    python benchmarks/mechanisms.py                  # 100,000 markets
    python benchmarks/mechanisms.py --markets 20000  # quick run
    python benchmarks/mechanisms.py --no-loop --batches 100000 --sizes 10,48
    python benchmarks/mechanisms.py --no-loop --only k_double,mcafee,"six outputs"
    python benchmarks/mechanisms.py --no-loop --sizes 10,48 --clock cpu --bound-reuse
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import numpy as np
from scipy.optimize import linear_sum_assignment

from attn_env import mechanisms

N, K, M = 10, 5, 10
ALPHA = np.array([1.0, 0.8, 0.6, 0.4, 0.2])
#: markets/s targets of issue 3 (sealed-bid one- and two-sided; assignment n = K = 5)
ONE_SIDED = mechanisms.names_of_family("one_sided")
SEALED = ONE_SIDED + [
    m
    for m in mechanisms.names_of_family("two_sided")
    if not mechanisms.mechanism_class(m).sequential
]
TARGET = {**dict.fromkeys(SEALED, 1_000_000), "assignment": 20_000}


# --- per-market reference rules (plain Python over one market) -------------------


def loop_position(rule: str, bids: np.ndarray, alpha: np.ndarray) -> tuple[list, list]:
    ranked = sorted(range(len(bids)), key=lambda i: -bids[i])
    k = len(alpha)
    slot, pay = [-1] * len(bids), [0.0] * len(bids)
    nxt = [bids[ranked[r + 1]] if r + 1 < len(bids) else 0.0 for r in range(len(bids))]
    for r, i in enumerate(ranked[:k]):
        slot[i] = r
        if rule == "first_price":
            pay[i] = bids[i] * alpha[r]
        elif rule in ("gsp", "second_price"):
            pay[i] = nxt[r] * alpha[r]
        else:  # vcg: sum over lower slots of the attention lost times the next bid
            pay[i] = sum(
                (alpha[j] - (alpha[j + 1] if j + 1 < k else 0.0)) * nxt[j]
                for j in range(r, k)
            )
    return slot, pay


def loop_double(rule: str, bids: np.ndarray, asks: np.ndarray) -> tuple[list, list]:
    buyers = sorted(range(len(bids)), key=lambda i: -bids[i])
    sellers = sorted(range(len(asks)), key=lambda j: asks[j])
    q = 0
    while q < min(len(bids), len(asks)) and bids[buyers[q]] >= asks[sellers[q]]:
        q += 1
    b = lambda r: bids[buyers[r - 1]] if 1 <= r <= len(bids) else 0.0  # noqa: E731
    s = lambda r: asks[sellers[r - 1]] if 1 <= r <= len(asks) else np.inf  # noqa: E731
    trades, price = q, 0.0
    if rule == "k_double" and q:
        price = 0.5 * b(q) + 0.5 * s(q)
    elif rule == "call_market" and q:
        low, high = max(s(q), b(q + 1)), min(b(q), s(q + 1))
        price = 0.5 * (low + high)
    elif rule == "mcafee" and q:
        p0 = 0.5 * (b(q + 1) + s(q + 1))
        if s(q) <= p0 <= b(q):
            price = p0
        else:
            trades, price = q - 1, b(q)
    slot, pay = [-1] * len(bids), [0.0] * len(bids)
    # traders are paired in index order (prices are uniform per side)
    for i, j in zip(sorted(buyers[:trades]), sorted(sellers[:trades]), strict=True):
        slot[i], pay[i] = j, price
    return slot, pay


def loop_cda(
    bids: np.ndarray, asks: np.ndarray, order: np.ndarray
) -> tuple[list, list]:
    n = len(bids)
    best_bid = best_ask = None
    slot, pay = [-1] * n, [0.0] * n
    for who in order:
        if who < n:
            p = bids[who]
            if best_ask is not None and p >= best_ask[0]:
                slot[who], pay[who] = best_ask[1], best_ask[0]
                best_ask = None
            elif best_bid is None or p > best_bid[0]:
                best_bid = (p, who)
        else:
            p = asks[who - n]
            if best_bid is not None and p <= best_bid[0]:
                slot[best_bid[1]], pay[best_bid[1]] = who - n, best_bid[0]
                best_bid = None
            elif best_ask is None or p < best_ask[0]:
                best_ask = (p, who - n)
    return slot, pay


def loop_assignment(values: np.ndarray) -> tuple[list, list]:
    rows, cols = linear_sum_assignment(values, maximize=True)
    total = values[rows, cols].sum()
    slot, pay = [-1] * values.shape[0], [0.0] * values.shape[0]
    for i, j in zip(rows, cols, strict=True):
        rest = np.delete(values, i, axis=0)
        r, c = linear_sum_assignment(rest, maximize=True)
        slot[i], pay[i] = int(j), rest[r, c].sum() - (total - values[i, j])
    return slot, pay


def loop_stable(values: np.ndarray) -> tuple[list, list]:
    n, k = values.shape
    prefs = [list(np.argsort(-values[i])) for i in range(n)]
    nxt, holder, slot = [0] * n, [-1] * k, [-1] * n
    free = list(range(n))
    while free:
        i = free.pop()
        if nxt[i] >= k:
            continue
        j = prefs[i][nxt[i]]
        nxt[i] += 1
        if holder[j] < 0 or values[i, j] > values[holder[j], j]:
            if holder[j] >= 0:
                slot[holder[j]] = -1
                free.append(holder[j])
            holder[j], slot[i] = i, int(j)
        else:
            free.append(i)
    pay = [float(values[i, slot[i]]) if slot[i] >= 0 else 0.0 for i in range(n)]
    return slot, pay


# --- the benchmark --------------------------------------------------------------------


def cases(markets: int, rng: np.random.Generator) -> dict[str, tuple]:
    """Per mechanism: (batched call, per-market loop over the first i markets)."""
    bids = rng.random((markets, N))
    asks = rng.random((markets, M))
    order = np.argsort(rng.random((markets, N + M)), axis=1)
    small = rng.random((markets, 5, 5))
    wide = rng.random((markets, N, K))
    out: dict[str, tuple] = {}
    for name in ONE_SIDED:
        alpha = ALPHA[:1] if name == "second_price" else ALPHA
        m = mechanisms.make(name, seed=0)
        # the answer auctions have no per-market loop here (None: not compared)
        out[name] = (
            lambda m=m, a=alpha: m.clear(bids, weights=a),
            (lambda i, r=name, a=alpha: loop_position(r, bids[i], a))
            if name in ("first_price", "second_price", "gsp", "vcg")
            else None,
        )
    for name in ("k_double", "mcafee", "call_market"):
        m = mechanisms.make(name, seed=0)
        out[name] = (
            lambda m=m: m.clear(bids, asks),
            lambda i, r=name: loop_double(r, bids[i], asks[i]),
        )
    cda = mechanisms.make("cda", seed=0)
    out["cda"] = (
        lambda: cda.clear(bids, asks, order=order),
        lambda i: loop_cda(bids[i], asks[i], order[i]),
    )
    asg = mechanisms.make("assignment", seed=0)
    out["assignment"] = (lambda: asg.clear(small), lambda i: loop_assignment(small[i]))
    out["assignment 10x5"] = (
        lambda: asg.clear(wide),
        lambda i: loop_assignment(wide[i]),
    )
    stable = mechanisms.make("stable_matching", seed=0)
    out["stable_matching"] = (
        lambda: stable.clear(wide),
        lambda i: loop_stable(wide[i]),
    )
    return out


def best_time(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    best, result = np.inf, None
    for _ in range(repeat):
        # dropped first: a double auction clears into the last outcome's
        # memory when no one holds it (see SealedDouble)
        result = None
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


# --- against the numpy lower bound ----------------------------------------------------

#: what each lower bound times: the selection a mechanism cannot avoid.
BOUNDS = {
    "position": "np.argpartition(-bids, L-1)[:, :L] and the gather of those L "
    "bids, L = min(K+1, n): the K winners and the price-setting next bid",
    "answer": "bids / bids.sum(axis=1): the share of every bidder (all n are "
    "allocated)",
    "double": "np.sort(bids) and np.sort(asks) and the crossing count "
    "(b_desc >= s_asc).sum(1): the sorted book up to the efficient quantity "
    "(row 'six outputs': writing the outcome's six [B, n] arrays, which the "
    "bound leaves out)",
    "cda": "the gather of the n + m orders in arrival order and a running max "
    "over them (np.maximum.accumulate): one pass over the sequential book",
    "assignment": "values.max(axis=2).sum(axis=1): one read of every value "
    "(no solver can skip a value)",
    "stable_matching": "np.argsort(-values, axis=2): every buyer's ranking of "
    "the slots, which deferred acceptance reads",
}


def _bound_position(bids: np.ndarray, k: int) -> Callable[[], object]:
    n_top = min(k + 1, bids.shape[1])
    neg = -bids

    def run() -> object:
        top = np.argpartition(neg, n_top - 1, axis=1)[:, :n_top]
        return np.take_along_axis(bids, top, axis=1)

    return run


def _bound_double(
    bids: np.ndarray, asks: np.ndarray, reuse: bool = False
) -> Callable[[], object]:
    """The double auctions' bound; ``reuse``: sorted into arrays allocated once
    (``np.sort`` is a copy and an in-place sort: the same work, without the
    fresh pages of its copies), as the double auctions reuse their outcome."""
    depth = min(bids.shape[1], asks.shape[1])
    if not reuse:

        def run() -> object:
            b = np.sort(bids, axis=1)[:, ::-1]
            a = np.sort(asks, axis=1)
            return (b[:, :depth] >= a[:, :depth]).sum(axis=1)

        return run
    b_srt, a_srt = np.empty_like(bids), np.empty_like(asks)
    crossed = np.empty((len(bids), depth), dtype=bool)

    def run_kept() -> object:
        np.copyto(b_srt, bids)
        b_srt.sort(axis=1)
        np.copyto(a_srt, asks)
        a_srt.sort(axis=1)
        np.greater_equal(b_srt[:, ::-1][:, :depth], a_srt[:, :depth], out=crossed)
        return crossed.sum(axis=1)

    return run_kept


def bound_cases(
    n: int, markets: int, rng: np.random.Generator, reuse: bool = False
) -> list[tuple[str, str, Callable[[], object], Callable[[], object]]]:
    """``(mechanism, bound kind, batched call, bound)`` for the sealed-bid
    mechanisms at ``n`` buyers (K = 5 slots, one for second price; two-sided
    n x n); ``reuse``: the double auctions' bound and the six outputs keep
    their arrays from call to call (see :func:`_bound_double`)."""
    bids = rng.random((markets, n))
    asks = rng.random((markets, n))
    out = []
    for name in ONE_SIDED:
        alpha = ALPHA[:1] if name == "second_price" else ALPHA
        m = mechanisms.make(name, seed=0)
        kind = (
            "position"
            if name in ("first_price", "second_price", "gsp", "vcg")
            else "answer"
        )
        bound = (
            _bound_position(bids, len(alpha))
            if kind == "position"
            else (lambda: bids / bids.sum(axis=1, keepdims=True))
        )
        out.append((name, kind, lambda m=m, a=alpha: m.clear(bids, weights=a), bound))
    for name in ("k_double", "mcafee", "call_market"):
        m = mechanisms.make(name, seed=0)
        out.append(
            (
                name,
                "double",
                lambda m=m: m.clear(bids, asks),
                _bound_double(bids, asks, reuse),
            )
        )
    out.append(
        (
            "six outputs",
            "double",
            _six_outputs(bids, reuse),
            _bound_double(bids, asks, reuse),
        )
    )
    return out


def _six_outputs(bids: np.ndarray, reuse: bool = False) -> Callable[[], object]:
    """Allocate and write a two-sided outcome's six ``[B, n]`` arrays once: the
    part of every double auction's time that its bound leaves out;
    ``reuse``: allocated once, only written per call."""

    def fresh() -> list[np.ndarray]:
        arrays = [np.empty(bids.shape, dtype=np.int64)]
        return arrays + [np.empty(bids.shape) for _ in range(5)]

    kept = fresh() if reuse else None

    def run() -> object:
        arrays = fresh() if kept is None else kept
        for arr in arrays:
            arr.fill(0)
        return arrays

    return run


def other_cases(
    markets: int, rng: np.random.Generator
) -> list[tuple[str, str, Callable[[], object], Callable[[], object]]]:
    """The CDA (n = m = 10, one round) and the matchings against theirs."""
    bids, asks = rng.random((markets, N)), rng.random((markets, M))
    order = np.argsort(rng.random((markets, N + M)), axis=1)
    book = np.concatenate([bids, asks], axis=1)
    small, wide = rng.random((markets, 5, 5)), rng.random((markets, N, K))
    cda = mechanisms.make("cda", seed=0)
    asg = mechanisms.make("assignment", seed=0)
    stable = mechanisms.make("stable_matching", seed=0)
    return [
        (
            "cda 10x10",
            "cda",
            lambda: cda.clear(bids, asks, order=order),
            lambda: np.maximum.accumulate(
                np.take_along_axis(book, order, axis=1), axis=1
            ),
        ),
        (
            "assignment 5x5",
            "assignment",
            lambda: asg.clear(small),
            lambda: small.max(axis=2).sum(axis=1),
        ),
        (
            "assignment 10x5",
            "assignment",
            lambda: asg.clear(wide),
            lambda: wide.max(axis=2).sum(axis=1),
        ),
        (
            "stable 10x5",
            "stable_matching",
            lambda: stable.clear(wide),
            lambda: np.argsort(-wide, axis=2),
        ),
    ]


#: clocks of the bound table: wall time, or the CPU time of this process (user
#: and system, page faults included), which time spent waiting for a core on a
#: loaded machine does not inflate
CLOCKS: dict[str, Callable[[], float]] = {
    "wall": time.perf_counter,
    "cpu": time.process_time,
}


def side_by_side(
    fn: Callable[[], object],
    bound: Callable[[], object],
    repeat: int,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[float, float]:
    """Best seconds of ``fn`` and of ``bound`` by ``clock``, run alternately
    ``repeat`` times."""
    best_fn = best_bound = np.inf
    for _ in range(repeat):
        t0 = clock()
        bound()
        t1 = clock()
        fn()
        t2 = clock()
        best_bound, best_fn = min(best_bound, t1 - t0), min(best_fn, t2 - t1)
    return best_fn, best_bound


def bound_table(
    sizes: list[int],
    batches: list[int],
    repeat: int,
    seed: int,
    only: set[str] | None = None,
    clock: str = "wall",
    reuse: bool = False,
) -> None:
    """Print markets/s of each mechanism and of its lower bound, and the ratio
    (the rows named in ``only``, default all), timed by ``clock`` (see
    :data:`CLOCKS`); ``reuse``: see :func:`bound_cases`."""
    kept = ", double bound and six outputs reuse their arrays" if reuse else ""
    print(
        f"\nagainst the numpy lower bound (min of {repeat}, interleaved, "
        f"{clock} time{kept}); load average {_load()}"
    )
    for kind, text in BOUNDS.items():
        print(f"  bound {kind}: {text}")
    header = (
        f"{'mechanism':<20}{'n':>5}{'batch':>9}{'markets/s':>13}"
        f"{'bound/s':>13}{'ratio':>7}"
    )
    print(header)
    print("-" * len(header))
    rng = np.random.default_rng(seed)
    rows = []
    for batch in batches:
        for n in sizes:
            rows += [
                (name, n, batch, f, b)
                for name, _, f, b in bound_cases(n, batch, rng, reuse)
            ]
        rows += [
            (name, int(name.split()[-1].split("x")[0]), batch, f, b)
            for name, _, f, b in other_cases(batch, rng)
        ]
    for name, n, batch, fn, bound in rows:
        if only is not None and name not in only:
            continue
        secs, bound_secs = side_by_side(fn, bound, repeat, CLOCKS[clock])
        print(
            f"{name:<20}{n:>5}{batch:>9,}{batch / secs:>13,.0f}"
            f"{batch / bound_secs:>13,.0f}{bound_secs / secs:>7.2f}",
            flush=True,
        )
    print(f"load average {_load()}")


def _load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markets", type=int, default=100_000)
    parser.add_argument("--loop-markets", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--loop",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the table against per-market Python loops",
    )
    parser.add_argument(
        "--bound",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the table against each mechanism's numpy lower bound",
    )
    parser.add_argument(
        "--sizes", default="2,10,48,128", help="buyers n, comma separated"
    )
    parser.add_argument(
        "--batches", default="10000,100000", help="markets per call, comma separated"
    )
    parser.add_argument(
        "--bound-repeat", type=int, default=7, help="rounds of the bound table"
    )
    parser.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default="wall",
        help="clock of the bound table: wall, or this process's CPU time "
        "(steadier on a loaded machine)",
    )
    parser.add_argument(
        "--bound-reuse",
        action="store_true",
        help="the double auctions' bound sorts into arrays allocated once (and "
        "the six outputs row writes kept arrays), as the double auctions "
        "reuse their outcome's memory: no fresh pages on either side",
    )
    parser.add_argument(
        "--only",
        default=None,
        help="rows of the bound table to time, comma separated (default all)",
    )
    args = parser.parse_args(argv)
    if args.loop:
        loop_table(args)
    if args.bound:
        bound_table(
            [int(v) for v in args.sizes.split(",")],
            [int(v) for v in args.batches.split(",")],
            args.bound_repeat,
            args.seed,
            None if args.only is None else set(args.only.split(",")),
            args.clock,
            args.bound_reuse,
        )


def loop_table(args: argparse.Namespace) -> None:
    """The table of batched markets/s against a per-market Python loop."""
    loop_n = min(args.loop_markets, args.markets)
    rng = np.random.default_rng(args.seed)
    header = (
        f"{'mechanism':<16}{'batched/s':>12}{'loop/s':>10}{'ratio':>8}"
        f"{'target/s':>11}{'met':>5}{'agree':>7}"
    )
    print(
        f"{args.markets:,} markets batched, {loop_n:,} in the loop; "
        f"load average {_load()}"
    )
    print(header)
    print("-" * len(header))
    for name, (batched, loop) in cases(args.markets, rng).items():
        secs, out = best_time(batched, args.repeat)
        rate = args.markets / secs
        target = TARGET.get(name)
        met = "-" if target is None else ("yes" if rate >= target else "NO")
        goal = "-" if target is None else f"{target:,}"
        if loop is None:
            print(
                f"{name:<16}{rate:>12,.0f}{'-':>10}{'-':>8}{goal:>11}{met:>5}{'-':>7}"
            )
            continue
        t0 = time.perf_counter()
        ref = [loop(i) for i in range(loop_n)]
        loop_secs = time.perf_counter() - t0
        slots = np.array([r[0] for r in ref])
        pays = np.array([r[1] for r in ref])
        agree = np.array_equal(out.slot[:loop_n], slots) and np.allclose(
            out.pay[:loop_n], pays, atol=1e-9
        )
        loop_rate = loop_n / loop_secs
        print(
            f"{name:<16}{rate:>12,.0f}{loop_rate:>10,.0f}{rate / loop_rate:>8.0f}"
            f"{goal:>11}{met:>5}{'yes' if agree else 'NO':>7}"
        )


if __name__ == "__main__":
    main()
