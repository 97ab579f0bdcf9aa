"""Simultaneous online dual averaging (SODA) on the discretised game.

Bichler, Fichtl & Oberlechner (Operations Research, 2023): every role keeps a
distributional strategy ``s[v, b]`` (a bid distribution at each grid value)
and a dual vector ``y[v, b]``, the step-weighted sum of its utility gradients.
The gradient of the ex-ante utility with respect to ``s[v, b]`` is the
ex-interim utility ``u(v, b)`` of bidding ``b`` at value ``v`` against the
other traders' current bid distributions, so each iteration

1. computes ``u`` for every role from the opponents' current marginals
   (``Game.payoffs``), all roles at once (simultaneous);
2. measures the relative utility loss on the grid,
   ``(sum_v max_b u - sum_v s u) / sum_v max_b u``, and stops below ``stop``;
3. sets ``y[v] += eta_t u[v] / u*(v)`` (``u*(v)`` the value's best grid
   utility, :func:`_scale`) and ``s[v] = softmax(y[v])`` (the entropic mirror
   map), with ``eta_t = step * t ** -decay``.

The equilibrium reported is the mean bid at each value, made non-decreasing
(:func:`monotone`; one-sided markets also :func:`unstep`), and its utility
loss is measured again against a best response on grids ``refine`` times
finer (:func:`utility_losses`), with the opponents playing those bid
functions. The solution is ``converged`` when every role's loss is at most
``tolerance``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from attn_env.config import SolveConfig
from attn_env.solver.game import Dist, Game, with_grid_defaults
from attn_env.solver.solution import RoleSolution, Solution

__all__ = ["format_of", "run_soda", "utility_losses"]

EVAL_SAMPLES = 10
"The loss is measured on this many times ``samples`` opponent profiles."
CHUNK_ROWS = 400_000
"Candidate bids x opponent profiles cleared at once when measuring the loss."


def _scale(
    u: NDArray[np.float64], max_bid: float, floor: float = 1e-9
) -> NDArray[np.float64]:
    """Per value, the best utility on the grid (at least ``floor * max_bid``,
    ``solve.scale_floor``).

    Dividing by it makes the step the same for every type: a low value, which
    rarely wins, would otherwise see utility differences too small to move its
    strategy in any reasonable number of iterations. Not in all-pay auctions,
    which divide by ``max_bid``: there every bid is paid, so a low type's
    utilities range down to ``-max_bid`` against a best utility near 0, and
    dividing by that makes its step huge: the strategies pool on one bid and
    cycle (all-pay n = 3: L2 0.14 to the BNE, against 0.004 without it).

    The floor (default ``1e-9``) only keeps the division finite. The earlier
    default ``1e-4`` stopped the types that almost never win: with many
    bidders (first price, n = 10, where a value under 0.3 wins with
    probability under 2e-5) they hardly moved from the uniform start and their
    mean bids were noise (L2 0.020 to the BNE, 0.005 with ``1e-9``).
    """
    return np.maximum(u.max(axis=1, keepdims=True), floor * max_bid)


def _softmax(y: NDArray[np.float64]) -> NDArray[np.float64]:
    z = np.exp(y - y.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def run_soda(
    game: Game,
    s: SolveConfig,
    rng: np.random.Generator,
    progress: Callable[[int, float], None] | None = None,
) -> Solution:
    """Solve ``game`` with the grid sizes and step rule of ``s``."""
    start = time.perf_counter()
    s = with_grid_defaults(game.env, s)
    values = [role.grid(s.values) for role in game.roles]
    n_bids = s.bids
    dual = [np.zeros((s.values, n_bids)) for _ in game.roles]
    strat = [np.full((s.values, n_bids), 1.0 / n_bids) for _ in game.roles]
    history: list[dict[str, float]] = []
    check = max(1, s.iterations // 200)
    t = 0
    crn_seed = int(rng.integers(2**63))
    for t in range(1, s.iterations + 1):
        marg: list[Dist] = [
            (role.bids, st.mean(axis=0))
            for role, st in zip(game.roles, strat, strict=True)
        ]
        utils = []
        for r, role in enumerate(game.roles):
            # common random numbers: the same opponent samples and tie-breaks
            # every iteration (sampled markets only)
            crn = np.random.default_rng(crn_seed)
            if game.joint is not None:  # correlated values: [V, G] per value bin
                qty, money = game.joint_payoffs(strat[r], role.bids)
            else:
                qty, money = game.payoffs(r, marg, role.bids, crn, s.samples)
            utils.append(game.utility(r, values[r], qty, money, role.bids))
        losses = []
        for u, st in zip(utils, strat, strict=True):
            best = u.max(axis=1).mean()
            own = (u * st).sum(axis=1).mean()
            # no type can gain (all-pay with many bidders, from the uniform
            # start): the loss in units of max_bid, not 0, which would stop
            # at the first iteration
            losses.append(
                (best - own) / best if best > 1e-12 else (best - own) / game.max_bid
            )
        eta = s.step * t ** (-s.decay)
        done = max(losses) <= s.stop
        if done or t % check == 0 or t == 1:
            history.append(
                {
                    "iteration": t,
                    "step": eta,
                    **{
                        f"grid_loss_{role.name}": float(loss)
                        for role, loss in zip(game.roles, losses, strict=True)
                    },
                }
            )
            if progress is not None:
                progress(t, max(losses))
        if done:
            break
        for r in range(len(game.roles)):
            scale = (
                game.max_bid
                if game.all_pay
                else _scale(utils[r], game.max_bid, s.scale_floor)
            )
            dual[r] += eta * utils[r] / scale
            strat[r] = _softmax(dual[r])

    raw = [st @ role.bids for st, role in zip(strat, game.roles, strict=True)]
    means = [monotone(m) for m in raw]
    if game.one_sided:
        # one-sided: atoms are discretisation artefacts (a bidder beats an atom by
        # bidding just above it); two-sided markets have genuine pooling
        # (step) equilibria, whose atoms must stay
        means = [
            unstep(v, m, role.bids[1] - role.bids[0], game.reserve)
            for v, m, role in zip(values, means, game.roles, strict=True)
        ]
    if _reserve_binds(game, strat, s.samples, crn_seed):
        # under the reserve no bid wins: any is a best reply; report 0, as
        # attn_env.equilibria does
        for r, role in enumerate(game.roles):
            if role.side == "buyer":
                means[r] = np.where(values[r] < game.reserve, 0.0, means[r])
    spreads = [
        float(np.sqrt(np.maximum(st @ role.bids**2 - m**2, 0.0)).mean())
        for st, role, m in zip(strat, game.roles, raw, strict=True)
    ]
    rows = [np.round(st, 6) for st in strat]
    if game.all_pay:
        # the bid function reaches the ends of the value range (not flat past
        # the first and last quantile midpoints): see :func:`with_ends`
        ends = [
            with_ends(role, v, m, st)
            for role, v, m, st in zip(game.roles, values, means, rows, strict=True)
        ]
        values = [e[0] for e in ends]
        means = [e[1] for e in ends]
        rows = [e[2] for e in ends]
    fns = [_interp(v, m) for v, m in zip(values, means, strict=True)]
    losses = utility_losses(game, fns, s, rng)
    roles = {
        role.name: RoleSolution(
            values=values[r].tolist(),
            bids=means[r].tolist(),
            utility_loss=losses[r],
            spread=spreads[r],
            bid_grid=role.bids.tolist(),
            strategy=rows[r].tolist(),
        )
        for r, role in enumerate(game.roles)
    }
    return Solution(
        roles=roles,
        iterations=t,
        seconds=time.perf_counter() - start,
        converged=max(losses) <= s.tolerance,
        history=history,
        market=_market(game, s),
    )


def _reserve_binds(
    game: Game, strat: list[NDArray[np.float64]], samples: int, crn_seed: int
) -> bool:
    """Whether the buyers' reserve makes every bid under it lose (and pay) nothing.

    True of the built-in auctions; a user's mechanism may still sell below its
    ``reserve`` (a soft floor), so its own ``clear`` is asked, against the
    final strategies.
    """
    if game.reserve <= 0.0:
        return False
    if game.rule is not None:
        return True
    role = game.roles[0]
    under = role.bids[role.bids < game.reserve]
    if under.size == 0:
        return True
    marg = [(r.bids, st.mean(axis=0)) for r, st in zip(game.roles, strat, strict=True)]
    qty, money = game.payoffs(0, marg, under, np.random.default_rng(crn_seed), samples)
    return not (np.any(qty > 0.0) or np.any(money != 0.0))


def monotone(y: NDArray[np.float64]) -> NDArray[np.float64]:
    """Least-squares non-decreasing fit (pool adjacent violators).

    Equilibrium bids (asks) of these single-crossing auctions rise with the value
    (cost); on a finite grid the mean bid jitters by about a grid step, and a
    jittered bid function is easier to exploit than the equilibrium it
    approximates.
    """
    level, weight, size = [], [], []
    for x in y:
        level.append(float(x))
        weight.append(1.0)
        size.append(1)
        while len(level) > 1 and level[-2] > level[-1]:
            w = weight[-2] + weight[-1]
            level[-2] = (weight[-2] * level[-2] + weight[-1] * level[-1]) / w
            weight[-2], size[-2] = w, size[-2] + size[-1]
            del level[-1], weight[-1], size[-1]
    return np.repeat(level, size)


def unstep(
    x: NDArray[np.float64], y: NDArray[np.float64], step: float, floor: float
) -> NDArray[np.float64]:
    """A non-decreasing staircase ``y(x)`` redrawn through the centres of its steps.

    On a bid grid coarser than the bid function's slope, several neighbouring
    values pick the same grid bid; the continuous equilibrium crosses each step
    near its middle (steps are told apart by jumps over half a grid step; a
    value mixing two neighbouring bids belongs to the step). A flat piece would
    also be an atom of bids, which a best response beats by bidding just above
    it. Each step becomes one knot at its centre, the ends extrapolated from the
    nearest two knots; a first step under ``floor`` (the reserve: those values
    cannot win) stays flat.
    """
    cut = np.flatnonzero(np.abs(np.diff(y)) > step / 2) + 1
    runs = np.split(np.arange(len(y)), cut)
    if len(runs) < 2:
        return y
    kx = np.array([x[r].mean() for r in runs])
    ky = np.array([y[r].mean() for r in runs])
    out = np.interp(x, kx, ky)
    for end, (a, b) in (("low", (0, 1)), ("high", (-2, -1))):
        slope = (ky[b] - ky[a]) / max(kx[b] - kx[a], 1e-12)
        k = a if end == "low" else b
        side = x < kx[k] if end == "low" else x > kx[k]
        out = np.where(side, ky[k] + slope * (x - kx[k]), out)
    if ky[0] < floor:
        out[runs[0]] = y[runs[0]]
    return np.clip(out, y.min(), max(y.max(), out.max()))


def with_ends(role, x, y, rows):
    """``(values, bids, strategy rows)`` with the ends of the value range added,
    the bids there extrapolated from the nearest two (clipped to the bid grid,
    non-decreasing), the rows copied from the nearest value.

    All-pay only: the bid function is otherwise flat past the first and last
    quantile midpoints (``np.interp``), an atom of the top ``1 / (2 V)`` of
    types on one bid; in all-pay, whose payoff is nearly flat in the bid, a
    best reply beats that atom just above it, cheaply (n = 4, 201 bids,
    10,000 iterations, refine 16: utility loss 0.038 flat, 0.016 with the
    ends). Other formats keep their grids (and their saved solutions).
    """
    if role.sample is not None:
        lo, hi = float(np.min(role.sample)), float(np.max(role.sample))
    elif role.env.value_dist == "uniform":
        lo, hi = float(role.env.value_low), float(role.env.value_high)
    else:
        return x, y, rows
    if len(x) < 2 or not lo < x[0] or not x[-1] < hi:
        return x, y, rows
    slope_lo = (y[1] - y[0]) / max(x[1] - x[0], 1e-12)
    slope_hi = (y[-1] - y[-2]) / max(x[-1] - x[-2], 1e-12)
    top = float(role.bids[-1])
    y_lo = float(np.clip(y[0] + slope_lo * (lo - x[0]), 0.0, y[0]))
    y_hi = float(np.clip(y[-1] + slope_hi * (hi - x[-1]), y[-1], top))
    return (
        np.concatenate([[lo], x, [hi]]),
        np.concatenate([[y_lo], y, [y_hi]]),
        np.concatenate([rows[:1], rows, rows[-1:]]),
    )


def _interp(xs: NDArray[np.float64], ys: NDArray[np.float64]):
    return lambda v: np.interp(v, xs, ys)


def utility_losses(
    game: Game, fns: list, s: SolveConfig, rng: np.random.Generator
) -> list[float]:
    """Relative utility loss of each role's bid function, on grids ``refine`` finer.

    Every trader plays its role's pure bid function ``fns[r]``; opponents' bids
    are those functions at ``refine * values`` quantile midpoints. At each of
    those values the best response searches ``refine * (bids - 1) + 1`` equally
    spaced bids (the own bid included): ``(u_BR - u) / u_BR``, ex ante.
    """
    s = with_grid_defaults(game.env, s)
    n_fine = s.refine * s.values
    if game.joint is not None:
        return [_joint_loss(game, fns[0], s)]
    fine = [role.grid(n_fine) for role in game.roles]
    dists = [
        (np.asarray(fn(v), dtype=np.float64), np.full(n_fine, 1.0 / n_fine))
        for fn, v in zip(fns, fine, strict=True)
    ]
    grid = np.linspace(0.0, game.max_bid, s.refine * (s.bids - 1) + 1)
    out = []
    for r, _ in enumerate(game.roles):
        own = dists[r][0]
        cand = np.unique(np.concatenate([grid, own]))
        qty, money = _chunked_payoffs(
            game, r, dists, cand, rng, EVAL_SAMPLES * s.samples
        )
        u = game.utility(r, fine[r], qty, money, cand)  # [V, C]
        u_own = u[np.arange(n_fine), np.searchsorted(cand, own)]
        best = np.maximum(u.max(axis=1), 0.0).mean()
        out.append(float((best - u_own.mean()) / best) if best > 1e-12 else 0.0)
    return out


def _joint_loss(game: Game, fn, s: SolveConfig) -> float:
    """:func:`utility_losses` with correlated values: the one role's loss on the
    fresh profiles, opponents bidding ``fn`` of their own values, at the
    ``refine * values`` bins' quantile midpoints (the own bid ``fn`` there)."""
    grid = np.linspace(0.0, game.max_bid, s.refine * (s.bids - 1) + 1)
    n_fine = s.refine * s.values
    values = game.joint.bins_of(n_fine)[1]  # type: ignore[union-attr]
    own = np.asarray(fn(values), dtype=np.float64)
    cand = np.unique(np.concatenate([grid, own]))
    values, qty, money = game.joint_check(fn, cand, n_fine)
    u = game.utility(0, values, qty, money, cand)
    u_own = u[np.arange(n_fine), np.searchsorted(cand, own)]
    best = np.maximum(u.max(axis=1), 0.0).mean()
    return float((best - u_own.mean()) / best) if best > 1e-12 else 0.0


