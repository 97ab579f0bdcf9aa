"""How far a strategy is from equilibrium: bnelearn's two measures.

``bne_l2``
    L2 distance of a bid function to the analytic BNE over the value
    distribution: ``sqrt(mean_v (b(v) - b*(v))^2)`` on quantile midpoints of the
    value (or cost) distribution (:func:`value_grid`; equal spacing for uniform
    values). With ``relevant=(lo, hi)`` (:func:`relevant_range`) both bids are
    first clipped into the range where a bid can change the outcome against
    the equilibrium opponents: every bid under a binding reserve (or under
    every equilibrium ask) loses, so all of them are one action, and the
    distance counts none of them (``evaluate``'s ``bne_l2``; without the clip,
    ``bne_l2_all``).
``utility_loss``
    ``(u_BR - u) / u_BR``: the ex-ante utility a best response would earn
    against the given opponents, minus the strategy's own, relative. Monte
    Carlo: ``samples`` opponent profiles (values drawn, bids from their
    strategies) are drawn once; for every candidate bid of a ``bids``-point grid
    the mechanism clears them all, giving expected allocation ``A(b)`` and
    payment ``P(b)``; ``u(v, b) = v A(b) - P(b)`` (sellers: ``R(b) - c Q(b)``);
    the best response takes the best candidate (the strategy's own bid
    included) at each value of the value grid. The same opponent sample prices
    both, so ``utility_loss >= 0`` exactly.

Strategies are plain ``values -> bids`` functions, so these measures need no
trained model, torch or stable-baselines3.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from attn_env import mechanisms
from attn_env.actions import shade_to_price
from attn_env.core import in_own_ranges
from attn_env.equilibria import Strategy, bne_strategy
from attn_env.errors import UserError
from attn_env.observation import ACTIVE, VALUE
from attn_env.valuations import draw_values
from attn_env.valuations.base import affiliated_units, stratified_uniforms
from attn_env.valuations.uniform import UniformSource

__all__ = [
    "BidFn",
    "bid_function",
    "bne_l2",
    "relevant_range",
    "shade_policy_bne_l2",
    "utility_loss",
    "value_grid",
]

BidFn = Callable[[NDArray[np.float64]], NDArray[np.float64]]


def common_weight(env_cfg) -> float:
    """The weight ``w`` of the value one market's buyers share (the uniform
    source's ``valuation_params.common``; 0: independent values)."""
    if env_cfg.valuation != "uniform":
        return 0.0
    return float(env_cfg.valuation_params.get("common", 0.0))


def value_grid(env_cfg, role: str, size: int = 1000) -> NDArray[np.float64]:
    """``size`` quantile midpoints of a role's value (or cost) distribution
    (a buyer's marginal under affiliated values: a sample's quantiles)."""
    if role == "seller":
        lo, hi, dist = env_cfg.cost_low, env_cfg.cost_high, "uniform"
    else:
        lo, hi, dist = env_cfg.value_low, env_cfg.value_high, env_cfg.value_dist
    q = (np.arange(size) + 0.5) / size
    if role == "buyer" and (w := common_weight(env_cfg)):
        unit = affiliated_units(np.random.default_rng(0).random((200_000, 2)), w)
        return lo + (hi - lo) * np.quantile(unit[:, 0], q)
    if dist == "uniform":
        return lo + (hi - lo) * q
    sample = draw_values(np.random.default_rng(0), (200_000,), dist, lo, hi)
    return np.quantile(sample, q)


def bne_l2(
    bid_fn: BidFn,
    bne: Strategy,
    values: NDArray[np.float64],
    relevant: tuple[float, float] | None = None,
) -> float:
    """``sqrt(mean((bid_fn(v) - bne(v))^2))`` over ``values`` (a grid or a sample).

    Args:
        relevant: ``(lo, hi)``: clip both bids into this range first (the bids
            that can change the outcome, :func:`relevant_range`); ``None``: the
            whole range.
    """
    learned = np.asarray(bid_fn(values), dtype=np.float64).reshape(-1)
    star = np.asarray(bne(values), dtype=np.float64).reshape(-1)
    if relevant is not None:
        learned, star = np.clip(learned, *relevant), np.clip(star, *relevant)
    return float(np.sqrt(np.mean((learned - star) ** 2)))


