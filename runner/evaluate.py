"""``evaluate``: learned strategies against theory, and market metrics.

Two distances of bnelearn (Bichler et al. 2021, ``attn_env.strategy_metrics``),
for each learner:

``bne_l2``
    L2 distance of the learned bid function to the analytic BNE over the value
    distribution: ``sqrt(mean_v (b(v) - b*(v))^2)`` on ``grid`` quantile
    midpoints of the value (or cost) distribution (equal spacing for uniform
    values). The reference is the closed form of ``attn_env.equilibria`` where
    one is known (``reference: analytic``), else the numerical equilibrium of
    ``attn_env.solver`` with the config's ``solve:`` options, solved once and
    cached (``reference: numerical``; none for markets the solver does not
    cover; refused in one line when its utility loss is over
    ``solve.tolerance``, unless ``solve: {allow_unconverged: true}``).
    Payoff-relevant: both bid functions are clipped into the range of bids
    that can change the outcome against equilibrium opponents
    (``strategy_metrics.relevant_range``: under a binding reserve every bid
    is the same losing action, as is a bid under every equilibrium ask), so
    a learner that bids anything under the reserve is not penalised for it.
``bne_l2_all``
    The same distance over the whole value range, bids that cannot matter
    included (what ``bne_l2`` was before the clip).
``utility_loss``
    ``(u_BR - u) / u_BR``: the ex-ante utility a best response would earn
    against the *learned* opponents, minus the learned agent's own, relative.
    Monte Carlo: ``samples`` opponent profiles (values drawn, bids from their
    learned or fixed strategies) are drawn once; for every candidate bid of a
    ``bids``-point grid the mechanism clears them all, giving expected
    allocation ``A(b)`` and payment ``P(b)``; ``u(v, b) = v A(b) - P(b)``
    (sellers: ``R(b) - c Q(b)``); the best response takes the best candidate
    (the learned bid included) at each value of the value grid. The same
    opponent sample prices both, so ``utility_loss >= 0`` exactly, and its
    Monte Carlo error shrinks with ``samples``. Reported for single-round
    sealed-bid markets of the ``uniform`` source.

Asymmetric markets (``env.value_ranges`` / ``solve.classes``) measure each
learner against its own class's strategy: its value grid is its class's range,
its reference the class's bid function (the asymmetric uniform first-price
closed form, ``attn_env.equilibria.asymmetric_first_price_bne``, where it
applies, else the solver's class), and the opponents' values in the utility
loss come from their own ranges. A learner shared by several classes is
measured in each (its worst class under ``*_by_learner``), and
``bne_l2_by_class`` / ``utility_loss_by_class`` give every class's worst
learner. Under a CRRA utility (``utility: {kind: crra, rho}``) the reference is
the CRRA equilibrium (``crra_first_price_bne`` where it applies, else the
solver's) and the utility loss prices outcomes in ``u(x) = sign(x) |x|^rho`` of
the surplus, as the rewards do. With ROI-constrained buyers
(``solve.roi_target``) the reference is the ROI equilibrium (``roi_bne`` where
it applies, else the solver's), the utility loss prices a bid that breaks the
ex-interim constraint ``v A >= (1 + target) P`` as the solver does
(``strategy_metrics.roi_constrained``: worse than bidding nothing), and the
result carries ``roi_target``. The env's rewards stay the round's surplus (a
round cannot see an ex-interim constraint), so a learner trained on them
learns the unconstrained game and this measures how far that is from the
constrained one.

``bne_l2_floor_by_learner`` is the least (payoff-relevant) ``bne_l2`` the
learner's action map can reach. Shading never bids above the value, which
costs 0.024 per role of ``bne_l2_all`` against the k = 1/2 bilateral
equilibrium, but only where no equilibrium ask (bid) can be met, so the
payoff-relevant floor is 0 there, as for first and second price.

Per-learner values are under ``*_by_learner``; the headline ``bne_l2`` and
``utility_loss`` are the worst (largest) over learners. The market metrics come
from ``runner.simulate.play`` with the trained policy in the learners' seats.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

import attn_env
from attn_env import mechanisms
from attn_env.config import EnvConfig, ExperimentConfig
from attn_env.equilibria import Strategy, bne_strategy, roi_strategy
from attn_env.errors import UserError
from attn_env.figures import new_figure, save_png
from attn_env.solver import (
    check_converged,
    check_solve_config,
    solve_cached,
    unsupported,
)
from attn_env.strategy_metrics import (
    bid_function,
    bne_l2,
    relevant_range,
    seat_env,
    utility_loss,
    value_grid,
)
from runner.results import jsonable
from runner.seats import build_agent
from runner.simulate import play

__all__ = ["evaluate", "plot_bid_functions", "strategies_for"]


def strategies_for(config: ExperimentConfig, trained: Any, rng: np.random.Generator):
    """Agent names and per-agent ``values -> bids`` (trained policy in learn seats)."""
    venv = attn_env.vector_env(1, config=config.env, action="absolute")
    # a first-round observation per agent column; the value entry is overwritten
    obs, _ = venv.reset(seed=config.seed)
    template = np.asarray(obs[0], dtype=np.float32)
    names = list(venv.agents)
    fns = []
    for j, name in enumerate(names):
        spec = config.agent_spec(name)
        if spec.kind == "learn":
            fns.append(bid_function(trained.for_agent(name).act, template[j]))
        else:
            agent = build_agent(spec.kind, spec.params, config, name)
            agent.reset(1, rng)
            fns.append(bid_function(lambda o, a=agent: a.act(o, rng), template[j]))
    return names, fns


def _check_run_matches(
    config: ExperimentConfig, manifest: dict[str, Any], policy_dir: str | Path
) -> None:
    """``ValueError`` (one line) unless the run was trained in ``config``'s market.

    The manifest's ``mechanism`` and ``agents`` (where it records them) must
    equal the config's, and every learner seat must be one of the agents: a
    policy is only meaningful in the market it learned.
    """
    agents = list(attn_env.vector_env(1, config=config.env).agents)
    run_mech = manifest.get("mechanism", config.env.mechanism)
    run_agents = manifest.get("agents", agents)
    where = f"{Path(policy_dir) / 'manifest.json'}"
    if run_mech != config.env.mechanism or run_agents != agents:
        raise UserError(
            f"{where}: the run was trained in mechanism {run_mech!r} with agents "
            f"{run_agents!r}, but the config's market is {config.env.mechanism!r} "
            f"with agents {agents!r}; evaluate it with the run's own config.yaml"
        )
    for name, entry in manifest["learners"].items():
        bad = [a for a in entry["seats"] if a not in agents]
        if bad:
            raise UserError(
                f"{where}: learner {name!r} seats {bad!r} are not agents of the "
                f"config's market ({', '.join(agents)})"
            )


def _class_seats(
    config: ExperimentConfig, trained: Any
) -> list[tuple[str, str, str, str]]:
    """``(learner, role, seat, class)`` for each learner's first seat in each
    bidder class (``class`` is the role in a symmetric market)."""
    owner = {
        a: c.name or f"class_{i}"
        for i, c in enumerate(config.solve.classes)
        for a in c.agents
    }
    out, seen = [], set()
    for name, entry in trained.manifest["learners"].items():
        for seat in entry["seats"]:
            cls = owner.get(seat, entry["role"])
            if (name, cls) not in seen:
                seen.add((name, cls))
                out.append((name, entry["role"], seat, cls))
    return out


def evaluate(
    config: ExperimentConfig,
    policy_dir: str | Path,
    episodes: int | None = None,
    plot: str | Path | None = None,
    samples: int = 4000,
    progress: bool = False,
) -> dict[str, Any]:
    """Metrics of a trained run in ``config``'s market (``evaluate --json``).

    Returns:
        The market metrics of ``simulate.play`` plus ``bne_l2``, ``utility_loss``
        (worst over learners, ``None`` where not defined), ``bne_l2_by_learner``,
        ``utility_loss_by_learner``, ``reference`` (``analytic``, ``numerical``
        where any learner's equilibrium came from the solver, or ``None``) and
        the run's ``timesteps``.
    """
    from training.policy import load_policy

    for name, value in (("samples", samples), ("episodes", episodes)):
        if value is not None and (
            isinstance(value, bool) or int(value) != value or value < 1
        ):
            raise UserError(f"{name} must be an integer >= 1, got {value!r}")
    trained = load_policy(policy_dir)
    _check_run_matches(config, trained.manifest, policy_dir)
    rng = np.random.default_rng(config.seed)
    names, fns = strategies_for(config, trained, rng)
    env = config.env
    game = _is_game(env)
    by_l2: dict[str, float] = {}
    by_l2_all: dict[str, float] = {}
    by_ul: dict[str, float] = {}
    floor: dict[str, float] = {}
    class_l2: dict[str, float] = {}
    class_ul: dict[str, float] = {}
    curves = {}
    refs: set[str] = set()
    known: dict[str, tuple[Strategy | None, str | None]] = {}

    def references(
        key: str, role: str | None = None, seat: str | None = None
    ) -> tuple[Strategy | None, str | None]:
        """Each role's (class's) reference, found (solved) once."""
        if key not in known:
            known[key] = _reference(config, role or key, seat)
        return known[key]

    def worst(into: dict[str, float], key: str, value: float) -> None:
        into[key] = max(into.get(key, value), value)

    for lname, role, seat, cls in _class_seats(config, trained):
        j = names.index(seat)
        senv = seat_env(env, seat)
        grid = value_grid(senv, role, 1000)
        star, ref = references(cls, role, seat)
        if ref is not None:
            refs.add(ref)
        relevant = (
            _relevant(config, senv, role, references) if star is not None else None
        )
        curves[lname if cls == role else f"{lname} ({cls})"] = (
            role,
            grid,
            fns[j](grid),
            None if star is None else star(grid),
            relevant,
        )
        if star is not None:
            worst(by_l2, lname, bne_l2(fns[j], star, grid, relevant))
            worst(by_l2_all, lname, bne_l2(fns[j], star, grid))
            worst(class_l2, cls, by_l2[lname])
            reach = _reachable_floor(trained, seat, role, grid, star, relevant)
            worst(floor, lname, reach)
        if env.rounds == 1 and env.valuation == "uniform" and _sealed(env.mechanism):
            res = utility_loss(
                env, fns, j, rng, samples=samples, roi_target=_roi_of(config, role)
            )
            worst(by_ul, lname, res["utility_loss"])
            worst(class_ul, cls, res["utility_loss"])
    result: dict[str, Any] = dict(
        _market_metrics(config, trained, names, episodes, progress)
    )
    result.update(
        bne_l2=max(by_l2.values()) if by_l2 else None,
        bne_l2_all=max(by_l2_all.values()) if by_l2_all else None,
        reference=(
            "numerical" if "numerical" in refs else "analytic" if refs else None
        ),
        utility_loss=max(by_ul.values()) if by_ul else None,
        bne_l2_by_learner=by_l2,
        bne_l2_all_by_learner=by_l2_all,
        bne_l2_floor_by_learner=floor,
        utility_loss_by_learner=by_ul,
        timesteps=int(trained.manifest["timesteps"]),
    )
    if config.solve.roi_target is not None:
        result["roi_target"] = float(config.solve.roi_target)
    if game:  # asymmetric classes or a CRRA utility: say so, class by class
        u = env.utility
        result.update(
            utility={"kind": u.kind, "rho": u.rho},
            bne_l2_by_class=class_l2,
            utility_loss_by_class=class_ul,
        )
    if plot is not None:
        plot_bid_functions(
            curves, plot, title=f"{env.mechanism}, n_buyers={env.n_buyers}"
        )
        result["plot"] = str(plot)
    return result


def _roi_of(config: ExperimentConfig, role: str) -> float | None:
    """The ROI target that prices ``role``'s utility loss (buyers only)."""
    return config.solve.roi_target if role == "buyer" else None


