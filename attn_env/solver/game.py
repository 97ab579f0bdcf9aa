"""The discretised game the solver plays: roles, grids, priors and payoffs.

:func:`game_from_config` turns a market (``EnvConfig``) and the solver's grid
sizes (``SolveConfig``) into a :class:`Game`, or raises a one-line
``ConfigError`` saying why the market is out of reach and what to use instead.

Each role (``buyer``, and ``seller`` in two-sided markets) is symmetric: all
its traders play one distributional strategy over the value grid (quantile
midpoints of the role's value distribution, equal mass) and the bid grid
(``bids`` equal steps on ``[0, max_bid]``). Utilities are quasi-linear, so a
trader's ex-interim utility of a bid is ``v A(b) - P(b)`` (sellers
``P(b) - c A(b)``): only the expected quantity ``A`` and money ``P`` of each
bid against the opponents' bid distributions are needed
(:meth:`Game.payoffs`).

``solve.classes`` splits the buyers into classes, each with its own value
range and strategy (one role per class; one-slot first price and all-pay
exactly, :func:`.formats.independent_payoffs`, everything else by the
mechanism's ``clear``). ``solve.utility: {kind: crra, rho}`` makes a winner's
utility ``(v - b)^rho`` instead of ``v - b`` (first price: the surplus of a
win is fixed by the own bid, so the expected utility is
``sum_k P(slot k) (alpha_k (v - b))^rho``; the slot weights enter as
``alpha^rho``). ``solve.prior`` replaces independent values by a sampled joint
law (:mod:`.joint`; one-slot rules), and ``solve.roi_target`` makes a bid that
breaks ``v A >= (1 + target) P`` infeasible (:meth:`Game.utility`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from attn_env import mechanisms
from attn_env.checks import ConfigError, is_real
from attn_env.config import (
    SOLVE_MARKET_DEFAULTS,
    EnvConfig,
    SolveConfig,
    validate_solve,
)
from attn_env.core import MarketSpec
from attn_env.errors import UserError
from attn_env.solver.formats import INDEPENDENT_RULES, AllPay, independent_payoffs
from attn_env.solver.joint import (
    DRAWS_MANY,
    DRAWS_PAIR,
    EVAL_FACTOR,
    JOINT_RULES,
    JointValues,
    draw_profiles,
    pure_payoffs,
    strategy_payoffs,
)
from attn_env.solver.position import RULES, position_payoffs
from attn_env.solver.sampled import opponent_profiles, sampled_payoffs
from attn_env.strategy_metrics import roi_constrained, value_grid
from attn_env.valuations import make_source

__all__ = [
    "Dist",
    "Game",
    "Role",
    "check_solve_config",
    "game_from_config",
    "unsupported",
    "with_grid_defaults",
]

Dist = tuple[NDArray[np.float64], NDArray[np.float64]]
"A discrete bid distribution: ``(support [S], mass [S])``."

MEMORY_LIMIT = 2 * 2**30
"Bytes the largest payoff array of one iteration may take."
EMPIRICAL_DRAWS = 20_000
"Markets drawn from a valuation source to build its empirical value distribution."


@dataclass(frozen=True)
class Role:
    """One symmetric role (or bidder class): how many traders, their value law and
    their bid grid."""

    name: str
    count: int
    bids: NDArray[np.float64]
    env: EnvConfig = field(repr=False)
    "The market, with the class's value range where it has its own."
    sample: NDArray[np.float64] | None = field(default=None, repr=False)
    "Empirical values (a non-uniform valuation source); ``None``: the parametric law."
    side: str = "buyer"
    "``buyer`` or ``seller``: which side of the market the traders are on."

    def grid(self, size: int) -> NDArray[np.float64]:
        """``size`` quantile midpoints of the role's value (or cost) distribution."""
        if self.sample is None:
            return value_grid(self.env, self.side, size)
        return np.quantile(self.sample, (np.arange(size) + 0.5) / size)


