"""The attention-compute market: inference requests buy GPU FLOPs at ``d(p) = s(p)``.

Each of ``markets x populations`` markets runs ``periods`` call periods. In a
period, buyer ``i`` holds up to ``jobs_per_buyer`` jobs (inference requests
from :mod:`attn_env.scenarios.compute_model`: tokens of real corpus text,
FLOPs from the MiniLM FLOP model); an empty job slot receives a new job with
probability ``arrival_prob``. A job not served in full stays in the book with
what is left until its deadline passes, then expires. Seller ``j`` (a GPU
provider) brings a fresh capacity each period, in ``cost_steps`` tranches of
rising marginal cost; capacity does not keep.

Every period the market ``schedule_call_market`` (rule ``rule``, ``k``)
clears the schedules the traders report: buyer ``i`` reports each job's value
per GFLOP times ``1 - s_i``, seller ``j`` each tranche's cost times
``1 + s_j``. The shadings ``s`` start at ``shade_init`` and are learned when
``learn`` is set:

**The learner** (best-response hill climbing, myopic). Trader ``i`` is one
agent across the ``markets`` markets of its population. Each period it tries
``s_i - shade_step`` and ``s_i + shade_step`` (clipped to ``[0,
shade_max]``) on that period's books with every other trader's shading
held, and moves to the one with the highest mean utility in the period when
it beats staying. All deviations of all traders are cleared in one batched
call. It does not plan for jobs left over to later periods.

The same learner plays the unit-demand ``call_market`` beside it
(``compare_unit``): each buyer one unit worth a fresh job's value per GFLOP,
each seller one unit at a fresh base cost, so the two markets differ in
multi-unit schedules, not in the learner.

Measures, per market and period (``W*``: the largest gains from trade of the
true book, what truthful schedules reach; ``p_W``: the ``k`` point of the
true book's Walrasian interval):

- efficiency ``W / W*`` (``W``: gains from trade at true values);
- price gap ``(p* - p_W) / p_W``; volume ``/ Q*``; the buyers' and sellers'
  shares of ``W*``; the budget surplus (payments minus receipts);
- served and expired value: of the value of jobs that arrived.

``simulate`` reports the mean of the last ``report_last`` periods with its
standard error over populations (independent runs; each population's
number is its mean over markets and periods), and the per-period curves.
"""

from __future__ import annotations

import dataclasses
import sys
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from attn_env import mechanisms
from attn_env.config import from_dict
from attn_env.errors import ConfigError
from attn_env.mechanisms.schedules import RULES, ScheduleCallMarket
from attn_env.scenarios.compute_model import (
    Jobs,
    RequestPool,
    draw_jobs,
    draw_requests,
    draw_sellers,
    flop_model,
)
from attn_env.scenarios.train_config import ScenarioTrainConfig, check_train_config

__all__ = ["CONFIG", "ComputeMarketConfig", "load", "simulate"]