def _is_game(env: EnvConfig) -> bool:
    """Whether ``env`` has bidder classes or a non-linear utility."""
    return bool(env.value_ranges) or env.utility.kind != "linear"


def _reference(
    config: ExperimentConfig, role: str, seat: str | None = None
) -> tuple[Strategy | None, str | None]:
    """The equilibrium to measure ``role`` (``seat``'s class) against:
    ``analytic`` or ``numerical``."""
    env, target = config.env, config.solve.roi_target
    if target is None:
        star = bne_strategy(env, role, seat)
    else:
        star = roi_strategy(env, role, target)
    if star is not None:
        return star, "analytic"
    if unsupported(env) is not None:
        return None, None
    check_solve_config(config.solve)
    solution = solve_cached(env, config.solve)
    check_converged(
        solution,
        config.solve.tolerance,
        config.solve.allow_unconverged,
        "evaluate's numerical reference",
    )
    if role == "buyer" and seat is not None:
        from agents.equilibrium import class_of

        role = class_of(solution, seat, "evaluate's numerical reference")
    if role not in solution.roles:
        return None, None
    return solution.roles[role].bid_function(), "numerical"


def _relevant(
    config: ExperimentConfig, env: EnvConfig, role: str, references: Any
) -> tuple[float, float]:
    """The bids of ``role`` (its value range in ``env``) that can change its
    outcome against the reference (``references(role) -> (strategy, kind)``)."""
    other = None
    if mechanisms.family(config.env.mechanism) == "two_sided":
        other = references("seller" if role == "buyer" else "buyer")[0]
    return relevant_range(env, role, other)