@dataclass(frozen=True)
class Game:
    """A sealed-bid market, discretised for the solver."""

    env: EnvConfig
    mechanism: Any
    rule: str | None
    "Position rule with closed-form payoffs (``position.RULES``), else ``None``."
    roles: tuple[Role, ...]
    weights: NDArray[np.float64]
    "Mean attention of each slot (one-sided), ``[K]``."
    reserve: float
    max_bid: float
    rho: float = 1.0
    "CRRA exponent of the buyers' utility ``x^rho`` (1: risk-neutral)."
    joint: JointValues | None = field(default=None, repr=False)
    "Correlated values (``solve.prior``): the sampled joint law; ``None``: independent."
    roi_target: float | None = None
    "ROI-constrained buyers (``solve.roi_target``): ``v A >= (1 + target) P``."

    @property
    def n_buyers(self) -> int:
        return sum(r.count for r in self.roles if r.side == "buyer")

    @property
    def all_pay(self) -> bool:
        """An all-pay auction (every bid is paid: SODA's steps are not scaled)."""
        return isinstance(self.mechanism, AllPay)

    @property
    def one_sided(self) -> bool:
        return all(r.side == "buyer" for r in self.roles)

    def payoffs(
        self,
        role: int,
        dists: list[Dist],
        cand: NDArray[np.float64],
        rng: np.random.Generator,
        samples: int,
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Expected quantity and money ``[C]`` of one trader of ``role`` per bid.

        Args:
            role: index into :attr:`roles`.
            dists: each role's bid distribution, played by all its other traders.
            cand: candidate bids of the one trader.
            rng: tie-breaks and sampled opponent profiles.
            samples: opponent profiles where there is no closed form.
        """
        if self.rule is not None and len(self.roles) > 1:  # unequal classes
            opponents = [
                (*dists[r], spec.count - (r == role))
                for r, spec in enumerate(self.roles)
            ]
            return independent_payoffs(
                self.rule, opponents, self._alpha()[0], self.reserve, cand
            )
        if self.rule is not None:
            support, mass = dists[0]
            return position_payoffs(
                self.rule,
                support,
                mass,
                self.n_buyers - 1,
                self._alpha(),
                self.reserve,
                cand,
            )
        columns = [
            dists[r] for r, spec in enumerate(self.roles) for _ in range(spec.count)
        ]
        focal = sum(spec.count for spec in self.roles[:role])
        profiles, weights = opponent_profiles(
            columns[:focal] + columns[focal + 1 :], samples, rng
        )
        return sampled_payoffs(
            lambda b, a: self._clear(b, a, rng),
            focal,
            self.n_buyers,
            profiles,
            weights,
            cand,
        )

    def joint_payoffs(
        self, strat: NDArray[np.float64], cand: NDArray[np.float64]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """``[V, G]`` quantity and money of each grid bid per value bin against the
        role's own distributional strategy ``strat`` (correlated values)."""
        assert self.joint is not None and self.rule is not None
        return strategy_payoffs(
            self.rule, self.joint.solve, strat, cand, self._alpha()[0], self.reserve
        )

    def joint_check(self, bid_fn, cand: NDArray[np.float64], n_values: int):
        """The focal values ``[V']`` of ``n_values`` bins of fresh profiles and the
        ``[V', C]`` quantity and money of ``cand`` against the pure ``bid_fn``."""
        assert self.joint is not None and self.rule is not None
        obs, grid = self.joint.bins_of(n_values)
        qty, money = pure_payoffs(
            self.rule, obs, bid_fn, cand, self._alpha()[0], self.reserve
        )
        return grid, qty, money

    def _alpha(self) -> NDArray[np.float64]:
        """Slot weights as the utility sees them (``alpha^rho`` under CRRA)."""
        return self.weights if self.rho == 1.0 else self.weights**self.rho

    def _clear(self, bids, asks, rng):
        if asks is None:
            out = self.mechanism.clear(bids, weights=self.weights, rng=rng)
            if getattr(self.mechanism, "randomised", False):
                # a random allocation's exact expectation, not one noisy draw
                ex = out.extra
                out = replace(out, alloc=ex["expected_alloc"], pay=ex["expected_pay"])
            return out
        return self.mechanism.clear(bids, asks, rng=rng)

    def utility(
        self,
        role: int,
        values: NDArray[np.float64],
        qty: NDArray,
        money: NDArray,
        cand: NDArray[np.float64] | None = None,
    ) -> NDArray[np.float64]:
        """``[V, C]`` utility of value x bid (buyers ``vA - P``, sellers ``P - cA``).

        ``qty`` and ``money`` are ``[C]`` (the same opponents at every value) or
        ``[V, C]`` (correlated values: the opponents depend on the value).
        Under CRRA (first price) ``qty`` is ``sum_k P(slot k) alpha_k^rho`` and
        the utility ``qty * u(v - b)`` with ``u(x) = sign(x) |x|^rho`` (a loss
        for bids over the value: dominated whatever its exact size). With an
        ROI target, a bid that breaks ``v A >= (1 + target) P`` is infeasible:
        its utility is ``min(vA - P, 0)`` minus the shortfall, under that of
        bidding 0 and falling with the breach, so no best reply is one.
        """
        qty = qty if np.ndim(qty) == 2 else np.asarray(qty)[None, :]
        money = money if np.ndim(money) == 2 else np.asarray(money)[None, :]
        if self.roles[role].side == "seller":
            return money - values[:, None] * qty
        if self.rho != 1.0:
            if cand is None:
                raise UserError("Game.utility under CRRA needs the candidate bids")
            x = values[:, None] - np.asarray(cand)[None, :]
            return qty * np.sign(x) * np.abs(x) ** self.rho
        u = values[:, None] * qty - money
        if self.roi_target is not None:
            short = (1.0 + self.roi_target) * money - values[:, None] * qty
            u = roi_constrained(u, short, self.max_bid)
        return u


def unsupported(env: EnvConfig) -> str | None:
    """Why the solver cannot take this market, and what to use instead, or ``None``."""
    name = mechanisms.name_of(env.mechanism)
    fam = mechanisms.family(env.mechanism)
    if name == "cda":
        return (
            "cda is a continuous double auction (orders arrive one at a time), not "
            "a sealed-bid game; solve k_double, mcafee or call_market, or simulate "
            "cda with zi_c, zip or gd traders"
        )
    if fam == "matching":
        return (
            f"{name!r} is a matching (a value per slot, no scalar bid), not a "
            "sealed-bid auction; solve vcg or gsp for position auctions"
        )
    if env.budget is not None:
        return (
            f"budget={env.budget!r} links the rounds of an episode (a dynamic game); "
            "the solver takes one-shot rounds: set budget to null"
        )
    if env.rounds > 1 and env.redraw != "round":
        return (
            f"redraw={env.redraw!r} keeps values over {env.rounds} rounds (a dynamic "
            "game); the solver takes independent rounds: set redraw: round"
        )
    if getattr(env, "exposure_floor", 0.0):
        return (
            f"exposure_floor={env.exposure_floor!r} adds a lottery the solver does "
            "not model; set exposure_floor to 0"
        )
    return None


VALUES = 64
"Value grid points per role when ``solve.values`` is ``None`` (most markets)."
VALUES_MANY = 128
"... for one-slot first price with ``MANY_BIDDERS`` or more buyers."
MANY_BIDDERS = 3
"From this many first-price buyers on, the bids that matter crowd the top values."
BIDS = 101
"Bid grid points when ``solve.bids`` is ``None`` (most markets)."
BIDS_ROI = 401
"... for ROI-constrained one-slot markets with ``ROI_BIDDERS`` or more buyers."
ROI_BIDDERS = 4
ITERATIONS = 3000
"Most iterations when ``solve.iterations`` is ``None`` (most markets)."
REFINE = 4
"How much finer the reported loss's grids are when ``solve.refine`` is ``None``."
ALL_PAY_GRID = {"bids": 201, "iterations": 10_000, "refine": 16}
"The all-pay auction's defaults for the options left ``None`` (see below)."


def with_grid_defaults(env: EnvConfig, s: SolveConfig) -> SolveConfig:
    """``s`` with ``values`` or ``bids: None`` replaced by the market's default.

    One-slot first price with three or more buyers gets ``VALUES_MANY``: its
    competition sits in the top values, bids within a few grid steps of each
    other, and on 64 values the grid game's loss plateaus (about 0.01 at
    n = 3) and the utility loss is over ``tolerance`` from n = 6 (0.029 at
    n = 6, 0.038 at n = 10; 128 values: 0.006 to 0.016 for n = 3..10, and the
    iterations to a grid loss of 0.005 fall with n). GSP keeps 64 (128 raise
    its loss to about 0.02), and so do two bidders (twice the time for a loss
    already at 0.005).

    ROI-constrained one-slot markets with 4 or more buyers get ``BIDS_ROI``
    bids: their bids sit on the constraint, which a 101-bid grid rounds down
    by up to a step, a large relative loss where winning is steep in the bid
    (first price n = 10: utility loss 0.052 on 101 bids, 0.016 on 401; second
    price n = 10: 0.030 and 0.015), and on 401 bids they also stop sooner
    (second price n = 4: 255 iterations against 3,000).

    The all-pay auction (:class:`AllPay` and its subclasses) gets
    :data:`ALL_PAY_GRID`: every bid is paid, so the payoff is nearly flat in
    the bid and, on 101 bids and 3,000 iterations, n = 3 stopped at utility
    loss 0.038 (over ``tolerance``), n = 4 at 0.081; and the reported loss's
    own floor (the closed form scored on grids 4 times finer) was 0.025 at
    n = 4, as a best reply outbids the grid's atoms cheaply. 201 bids, 10,000
    iterations and grids 16 times finer bring n = 2..4 to 0.004, 0.0075 and
    0.016 in about 3 s.
    """
    if _all_pay(env):
        s = replace(
            s,
            **{k: v for k, v in ALL_PAY_GRID.items() if getattr(s, k) is None},
        )
    if s.iterations is None:
        s = replace(s, iterations=ITERATIONS)
    if s.refine is None:
        s = replace(s, refine=REFINE)
    if s.values is None:
        many = (
            mechanisms.name_of(env.mechanism) == "first_price"
            and env.n_slots == 1
            and env.n_buyers >= MANY_BIDDERS
            and not s.classes
        )
        s = replace(s, values=VALUES_MANY if many else VALUES)
    if s.bids is None:
        roi = (
            s.roi_target is not None
            and env.n_slots == 1
            and env.n_buyers >= ROI_BIDDERS
        )
        s = replace(s, bids=BIDS_ROI if roi else BIDS)
    return s


def _all_pay(env: EnvConfig) -> bool:
    """Whether ``env``'s mechanism is the all-pay auction or a subclass of it."""
    mech = env.mechanism
    if isinstance(mech, mechanisms.Mechanism):
        return isinstance(mech, AllPay)
    return issubclass(mechanisms.mechanism_class(mech), AllPay)


def check_solve_config(s: SolveConfig) -> None:
    """``ConfigError`` naming the first bad solver option (``None`` for a grid
    option is the market's default, :func:`with_grid_defaults`)."""
    for name, least in (
        ("values", 2),
        ("bids", 2),
        ("iterations", 1),
        ("samples", 1),
        ("refine", 1),
    ):
        v = getattr(s, name)
        if name in SOLVE_MARKET_DEFAULTS and v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, int) or v < least:
            raise ConfigError(f"solve.{name} must be an integer >= {least}, got {v!r}")
    for name, low, high, what in (
        ("step", 0.0, np.inf, "a number > 0"),
        ("decay", 0.0, 1.0, "a number in [0, 1)"),
        ("stop", 0.0, 1.0, "a number in [0, 1)"),
        ("tolerance", 0.0, 1.0, "a number in [0, 1)"),
    ):
        v = getattr(s, name)
        ok = is_real(v) and (low < v if name == "step" else low <= v) and v < high
        if not ok:
            raise ConfigError(f"solve.{name} must be {what}, got {v!r}")
    for name in ("allow_unconverged", "cache"):
        if not isinstance(getattr(s, name), bool):
            raise ConfigError(
                f"solve.{name} must be true or false, got {getattr(s, name)!r}"
            )
    validate_solve(s)