def relevant_range(
    env_cfg, role: str, other: Strategy | None = None
) -> tuple[float, float]:
    """The bids (asks) of ``role`` that can change its outcome in equilibrium.

    - One-sided: every bid under a reserve that binds (asked of the mechanism's
      own ``clear``: a lone bid just under it wins nothing) loses and pays
      nothing, so ``lo`` is the reserve.
    - Two-sided, given the other role's equilibrium strategy ``other``: a bid
      under every equilibrium ask never trades (``lo`` the lowest ask), an ask
      over every equilibrium bid never trades (``hi`` the highest bid).

    Returns ``(-inf, inf)`` where every bid can matter.
    """
    fam = mechanisms.family(env_cfg.mechanism)
    lo, hi = -np.inf, np.inf
    if fam == "one_sided" and _reserve_binds(env_cfg):
        lo = float(_mechanism(env_cfg).reserve)
    if fam == "two_sided" and other is not None:
        their = "seller" if role == "buyer" else "buyer"
        bids = np.asarray(other(value_grid(env_cfg, their, 1000)), dtype=np.float64)
        if role == "buyer":
            lo = float(bids.min())
        else:
            hi = float(bids.max())
    return lo, hi


def _mechanism(env_cfg) -> Any:
    return mechanisms.build(env_cfg.mechanism, env_cfg.mechanism_params)


def _reserve_binds(env_cfg) -> bool:
    """Whether a one-sided mechanism's reserve makes a bid under it lose: a lone
    bid just under it, every other bid 0, is cleared."""
    mech = _mechanism(env_cfg)
    reserve = float(getattr(mech, "reserve", 0.0) or 0.0)
    if reserve <= 0.0:
        return False
    bids = np.zeros((1, max(env_cfg.n_buyers, 1)))
    bids[0, 0] = np.nextafter(reserve, 0.0)
    out = mech.clear(
        bids, weights=np.ones(env_cfg.n_slots), rng=np.random.default_rng(0)
    )
    return not (out.alloc[0, 0] > 0.0 or out.pay[0, 0] != 0.0)


def _clear(
    mech: Any,
    family: str,
    bids: NDArray,
    asks: NDArray | None,
    n_slots: int,
    rng: np.random.Generator,
):
    if family == "one_sided":
        return mech.clear(bids, weights=np.ones(n_slots), rng=rng)
    return mech.clear(bids, asks, rng=rng)


def roi_constrained(
    surplus: NDArray, short: NDArray, max_bid: float
) -> NDArray[np.float64]:
    """Utility of an ROI-constrained buyer: its ``surplus`` ``v A - P`` where
    the shortfall ``short = (1 + target) P - v A`` is <= 0 (the ex-interim
    constraint ``v A >= (1 + target) P`` holds), else ``min(surplus, 0) -
    short``: under the 0 of bidding nothing and falling with the breach, so no
    best reply is infeasible (the solver's and ``evaluate``'s one rule)."""
    ok = short <= 1e-12 * max(1.0, max_bid)
    return np.where(ok, surplus, np.minimum(surplus, 0.0) - short)


def utility_loss(
    env_cfg,
    strategies: list[BidFn],
    agent: int,
    rng: np.random.Generator,
    samples: int = 4000,
    bids: int = 101,
    grid: int = 100,
    roi_target: float | None = None,
) -> dict[str, float]:
    """Relative utility loss of agent column ``agent`` against a grid best response.

    Args:
        env_cfg: an ``EnvConfig`` (single round, ``uniform`` source).
        strategies: one ``values -> bids`` function per agent column (buyers then
            sellers), the agent's own included.
        agent: the column whose loss is measured.
        rng: draws the opponents' values and the mechanism's tie-breaks.
        samples: Monte Carlo opponent profiles.
        bids: candidate bids of the best-response grid, on ``[low, high]`` of the
            agent's role (a buyer's: up to ``max_bid`` where the env sets it).
        grid: values (quantile midpoints) at which the best response is taken.
        roi_target: ROI-constrained buyers (``solve.roi_target``): a bid that
            breaks ``v A >= (1 + target) P`` scores :func:`roi_constrained`,
            the learned bid included.

    Returns:
        ``utility_loss`` (relative), ``u_learned``, ``u_best_response`` (ex ante).
    """
    fam = mechanisms.family(env_cfg.mechanism)
    if fam == "matching":
        raise UserError(
            f"utility_loss needs a sealed-bid auction, got {env_cfg.mechanism!r}"
        )
    n = env_cfg.n_buyers
    m = mechanisms.n_sellers(env_cfg.mechanism, n, env_cfg.n_sellers)
    if len(strategies) != n + m:
        raise UserError(
            f"need {n + m} strategies (buyers then sellers), got {len(strategies)}"
        )
    _, _, util = candidate_utilities(
        env_cfg, strategies, agent, rng, samples, bids, grid, roi_target
    )
    return loss_of_utilities(util, bids, grid)


