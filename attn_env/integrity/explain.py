"""Explanation records: why each trader of one market got what it got.

For one cleared market (one row of the env's round infos) :func:`explain_market`
returns a record per agent: its value, bid and score (the bid: the env's buyers
have quality 1), its rank and slot, the attention of that slot and its share of
the page, its payment and price per unit, the rule that priced it, and the
**price setters**: the bids that set its price, as terms ``{agent, bid,
weight}`` with ``price = sum(weight * bid)``. ``agent`` is ``"reserve"`` where
the reserve binds, ``"none"`` where a missing bid counts as 0.

================  ===================================================  =========
mechanism         price setters of a trader                            weights
================  ===================================================  =========
first_price       its own bid                                          1
second_price,     the next score down (the buyer ranked one below)     1
gsp
vcg, assignment   the scores below it: its externality                 ``(a_j -
                  ``sum_{j>=k} (a_j - a_{j+1}) s_{j+1} / a_k``          a_{j+1})
                                                                       / a_k``
stable_matching   its own bid (pay-your-bid matching)                  1
k_double          the marginal buyer ``b_q`` and seller ``s_q``         k, 1 - k
mcafee            ``b_{q+1}, s_{q+1}`` (price ``p0``), or with trade     1/2, 1/2
                  reduction the marginal trader ``b_q`` (buyers),      or 1
                  ``s_q`` (sellers)
call_market       the traders at the Walrasian interval's ends         k, 1 - k
cda               the standing order the trade hit                     1
segment_auction,  none listed: the Myerson payment is an integral      --
prominence_       over the share rule, which every bid moves
auction
================  ===================================================  =========

A market the exposure floor's lottery allocated (``lottery=True``) prices
nobody: its records say ``rule: lottery`` and carry no setters. ``assignment``
with a reserve prices each pair against the reserve on total values; its
records give the price and no setters.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from attn_env.mechanisms import Mechanism, family, name_of

__all__ = ["RULES", "explain_market", "page_attention", "setter_price"]

RULES = {
    "first_price": "pays its bid",
    "second_price": "pays the next bid down",
    "gsp": "pays the next bid down",
    "vcg": "pays its externality (VCG)",
    "assignment": "pays its externality (VCG)",
    "stable_matching": "pays its bid",
    "k_double": "k x marginal bid + (1 - k) x marginal ask",
    "mcafee": "McAfee: p0 of the first excluded pair, or trade reduction",
    "call_market": "a point of the Walrasian interval",
    "cda": "the standing order it met",
    "segment_auction": "Myerson payment of its expected share (all bids set it)",
    "prominence_auction": "Myerson payment of its prominence share (all bids set it)",
}
"What sets a trader's price, by mechanism."


def _term(agent: str, bid: float, weight: float) -> dict[str, Any]:
    return {"agent": agent, "bid": float(bid), "weight": float(weight)}


def setter_price(terms: Sequence[dict[str, Any]]) -> float:
    """The price the setters imply: ``sum(weight * bid)``."""
    return float(sum(t["weight"] * t["bid"] for t in terms))


def page_attention(alpha: ArrayLike, n_buyers: int) -> float:
    """The attention a page can give: its top ``min(n_buyers, K)`` slots' sum
    (what a buyer's ``attention_share`` divides its attention by)."""
    a = np.asarray(alpha, dtype=np.float64)
    return float(a[: min(n_buyers, a.size)].sum())


def explain_market(
    mechanism: Mechanism,
    names: Sequence[str],
    n_buyers: int,
    bid: ArrayLike,
    value: ArrayLike,
    alloc: ArrayLike,
    payment: ArrayLike,
    alpha: ArrayLike,
    active: ArrayLike | None = None,
    lottery: bool = False,
) -> list[dict[str, Any]]:
    """A record per agent of one cleared market.

    Args:
        mechanism: the mechanism that cleared it (its name, reserve and ``k``).
        names: agent names, buyers first.
        n_buyers: buyer columns.
        bid: ``[A]`` effective bids and asks (the env's ``info["bid"]`` row).
        value: ``[A]`` values per unit and costs.
        alloc: ``[A]`` attention won / units traded.
        payment: ``[A]`` paid (buyers) / received (sellers).
        alpha: ``[K]`` the page's slot attention, descending (one-sided,
            matching).
        active: ``[A]`` bool, agents in the market (default all).
        lottery: the exposure floor's lottery allocated this market.

    Returns:
        Records (dicts) in ``names`` order: ``agent``, ``role``, ``value``,
        ``bid``, ``score``, ``rank`` (1-based, ``None`` for none), ``slot``
        (0-based, ``None`` for none; two-sided: ``None``), ``attention``,
        ``attention_share``, ``payment``, ``price`` (per unit), ``rule`` and
        ``price_setters`` (empty for agents that did not trade).
        ``payment = price x attention``: the price is per unit of attention
        won (the slot's ``alpha``; in two-sided markets, per unit traded),
        while ``attention_share`` is that attention over the page's
        (:func:`page_attention`; ``None`` in two-sided markets), a different
        quantity.
    """
    b = np.asarray(bid, dtype=np.float64)
    v = np.asarray(value, dtype=np.float64)
    x = np.asarray(alloc, dtype=np.float64)
    p = np.asarray(payment, dtype=np.float64)
    act = np.ones(b.shape, bool) if active is None else np.asarray(active, bool)
    name = name_of(mechanism)
    fam = family(mechanism)
    with np.errstate(invalid="ignore", divide="ignore"):
        price = np.where(x > 0, p / np.where(x > 0, x, 1.0), 0.0)
    records = [
        {
            "agent": names[i],
            "role": "buyer" if i < n_buyers else "seller",
            "value": float(v[i]),
            "bid": float(b[i]),
            "score": float(b[i]),
            "rank": None,
            "slot": None,
            "attention": float(x[i]),
            "attention_share": None,
            "payment": float(p[i]),
            "price": float(price[i]),
            "rule": "lottery (exposure floor): free" if lottery else RULES.get(name),
            "price_setters": [],
        }
        for i in range(len(names))
    ]
    if fam == "two_sided":
        if not lottery:
            _two_sided(mechanism, name, records, b, x, act, n_buyers)
        return records
    a = np.asarray(alpha, dtype=np.float64)
    page = page_attention(a, n_buyers)
    order = _slot_order(b[:n_buyers], x[:n_buyers], a, act[:n_buyers], mechanism)
    free = list(range(a.size))
    for k, i in enumerate(order):
        rec = records[i]
        rec["rank"] = k + 1
        rec["attention_share"] = float(x[i] / page) if page > 0 else 0.0
        if x[i] > 0:
            rec["slot"] = _slot_won(x[i], a, free, k)
            if not lottery:
                terms = _one_sided_terms(mechanism, name, k, i, order, b, a, names)
                rec["price_setters"] = terms
    return records


def _slot_won(attention: float, a: NDArray, free: list[int], rank: int) -> int:
    """The free slot whose attention a winner got (and take it from ``free``).

    Position auctions fill slots top-down, so this is the winner's ``rank``; a
    matching may leave a better slot empty (values of 0 make every assignment
    optimal), so the slot is read off the attention won, not assumed.
    """
    for j in free:
        if np.isclose(a[j], attention, rtol=1e-12, atol=0.0):
            free.remove(j)
            return j
    return rank  # a lottery's expected share matches no single slot


def _slot_order(
    b: NDArray, x: NDArray, a: NDArray, act: NDArray, mech: Mechanism
) -> list[int]:
    """Buyers by rank: winners by slot (attention won), then the rest by bid.

    Buyers out of the market (inactive, or bidding under the reserve) come last.
    """
    n = b.size
    won = x > 0
    eligible = act & (b >= mech.reserve)
    key = np.where(won, 2.0 + x, np.where(eligible, 1.0, 0.0))
    # lexicographic: (won by attention, eligible, bid), descending; stable by index
    idx = np.lexsort((np.arange(n), -b, -key))
    return [int(i) for i in idx]


def _one_sided_terms(
    mech: Mechanism,
    name: str,
    k: int,
    i: int,
    order: list[int],
    b: NDArray,
    a: NDArray,
    names: Sequence[str],
) -> list[dict[str, Any]]:
    """Setters of the buyer ``i`` ranked ``k`` (0-based) in a slot market."""
    r = mech.reserve
    if getattr(mech, "share_rule", False):
        return []  # no linear setters (attn_env/mechanisms/answer.py)
    if name in ("first_price", "stable_matching"):
        return [_term(names[i], b[i], 1.0)]

    def below(j: int) -> tuple[str, float]:
        """Who sets the score of rank ``j`` (0-based), floored by the reserve."""
        if j < len(order) and b[order[j]] >= r:
            return names[order[j]], b[order[j]]
        return ("reserve", r) if r > 0 else ("none", 0.0)

    if name in ("second_price", "gsp"):
        who, s = below(k + 1)
        return [_term(who, s, 1.0)]
    if name == "assignment" and r > 0:
        return []
    # vcg, assignment: sum_{j>=k} (a_j - a_{j+1}) max(s_{j+1}, r) / a_k
    K = a.size
    nxt = np.append(a[1:], 0.0)
    terms = []
    for j in range(k, K):
        w = (a[j] - nxt[j]) / a[k]
        if w > 0:
            who, s = below(j + 1)
            terms.append(_term(who, s, w))
    return terms


def _book(values: NDArray, live: NDArray, descending: bool) -> list[int]:
    """Indices of the live orders, best first (bids high, asks low)."""
    idx = np.flatnonzero(live)
    key = -values[idx] if descending else values[idx]
    return [int(i) for i in idx[np.argsort(key, kind="stable")]]


def _two_sided(
    mech: Mechanism,
    name: str,
    records: list[dict[str, Any]],
    b: NDArray,
    x: NDArray,
    act: NDArray,
    n: int,
) -> None:
    """Fill ranks and setters of a double auction's traders in place."""
    bids, asks = b[:n], b[n:]
    names = [r["agent"] for r in records]
    buyers = _book(bids, act[:n] & (bids >= mech.reserve), True)
    sellers = _book(asks, act[n:], False)
    for rank, i in enumerate(buyers):
        records[i]["rank"] = rank + 1
    for rank, j in enumerate(sellers):
        records[n + j]["rank"] = rank + 1

    def bq(rank: int) -> tuple[str, float]:  # 1-based; b_{n+1} = 0
        if 1 <= rank <= len(buyers):
            i = buyers[rank - 1]
            return names[i], bids[i]
        return "none", 0.0

    def sq(rank: int) -> tuple[str, float]:  # 1-based; s_{m+1} = inf
        if 1 <= rank <= len(sellers):
            j = sellers[rank - 1]
            return names[n + j], asks[j]
        return "none", np.inf

    depth = min(len(buyers), len(sellers))
    q = sum(bq(k)[1] >= sq(k)[1] for k in range(1, depth + 1))
    traders = [i for i in range(len(records)) if x[i] > 0]
    if name == "cda":
        for i in traders:
            # its own standing order, or the partner's order that stood first
            own = records[i]["price"] == b[i]
            setter = i if own else _cda_partner(records, i, n)
            records[i]["price_setters"] = [_term(names[setter], b[setter], 1.0)]
        return
    k = getattr(mech, "k", 0.5)
    if name == "k_double":
        terms = [_term(*bq(q), k), _term(*sq(q), 1.0 - k)]
        buyer_terms = seller_terms = terms
    elif name == "call_market":
        b_q, s_q, b_next, s_next = bq(q), sq(q), bq(q + 1), sq(q + 1)
        low = s_q if s_q[1] >= b_next[1] else b_next
        high = b_q if b_q[1] <= s_next[1] else s_next
        buyer_terms = seller_terms = [_term(*high, k), _term(*low, 1.0 - k)]
    elif name == "mcafee":
        b_next, s_next = bq(q + 1), sq(q + 1)
        p0 = 0.5 * (b_next[1] + s_next[1])
        if q > 0 and sq(q)[1] <= p0 <= bq(q)[1]:
            seller_terms = [_term(*b_next, 0.5), _term(*s_next, 0.5)]
            buyer_terms = seller_terms
        else:
            buyer_terms, seller_terms = [_term(*bq(q), 1.0)], [_term(*sq(q), 1.0)]
        if setter_price(buyer_terms) < mech.reserve:
            buyer_terms = [_term("reserve", mech.reserve, 1.0)]
    else:
        return
    for i in traders:
        records[i]["price_setters"] = buyer_terms if i < n else seller_terms


def _cda_partner(records: list[dict[str, Any]], i: int, n: int) -> int:
    """The trader on the other side whose order set ``i``'s CDA price."""
    price = records[i]["price"]
    side = range(n, len(records)) if i < n else range(n)
    for j in side:
        r = records[j]
        if r["attention"] > 0 and r["bid"] == price:
            return j
    return i