@dataclass(frozen=True)
class ComputeMarketConfig:
    """The compute market of ``configs/scenarios/compute_market.yaml``."""

    scenario: str = "compute_market"
    "Scenario name (the YAML file's top-level key)."
    seed: int = 0
    "Seed of the one numpy Generator of the run."
    populations: int = 8
    "Independent populations of learners (standard errors are over these)."
    markets: int = 100
    "Markets per population and period (a trader is one agent across them)."
    periods: int = 150
    "Call periods."
    report_last: int = 50
    "The table reports the mean of the last this many periods."
    n_buyers: int = 8
    "Buyers (clients sending inference jobs) per market."
    n_sellers: int = 6
    "Sellers (GPU providers) per market."
    jobs_per_buyer: int = 4
    "Job slots of a buyer: the steps of its demand schedule."
    cost_steps: int = 3
    "Tranches of a seller's capacity: the steps of its supply schedule."
    docs_min: int = 2
    "Fewest passages read with the query in one request."
    docs_max: int = 24
    "Most passages read with the query in one request."
    batch_max: int = 16
    "Most requests in one job."
    arrival_prob: float = 0.7
    "Chance that an empty job slot receives a new job in a period."
    deadline_max: int = 3
    "A job may wait up to this many periods (uniform in 1..deadline_max)."
    value_median: float = 1.0
    "Median value of one request (value units)."
    value_sigma: float = 0.5
    "Log-sd of the value of one request."
    cost_median: float = 0.05
    "Median base cost of one GFLOP."
    cost_sigma: float = 0.3
    "Log-sd of a seller's base cost."
    cost_slope: float = 1.0
    "The top tranche costs (1 + cost_slope) x the base."
    capacity_ratio: float = 0.8
    "Total capacity / mean demand of a fully booked period."
    rule: str = "uniform"
    "schedule_call_market rule: uniform, k_double or trade_reduction."
    k: float = 0.5
    "k of the rule (and of the unit call market)."
    learn: bool = True
    "Traders learn their shading (else they keep shade_init)."
    shade_init: float = 0.2
    "Initial shading of every trader."
    shade_step: float = 0.02
    "The learner's step."
    shade_max: float = 0.9
    "Largest shading."
    compare_unit: bool = True
    "Also run the unit-demand call_market with the same learner."
    pool_size: int = 65_536
    "Requests drawn from the corpus per run; jobs resample them."
    train: ScenarioTrainConfig = field(default_factory=ScenarioTrainConfig)
    "PPO learners of ``attn-market train`` (:mod:`attn_env.scenarios.compute_env`)."


CONFIG = ComputeMarketConfig
"The scenario's config class (read with ``attn_env.config.from_dict``)."


def load(data: Any, where: str = "compute_market") -> ComputeMarketConfig:
    """A checked config from a mapping (unknown keys refused by name)."""
    return validate(from_dict(CONFIG, data, where), where)


def from_data(data: Any, where: str = "compute_market") -> ComputeMarketConfig:
    """The config of a YAML mapping, checked (what the runner reads files with)."""
    return load(data, where)


def validate(
    c: ComputeMarketConfig, where: str = "compute_market"
) -> ComputeMarketConfig:
    """Refuse out-of-range fields, naming the field and what it must be."""

    def need(ok: bool, key: str, what: str) -> None:
        if not ok:
            raise ConfigError(f"{where}.{key} must be {what}, got {getattr(c, key)!r}")

    need(c.scenario == "compute_market", "scenario", "'compute_market'")
    need(c.seed >= 0, "seed", "an int >= 0")
    for key, top in (
        ("populations", 10_000),
        ("markets", 1_000_000),
        ("periods", 100_000),
        ("n_buyers", 1_000),
        ("n_sellers", 1_000),
        ("jobs_per_buyer", 100),
        ("cost_steps", 100),
        ("batch_max", 1_000_000),
        ("deadline_max", 1_000),
        ("pool_size", 10_000_000),
    ):
        need(1 <= getattr(c, key) <= top, key, f"an int in [1, {top}]")
    need(1 <= c.report_last <= c.periods, "report_last", "in [1, periods]")
    need(1 <= c.docs_min <= c.docs_max, "docs_min", "in [1, docs_max]")
    need(c.docs_max <= 100, "docs_max", "<= 100")
    need(0.0 < c.arrival_prob <= 1.0, "arrival_prob", "in (0, 1]")
    for key in ("value_median", "cost_median", "capacity_ratio"):
        need(1e-6 <= getattr(c, key) <= 1e6, key, "in [1e-6, 1e6]")
    for key in ("value_sigma", "cost_sigma"):
        need(0.0 <= getattr(c, key) <= 3.0, key, "in [0, 3]")
    need(0.0 <= c.cost_slope <= 100.0, "cost_slope", "in [0, 100]")
    need(c.rule in RULES, "rule", f"one of {', '.join(RULES)}")
    need(0.0 <= c.k <= 1.0, "k", "in [0, 1]")
    need(0.0 <= c.shade_max < 1.0, "shade_max", "in [0, 1)")
    need(0.0 <= c.shade_init <= c.shade_max, "shade_init", "in [0, shade_max]")
    need(0.0 < c.shade_step <= 0.5, "shade_step", "in (0, 0.5]")
    check_train_config(c.train, where)
    return c