def _reachable_floor(
    trained: Any,
    seat: str,
    role: str,
    grid: NDArray,
    star: Strategy,
    relevant: tuple[float, float] | None = None,
) -> float:
    """Least ``bne_l2`` the learner's action map allows.

    Shading maps never bid above the value (buyers) or ask below the cost
    (sellers); where the BNE does (Chatterjee–Samuelson for values under 1/4 or
    costs over 3/4, where no trade happens anyway) the distance has this floor.
    """
    amap = trained.for_agent(seat).action_map
    b = star(grid)
    if amap.mode == "absolute":
        reach = np.clip(b, amap.low, amap.high)
    elif role == "buyer":
        reach = np.clip(b, amap.low, grid)
    else:
        reach = np.clip(b, grid, amap.high)
    if relevant is not None:
        reach, b = np.clip(reach, *relevant), np.clip(b, *relevant)
    return float(np.sqrt(np.mean((reach - b) ** 2)))


def _sealed(mechanism: Any) -> bool:
    return mechanisms.family(mechanism) != "matching"


def _market_metrics(config, trained, names, episodes, progress) -> dict[str, Any]:
    """``runner.simulate.play`` with the trained policy in every learning seat."""
    # a RolePolicy is itself an agent (reset / act / observe)
    agents = {
        name: trained.for_agent(name)
        for name in names
        if config.agent_spec(name).kind == "learn"
    }
    return jsonable(play(config, agents=agents, episodes=episodes, progress=progress))