def _chunked_payoffs(game, r, dists, cand, rng, samples):
    """:meth:`Game.payoffs` over candidate chunks (bounded memory)."""
    if game.rule is not None:
        size = max(1, CHUNK_ROWS // max(1, len(dists[0][0]) * game.n_buyers))
        if len(game.roles) > 1:  # unequal classes: [C, S] per opponent class
            size = max(1, CHUNK_ROWS // max(1, len(dists[0][0])))
    else:
        size = max(1, CHUNK_ROWS // samples)
    parts = [
        game.payoffs(r, dists, cand[i : i + size], rng, samples)
        for i in range(0, len(cand), size)
    ]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def format_of(s: SolveConfig) -> dict:
    """The non-default utility and classes of ``s``, as saved with a solution
    (empty for a risk-neutral symmetric solve, whose file is as before)."""
    out: dict = {}
    if s.utility.kind != "linear":
        out["utility"] = {"kind": s.utility.kind, "rho": float(s.utility.rho)}
    if s.prior.kind != "independent":
        out["prior"] = {
            "kind": s.prior.kind,
            "common": float(s.prior.common),
            "draws": s.prior.draws,
        }
    if s.roi_target is not None:
        out["roi_target"] = float(s.roi_target)
    if s.classes:
        out["classes"] = [
            {
                "name": c.name or f"class_{i}",
                "agents": list(c.agents),
                "value_low": c.value_low,
                "value_high": c.value_high,
            }
            for i, c in enumerate(s.classes)
        ]
    return out


def _market(game: Game, s: SolveConfig) -> dict:
    """What was solved, saved with the solution (checked when it is loaded)."""
    from attn_env import mechanisms

    env = game.env
    sellers = [r.count for r in game.roles if r.side == "seller"]
    extra = format_of(s)
    return {
        **extra,
        "mechanism": mechanisms.name_of(env.mechanism),
        "mechanism_params": dict(env.mechanism_params),
        "n_buyers": game.n_buyers,
        "n_sellers": sellers[0] if sellers else 0,
        "n_slots": len(game.weights),
        "weights": game.weights.tolist(),
        "valuation": env.valuation,
        "value_dist": env.value_dist,
        "closed_form_payoffs": game.rule is not None,
        "grid": {
            "values": s.values,
            "bids": s.bids,
            "refine": s.refine,
            "samples": s.samples,
        },
    }