def _check_memory(game: Game, s: SolveConfig) -> None:
    """``ConfigError`` when one iteration's payoff arrays would not fit."""
    n_cand = s.refine * (s.bids - 1) + 1 + s.refine * s.values
    if game.joint is not None:  # [O, G] per opponent (two buyers: [V, G])
        rows = s.values if game.n_buyers == 2 else len(game.joint.solve.focal)
        elements = rows * s.bids * (game.n_buyers + 2)
        how = "lower solve.prior.draws or solve.bids"
    elif game.rule is not None and len(game.roles) > 1:
        elements = n_cand * s.refine * s.values * game.n_buyers
        how = "lower solve.bids or solve.values"
    elif game.rule is not None:
        k = len(game.weights)
        elements = n_cand * s.refine * s.values * game.n_buyers * k
        how = "lower solve.bids or solve.values"
    else:
        cols = sum(r.count for r in game.roles)
        elements = min(s.bids, n_cand) * s.samples * cols * 4
        how = "lower solve.samples or solve.bids"
    need = 8 * 4 * elements  # float64, a few temporaries
    if need > MEMORY_LIMIT:
        raise ConfigError(
            f"solver grid too large for memory (about {need / 2**30:.1f} GiB per "
            f"iteration with values={s.values}, bids={s.bids}, samples={s.samples}, "
            f"refine={s.refine}); {how}"
        )