def plot_bid_functions(
    curves: dict[str, tuple],
    path: str | Path,
    title: str = "",
) -> Path:
    """Learned bid (ask) functions against the BNE, one panel per learner, as a PNG.

    Args:
        curves: learner -> ``(role, values, learned bids, BNE bids or None,
            relevant bid range or None)``; bids outside the relevant range
            (under a binding reserve, say) are shaded: any bid there is one
            action, and ``bne_l2`` does not count them.
        path: the PNG to write (atomically).
        title: figure title.
    """
    fig, axes = new_figure(
        1, len(curves), figsize=(4.2 * len(curves), 3.8), squeeze=False
    )
    for ax, (name, (role, v, learned, star, *rest)) in zip(
        axes[0], curves.items(), strict=True
    ):
        lo, hi = rest[0] if rest and rest[0] is not None else (-np.inf, np.inf)
        top = max(float(np.max(v)), float(np.max(learned)))
        if np.isfinite(lo):
            ax.axhspan(0.0, lo, color="grey", alpha=0.15, label="cannot matter")
        if np.isfinite(hi) and hi < top:
            ax.axhspan(hi, top, color="grey", alpha=0.15, label="cannot matter")
        ax.plot(v, v, ":", color="grey", label="truthful")
        if star is not None:
            ax.plot(v, star, "--", color="black", label="BNE")
        ax.plot(v, learned, color="tab:blue", lw=2, label="learned")
        ax.set_xlabel("cost" if role == "seller" else "value")
        ax.set_ylabel("ask" if role == "seller" else "bid")
        ax.set_title(name)
        ax.legend(loc="upper left", fontsize=8)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    return save_png(fig, path, dpi=110)
