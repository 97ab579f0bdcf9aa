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
from attn_env.equilibria import Strategy, bne_strategy
from attn_env.errors import UserError
from attn_env.observation import ACTIVE, VALUE
from attn_env.valuations import draw_values

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


def value_grid(env_cfg, role: str, size: int = 1000) -> NDArray[np.float64]:
    """``size`` quantile midpoints of a role's value (or cost) distribution."""
    if role == "seller":
        lo, hi, dist = env_cfg.cost_low, env_cfg.cost_high, "uniform"
    else:
        lo, hi, dist = env_cfg.value_low, env_cfg.value_high, env_cfg.value_dist
    q = (np.arange(size) + 0.5) / size
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
            agent's role.
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
    # Opponents' values and (fixed) bids, drawn once: common random numbers.
    val = np.empty((samples, n + m))
    val[:, :n] = draw_values(
        rng, (samples, n), env_cfg.value_dist, env_cfg.value_low, env_cfg.value_high
    )
    if env_cfg.value_ranges:
        low, high = np.asarray(
            [
                env_cfg.value_ranges.get(
                    f"buyer_{i}", [env_cfg.value_low, env_cfg.value_high]
                )
                for i in range(n)
            ],
            dtype=np.float64,
        ).T
        unit = (val[:, :n] - env_cfg.value_low) / (
            env_cfg.value_high - env_cfg.value_low
        )
        val[:, :n] = low + (high - low) * unit
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
        (env_cfg.cost_low, env_cfg.cost_high) if seller else (0.0, own_env.value_high)
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
    rho = float(env_cfg.utility.rho) if env_cfg.utility.kind == "crra" else 1.0
    if roi_target is not None and rho != 1.0:
        raise UserError(
            f"an ROI target (got {roi_target!r}) needs risk-neutral buyers, got "
            f"utility crra with rho {rho:g}"
        )
    if rho == 1.0:
        won, paid = alloc.mean(axis=1)[None, :], pay.mean(axis=1)[None, :]
        util = v_grid[:, None] * won - paid
        if roi_target is not None:
            short = (1.0 + roi_target) * paid - v_grid[:, None] * won
            util = roi_constrained(util, short, hi)
        return v_grid, cand, util
    util = np.empty((grid, len(cand)))
    for g in range(0, grid, 8):  # the mean of u over the sample, a few at a time
        x = v_grid[g : g + 8, None, None] * alloc[None] - pay[None]
        util[g : g + 8] = (np.sign(x) * np.abs(x) ** rho).mean(axis=2)
    return v_grid, cand, util


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
