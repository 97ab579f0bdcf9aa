"""Markets cleared per second: batched mechanisms against a per-market Python loop.

Each mechanism clears ``--markets`` random markets (uniform values; n = 10
buyers and K = 5 slots of attention; two-sided 10 x 10; assignment n = K = 5
and n = 10, K = 5; stable matching n = 10, K = 5) in one call, best of
``--repeat`` runs. Beside it, a straightforward per-market Python
implementation of the same rule clears ``--loop-markets`` of those markets,
and the two must agree on every market's allocation and payments (the data
are tie-free). Prints a table.

    python benchmarks/mechanisms.py                  # 100,000 markets
    python benchmarks/mechanisms.py --markets 20000  # quick run
"""

from __future__ import annotations

import argparse
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
        out[name] = (
            lambda m=m, a=alpha: m.clear(bids, weights=a),
            lambda i, r=name, a=alpha: loop_position(r, bids[i], a),
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
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markets", type=int, default=100_000)
    parser.add_argument("--loop-markets", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    loop_n = min(args.loop_markets, args.markets)
    rng = np.random.default_rng(args.seed)
    header = (
        f"{'mechanism':<16}{'batched/s':>12}{'loop/s':>10}{'ratio':>8}"
        f"{'target/s':>11}{'met':>5}{'agree':>7}"
    )
    print(f"{args.markets:,} markets batched, {loop_n:,} in the loop")
    print(header)
    print("-" * len(header))
    for name, (batched, loop) in cases(args.markets, rng).items():
        secs, out = best_time(batched, args.repeat)
        t0 = time.perf_counter()
        ref = [loop(i) for i in range(loop_n)]
        loop_secs = time.perf_counter() - t0
        slots = np.array([r[0] for r in ref])
        pays = np.array([r[1] for r in ref])
        agree = np.array_equal(out.slot[:loop_n], slots) and np.allclose(
            out.pay[:loop_n], pays, atol=1e-9
        )
        rate, loop_rate = args.markets / secs, loop_n / loop_secs
        target = TARGET.get(name)
        met = "-" if target is None else ("yes" if rate >= target else "NO")
        goal = "-" if target is None else f"{target:,}"
        print(
            f"{name:<16}{rate:>12,.0f}{loop_rate:>10,.0f}{rate / loop_rate:>8.0f}"
            f"{goal:>11}{met:>5}{'yes' if agree else 'NO':>7}"
        )


if __name__ == "__main__":
    main()