# --- one period: reports, the batched clear of every deviation, utilities --------


def _variants(s: NDArray[np.float64], step: float, top: float) -> NDArray[np.float64]:
    """Shadings ``[P, V, N]``: ``V = 1 + 2N`` rows, the current one, then trader
    ``t`` moved down (row ``1 + 2t``) and up (row ``2 + 2t``)."""
    n = s.shape[1]
    out = np.repeat(s[:, None, :], 1 + 2 * n, axis=1)
    t = np.arange(n)
    out[:, 1 + 2 * t, t] = np.clip(s - step, 0.0, top)
    out[:, 2 + 2 * t, t] = np.clip(s + step, 0.0, top)
    return out


def _learn(
    s: NDArray[np.float64], util: NDArray[np.float64], step: float, top: float
) -> NDArray[np.float64]:
    """Move each trader to its best of (stay, down, up) by mean utility ``util
    [P, V, N]`` (rows as in :func:`_variants`); staying wins ties."""
    n = s.shape[1]
    t = np.arange(n)
    stay = util[:, 0, :]
    down = util[:, 1 + 2 * t, t]
    up = util[:, 2 + 2 * t, t]
    tol = 1e-12 * np.maximum(np.abs(stay), 1.0)
    new = s.copy()
    go_down = (down > stay + tol) & (down >= up)
    go_up = (up > stay + tol) & ~go_down
    new[go_down] = np.clip(s - step, 0.0, top)[go_down]
    new[go_up] = np.clip(s + step, 0.0, top)[go_up]
    return new


