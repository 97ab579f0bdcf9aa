"""The attention-compute market as a PettingZoo parallel env: traders learn to shade.

==================  =============================================================
agents              ``buyer_0 .. buyer_{n-1}`` (inference clients), then
                    ``seller_0 .. seller_{m-1}`` (GPU providers)
action              ``Box(-20, 20, (1,))``: the trader's shading this period,
                    ``s = shade_max / (1 + exp(-a))``; a buyer reports every
                    job at ``value (1 - s)`` per GFLOP, a seller every
                    tranche at ``cost (1 + s)`` (a fresh Gaussian policy,
                    mean 0, explores around ``shade_max / 2``; truthful is
                    approached as ``a`` falls, with a gradient all the way)
observation         ``Box(-inf, inf, (8,))``, :data:`OBS_FIELDS`: role, its own
                    book's mean price (buyer: value, seller: cost per GFLOP),
                    last period's price, its size, its fill rate, its last
                    shading, time
reward              the trader's mean utility over the period's ``markets``
                    markets (value of GFLOP served minus payment; receipt minus
                    cost), in units of :meth:`ComputeBooks.reward_scale`
episode             ``periods`` call periods; every agent ends together
==================  =============================================================

``ComputeMarketEnv(config, unit=True)`` is the unit-demand comparison (one
unit per trader and period, :class:`ComputeBooks`).

One env step is one period of ``markets`` markets of one population, cleared by
``schedule_call_market`` (``rule``, ``k``) with the scenario's own batched
code (:mod:`attn_env.scenarios.compute_market`: jobs arrive, wait and expire
as there). A trader is one agent across the markets, as in the scenario's
hill-climbing learner. :class:`ComputeBooks` is the same market for ``P``
populations at once, which evaluation, the hill climber and the audit step
directly.

Every ``reset`` draws a new request pool and new jobs from the env's
generator; ``reset(seed=s)`` reseeds it. The random numbers a seed draws do
not depend on the actions (every draw has a fixed shape): two policies played
on one seed meet the same capacities and the same candidate jobs (which of
them arrive depends on which job slots the traders emptied). An action outside
``[-20, 20]``, NaN, or of the wrong shape is refused with a message
naming the agent.

Version history: ``compute_market_v0``, the first.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from gymnasium.spaces import Box
from gymnasium.utils import seeding
from numpy.typing import NDArray
from pettingzoo import ParallelEnv

from attn_env.checks import check_agent_actions
from attn_env.errors import UserError
from attn_env.mechanisms.schedules import ScheduleCallMarket
from attn_env.scenarios.compute_market import (
    ComputeMarketConfig,
    _job_kwargs,
    _seller_kwargs,
    arrive,
    clear_shaded,
    draw_supply,
    new_world,
    period_measures,
    settle,
    validate,
)
from attn_env.scenarios.compute_model import draw_jobs, draw_sellers

__all__ = [
    "ACTION_MAX",
    "OBS_FIELDS",
    "ComputeBooks",
    "ComputeMarketEnv",
    "check_actions",
    "shading_of",
]

OBS_FIELDS = (
    "is_buyer",
    "is_seller",
    "log_own_price",  # log(mean true step price / cost_median), quantity-weighted
    "log_last_price",  # log(last mean clearing price / cost_median)
    "size",  # own quantity / mean quantity of a trader on its side
    "last_fill",  # share of own quantity traded last period
    "last_shade",  # own shading last period
    "time",  # period / periods
)
"The observation, one float per name."

ACTION_MAX = 20.0
"Actions lie in ``[-ACTION_MAX, ACTION_MAX]``: shadings from 2e-9 x shade_max up."


def check_actions(a: Any, shape: tuple[int, ...], names: list[str]):
    """Actions ``a`` as ``float64`` of ``shape`` if every entry is in ``[-1, 1]``,
    else one line naming the first bad agent (agents on the last axis)."""
    a = np.asarray(a, dtype=np.float64)
    if a.shape != shape:
        raise UserError(f"expected actions of shape {shape}, got {a.shape}")
    return check_agent_actions(
        a,
        names,
        -ACTION_MAX,
        ACTION_MAX,
        f"in [-{ACTION_MAX:g}, {ACTION_MAX:g}] (shading shade_max / (1 + exp(-a)))",
    )


def shading_of(a: NDArray[np.float64], shade_max: float) -> NDArray[np.float64]:
    """The shading of actions ``a``: ``shade_max / (1 + exp(-a))``, a logistic
    squash with no flat part inside the action range (a range clipped at the
    truthful end left PPO no gradient once its mean action passed the
    clip)."""
    return shade_max / (1.0 + np.exp(-a))


@dataclass
class Period:
    """What one period of :meth:`ComputeBooks.step` produced."""

    utility: NDArray[np.float64]
    "``[P, N]`` each trader's mean utility over the markets (value units)"
    measures: dict[str, NDArray[np.float64]]
    "``[P, B]`` per market: efficiency, price gap, ... (compute_market._measures)"
    outcome: Any
    "the ScheduleOutcome of the ``P B`` markets"
    market_utility: NDArray[np.float64]
    "``[P, B, N]`` each trader's utility in each market"
    overfilled: int
    "steps that traded more than their quantity (an invariant: 0)"
    over_capacity: int
    "markets whose volume exceeds the capacity offered (an invariant: 0)"


class ComputeBooks:
    """``P`` populations of ``markets`` compute markets stepped period by period.

    State per population, market, buyer and job slot: GFLOP left, true value
    per GFLOP, periods left (:func:`compute_market.arrive` /
    :func:`compute_market.settle`); and the period's fresh supply schedules.

    ``unit=True`` is the scenario's unit-demand comparison: every period each
    buyer has one unit worth a fresh job's value per GFLOP and each seller one
    unit at a fresh base cost (nothing carries over), as ``simulate``'s
    ``unit_*`` runs; cleared by the same market on one-step schedules, which
    is ``call_market`` (``k_double``, ``mcafee`` for the other rules) up to
    ties at the margin.
    """

    def __init__(
        self, config: ComputeMarketConfig, populations: int = 1, unit: bool = False
    ) -> None:
        self.c = validate(config)
        self.unit = bool(unit)
        self.P = int(populations)
        self.n, self.m = self.c.n_buyers, self.c.n_sellers
        self.N = self.n + self.m
        self.market = ScheduleCallMarket(rule=self.c.rule, k=self.c.k)
        self.t = 0

    def reward_scale(self) -> float:
        """Mean value of one job, ``E[batch] E[value per request]``: rewards are
        utilities in these units (unit demand: ``cost_median``, the order of a
        one-GFLOP unit's gains from trade)."""
        c = self.c
        if self.unit:
            return c.cost_median
        return 0.5 * (c.batch_max + 1) * c.value_median * np.exp(c.value_sigma**2 / 2)

    def reset(self, rng: np.random.Generator) -> None:
        """A new world (request pool) and the first period's books from ``rng``."""
        c, P = self.c, self.P
        self.rng = rng
        self.pool, self.mean_demand, _ = new_world(c, rng)
        shape = (P, c.markets, self.n, c.jobs_per_buyer)
        self.left = np.zeros(shape)
        self.price = np.zeros(shape)
        self.wait = np.zeros(shape, dtype=np.int64)
        self.last_price = np.full(P, np.nan)
        self.last_fill = np.zeros((P, self.N))
        self.last_shade = np.zeros((P, self.N))
        self.served = np.zeros(P)
        self.arrived = np.zeros(P)
        self.expired = np.zeros(P)
        self.t = 0
        self._draw()

    def _draw(self) -> None:
        if self.unit:
            shape = (self.P, self.c.markets)
            jobs = draw_jobs(
                self.rng, (*shape, self.n), self.pool, **_job_kwargs(self.c)
            )
            costs, _ = draw_sellers(
                self.rng,
                (*shape, self.m),
                1,
                **_seller_kwargs(self.c, self.mean_demand),
            )
            self.price, self.left = jobs.price[..., None], np.ones((*shape, self.n, 1))
            self.ap, self.aq = costs, np.ones_like(costs)
            return
        self.left, self.price, self.wait, got = arrive(
            self.rng, self.left, self.price, self.wait, self.pool, self.c
        )
        self.arrived += got
        self.ap, self.aq = draw_supply(
            self.rng, (self.P, self.c.markets, self.m), self.c, self.mean_demand
        )

    @property
    def done(self) -> bool:
        """Whether ``periods`` periods have been played."""
        return self.t >= self.c.periods

    def observe(self) -> NDArray[np.float32]:
        """Observations ``float32 [P, N, 8]`` (:data:`OBS_FIELDS`)."""
        c, n = self.c, self.n
        ref = c.cost_median
        q_b = self.left.sum(axis=(1, 3))  # [P, n]
        v_b = (self.left * self.price).sum(axis=(1, 3))
        q_s = self.aq.sum(axis=(1, 3))  # [P, m]
        v_s = (self.aq * self.ap).sum(axis=(1, 3))
        own_q = np.concatenate([q_b, q_s], axis=1)
        own_v = np.concatenate([v_b, v_s], axis=1)
        mean_price = np.where(own_q > 0, own_v / np.where(own_q > 0, own_q, 1), ref)
        side_mean = np.concatenate(
            [
                np.repeat(q_b.mean(axis=1, keepdims=True), n, axis=1),
                np.repeat(q_s.mean(axis=1, keepdims=True), self.m, axis=1),
            ],
            axis=1,
        )
        last = np.where(np.isfinite(self.last_price), self.last_price, ref)
        obs = np.empty((self.P, self.N, len(OBS_FIELDS)), dtype=np.float32)
        obs[..., 0] = np.arange(self.N) < n
        obs[..., 1] = np.arange(self.N) >= n
        obs[..., 2] = np.log(np.maximum(mean_price, 1e-12) / ref)
        obs[..., 3] = np.log(np.maximum(last, 1e-12) / ref)[:, None]
        obs[..., 4] = own_q / np.where(side_mean > 0, side_mean, 1.0)
        obs[..., 5] = self.last_fill
        obs[..., 6] = self.last_shade
        obs[..., 7] = self.t / c.periods
        return obs

    def utilities(self, shades: NDArray[np.float64]) -> NDArray[np.float64]:
        """Mean utility ``[P, V, N]`` of every trader on this period's books if
        reports were shaded by each of ``shades [P, V, N]``; nothing advances
        (the hill climber's and the audit's counterfactuals)."""
        _, u_b, u_s, _ = clear_shaded(
            self.market, shades, self.price, self.left, self.ap, self.aq
        )
        return np.concatenate([u_b, u_s], axis=-1).mean(axis=2)

    def step(self, shade: NDArray[np.float64]) -> Period:
        """Clear this period with shadings ``[P, N]``, serve and age the jobs,
        and draw the next period's books."""
        if self.done:
            raise UserError("step() called after the last period (reset first)")
        out, u_b, u_s, fill = clear_shaded(
            self.market, shade[:, None], self.price, self.left, self.ap, self.aq
        )
        measures = period_measures(
            out, u_b, u_s, self.price, self.left, self.ap, self.aq, self.c.k
        )
        per_market = np.concatenate([u_b, u_s], axis=-1)[:, 0]  # [P, B, N]
        utility = per_market.mean(axis=1)  # [P, N]
        shape = (self.P, self.c.markets)
        flat_b = self.left.reshape(out.bid_fill.shape)
        flat_a = self.aq.reshape(out.ask_fill.shape)
        overfilled = int((out.bid_fill > flat_b * (1 + 1e-12)).sum()) + int(
            (out.ask_fill > flat_a * (1 + 1e-12)).sum()
        )
        capacity = flat_a.sum(axis=(1, 2))
        over_capacity = int((out.volume > capacity * (1 + 1e-12)).sum())
        bought = out.buyer_qty.reshape(*shape, self.n).sum(axis=1)
        sold = out.seller_qty.reshape(*shape, self.m).sum(axis=1)
        offered = np.concatenate(
            [self.left.sum(axis=(1, 3)), self.aq.sum(axis=(1, 3))], axis=1
        )
        traded = np.concatenate([bought, sold], axis=1)
        self.last_fill = np.where(
            offered > 0, traded / np.where(offered > 0, offered, 1), 0
        )
        self.last_shade = shade.copy()
        with np.errstate(all="ignore"):
            price = out.clearing_price.reshape(shape)
            ok = np.isfinite(price)
            self.last_price = np.where(
                ok.any(axis=1),
                np.where(ok, price, 0.0).sum(axis=1) / np.maximum(ok.sum(axis=1), 1),
                np.nan,
            )
        if not self.unit:
            self.left, self.wait, done, lost = settle(
                self.left, self.price, self.wait, fill[:, 0]
            )
            self.served += done
            self.expired += lost
        self.t += 1
        if not self.done:
            self._draw()
        return Period(
            utility=utility,
            measures=measures,
            outcome=out,
            market_utility=per_market,
            overfilled=overfilled,
            over_capacity=over_capacity,
        )


class ComputeMarketEnv(ParallelEnv):
    """The compute market of one population; every buyer and seller is an agent."""

    metadata: ClassVar[dict[str, Any]] = {
        "name": "compute_market_v0",
        "render_modes": [],
        "is_parallelizable": True,
    }

    def __init__(
        self, config: ComputeMarketConfig | None = None, unit: bool = False
    ) -> None:
        self.config = validate(config or ComputeMarketConfig())
        self.books = ComputeBooks(self.config, populations=1, unit=unit)
        n, m = self.config.n_buyers, self.config.n_sellers
        self.possible_agents = [f"buyer_{i}" for i in range(n)] + [
            f"seller_{j}" for j in range(m)
        ]
        self.agents: list[str] = []
        self.render_mode = None  # nothing to render (SuperSuit reads the attribute)
        self.np_random, self.np_random_seed = seeding.np_random(self.config.seed)
        self.last_period: Period | None = None
        self._scale = self.books.reward_scale()

    @functools.cache  # noqa: B019 - one space object per agent, as the API test wants
    def observation_space(self, agent: str) -> Box:
        return Box(-np.inf, np.inf, shape=(len(OBS_FIELDS),), dtype=np.float32)

    @functools.cache  # noqa: B019
    def action_space(self, agent: str) -> Box:
        return Box(-ACTION_MAX, ACTION_MAX, shape=(1,), dtype=np.float32)

    def reset(self, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self.np_random, self.np_random_seed = seeding.np_random(seed)
        self.books.reset(self.np_random)
        self.agents = self.possible_agents[:]
        self.last_period = None
        return self._by_agent(self.books.observe()[0]), {a: {} for a in self.agents}

    def step(self, actions: dict[str, Any]):
        if not self.agents:
            raise UserError("step() called before reset() or after the episode ended")
        missing = [a for a in self.agents if a not in actions]
        if missing:
            raise UserError(
                f"no action for {missing[0]} (every agent acts each period)"
            )
        act = check_actions(
            [
                [
                    np.asarray(actions[a], dtype=np.float64).reshape(-1)[0]
                    for a in self.agents
                ]
            ],
            (1, len(self.agents)),
            self.agents,
        )
        shade = shading_of(act, self.config.shade_max)
        period = self.books.step(shade)
        self.last_period = period
        rewards = period.utility[0] / self._scale
        done = self.books.done
        obs = self._by_agent(self.books.observe()[0])
        out = (
            obs,
            {a: float(rewards[i]) for i, a in enumerate(self.agents)},
            dict.fromkeys(self.agents, False),
            dict.fromkeys(self.agents, done),
            {a: {} for a in self.agents},
        )
        if done:
            self.agents = []
        return out

    def _by_agent(self, obs: NDArray[np.float32]) -> dict[str, NDArray[np.float32]]:
        return {a: obs[i] for i, a in enumerate(self.possible_agents)}
