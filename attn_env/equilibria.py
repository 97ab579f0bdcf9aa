"""Analytic Bayes–Nash equilibria: the one source for the ``bne`` agent and evaluation.

:func:`bne_strategy` is the only dispatcher: the ``bne`` agent plays what it
returns and ``evaluate`` measures distances to it, so the two cannot disagree.

docs/design.md#known-answers. All of them assume one independent sealed-bid market with
uniformly distributed values (and costs):

- ``first_price``, ``K`` identical slots, ``n`` unit-demand buyers, values
  ``U[0, 1]`` (affinely mapped to ``U[a, b]``): ``b(v) = E[Y | Y < v]`` with
  ``Y`` the ``K``-th highest of the other ``n - 1`` values (revenue
  equivalence with the uniform ``(K+1)``-th price auction), in closed form
  ``(n-K)/n * I_v(n-K+1, K) / I_v(n-K, K)`` (``I`` the regularised incomplete
  beta function); for one slot ``(n-1)/n * v``. It is *not* linear for ``K > 1``
  (``n = 3, K = 2``: ``b(1) = 1/3``). With a reserve ``r`` and one slot,
  ``b(v) = v - (v^n - r^n) / (n v^(n-1))`` for ``v >= r`` and 0 below
  (Krishna 2010, sec. 2.5). With ``K >= n`` every bidder wins a unit and the
  best reply to anything is the reserve.
- ``second_price``, ``vcg``, ``gsp`` with one slot, ``assignment`` (unit
  demand, minimum Walrasian = VCG prices), ``mcafee``: truthful bidding (and
  asking) is dominant.
- ``k_double``, one buyer and one seller, values and costs ``U[a, b]``
  (Chatterjee–Samuelson; price ``k*bid + (1-k)*ask``): the linear equilibrium
  ``b(v) = v / (1 + k) + k (1 - k) / (2 (1 + k))``,
  ``s(c) = c / (2 - k) + (1 - k) / 2`` on ``[0, 1]``; for ``k = 1/2`` that is
  ``2v/3 + 1/12`` and ``2c/3 + 1/4``, trade iff ``v >= c + 1/4``, efficiency
  27/32.

Formats beyond the environment's mechanisms, the references of the solver's
other payment rules and utilities (``attn_env.solver``; values ``U[0, 1]``
unless stated; each checked in ``tests/test_solver_formats.py`` by a
brute-force best response on a fine grid):

- :func:`all_pay_bne`: all-pay, ``n`` bidders, ``b(v) = (n-1)/n * v^n``
  (Krishna 2010, sec. 2.5, by revenue equivalence with second price);
- :func:`crra_first_price_bne`: first price with CRRA utility ``u(x) = x^rho``,
  ``b(v) = (n-1)/(n-1+rho) * v`` (Krishna 2010, sec. 4.1; Riley & Samuelson 1981);
- :func:`asymmetric_first_price_bne`: first price, two bidders with values
  ``U[0, a]`` and ``U[0, b]``: the closed form of the uniform asymmetric case
  (Griesmer, Levitan & Shubik 1967; Krishna 2010, sec. 4.3), derived below;
- :func:`roi_bne`: ROI-constrained bidders (``v A >= (1 + target) P``), one
  slot: first price ``min((n-1)/n, 1/(1+target)) v``, second price
  ``min(1, n/((n-1)(1+target))) v`` (derived in its docstring);
- :func:`war_of_attrition_bne`: war of attrition, two bidders,
  ``b(v) = -v - log(1 - v)`` (Krishna 2010, sec. 2.5).

scipy is imported only when a ``K > 1`` first-price bid is computed, so that
importing this module stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from attn_env.errors import UserError

Strategy = Callable[[NDArray[np.float64]], NDArray[np.float64]]

__all__ = [
    "CS_EFFICIENCY",
    "Strategy",
    "affiliated_best_reply_gain",
    "all_pay_bne",
    "asymmetric_first_price_bne",
    "bne_reason",
    "bne_strategy",
    "chatterjee_samuelson",
    "crra_first_price_bne",
    "first_price_bne",
    "roi_bne",
    "roi_strategy",
    "truthful",
    "war_of_attrition_bne",
]

CS_EFFICIENCY = 27.0 / 32.0
"First-best share of welfare that the k = 1/2 linear equilibrium realises (U[0,1])."


def truthful(v: NDArray) -> NDArray[np.float64]:
    """Bid the value (ask the cost): the equilibrium where that is dominant."""
    return np.asarray(v, dtype=np.float64).copy()


def _affine(unit: Strategy, low: float, high: float) -> Strategy:
    """A strategy on ``U[0, 1]`` carried to values ``U[low, high]``."""
    width = high - low
    return lambda v: low + width * unit((np.asarray(v, dtype=np.float64) - low) / width)


def first_price_bne(
    n: int,
    n_slots: int = 1,
    low: float = 0.0,
    high: float = 1.0,
    reserve: float = 0.0,
) -> Strategy:
    """Pay-your-bid BNE: ``K`` equal units, ``n`` unit-demand bidders, U[low, high].

    Args:
        n: number of bidders (``>= 1``).
        n_slots: identical units ``K``; ``K >= n`` means everyone wins a unit.
        low, high: the value range.
        reserve: the seller's reserve price; known for one slot only (below it
            the bidder cannot win and bids 0).

    Returns:
        A vectorised ``values -> bids`` function.
    """
    if n < 1 or n_slots < 1:
        raise UserError(
            f"first-price BNE needs n_buyers >= 1 and n_slots >= 1, got {n} and "
            f"{n_slots}"
        )
    if n_slots >= n:
        return lambda v: np.where(np.asarray(v) >= reserve, np.minimum(reserve, v), 0.0)
    if reserve > 0.0 and n_slots != 1:
        raise UserError(
            "first_price BNE with a reserve is known for n_slots=1 only, "
            f"got n_slots={n_slots}"
        )
    k = n_slots
    rho = max(reserve - low, 0.0) / (high - low)  # the reserve on the unit scale

    def unit(x: NDArray[np.float64]) -> NDArray[np.float64]:  # values on [0, 1]
        if rho > 0.0:
            safe = np.maximum(x, rho)
            return safe - (safe**n - rho**n) / (n * safe ** (n - 1))
        if k == 1:
            return (n - 1) / n * x
        from scipy.special import betainc

        x = np.clip(x, 1e-12, 1.0)
        return (n - k) / n * betainc(n - k + 1, k, x) / betainc(n - k, k, x)

    bid = _affine(unit, low, high)
    if reserve <= low:
        return bid
    # below the reserve the bidder cannot win; bid 0 (documented convention)
    return lambda v: np.where(np.asarray(v) >= reserve, bid(v), 0.0)


def chatterjee_samuelson(
    k: float, role: str, low: float = 0.0, high: float = 1.0
) -> Strategy:
    """Linear equilibrium of the bilateral ``k``-double auction on ``U[low, high]``."""
    if not 0.0 <= k <= 1.0:
        raise UserError(f"k_double parameter k must be in [0, 1], got {k!r}")
    if role == "buyer":

        def unit(x):  # on [0, 1]
            return x / (1 + k) + k * (1 - k) / (2 * (1 + k))
    elif role == "seller":

        def unit(x):
            return x / (2 - k) + (1 - k) / 2
    else:
        raise UserError(f"role must be 'buyer' or 'seller', got {role!r}")
    return _affine(unit, low, high)


def all_pay_bne(n: int) -> Strategy:
    """All-pay auction, ``n`` symmetric bidders, values ``U[0, 1]``: every bidder
    pays its bid, the highest wins; ``b(v) = (n-1)/n * v^n``.

    Revenue equivalence (Krishna 2010, sec. 2.5): the expected payment of type
    ``v`` equals second price's, ``P(win) E[Y | Y < v] = v^(n-1) (n-1)/n v``,
    and an all-pay bidder pays it always.
    """
    if not isinstance(n, int) or n < 2:
        raise UserError(f"all-pay BNE needs an integer n >= 2 bidders, got {n!r}")
    return lambda v: (n - 1) / n * np.asarray(v, dtype=np.float64) ** n


def crra_first_price_bne(n: int, rho: float) -> Strategy:
    """First price, ``n`` bidders, values ``U[0, 1]``, CRRA utility ``u(x) = x^rho``.

    ``b(v) = (n-1)/(n-1+rho) * v`` (Krishna 2010, sec. 4.1; Riley & Samuelson
    1981): the first-order condition of ``F(v)^(n-1) u(v - b)`` with
    ``u'/u = rho / x`` is ``b' = (n-1)(v - b) / (rho v)``, solved by a linear
    bid. ``rho = 1`` is the risk-neutral ``(n-1)/n v``; the more risk-averse
    (smaller ``rho``), the higher the bid.
    """
    if not isinstance(n, int) or n < 2:
        raise UserError(f"CRRA first-price BNE needs an integer n >= 2, got {n!r}")
    if not (isinstance(rho, int | float) and 0.0 < rho <= 1.0):
        raise UserError(f"CRRA rho must be a number in (0, 1], got {rho!r}")
    slope = (n - 1) / (n - 1 + rho)
    return lambda v: slope * np.asarray(v, dtype=np.float64)


def asymmetric_first_price_bne(high_1: float, high_2: float) -> tuple[Strategy, ...]:
    """First price, two bidders with values ``U[0, high_1]`` and ``U[0, high_2]``.

    The uniform asymmetric closed form (Griesmer, Levitan & Shubik 1967; Krishna
    2010, sec. 4.3). With ``phi_i`` bidder ``i``'s inverse bid, the first-order
    conditions are ``(phi_i(b) - b) phi_j'(b) = phi_j(b)``; they are solved by
    ``phi_i(b) = 2b / (1 + k_i b^2)``, ``k_i = 1/high_i^2 - 1/high_j^2``, and both
    reach the top of their range at the common highest bid
    ``high_1 high_2 / (high_1 + high_2)``. Inverted (the root that is 0 at 0):
    ``b_i(v) = v / (1 + sqrt(1 - k_i v^2))``. The weak bidder (smaller range)
    bids more aggressively at a given value; equal ranges give ``v / 2``.

    Returns:
        ``(b_1, b_2)``, vectorised ``values -> bids`` on each bidder's range.
    """
    for name, h in (("high_1", high_1), ("high_2", high_2)):
        if not (isinstance(h, int | float) and h > 0.0 and np.isfinite(h)):
            raise UserError(f"asymmetric first-price BNE needs {name} > 0, got {h!r}")

    def bid(own: float, other: float) -> Strategy:
        k = 1.0 / own**2 - 1.0 / other**2

        def fn(v: NDArray) -> NDArray[np.float64]:
            v = np.clip(np.asarray(v, dtype=np.float64), 0.0, own)
            return v / (1.0 + np.sqrt(np.maximum(1.0 - k * v**2, 0.0)))

        return fn

    return bid(high_1, high_2), bid(high_2, high_1)


def roi_bne(mechanism: str, n: int, target: float) -> Strategy:
    """ROI-constrained bidders, one slot, ``n`` bidders, values ``U[0, 1]``.

    Each bidder maximises its expected surplus ``v A(b) - P(b)`` subject to the
    ex-interim ROI constraint ``v A(b) >= (1 + target) P(b)`` (what it wins is
    worth at least ``1 + target`` times what it pays: ``(value - spend) /
    spend >= target``). Against opponents bidding ``k v``:

    - ``first_price``: ``P = b A``, the constraint is ``b <= v / (1 + target)``
      and the unconstrained best reply is ``(n-1)/n v`` (for any ``k``), so
      ``b(v) = min((n-1)/n, 1 / (1 + target)) v``;
    - ``second_price``: ``P(b) = E[Y 1{Y < b}] = (n-1)/n b A(b)`` for ``b <= k``
      (``Y`` the highest opponent bid), the constraint is
      ``b <= n v / ((n-1)(1 + target))`` and the surplus rises up to ``b = v``,
      so ``b(v) = min(1, n / ((n-1)(1 + target))) v``: truthful while
      ``target <= 1 / (n-1)``, shaded beyond.

    Derived here (the brute-force best reply in ``tests/test_solver_roi.py``
    checks both); with ``target`` small enough the constraint does not bind and
    these are the risk-neutral equilibria.
    """
    if not isinstance(n, int) or n < 2:
        raise UserError(f"ROI BNE needs an integer n >= 2 bidders, got {n!r}")
    if not (isinstance(target, int | float) and 0.0 <= target < np.inf):
        raise UserError(f"ROI target must be a number >= 0, got {target!r}")
    if mechanism == "first_price":
        slope = min((n - 1) / n, 1.0 / (1.0 + target))
    elif mechanism == "second_price":
        slope = min(1.0, n / ((n - 1) * (1.0 + target)))
    else:
        raise UserError(
            f"ROI BNE known for first_price and second_price, got {mechanism!r}"
        )
    return lambda v: slope * np.asarray(v, dtype=np.float64)


def roi_strategy(env_cfg, role: str, target: float) -> Strategy | None:
    """:func:`roi_bne` for ``env_cfg`` where it applies, else ``None`` (the
    solver's answer): buyers of a one-slot first or second price auction
    without a reserve, symmetric risk-neutral buyers with values ``U[0, h]``
    drawn fresh every round (the slopes do not depend on ``h``)."""
    from attn_env import mechanisms

    mech = mechanisms.name_of(env_cfg.mechanism)
    if (
        role != "buyer"
        or mech not in ("first_price", "second_price")
        or bne_strategy(env_cfg, role) is None
        or env_cfg.n_slots != 1
        or env_cfg.n_buyers < 2
        or env_cfg.value_low != 0.0
        or env_cfg.value_ranges
        or env_cfg.utility.kind != "linear"
        or float(dict(env_cfg.mechanism_params).get("reserve", 0.0)) != 0.0
    ):
        return None
    return roi_bne(mech, env_cfg.n_buyers, float(target))


def affiliated_best_reply_gain(
    bid_fn: Strategy, common: float, n_values: int = 100, grid: int = 200
) -> float:
    """Relative ex-ante gain of a brute-force best reply to ``bid_fn`` in first
    price, two bidders, affiliated values ``v_i = w c + (1 - w) e_i`` (``w =
    common``; ``c``, ``e_i`` independent ``U[0, 1]``).

    No closed form is used: at ``n_values`` quantile midpoints ``x`` of the
    values, the posterior of ``c`` given ``x`` is uniform on ``[max(0, (x - 1 +
    w) / w), min(1, x / w)]`` (both laws uniform), so the opponent's value is
    enumerated on ``grid x 2 grid`` midpoints of ``(c | x, e_2)``; the best of
    2,001 bids on ``[0, 1]`` (ties shared) against its bids ``bid_fn(v_2)``
    is compared with ``bid_fn(x)``: ``(sum best - sum own) / sum best``. The
    check of a solved first price with correlated values (``solve.prior``).
    """
    if not (isinstance(common, int | float) and 0.0 <= common < 1.0):
        raise UserError(f"common must be a number in [0, 1), got {common!r}")
    w = float(common)
    rng = np.random.default_rng(1)
    big = w * rng.random(400_000) + (1 - w) * rng.random(400_000)
    xs = np.quantile(big, (np.arange(n_values) + 0.5) / n_values)
    cand = np.linspace(0.0, 1.0, 2001)
    e2 = (np.arange(2 * grid) + 0.5) / (2 * grid)
    best_sum = own_sum = 0.0
    for x in xs:
        lo, hi = (max(0.0, (x - 1 + w) / w), min(1.0, x / w)) if w else (0.0, 1.0)
        c = lo + (hi - lo) * (np.arange(grid) + 0.5) / grid
        theirs = np.sort(bid_fn((w * c[:, None] + (1 - w) * e2[None, :]).ravel()))

        def win(b, theirs=theirs):
            under = np.searchsorted(theirs, b, "left")
            tied = np.searchsorted(theirs, b, "right") - under
            return (under + tied / 2) / len(theirs)

        best_sum += max(float(((x - cand) * win(cand)).max()), 0.0)
        own = float(np.asarray(bid_fn(np.array([x])))[0])
        own_sum += (x - own) * float(win(own))
    return (best_sum - own_sum) / best_sum


def war_of_attrition_bne(v: NDArray) -> NDArray[np.float64]:
    """War of attrition, two bidders, values ``U[0, 1]``: the higher bid wins and
    pays the lower one, the loser pays its own; ``b(v) = -v - log(1 - v)``
    (Krishna 2010, sec. 2.5: ``int_0^v x f(x) / (1 - F(x)) dx``). Unbounded as
    ``v -> 1``."""
    v = np.clip(np.asarray(v, dtype=np.float64), 0.0, 1.0 - 1e-15)
    return -v - np.log1p(-v)


_TRUTHFUL_BUYERS = ("second_price", "vcg", "assignment")
"Mechanisms where bidding the value is dominant for buyers (whatever the reserve)."


def bne_strategy(env_cfg, role: str, seat: str | None = None) -> Strategy | None:
    """The analytic BNE bid (or ask) function of ``role`` in ``env_cfg``, or ``None``.

    The equilibrium of the whole game: each round must be an independent
    sealed-bid market with uniform values, so the ``uniform`` valuation source,
    ``value_dist: uniform``, no budget and fresh values every round are required.

    With bidder classes (``env.value_ranges``) or a CRRA utility the symmetric
    risk-neutral answer is wrong, so only :func:`_game_bne`'s closed forms are
    returned there (the asymmetric one needs the buyer's ``seat``); with
    affiliated values (``valuation_params.common``) only the dominant truthful
    strategies are.

    Args:
        env_cfg: an :class:`attn_env.config.EnvConfig`.
        role: ``buyer`` or ``seller``.
        seat: the agent's name (``buyer_0``, ...), for bidder classes.

    Returns:
        A vectorised ``values -> bids`` function, or ``None`` where the setting has
        no closed-form equilibrium here (the ``bne`` agent refuses it, and
        ``bne_l2`` is not reported).
    """
    from attn_env import mechanisms

    if (
        env_cfg.valuation != "uniform"
        or env_cfg.value_dist != "uniform"
        or env_cfg.budget is not None
        or (env_cfg.rounds > 1 and env_cfg.redraw != "round")
        or env_cfg.value_low == env_cfg.value_high  # a known common value
    ):
        return None
    mech, params = mechanisms.name_of(env_cfg.mechanism), dict(env_cfg.mechanism_params)
    n, m, slots = env_cfg.n_buyers, env_cfg.n_sellers, env_cfg.n_slots
    lo, hi = env_cfg.value_low, env_cfg.value_high
    star = _symmetric_bne(env_cfg, role, mech, params, n, m, slots, lo, hi)
    if env_cfg.valuation_params.get("common") and star is not truthful:
        return None  # affiliated values: only dominant strategies stay (solver's)
    if env_cfg.value_ranges or env_cfg.utility.kind != "linear":
        return _game_bne(env_cfg, role, seat, star)
    return star


def _symmetric_bne(env_cfg, role, mech, params, n, m, slots, lo, hi) -> Strategy | None:
    """The risk-neutral BNE of symmetric bidders (see :func:`bne_strategy`)."""
    if role == "buyer" and mech == "first_price":
        reserve = float(params.pop("reserve", 0.0))
        if params or (reserve > 0.0 and 1 < slots < n):
            return None
        return first_price_bne(n, slots, lo, hi, reserve)
    if role == "buyer" and (mech in _TRUTHFUL_BUYERS or (mech == "gsp" and slots == 1)):
        return truthful
    if role == "buyer" and mech == "all_pay":  # the plug-in's name (solver.AllPay)
        if slots != 1 or n < 2 or (lo, hi) != (0.0, 1.0) or params.get("reserve", 0.0):
            return None
        return all_pay_bne(n)
    if mech == "mcafee":
        return truthful
    if mech == "k_double" and n == 1 and max(m, 1) == 1 and set(params) <= {"k"}:
        if (lo, hi) != (env_cfg.cost_low, env_cfg.cost_high):
            return None
        return chatterjee_samuelson(float(params.get("k", 0.5)), role, lo, hi)
    return None


def _game_bne(
    env, role: str, seat: str | None, star: Strategy | None
) -> Strategy | None:
    """The closed form of an asymmetric or CRRA market, where one is known.

    Truthful bidding stays dominant whatever the ranges or the utility; first
    price with one slot, no reserve and values from 0 has the CRRA closed form
    (symmetric, any ``U[0, h]``: the bid is linear) and the two-bidder
    asymmetric uniform one (linear utility, given the ``seat``); anything else
    has none here (the solver's).
    """
    from attn_env import mechanisms

    if star is truthful or star is None:
        return star
    if (
        role != "buyer"
        or mechanisms.name_of(env.mechanism) != "first_price"
        or env.n_slots != 1
        or any(k != "reserve" for k in env.mechanism_params)
        or float(env.mechanism_params.get("reserve", 0.0)) != 0.0
    ):
        return None
    ranges = [
        env.value_ranges.get(f"buyer_{i}", [env.value_low, env.value_high])
        for i in range(env.n_buyers)
    ]
    if any(float(low) != 0.0 for low, _ in ranges):
        return None
    if env.utility.kind == "crra" and not env.value_ranges:
        return crra_first_price_bne(env.n_buyers, float(env.utility.rho))
    if env.utility.kind == "linear" and env.n_buyers == 2 and seat is not None:
        pair = asymmetric_first_price_bne(float(ranges[0][1]), float(ranges[1][1]))
        return pair[int(seat.removeprefix("buyer_"))]
    return None


def bne_reason(env_cfg) -> str:
    """Why :func:`bne_strategy` may have no answer for ``env_cfg`` (for errors)."""
    return (
        "an analytic BNE is known here for independent sealed-bid rounds with "
        "valuation: uniform, value_dist: uniform, value_low < value_high, no budget "
        "and redraw: round, in "
        "first_price (one slot with a reserve, or K slots without), second_price, "
        "vcg, assignment, gsp with one slot, all_pay with one slot and values "
        "U[0, 1], mcafee, and k_double with one buyer "
        "and one seller on a common range; with bidder classes (env.value_ranges) "
        "or a CRRA utility, the truthful ones, CRRA first price with one slot from "
        "0, and two-bidder first price from 0 for a named seat; with affiliated "
        "values (valuation_params.common), the truthful ones (kind: equilibrium "
        "plays the solver's answer elsewhere); got mechanism "
        f"{env_cfg.mechanism!r}, mechanism_params={dict(env_cfg.mechanism_params)}, "
        f"n_buyers={env_cfg.n_buyers}, n_sellers={env_cfg.n_sellers}, "
        f"n_slots={env_cfg.n_slots}, valuation={env_cfg.valuation!r}, "
        f"value_dist={env_cfg.value_dist!r}, budget={env_cfg.budget!r}, "
        f"utility={env_cfg.utility.kind!r}, value_ranges={dict(env_cfg.value_ranges)}, "
        f"common={env_cfg.valuation_params.get('common', 0.0)!r}"
    )