def clear_shaded(
    market: ScheduleCallMarket,
    shades: NDArray[np.float64],
    bp: NDArray[np.float64],
    bq: NDArray[np.float64],
    ap: NDArray[np.float64],
    aq: NDArray[np.float64],
) -> tuple[Any, NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Clear the true books ``[P, B, ...]`` reported with ``V`` shadings each.

    Args:
        shades: ``float64 [P, V, n + m]`` shadings, buyers first: buyer ``i``
            reports ``bp (1 - s_i)``, seller ``j`` reports ``ap (1 + s_j)``.
        bp, bq: ``float64 [P, B, n, S]`` true demand steps (value per GFLOP, GFLOP).
        ap, aq: ``float64 [P, B, m, T]`` true supply steps (cost per GFLOP, GFLOP).

    Returns:
        ``(outcome of the P V B markets, buyer utility [P, V, B, n], seller
        utility [P, V, B, m], bid_fill [P, V, B, n, S])`` at true values.
    """
    n_pop, n_mkt, n, n_s = bp.shape
    m, n_t = ap.shape[2:]
    n_var = shades.shape[1]
    sb = shades[:, :, None, :n, None]  # [P, V, 1, n, 1]
    ss = shades[:, :, None, n:, None]
    rep_b = bp[:, None] * (1.0 - sb)
    rep_a = ap[:, None] * (1.0 + ss)
    size = n_pop * n_var * n_mkt
    out = market.clear(
        rep_b.reshape(size, n, n_s),
        np.broadcast_to(bq[:, None], rep_b.shape).reshape(size, n, n_s),
        rep_a.reshape(size, m, n_t),
        np.broadcast_to(aq[:, None], rep_a.shape).reshape(size, m, n_t),
    )
    shape = (n_pop, n_var, n_mkt)
    bid_fill = out.bid_fill.reshape(*shape, n, n_s)
    ask_fill = out.ask_fill.reshape(*shape, m, n_t)
    buyer_value = (bid_fill * bp[:, None]).sum(-1)
    seller_cost = (ask_fill * ap[:, None]).sum(-1)
    u_b = buyer_value - out.buyer_pay.reshape(*shape, n)
    u_s = out.seller_receipt.reshape(*shape, m) - seller_cost
    return out, u_b, u_s, bid_fill


def _schedule_period(
    market: ScheduleCallMarket,
    shade: NDArray[np.float64],
    bp: NDArray[np.float64],
    bq: NDArray[np.float64],
    ap: NDArray[np.float64],
    aq: NDArray[np.float64],
    c: ComputeMarketConfig,
) -> tuple[dict[str, NDArray[np.float64]], NDArray[np.float64], NDArray[np.float64]]:
    """Clear one period of ``P x B`` markets at the current shading and, when
    learning, at every trader's two deviations.

    Returns:
        ``(measures, bid_fill [P, B, n, S], new shading [P, n + m])``.
    """
    shades = _variants(shade, c.shade_step, c.shade_max) if c.learn else shade[:, None]
    out, u_b, u_s, bid_fill = clear_shaded(market, shades, bp, bq, ap, aq)
    new = shade
    if c.learn:
        util = np.concatenate([u_b, u_s], axis=-1).mean(axis=2)  # [P, V, n + m]
        new = _learn(shade, util, c.shade_step, c.shade_max)
    truthful = not c.learn and not shade.any() and market.rule == "uniform"
    measures = period_measures(out, u_b, u_s, bp, bq, ap, aq, c.k, truthful)
    return measures, bid_fill[:, 0], new


def period_measures(
    out: Any,
    u_b: NDArray[np.float64],
    u_s: NDArray[np.float64],
    bp: NDArray[np.float64],
    bq: NDArray[np.float64],
    ap: NDArray[np.float64],
    aq: NDArray[np.float64],
    k: float,
    truthful: bool = False,
) -> dict[str, NDArray[np.float64]]:
    """The measures ``[P, B]`` of the first shading of :func:`clear_shaded`,
    against the efficient clear of the true books (``truthful``: ``out`` is
    that clear already, truthful reports at a uniform price)."""
    n_pop, n_mkt, n, n_s = bp.shape
    m, n_t = ap.shape[2:]
    shape = (n_pop, u_b.shape[1], n_mkt)
    if truthful:
        truth = out  # truthful reports at a uniform price: already efficient
    else:
        truth = ScheduleCallMarket(k=k).clear(  # efficient: W* and p_W
            bp.reshape(-1, n, n_s),
            bq.reshape(-1, n, n_s),
            ap.reshape(-1, m, n_t),
            aq.reshape(-1, m, n_t),
        )
    best = truth.welfare(bp.reshape(-1, n, n_s), ap.reshape(-1, m, n_t)).reshape(
        n_pop, n_mkt
    )
    p_w = (k * truth.walrasian_high + (1 - k) * truth.walrasian_low).reshape(
        n_pop, n_mkt
    )
    q_star = truth.efficient_volume.reshape(n_pop, n_mkt)
    price = out.clearing_price.reshape(shape)[:, 0]
    return _measures(
        welfare=u_b[:, 0].sum(-1) + u_s[:, 0].sum(-1),
        best=best,
        buyer=u_b[:, 0].sum(-1),
        seller=u_s[:, 0].sum(-1),
        budget=out.budget_surplus.reshape(shape)[:, 0],
        price=price,
        p_w=p_w,
        volume=out.volume.reshape(shape)[:, 0],
        q_star=q_star,
        capacity=aq.sum(axis=(-2, -1)),
    )


def _measures(
    *,
    welfare: NDArray[np.float64],
    best: NDArray[np.float64],
    buyer: NDArray[np.float64],
    seller: NDArray[np.float64],
    budget: NDArray[np.float64],
    price: NDArray[np.float64],
    p_w: NDArray[np.float64],
    volume: NDArray[np.float64],
    q_star: NDArray[np.float64],
    capacity: NDArray[np.float64],
) -> dict[str, NDArray[np.float64]]:
    """Per-market measures ``[P, B]``; ``nan`` where a ratio is undefined
    (no gains from trade, no trade)."""
    ok = best > 0
    ratio = lambda x: np.where(ok, x / np.where(ok, best, 1.0), np.nan)  # noqa: E731
    both = ok & np.isfinite(price) & (p_w > 0)
    return {
        "efficiency": ratio(welfare),
        "buyer_share": ratio(buyer),
        "seller_share": ratio(seller),
        "budget_share": ratio(budget),
        "price_gap": np.where(both, (price - p_w) / np.where(both, p_w, 1.0), np.nan),
        "abs_price_gap": np.where(
            both, np.abs(price - p_w) / np.where(both, p_w, 1.0), np.nan
        ),
        "volume_ratio": np.where(
            q_star > 0, volume / np.where(q_star > 0, q_star, 1), np.nan
        ),
        "utilisation": volume / capacity,
        "budget_surplus": budget,
    }


def _unit_period(
    shade: NDArray[np.float64],
    values: NDArray[np.float64],
    costs: NDArray[np.float64],
    c: ComputeMarketConfig,
    rng: np.random.Generator,
) -> tuple[dict[str, NDArray[np.float64]], NDArray[np.float64]]:
    """One period of the unit-demand ``call_market`` with the same learner."""
    n_pop, n_mkt, n = values.shape
    m = costs.shape[2]
    market = mechanisms.make("call_market", k=c.k)
    shades = _variants(shade, c.shade_step, c.shade_max) if c.learn else shade[:, None]
    n_var = shades.shape[1]
    bids = values[:, None] * (1.0 - shades[:, :, None, :n])
    asks = costs[:, None] * (1.0 + shades[:, :, None, n:])
    out = market.clear(bids.reshape(-1, n), asks.reshape(-1, m), rng=rng)
    shape = (n_pop, n_var, n_mkt)
    alloc = out.alloc.reshape(*shape, n)
    u_b = alloc * values[:, None] - out.pay.reshape(*shape, n)
    sold = out.seller_alloc.reshape(*shape, m)
    u_s = out.seller_receipt.reshape(*shape, m) - sold * costs[:, None]
    new = shade
    if c.learn:
        util = np.concatenate([u_b, u_s], axis=-1).mean(axis=2)
        new = _learn(shade, util, c.shade_step, c.shade_max)
    low, high = mechanisms.walrasian_price(values.reshape(-1, n), costs.reshape(-1, m))
    p_w = (c.k * high + (1 - c.k) * low).reshape(n_pop, n_mkt)
    v_srt = -np.sort(-values, axis=-1)
    c_srt = np.sort(costs, axis=-1)
    depth = min(n, m)
    gain = np.maximum(v_srt[..., :depth] - c_srt[..., :depth], 0.0)
    best = gain.sum(-1)  # the efficient trades: ranks with b_k >= s_k
    q_star = (gain > 0).sum(-1).astype(np.float64)
    measures = _measures(
        welfare=u_b[:, 0].sum(-1) + u_s[:, 0].sum(-1),
        best=best,
        buyer=u_b[:, 0].sum(-1),
        seller=u_s[:, 0].sum(-1),
        budget=out.budget_surplus.reshape(shape)[:, 0],
        price=out.clearing_price.reshape(shape)[:, 0],
        p_w=p_w,
        volume=alloc[:, 0].sum(-1),
        q_star=q_star,
        capacity=np.full((n_pop, n_mkt), float(m)),
    )
    return measures, new


# --- runs ------------------------------------------------------------------------


def _job_kwargs(c: ComputeMarketConfig) -> dict[str, Any]:
    return {
        "batch_max": c.batch_max,
        "value_median": c.value_median,
        "value_sigma": c.value_sigma,
        "deadline_max": c.deadline_max,
    }


def _seller_kwargs(c: ComputeMarketConfig, mean_demand: float) -> dict[str, Any]:
    return {
        "mean_demand": mean_demand,
        "cost_median": c.cost_median,
        "cost_sigma": c.cost_sigma,
        "cost_slope": c.cost_slope,
        "capacity_ratio": c.capacity_ratio,
    }


def arrive(
    rng: np.random.Generator,
    left: NDArray[np.float64],
    price: NDArray[np.float64],
    wait: NDArray[np.int64],
    pool: RequestPool,
    c: ComputeMarketConfig,
) -> tuple[
    NDArray[np.float64], NDArray[np.float64], NDArray[np.int64], NDArray[np.float64]
]:
    """New jobs in the empty slots of the books ``[P, B, n, S]``.

    Args:
        left: GFLOP still to serve per job slot (0: empty).
        price: true value per GFLOP of each slot's job.
        wait: periods each job may still wait.

    Returns:
        ``(left, price, wait, value of the jobs that arrived [P])``.
    """
    new = (left <= 0) & (rng.random(left.shape) < c.arrival_prob)
    jobs: Jobs = draw_jobs(rng, left.shape, pool, **_job_kwargs(c))
    left = np.where(new, jobs.gflop, left)
    price = np.where(new, jobs.price, price)
    wait = np.where(new, jobs.deadline, wait)
    return left, price, wait, (new * jobs.value).sum(axis=(1, 2, 3))


def draw_supply(
    rng: np.random.Generator,
    shape: tuple[int, int, int],
    c: ComputeMarketConfig,
    mean_demand: float,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The period's supply schedules ``[P, B, m, cost_steps]`` (fresh capacity)."""
    return draw_sellers(rng, shape, c.cost_steps, **_seller_kwargs(c, mean_demand))


def settle(
    left: NDArray[np.float64],
    price: NDArray[np.float64],
    wait: NDArray[np.int64],
    fill: NDArray[np.float64],
) -> tuple[
    NDArray[np.float64], NDArray[np.int64], NDArray[np.float64], NDArray[np.float64]
]:
    """Serve ``fill`` GFLOP of each job and age the book by one period.

    Returns:
        ``(left, wait, value served [P], value expired [P])``.
    """
    served = (fill * price).sum(axis=(1, 2, 3))
    # a job served in full (up to rounding of the pro rata share) is done
    rest = left - fill
    left = np.where(rest > 1e-9 * left, rest, 0.0)
    wait = wait - 1
    gone = (wait <= 0) & (left > 0)
    expired = np.where(gone, left * price, 0.0).sum(axis=(1, 2, 3))
    np.copyto(left, 0.0, where=gone)
    return left, wait, served, expired


def new_world(
    c: ComputeMarketConfig, rng: np.random.Generator
) -> tuple[RequestPool, float, Jobs]:
    """The run's request pool, the mean GFLOP demanded per market and period,
    and the sample of jobs that measured it (drawn in this order from ``rng``)."""
    pool = draw_requests(rng, c.pool_size, docs_min=c.docs_min, docs_max=c.docs_max)
    sample = draw_jobs(rng, (4096,), pool, **_job_kwargs(c))
    mean_demand = float(sample.gflop.mean()) * c.n_buyers * c.jobs_per_buyer
    return pool, mean_demand, sample


def _run_schedule(
    c: ComputeMarketConfig,
    rng: np.random.Generator,
    world: tuple[RequestPool, float],
    label: str,
    progress: bool,
) -> tuple[
    dict[str, NDArray[np.float64]],
    dict[str, NDArray[np.float64]],
    NDArray[np.float64],
]:
    """Periods of the schedule market with carried-over jobs.

    Returns:
        ``(measures [T, P, B] per key, value totals, final shading [P, n + m])``.
    """
    P, B, n, S, m = c.populations, c.markets, c.n_buyers, c.jobs_per_buyer, c.n_sellers
    pool, mean_demand = world
    market = ScheduleCallMarket(rule=c.rule, k=c.k)
    shade = np.full((P, n + m), c.shade_init)
    left = np.zeros((P, B, n, S))  # GFLOP still to serve
    price = np.zeros((P, B, n, S))  # true value per GFLOP
    wait = np.zeros((P, B, n, S), dtype=np.int64)  # periods left
    arrived, served, expired = np.zeros(P), np.zeros(P), np.zeros(P)
    history: dict[str, list[NDArray[np.float64]]] = {}
    for t in range(c.periods):
        left, price, wait, got = arrive(rng, left, price, wait, pool, c)
        arrived += got
        ap, aq = draw_supply(rng, (P, B, m), c, mean_demand)
        measures, fill, shade = _schedule_period(market, shade, price, left, ap, aq, c)
        left, wait, done, lost = settle(left, price, wait, fill)
        served += done
        expired += lost
        for key, val in measures.items():
            history.setdefault(key, []).append(val)
        _progress(progress, label, t, c.periods)
    some = arrived > 0
    safe = np.where(some, arrived, 1.0)
    totals = {  # over the whole run, per population [P]
        "served_value_share": np.where(some, served / safe, np.nan),
        "expired_value_share": np.where(some, expired / safe, np.nan),
    }
    return {k: np.stack(v) for k, v in history.items()}, totals, shade


def _run_unit(
    c: ComputeMarketConfig,
    rng: np.random.Generator,
    world: tuple[RequestPool, float],
    label: str,
    progress: bool,
) -> tuple[dict[str, NDArray[np.float64]], NDArray[np.float64]]:
    """Periods of the unit-demand call market (fresh units each period)."""
    P, B, n, m = c.populations, c.markets, c.n_buyers, c.n_sellers
    pool, mean_demand = world
    shade = np.full((P, n + m), c.shade_init)
    history: dict[str, list[NDArray[np.float64]]] = {}
    for t in range(c.periods):
        values = draw_jobs(rng, (P, B, n), pool, **_job_kwargs(c)).price
        costs, _ = draw_sellers(rng, (P, B, m), 1, **_seller_kwargs(c, mean_demand))
        measures, shade = _unit_period(shade, values, costs[..., 0], c, rng)
        for key, val in measures.items():
            history.setdefault(key, []).append(val)
        _progress(progress, label, t, c.periods)
    return {k: np.stack(v) for k, v in history.items()}, shade


def _progress(on: bool, label: str, t: int, total: int) -> None:
    if on and (t + 1) % max(total // 10, 1) == 0:
        print(f"compute_market {label}: period {t + 1}/{total}", file=sys.stderr)


def _summary(
    hist: dict[str, NDArray[np.float64]], last: int
) -> dict[str, dict[str, float | None]]:
    """Mean of the last ``last`` periods and its standard error over populations."""
    with warnings.catch_warnings():  # a measure undefined in every market: nan
        warnings.simplefilter("ignore", RuntimeWarning)
        return {
            key: _mean_se(np.nanmean(val[-last:], axis=(0, 2)))  # [P]
            for key, val in hist.items()
        }


def _mean_se(per_pop: NDArray[np.float64]) -> dict[str, float | None]:
    """Mean over populations and its standard error (``None``: undefined)."""
    per_pop = per_pop[np.isfinite(per_pop)]
    if per_pop.size == 0:
        return {"mean": None, "se": None}
    if per_pop.size == 1:
        return {"mean": float(per_pop[0]), "se": None}
    se = np.std(per_pop, ddof=1) / np.sqrt(per_pop.size)
    return {"mean": float(per_pop.mean()), "se": float(se)}


def _curve(hist: dict[str, NDArray[np.float64]], key: str) -> list[float | None]:
    """Mean per period over populations and markets (``None`` where undefined)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        curve = np.nanmean(hist[key], axis=(1, 2))
    return [float(x) if np.isfinite(x) else None for x in curve]


def simulate(
    config: ComputeMarketConfig | dict[str, Any], progress: bool = False
) -> dict[str, Any]:
    """Run the compute market (module docstring) and return a JSON-able result.

    Args:
        config: a :data:`CONFIG` instance, or a mapping read with :func:`load`.
        progress: print a line per tenth of each run to stderr.

    Returns:
        ``{"scenario", "config", "flop_model", "runs": {name: {measure: {mean,
        se}}}, "curves": {name: {measure: [per period]}}, "shading": ...}``;
        runs are ``schedule_truthful``, ``schedule_learning`` (when ``learn``)
        and the same two for ``unit`` (when ``compare_unit``).
    """
    c = load(config) if isinstance(config, dict) else validate(config)
    rng = np.random.default_rng(c.seed)
    fm = flop_model()
    pool, mean_demand, sample = new_world(c, rng)
    world = (pool, mean_demand)
    config = dataclasses.asdict(c)
    del config["train"]  # simulate trains no policy (attn-market train does)
    result: dict[str, Any] = {
        "scenario": "compute_market",
        "config": config,
        "flop_model": {
            "formula": fm.formula(),
            "mean_tokens": float(pool.tokens.mean()),
            "max_tokens": float(pool.tokens.max()),
            "mean_gflop_per_request": float(np.mean(fm.flops(sample.tokens)) / 1e9),
            "attention_share": float(
                np.mean(fm.attention_flops(sample.tokens) / fm.flops(sample.tokens))
            ),
            "quadratic_share": float(
                np.mean(
                    4
                    * sample.tokens**2
                    * fm.d_model
                    * fm.n_layers
                    / fm.flops(sample.tokens)
                )
            ),
            "mean_demand_gflop": mean_demand,
        },
        "runs": {},
        "curves": {},
        "shading": {},
    }
    runs = [("truthful", dataclasses.replace(c, learn=False, shade_init=0.0))]
    if c.learn:
        runs.append(("learning", c))
    keys = ("efficiency", "abs_price_gap", "price_gap", "volume_ratio")
    for tag, cfg in runs:
        hist, totals, shade = _run_schedule(
            cfg, rng, world, f"schedule_{tag}", progress
        )
        name = f"schedule_{tag}"
        result["runs"][name] = {
            **_summary(hist, c.report_last),
            **{k: _mean_se(v) for k, v in totals.items()},
        }
        result["curves"][name] = {k: _curve(hist, k) for k in keys}
        result["shading"][name] = _shading(shade, c.n_buyers)
        if c.compare_unit:
            uhist, ushade = _run_unit(cfg, rng, world, f"unit_{tag}", progress)
            result["runs"][f"unit_{tag}"] = _summary(uhist, c.report_last)
            result["curves"][f"unit_{tag}"] = {k: _curve(uhist, k) for k in keys}
            result["shading"][f"unit_{tag}"] = _shading(ushade, c.n_buyers)
    return result


def _shading(shade: NDArray[np.float64], n: int) -> dict[str, float]:
    """Mean final shading of buyers and of sellers."""
    return {"buyers": float(shade[:, :n].mean()), "sellers": float(shade[:, n:].mean())}


def plot(result: dict[str, Any], path: str) -> None:
    """Price convergence and efficiency per period of a :func:`simulate` result.

    Left: mean ``|p* - p_W| / p_W`` per period; right: mean efficiency
    ``W / W*``; one line per run (schedule and unit market, learning and
    truthful).
    """
    from attn_env.figures import new_figure, save_png

    fig, (left, right) = new_figure(1, 2, figsize=(10.0, 3.8))
    styles = {
        "schedule_learning": ("tab:blue", "-"),
        "unit_learning": ("tab:orange", "-"),
        "schedule_truthful": ("tab:blue", ":"),
        "unit_truthful": ("tab:orange", ":"),
    }
    for name, curves in result["curves"].items():
        color, line = styles.get(name, ("gray", "--"))
        label = name.replace("_", " ")
        for ax, key in ((left, "abs_price_gap"), (right, "efficiency")):
            y = np.array([np.nan if v is None else v for v in curves[key]])
            ax.plot(np.arange(1, y.size + 1), y, color=color, ls=line, label=label)
    cfg = result["config"]
    left.set(
        xlabel="period",
        ylabel="mean |p* - p_W| / p_W",
        title=f"price vs the Walrasian price ({cfg['rule']}, k = {cfg['k']})",
    )
    right.set(xlabel="period", ylabel="efficiency W / W*", title="efficiency")
    right.legend(loc="lower right", fontsize=8)
    save_png(fig, path)