def game_from_config(
    env: EnvConfig, solve: SolveConfig, rng: np.random.Generator
) -> Game:
    """The discretised game of ``env`` (``ConfigError`` where the solver cannot go).

    Args:
        env: the market.
        solve: grid sizes.
        rng: draws the empirical value sample of a non-uniform valuation source and
            the mean slot attention.
    """
    why = unsupported(env)
    if why:
        raise ConfigError(f"no equilibrium solver for this market: {why}")
    check_solve_config(solve)
    solve = with_grid_defaults(env, solve)
    spec = MarketSpec.from_config(env)
    mech = mechanisms.build(env.mechanism, env.mechanism_params)
    name = mechanisms.name_of(env.mechanism)
    if type(mech) is AllPay:
        rule = "all_pay"
    elif name in RULES and type(mech) is mechanisms.mechanism_class(name):
        rule = name
    else:
        rule = None
    source = make_source(
        env.valuation,
        dist=env.value_dist,
        low=env.value_low,
        high=env.value_high,
        **env.valuation_params,
    )
    n_draws = EMPIRICAL_DRAWS if env.valuation != "uniform" else 1
    draw = source.draw(rng, n_draws, env.n_buyers, spec.n_slots)
    sample = None if env.valuation == "uniform" else draw.unit_value.ravel()
    bids = np.linspace(0.0, spec.max_bid, solve.bids)
    if solve.classes:
        roles = _class_roles(env, solve, spec, bids)
        if rule not in INDEPENDENT_RULES or spec.n_slots != 1:
            rule = None  # unequal opponents: the mechanism's own clear
    else:
        roles = [Role("buyer", env.n_buyers, bids, env, sample)]
    if spec.n_sellers:
        roles.append(Role("seller", spec.n_sellers, bids, env, side="seller"))
    joint = _joint_values(env, solve, spec, name, rule, rng)
    if joint is not None:
        roles = [Role("buyer", env.n_buyers, bids, env, joint.pooled)]
    roi = _roi_target(solve, spec, name)
    rho = 1.0
    if solve.utility.kind == "crra":
        if rule != "first_price":
            raise ConfigError(
                "solve.utility crra needs a first_price market (a winner's surplus "
                f"is then v - b, fixed by its own bid); got mechanism {name!r}"
            )
        rho = float(solve.utility.rho)
    game = Game(
        env=env,
        mechanism=mech,
        rule=rule,
        roles=tuple(roles),
        weights=np.asarray(draw.alpha, dtype=np.float64).mean(axis=0),
        reserve=float(getattr(mech, "reserve", 0.0) or 0.0),
        max_bid=spec.max_bid,
        rho=rho,
        joint=joint,
        roi_target=roi,
    )
    _check_memory(game, solve)
    return game