def seat_env(env_cfg, seat: str):
    """``env_cfg`` with the market's value range replaced by ``seat``'s own
    (``env.value_ranges``; unchanged for a seat without one)."""
    ranges = env_cfg.value_ranges
    if seat not in ranges:
        return env_cfg
    low, high = ranges[seat]
    return dataclasses.replace(env_cfg, value_low=float(low), value_high=float(high))


def candidate_utilities(
    env_cfg,
    strategies: list[BidFn],
    agent: int,
    rng: np.random.Generator,
    samples: int = 4000,
    bids: int = 101,
    grid: int = 100,
    roi_target: float | None = None,
) -> tuple[NDArray, NDArray, NDArray]:
    """``(values [G], candidates [bids + G], utility [G, bids + G])``: the
    ex-interim utility of agent column ``agent`` for each candidate bid at each
    value of its ``grid``-point value grid, against ``samples`` opponent
    profiles drawn once (candidate ``bids + g`` is the strategy's own bid at
    value ``g``): what :func:`utility_loss` and a grid best response read.

    Buyers draw from their own ranges where ``env.value_ranges`` gives them (the
    env's affine map of the market's draw), and a buyer's outcome is worth
    ``u(v alloc - pay)`` under a CRRA ``env.utility`` (the mean of ``u`` over
    the sample, not ``u`` of the means). With ``roi_target`` a buyer's
    utility is :func:`roi_constrained` of its expected outcome (risk-neutral
    buyers only: the constraint is on the means).
    """
    fam = mechanisms.family(env_cfg.mechanism)
    n = env_cfg.n_buyers
    m = mechanisms.n_sellers(env_cfg.mechanism, n, env_cfg.n_sellers)
    mech = _mechanism(env_cfg)
    seller = agent >= n
    role = "seller" if seller else "buyer"
    if common_weight(env_cfg) and not seller:
        return _affiliated_candidates(
            env_cfg, strategies, agent, rng, samples, bids, grid, roi_target
        )
    # Opponents' values and (fixed) bids, drawn once: common random numbers.
    val = np.empty((samples, n + m))
    val[:, :n] = _market_values(env_cfg, rng, samples)
    if env_cfg.value_ranges:
        val[:, :n] = in_own_ranges(env_cfg, val[:, :n])
    if m:
        val[:, n:] = draw_values(
            rng, (samples, m), "uniform", env_cfg.cost_low, env_cfg.cost_high
        )
    base = np.column_stack(
        [
            np.asarray(f(val[:, j]), dtype=np.float64).reshape(-1)
            for j, f in enumerate(strategies)
        ]
    )
    own_env = env_cfg if seller else seat_env(env_cfg, f"buyer_{agent}")
    v_grid = value_grid(own_env, role, grid)
    learned = np.asarray(strategies[agent](v_grid), dtype=np.float64).reshape(-1)
    lo, hi = (
        (env_cfg.cost_low, env_cfg.cost_high) if seller else (0.0, _top_bid(own_env))
    )
    cand = np.concatenate([np.linspace(lo, hi, bids), learned])

    # One batched clear: every candidate bid against every opponent profile.
    rows = np.repeat(base[None], len(cand), axis=0)  # [C, S, n + m]
    rows[:, :, agent] = cand[:, None]
    rows = rows.reshape(-1, n + m)
    out = _clear(
        mech, fam, rows[:, :n], rows[:, n:] if m else None, env_cfg.n_slots, rng
    )
    shape = (len(cand), samples)
    if seller:
        q = out.seller_alloc[:, agent - n].reshape(shape).mean(axis=1)
        money = out.seller_receipt[:, agent - n].reshape(shape).mean(axis=1)
        return v_grid, cand, money[None, :] - v_grid[:, None] * q[None, :]
    alloc = out.alloc[:, agent].reshape(shape)
    pay = out.pay[:, agent].reshape(shape)
    return (
        v_grid,
        cand,
        _buyer_utility(env_cfg, v_grid, alloc[None], pay[None], roi_target, hi),
    )


def _top_bid(env_cfg) -> float:
    """The highest candidate bid of a buyer: the env's ``max_bid`` where set
    (a war of attrition's bids pass the value), else the top of its values."""
    return env_cfg.value_high if env_cfg.max_bid is None else float(env_cfg.max_bid)


