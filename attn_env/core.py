"""The batched market state machine shared by ``parallel_env``, ``vector_env`` and
the single-agent view.

:class:`MarketCore` holds ``B`` independent markets as arrays with a leading batch
axis and steps all of them in one numpy call (no Python loop over markets): it
draws values through a valuation source, applies budgets and activity masks,
calls the mechanism, computes utilities and builds the observations. The
PettingZoo env is this core with ``B = 1``, the vector env is the core with
``B = num_envs`` plus autoreset, so both agree step for step for the same seed.

The meaning of every observation entry, action, reward and info field is in the
``attn_env.market_env`` docstring (the user manual).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from attn_env import mechanisms
from attn_env.actions import shade_to_prices
from attn_env.config import EnvConfig
from attn_env.errors import UserError
from attn_env.feedback import published
from attn_env.mechanisms import Mechanism
from attn_env.mechanisms.exposure_floor import promote
from attn_env.metrics import episode_metrics, optimal_welfare
from attn_env.observation import (
    ACTIVE,
    BUDGET,
    LAST_ALLOC,
    LAST_PAY,
    LAST_PRICE,
    OBS_BASE_DIM,
    ROLE,
    ROUND,
    VALUE,
    feedback_dim,
)
from attn_env.valuations import draw_values, make_source

__all__ = ["MarketCore", "MarketSpec", "MarketState", "in_own_ranges"]

_EPS = 1e-12


@dataclass(frozen=True)
class MarketSpec:
    """Constants of a market derived from its config (shapes, roles, bounds)."""

    config: EnvConfig
    family: str
    n_buyers: int
    n_sellers: int
    n_slots: int
    max_bid: float
    budget_high: float
    obs_low: NDArray[np.float32] = field(repr=False)
    obs_high: NDArray[np.float32] = field(repr=False)

    @classmethod
    def from_config(cls, c: EnvConfig) -> MarketSpec:
        fam = mechanisms.family(c.mechanism)
        m = mechanisms.n_sellers(c.mechanism, c.n_buyers, c.n_sellers)
        # The price range: buyers' values, and sellers' costs where there are sellers.
        vhigh = max([c.value_high, *(r[1] for r in c.value_ranges.values())])
        vmax = max(vhigh, c.cost_high) if m else vhigh
        max_bid = float(c.max_bid) if c.max_bid is not None else vmax
        # Unlimited budgets are reported as the most a buyer could ever spend.
        budget_high = float(c.budget) if c.budget is not None else c.rounds * max_bid
        high = np.zeros(
            OBS_BASE_DIM + c.history + feedback_dim(c.feedback, c.history),
            dtype=np.float32,
        )
        high[[VALUE, BUDGET, ROUND, ROLE, LAST_PRICE, LAST_ALLOC, LAST_PAY, ACTIVE]] = [
            vmax,
            max(budget_high, _EPS),
            1.0,
            1.0,
            max_bid,
            1.0,
            max_bid,
            1.0,
        ]
        high[OBS_BASE_DIM:] = max_bid
        return cls(
            config=c,
            family=fam,
            n_buyers=c.n_buyers,
            n_sellers=m,
            n_slots=c.n_slots,
            max_bid=max_bid,
            budget_high=budget_high,
            obs_low=np.zeros_like(high),
            obs_high=high,
        )

    @property
    def n_agents(self) -> int:
        return self.n_buyers + self.n_sellers

    @property
    def action_high(self) -> float:
        """Top of the action box: ``max_bid``, or 1 under ``action="shade"``."""
        return 1.0 if self.config.actions.env == "shade" else self.max_bid

    @property
    def obs_dim(self) -> int:
        c = self.config
        return OBS_BASE_DIM + c.history + feedback_dim(c.feedback, c.history)

    @property
    def agents(self) -> list[str]:
        """Agent names: buyers first, then sellers (the column order of all arrays)."""
        return [f"buyer_{i}" for i in range(self.n_buyers)] + [
            f"seller_{j}" for j in range(self.n_sellers)
        ]


@dataclass
class MarketState:
    """Everything that changes in ``B`` markets: what ``reset`` creates and
    ``step`` advances. Arrays have a leading batch axis; columns of
    ``[B, n_agents]`` arrays follow :attr:`MarketSpec.agents`."""

    theta: NDArray[np.float64]
    "``[B, n]`` buyers' private values per unit of attention (this draw)."
    relevance: NDArray[np.float64]
    "``[B, n]`` relevance r of each buyer's candidate (1 in the uniform source)."
    unit_value: NDArray[np.float64]
    "``[B, n]`` theta * r: the value per unit of attention."
    alpha: NDArray[np.float64]
    "``[B, K]`` attention mass of each slot, descending."
    cost: NDArray[np.float64]
    "``[B, m]`` sellers' costs."
    round: NDArray[np.int64]
    "``[B]`` rounds played in the episode."
    budget_left: NDArray[np.float64]
    "``[B, n]`` buyers' budgets left."
    traded: NDArray[np.bool_]
    "``[B, n_agents]`` traded since the last draw (a CDA period)."
    last_price: NDArray[np.float64]
    "``[B]`` last round's clearing price (0 when none)."
    last_alloc: NDArray[np.float64]
    "``[B, n_agents]`` last round's allocations."
    last_pay: NDArray[np.float64]
    "``[B, n_agents]`` last round's payments (sellers: receipts)."
    history: NDArray[np.float64]
    "``[B, history]`` past clearing prices, newest first."
    published: NDArray[np.float64]
    "``[B, n_agents, F]`` published feedback (``attn_env.feedback``), newest first."
    acc: dict[str, NDArray[np.float64]]
    "Episode accumulators ``[B]``: welfare, optimal_welfare, revenue, receipts, volume."
    last_round: dict[str, NDArray] | None = None
    "The info arrays of the last round (``None`` before the first step)."
    group: NDArray[np.int64] | None = None
    "``[B, n]`` label of each buyer's ad (its vertical), when the source labels ads."

    @classmethod
    def empty(cls, spec: MarketSpec, num_envs: int) -> MarketState:
        """Zeroed state of ``num_envs`` markets of ``spec`` (before ``reset``)."""
        B, n, m, K = num_envs, spec.n_buyers, spec.n_sellers, spec.n_slots
        return cls(
            theta=np.zeros((B, n)),
            relevance=np.ones((B, n)),
            unit_value=np.zeros((B, n)),
            alpha=np.ones((B, K)),
            cost=np.zeros((B, m)),
            round=np.zeros(B, dtype=np.int64),
            budget_left=np.full((B, n), spec.budget_high),
            traded=np.zeros((B, spec.n_agents), dtype=bool),
            last_price=np.zeros(B),
            last_alloc=np.zeros((B, spec.n_agents)),
            last_pay=np.zeros((B, spec.n_agents)),
            history=np.zeros((B, spec.config.history)),
            published=np.zeros(
                (
                    B,
                    spec.n_agents,
                    feedback_dim(spec.config.feedback, spec.config.history),
                )
            ),
            acc={
                k: np.zeros(B)
                for k in ("welfare", "optimal_welfare", "revenue", "receipts", "volume")
            },
        )


def _buyer_ranges(c: EnvConfig) -> tuple[NDArray, NDArray] | None:
    """``[n]`` lows and highs of the buyers' values under ``value_ranges``
    (``None`` without: every buyer draws from the market's range)."""
    if not c.value_ranges:
        return None
    pairs = [
        c.value_ranges.get(f"buyer_{i}", [c.value_low, c.value_high])
        for i in range(c.n_buyers)
    ]
    low, high = np.asarray(pairs, dtype=np.float64).T
    return low, high


def in_own_ranges(
    c: EnvConfig,
    values: NDArray[np.float64],
    ranges: tuple[NDArray, NDArray] | None = None,
) -> NDArray[np.float64]:
    """Market-range values ``[..., n]`` mapped onto each buyer's own range
    (``value_ranges``): the env's affine map of the market's draw, which
    ``evaluate``'s utility loss makes too. ``ranges``: the buyers' lows and
    highs where already known (else read from ``c``, which must set some)."""
    low, high = _buyer_ranges(c) if ranges is None else ranges
    unit = (values - c.value_low) / (c.value_high - c.value_low)
    return low + (high - low) * unit


def _push(past: NDArray[np.float64], latest: NDArray[np.float64]) -> None:
    """Shift ``past [..., T]`` one step along its last axis, ``latest`` first."""
    past[..., 1:] = past[..., :-1]
    past[..., 0] = latest


class MarketCore:
    """State of ``B`` markets and their round-by-round dynamics.

    Columns of every ``[B, n_agents]`` array follow :attr:`MarketSpec.agents`
    (buyers, then sellers). Randomness comes only from the generator passed to
    :meth:`reset` and :meth:`step`, consumed in a fixed order, so two cores of the
    same ``B`` fed the same seed and actions produce the same markets.
    """

    def __init__(self, config: EnvConfig, num_envs: int) -> None:
        if num_envs < 1:
            raise UserError(f"num_envs must be >= 1, got {num_envs!r}")
        self.config = config
        self.spec = spec = MarketSpec.from_config(config)
        self.num_envs = B = int(num_envs)
        self.mechanism: Mechanism = mechanisms.build(
            config.mechanism, config.mechanism_params
        )
        self.source = make_source(
            config.valuation,
            dist=config.value_dist,
            low=config.value_low,
            high=config.value_high,
            **config.valuation_params,
        )
        n, N = spec.n_buyers, spec.n_agents
        self._capped = config.budget is not None
        self._cda = type(self.mechanism).sequential
        # share rules (mechanisms/answer.py) divide the whole answer's attention:
        # the first-best gives it all to the highest value, one buyer may get it
        self._shares = bool(getattr(self.mechanism, "share_rule", False))
        self._ranges = _buyer_ranges(config)
        self._rho = float(config.utility.rho) if config.utility.kind == "crra" else 1.0
        self.state = MarketState.empty(spec, B)
        role = np.zeros(N, dtype=np.float32)
        role[n:] = 1.0
        self._role = role

    # ------------------------------------------------------------------ state
    def reset(
        self, rng: np.random.Generator, mask: NDArray[np.bool_] | None = None
    ) -> None:
        """Start new episodes in the markets of ``mask`` (all when ``None``)."""
        idx: Any = slice(None) if mask is None else np.flatnonzero(mask)
        count = self.num_envs if mask is None else idx.size
        if count == 0:
            return
        self.state.round[idx] = 0
        self.state.budget_left[idx] = self.spec.budget_high
        self.state.last_price[idx] = 0.0
        self.state.last_alloc[idx] = 0.0
        self.state.last_pay[idx] = 0.0
        self.state.history[idx] = 0.0
        self.state.published[idx] = 0.0
        for a in self.state.acc.values():
            a[idx] = 0.0
        self._draw(rng, idx, count)

    def _draw(self, rng: np.random.Generator, idx: Any, count: int) -> None:
        """New private values (and costs) for ``count`` markets at ``idx``."""
        s, c = self.spec, self.config
        d = self.source.draw(rng, count, s.n_buyers, s.n_slots)
        if self._ranges is not None:  # the market's range mapped onto each buyer's
            d = replace(d, theta=in_own_ranges(c, d.theta, self._ranges))
        self.state.theta[idx] = d.theta
        self.state.relevance[idx] = d.relevance
        self.state.unit_value[idx] = d.unit_value
        self.state.alpha[idx] = d.alpha
        if d.group is not None:
            if self.state.group is None:
                self.state.group = np.full(self.state.theta.shape, -1, np.int64)
            self.state.group[idx] = d.group
        if s.n_sellers:
            cost = draw_values(
                rng, (count, s.n_sellers), "uniform", c.cost_low, c.cost_high
            )
            self.state.cost[idx] = cost
            self.state.traded[idx] = False
            if self._cda:
                # A CDA period's first-best: each trader has one unit per draw.
                self.state.acc["optimal_welfare"][idx] += optimal_welfare(
                    d.unit_value, costs=cost
                )

    def tie_draws(self, columns: Sequence[int], copies: int) -> None:
        """Give every block of ``copies`` consecutive markets its first market's
        draw in agent ``columns`` (values, relevance, labels; costs of sellers).

        The other columns keep their own draws, so a learner in ``columns`` meets
        ``copies`` independent draws of the other agents with the same value of its
        own (``train.opponent_draws``). Single-round markets only: later rounds'
        states would part (budgets, history).
        """
        B = self.num_envs
        if copies < 1 or B % copies:
            raise UserError(
                f"tie_draws: {B} markets do not split into blocks of {copies}"
            )
        s, n = self.state, self.spec.n_buyers
        first = np.arange(0, B, copies).repeat(copies)[:, None]
        buyers = [j for j in columns if j < n]
        sellers = [j - n for j in columns if j >= n]
        for arr in (s.theta, s.relevance, s.unit_value, s.group):
            if arr is not None and buyers:
                arr[:, buyers] = arr[first, buyers]  # only the tied columns
        if sellers:
            s.cost[:, sellers] = s.cost[first, sellers]

    def buyer_active(self) -> NDArray[np.bool_]:
        """``[B, n]``: buyers with budget left, not yet traded this period (CDA)."""
        act = np.ones((self.num_envs, self.spec.n_buyers), dtype=bool)
        if self._capped:
            act &= self.state.budget_left > _EPS
        if self._cda:
            act &= ~self.state.traded[:, : self.spec.n_buyers]
        return act

    def active(self) -> NDArray[np.bool_]:
        """``[B, n_agents]``: agents that can trade this round (observation entry 7)."""
        s = self.spec
        out = np.ones((self.num_envs, s.n_agents), dtype=bool)
        out[:, : s.n_buyers] = self.buyer_active()
        if self._cda:
            out[:, s.n_buyers :] = ~self.state.traded[:, s.n_buyers :]
        return out

    def values(self) -> NDArray[np.float64]:
        """``[B, n_agents]``: value per unit (buyers) and cost (sellers) this round."""
        if not self.spec.n_sellers:
            return self.state.unit_value.copy()
        return np.concatenate([self.state.unit_value, self.state.cost], axis=1)

    def observe(self) -> NDArray[np.float32]:
        """Observations ``[B, n_agents, obs_dim]`` (``attn_env.observation``)."""
        s = self.spec
        B, N, n = self.num_envs, s.n_agents, s.n_buyers
        obs = np.zeros((B, N, s.obs_dim), dtype=np.float32)
        obs[:, :, VALUE] = self.values()
        obs[:, :n, BUDGET] = self.state.budget_left
        obs[:, :, ROUND] = (self.state.round / self.config.rounds)[:, None]
        obs[:, :, ROLE] = self._role
        obs[:, :, LAST_PRICE] = self.state.last_price[:, None]
        obs[:, :, LAST_ALLOC] = self.state.last_alloc
        obs[:, :, LAST_PAY] = self.state.last_pay
        obs[:, :, ACTIVE] = self.active()
        if self.config.history:
            obs[:, :, OBS_BASE_DIM : OBS_BASE_DIM + self.config.history] = (
                self.state.history[:, None, :]
            )
        if self.state.published.shape[2]:
            obs[:, :, OBS_BASE_DIM + self.config.history :] = self.state.published
        # Every entry is >= 0 by construction (values, budgets, prices); the upper
        # clip guards against sources whose r or alpha stray above 1.
        np.minimum(obs, s.obs_high, out=obs)
        return obs

    # ------------------------------------------------------------------ step
    def to_bids(self, actions: Any, columns: Any = None) -> Any:
        """Env actions -> the bids and asks :meth:`step` takes.

        Under ``action="absolute"`` (or ``auto``) ``actions`` come back unchanged. Under
        ``action="shade"`` the ``[B, n_agents(, 1)]`` shading factors are clipped
        into ``[0, 1]`` and mapped by :func:`attn_env.actions.shade_to_prices`;
        with ``columns`` (agent indices) only those columns are mapped, the others
        are bids already (fixed agents beside a learner).

        Raises:
            ValueError: wrong shape, or a NaN action (the message names the agent).
        """
        if self.config.actions.env != "shade":
            return actions
        a = self._checked(actions, "[0, 1]")
        prices = shade_to_prices(a, self.values(), self.spec.n_buyers, self.config)
        if columns is None:
            return prices
        out = a.copy()
        out[:, columns] = prices[:, columns]
        return out

    def _checked(self, actions: Any, expected: str) -> NDArray[np.float64]:
        """``[B, n_agents]`` float64 actions; ``ValueError`` on a bad shape or NaN."""
        a = np.asarray(actions, dtype=np.float64)
        B, N = self.num_envs, self.spec.n_agents
        if a.shape == (B, N, 1):
            a = a[..., 0]
        if a.shape != (B, N):
            raise UserError(
                f"actions must have shape ({B}, {N}, 1) or ({B}, {N}), got {a.shape}"
            )
        nan = np.isnan(a)
        if nan.any():
            b, i = np.argwhere(nan)[0]
            where = f" in market {b}" if B > 1 else ""
            raise UserError(
                f"action of {self.spec.agents[i]}{where} is nan; expected a number in "
                f"{expected}"
            )
        return a

    def check_actions(self, actions: Any) -> NDArray[np.float64]:
        """Validate ``[B, n_agents]`` or ``[B, n_agents, 1]`` actions and clip them.

        Raises:
            ValueError: wrong shape, or a NaN action (the message names the agent).
        """
        a = self._checked(actions, f"[0, {self.spec.max_bid}]")
        # Box actions: out-of-range bids are clipped to the action space.
        return np.clip(a, 0.0, self.spec.max_bid)

    def step(
        self, actions: Any, rng: np.random.Generator
    ) -> tuple[NDArray[np.float64], NDArray[np.bool_], dict[str, Any]]:
        """Play one round in every market.

        Args:
            actions: ``[B, n_agents(, 1)]`` bids (buyers) and asks (sellers) per unit.
            rng: the env's generator (tie-breaks, arrival order, redraws).

        Returns:
            ``rewards [B, n_agents]`` (this round's utility), ``done [B]`` (the
            episode ended with this round) and per-round info arrays.
            Markets that are done keep their final state until :meth:`reset`.
        """
        s, c = self.spec, self.config
        n, m = s.n_buyers, s.n_sellers
        a = self.check_actions(actions)
        bids = a[:, :n]
        b_active = self.buyer_active()
        if self._capped:
            # Payment <= bid x alloc <= budget left: cap the bid per unit.
            alloc_upper = (
                1.0
                if m
                else np.maximum(
                    self._first_best_alpha().max(axis=1, keepdims=True), _EPS
                )
            )
            bids = np.minimum(bids, self.state.budget_left / alloc_upper)
        bids = np.where(b_active, bids, 0.0)
        out, s_active = self._clear(bids, a[:, n:], b_active, rng)
        alloc, pay, slot = out.alloc, out.pay, out.slot
        s_alloc, s_receipt = out.seller_alloc, out.seller_receipt
        if not m and not b_active.all():
            # One-sided and matching mechanisms take no activity mask: an inactive
            # buyer's zero bid may still win a slot nobody else wanted. Drop such
            # wins (its zero bid prices no one: a missing bid reads as zero).
            drop = ~b_active & (alloc > 0)
            alloc = np.where(drop, 0.0, alloc)
            pay = np.where(drop, 0.0, pay)
            slot = np.where(drop, -1, slot)
        buyer_gain = self.state.unit_value * alloc
        if m:
            seller_cost = self.state.cost * s_alloc
            utility = np.concatenate(
                [buyer_gain - pay, s_receipt - seller_cost], axis=1
            )
            alloc_all = np.concatenate([alloc, s_alloc], axis=1)
            pay_all = np.concatenate([pay, s_receipt], axis=1)
            welfare = buyer_gain.sum(axis=1) - seller_cost.sum(axis=1)
            self.state.acc["receipts"] += s_receipt.sum(axis=1)
            volume = s_alloc.sum(axis=1)
            if not self._cda:  # a sealed-bid round: units are supplied afresh
                self.state.acc["optimal_welfare"] += optimal_welfare(
                    np.where(b_active, self.state.unit_value, 0.0),
                    costs=self.state.cost,
                )
        else:
            utility, alloc_all, pay_all = buyer_gain - pay, alloc, pay
            welfare = buyer_gain.sum(axis=1)
            volume = alloc.sum(axis=1)
            self.state.acc["optimal_welfare"] += optimal_welfare(
                np.where(b_active, self.state.unit_value, 0.0),
                alpha=self._first_best_alpha(),
            )
        if self._rho != 1.0:  # CRRA: buyers' reward is u(surplus) = sign |.|^rho
            x = utility[:, :n]
            utility[:, :n] = np.sign(x) * np.abs(x) ** self._rho
        self.state.budget_left = np.maximum(self.state.budget_left - pay, 0.0)
        self.state.acc["welfare"] += welfare
        self.state.acc["revenue"] += pay.sum(axis=1)
        self.state.acc["volume"] += volume

        price = np.asarray(out.clearing_price, dtype=np.float64)
        traded = alloc_all > 0
        active = np.concatenate([b_active, s_active], axis=1) if m else b_active
        info = {
            "value": self.values(),
            "bid": np.concatenate([bids, a[:, n:]], axis=1) if m else bids,
            "alloc": alloc_all,
            "payment": pay_all,
            "utility": utility,
            "traded": traded,
            "active": active,
            "clearing_price": price,
            "round": self.state.round.copy(),
            # the round's draw (copies: a redraw below overwrites the state)
            "slot": slot,
            "alpha": self.state.alpha.copy(),
            "theta": self.state.theta.copy(),
            "relevance": self.state.relevance.copy(),
        }
        if self._shares:  # the attention a first-best could give one buyer
            info["first_best_alpha"] = self._first_best_alpha()
        if "lottery" in out.extra:  # the exposure floor's free lottery markets
            info["lottery"] = out.extra["lottery"]
        if self.state.group is not None:  # the ads' verticals (attention source)
            info["group"] = self.state.group.copy()
        self.state.last_round = info
        self.state.traded |= traded
        self.state.last_price = np.nan_to_num(price, nan=0.0)
        # copies: reset() zeroes these in place, the returned info must not change
        self.state.last_alloc = alloc_all.copy()
        self.state.last_pay = pay_all.copy()
        if c.history:
            _push(self.state.history, self.state.last_price)
        if c.feedback != "none":
            shown = np.zeros((self.num_envs, s.n_agents))
            shown[:, :n] = published(
                c.feedback, bids, alloc, s.n_slots, self.mechanism.reserve
            )
            info["published"] = shown
            _push(self.state.published, shown)
        self.state.round += 1
        done = self.state.round >= c.rounds
        if c.redraw == "round" and not done.all():
            live = ~done
            idx: Any = slice(None) if live.all() else np.flatnonzero(live)
            self._draw(rng, idx, int(live.sum()))
        return utility, done, info

    def _first_best_alpha(self) -> NDArray[np.float64]:
        """Slot attention as the first-best sees it, ``[B, K]``: one slot of the
        whole answer's attention under a share rule (any split is feasible)."""
        if self._shares:
            return self.state.alpha.sum(axis=1, keepdims=True)
        return self.state.alpha

    def _clear(self, bids, asks, b_active, rng):
        """Call the mechanism of the configured family on the effective bids."""
        fam, mech = self.spec.family, self.mechanism
        if fam != "two_sided":
            if fam == "one_sided":
                out = mech.clear(bids, weights=self.state.alpha, rng=rng)
            else:
                values = bids[:, :, None] * self.state.alpha[:, None, :]
                out = mech.clear(values, rng=rng, weights=self.state.alpha)
            if self.config.exposure_floor > 0:
                out = promote(out, self.state.alpha, self.config.exposure_floor, rng)
            return out, None
        # Two-sided: inactive traders stay out of the book (they set no price).
        if self._cda:
            s_active = ~self.state.traded[:, self.spec.n_buyers :]
        else:
            s_active = np.ones_like(asks, dtype=bool)
        out = mech.clear(
            bids,
            asks,
            rng=rng,
            buyer_active=b_active,
            seller_active=s_active if self._cda else None,
        )
        return out, s_active

    def metrics(
        self, mask: NDArray[np.bool_] | None = None
    ) -> dict[str, NDArray[np.float64]]:
        """Episode metrics so far (``[B]`` arrays, or only the markets of ``mask``)."""
        met = episode_metrics(self.state.acc)
        if mask is None:
            return met
        return {k: v[mask] for k, v in met.items()}