def _joint_values(
    env: EnvConfig,
    solve: SolveConfig,
    spec: MarketSpec,
    name: str,
    rule: str | None,
    rng: np.random.Generator,
) -> JointValues | None:
    """The sampled joint law of ``solve.prior`` (``None``: independent values)."""
    prior = solve.prior
    if prior.kind == "independent":
        return None
    if solve.classes or spec.n_sellers or spec.n_slots != 1 or rule not in JOINT_RULES:
        raise ConfigError(
            f"solve.prior {prior.kind} (correlated values) needs a one-slot "
            f"{', '.join(JOINT_RULES)} market of symmetric buyers (no "
            f"solve.classes, no sellers); got mechanism {name!r} with "
            f"{spec.n_slots} slots, {spec.n_sellers} sellers and "
            f"{len(solve.classes)} classes"
        )
    draws = prior.draws or (DRAWS_PAIR if env.n_buyers == 2 else DRAWS_MANY)
    profiles = draw_profiles(env, prior, spec.n_slots, draws, rng)
    check = draw_profiles(env, prior, spec.n_slots, EVAL_FACTOR * draws, rng)
    return JointValues.build(profiles, check, solve.values)


def _roi_target(solve: SolveConfig, spec: MarketSpec, name: str) -> float | None:
    """``solve.roi_target`` where it applies (``ConfigError`` where it does not)."""
    if solve.roi_target is None:
        return None
    if spec.n_sellers or solve.utility.kind != "linear":
        raise ConfigError(
            "solve.roi_target needs a one-sided market of risk-neutral buyers "
            f"(utility linear), got mechanism {name!r} with {spec.n_sellers} "
            f"sellers and utility {solve.utility.kind!r}"
        )
    return float(solve.roi_target)