def _market_values(env_cfg, rng: np.random.Generator, samples: int) -> NDArray:
    """``[samples, n]`` buyers' values on the market's range, drawn as the
    uniform source draws them (affiliated when ``common`` is set)."""
    source = UniformSource(
        env_cfg.value_dist,
        env_cfg.value_low,
        env_cfg.value_high,
        common=common_weight(env_cfg),
    )
    return source.draw(rng, samples, env_cfg.n_buyers, 1).theta


def _affiliated_candidates(
    env_cfg,
    strategies: list[BidFn],
    agent: int,
    rng: np.random.Generator,
    samples: int,
    bids: int,
    grid: int,
    roi_target: float | None,
) -> tuple[NDArray, NDArray, NDArray]:
    """:func:`candidate_utilities` of buyer ``agent`` under affiliated values:
    the opponents' values depend on its own, so each grid value gets its own
    ``samples`` opponent profiles, drawn from the exact conditional law.

    Given a unit value ``x = w c + (1 - w) e``, the common ``c`` is uniform on
    ``[max(0, (x - 1 + w) / w), min(1, x / w)]``; the others' values are
    ``w c + (1 - w) e_j`` with fresh ``e_j``. The same uniforms serve every
    grid value (common random numbers; scrambled Sobol points, stratified
    jointly, as the solver draws its profiles). Only the strategy's own bid at value
    ``g`` is priced there, so the own-bid block of the utility is ``NaN`` off
    its diagonal (no reader looks there).
    """
    fam = mechanisms.family(env_cfg.mechanism)
    n = env_cfg.n_buyers
    m = mechanisms.n_sellers(env_cfg.mechanism, n, env_cfg.n_sellers)
    mech, w = _mechanism(env_cfg), common_weight(env_cfg)
    own_env = seat_env(env_cfg, f"buyer_{agent}")
    v_grid = value_grid(own_env, "buyer", grid)
    learned = np.asarray(strategies[agent](v_grid), dtype=np.float64).reshape(-1)
    hi = _top_bid(own_env)
    cand = np.concatenate([np.linspace(0.0, hi, bids), learned])
    x = (v_grid - own_env.value_low) / (own_env.value_high - own_env.value_low)
    c_lo = np.clip((x - (1.0 - w)) / w, 0.0, 1.0)
    c_hi = np.clip(x / w, 0.0, 1.0)
    u = stratified_uniforms(n + 1, samples, rng)  # scrambled Sobol, as the solver
    uc, e = u[:, 0], u[:, 1:]
    if m:  # the sellers' asks do not depend on the buyer's value: once
        costs = draw_values(
            rng, (samples, m), "uniform", env_cfg.cost_low, env_cfg.cost_high
        )
        asks = np.column_stack(
            [
                np.asarray(strategies[n + j](costs[:, j]), dtype=np.float64).reshape(-1)
                for j in range(m)
            ]
        )
    util = np.full((grid, len(cand)), np.nan)
    step = max(1, 2_000_000 // ((bids + 1) * samples))  # grid values per clear
    lo, span = env_cfg.value_low, env_cfg.value_high - env_cfg.value_low
    for g0 in range(0, grid, step):
        g = np.arange(g0, min(g0 + step, grid))
        c = c_lo[g, None] + (c_hi - c_lo)[g, None] * uc[None]  # [G, S]
        val = lo + span * (w * c[..., None] + (1.0 - w) * e[None])  # [G, S, n]
        if env_cfg.value_ranges:
            val = in_own_ranges(env_cfg, val)
        base = np.empty((len(g), samples, n + m))
        for j in range(n):
            fn = strategies[j]
            base[..., j] = np.asarray(fn(val[..., j].ravel())).reshape(len(g), -1)
        if m:
            base[..., n:] = asks[None]
        rows = np.repeat(base[:, None], bids + 1, axis=1)  # [G, C, S, n + m]
        rows[:, :bids, :, agent] = cand[None, :bids, None]
        rows[:, bids, :, agent] = learned[g, None]
        rows = rows.reshape(-1, n + m)
        out = _clear(
            mech, fam, rows[:, :n], rows[:, n:] if m else None, env_cfg.n_slots, rng
        )
        shape = (len(g), bids + 1, samples)
        u = _buyer_utility(
            env_cfg,
            v_grid[g],
            out.alloc[:, agent].reshape(shape),
            out.pay[:, agent].reshape(shape),
            roi_target,
            hi,
        )
        util[g, :bids] = u[:, :bids]
        util[g, bids + g] = u[:, bids]
    return v_grid, cand, util


def _buyer_utility(
    env_cfg,
    values: NDArray[np.float64],
    alloc: NDArray[np.float64],
    pay: NDArray[np.float64],
    roi_target: float | None,
    max_bid: float,
) -> NDArray[np.float64]:
    """``[G, C]`` expected utility at each of ``values [G]`` of the outcomes
    ``alloc``, ``pay [G or 1, C, S]`` (candidate x sample; one row for all
    values when the opponents do not depend on the value): ``v A - P``, the
    mean of ``u(v alloc - pay)`` under CRRA, :func:`roi_constrained` with an
    ROI target."""
    rho = float(env_cfg.utility.rho) if env_cfg.utility.kind == "crra" else 1.0
    if roi_target is not None and rho != 1.0:
        raise UserError(
            f"an ROI target (got {roi_target!r}) needs risk-neutral buyers, got "
            f"utility crra with rho {rho:g}"
        )
    if rho == 1.0:
        won, paid = alloc.mean(axis=-1), pay.mean(axis=-1)
        util = values[:, None] * won - paid
        if roi_target is not None:
            short = (1.0 + roi_target) * paid - values[:, None] * won
            util = roi_constrained(util, short, max_bid)
        return util
    util = np.empty((len(values), alloc.shape[1]))
    one = len(alloc) == 1
    for g in range(0, len(values), 8):  # the mean of u over the sample, a few at a time
        a, p = (alloc, pay) if one else (alloc[g : g + 8], pay[g : g + 8])
        x = values[g : g + 8, None, None] * a - p
        util[g : g + 8] = (np.sign(x) * np.abs(x) ** rho).mean(axis=2)
    return util


def loss_of_utilities(util: NDArray, bids: int, grid: int) -> dict[str, float]:
    """The relative utility loss from ``util [G, bids + G]``: each value's
    utility at the ``bids`` candidates, then at its own bid (column
    ``bids + g`` for value ``g``). The best response may also stay out
    (utility 0), so the loss is >= 0."""
    own = util[np.arange(grid), bids + np.arange(grid)]
    best = np.maximum(util[:, :bids].max(axis=1), np.maximum(own, 0.0))
    u_learned, u_br = float(own.mean()), float(best.mean())
    loss = (u_br - u_learned) / u_br if u_br > 1e-12 else 0.0
    return {"utility_loss": loss, "u_learned": u_learned, "u_best_response": u_br}


def bid_function(
    act: Callable[[NDArray[np.float32]], NDArray], template: NDArray[np.float32]
) -> BidFn:
    """``values -> bids`` of an ``obs -> bids`` strategy at one agent's observation.

    ``template`` is one observation ``[obs_dim]`` of the agent (its first of an
    episode, say); every other entry stays as it is, the value is replaced by
    each value asked for and the agent is marked active.
    """
    template = np.asarray(template, dtype=np.float32)

    def fn(values: NDArray[np.float64]) -> NDArray[np.float64]:
        obs = np.repeat(template[None], len(values), axis=0)
        obs[:, VALUE] = values
        obs[:, ACTIVE] = 1.0
        return np.asarray(act(obs), dtype=np.float64).reshape(-1)

    return fn


def shade_policy_bne_l2(
    shade: Callable[[NDArray[np.float32]], NDArray],
    config: Any,
    template: NDArray[np.float32] | None = None,
    grid: int = 1000,
) -> float:
    """``bne_l2`` (payoff-relevant, :func:`relevant_range`) of a buyer policy
    acting under ``action="shade"``.

    Args:
        shade: ``obs [N, obs_dim] -> s [N]``, the policy's deterministic shading
            factors (clipped into ``[0, 1]`` here, as the env does).
        config: the market's ``EnvConfig``.
        template: the buyer's observation to vary the value in; default
            ``buyer_0``'s first observation of ``vector_env(1)`` reset with seed 0.
        grid: quantile midpoints of the value distribution.
    """
    if template is None:
        from attn_env.vector import vector_env

        obs, _ = vector_env(num_envs=1, config=config).reset(seed=0)
        template = obs[0, 0]

    shade_at = bid_function(shade, template)  # values -> shading factors

    def bids(values: NDArray[np.float64]) -> NDArray[np.float64]:
        s = np.clip(shade_at(values), 0.0, 1.0)
        return shade_to_price(
            s, values, config.value_low, config.value_high, seller=False
        )

    other = bne_strategy(config, "seller")
    return bne_l2(
        bids,
        bne_strategy(config, "buyer"),
        value_grid(config, "buyer", grid),
        relevant_range(config, "buyer", other),
    )