def _class_roles(
    env: EnvConfig, solve: SolveConfig, spec: MarketSpec, bids: NDArray[np.float64]
) -> list[Role]:
    """One role per ``solve.classes`` entry (``ConfigError`` where they do not fit)."""
    if spec.n_sellers or env.valuation != "uniform":
        raise ConfigError(
            "solve.classes needs a one-sided market with valuation: uniform, got "
            f"mechanism {mechanisms.name_of(env.mechanism)!r} with "
            f"{spec.n_sellers} sellers and valuation {env.valuation!r}"
        )
    buyers = [f"buyer_{i}" for i in range(env.n_buyers)]
    seen: list[str] = []
    roles = []
    for i, c in enumerate(solve.classes):
        bad = [a for a in c.agents if a not in buyers or a in seen]
        if bad:
            raise ConfigError(
                f"solve.classes[{i}].agents: {bad[0]!r} is not a buyer of this "
                f"market ({buyers[0]}..{buyers[-1]}) or is in two classes"
            )
        seen += c.agents
        if c.name in ("buyer", "seller"):
            raise ConfigError(
                f"solve.classes[{i}].name must not be a role name, got {c.name!r}"
            )
        low = env.value_low if c.value_low is None else float(c.value_low)
        high = env.value_high if c.value_high is None else float(c.value_high)
        if not 0.0 <= low < high <= spec.max_bid:
            raise ConfigError(
                f"solve.classes[{i}]: values [{low:g}, {high:g}] must lie in "
                f"[0, max_bid = {spec.max_bid:g}] with low < high (raise "
                "env.max_bid for a class above the market's value range)"
            )
        roles.append(
            Role(
                c.name or f"class_{i}",
                len(c.agents),
                bids,
                replace(env, value_low=low, value_high=high),
            )
        )
    missing = [a for a in buyers if a not in seen]
    if missing:
        raise ConfigError(
            f"solve.classes must put every buyer in a class; {missing[0]!r} is in none"
        )
    return roles
