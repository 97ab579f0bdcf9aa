"""``attn-market simulate``: play fixed agents in a market and report its metrics.

:func:`play` is the reusable episode loop (evaluation reuses it): it builds the
vector env of a config, one :class:`agents.base.Agent` per agent name, plays
``episodes`` episodes ``num_envs`` markets at a time and returns plain-data
metrics (see :func:`summarize` for every key). The command prints them as a
rich table, as one JSON object (``--json``) or draws them (``--plot FILE``).

Per-episode figures (``revenue``, ``welfare``, ``mean_utility``, ``volume``) are
sums over an episode's rounds averaged over episodes; ``efficiency`` is total
welfare over total first-best welfare; prices are per unit of attention.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import sys
from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from agents.base import Agent
from attn_env import metrics
from attn_env.config import ExperimentConfig, load_config

__all__ = ["build_agents", "feedback", "play", "register", "summarize"]

_RECORD_KEYS = ("value", "bid", "alloc", "payment", "utility", "active")
_MAX_BINS = 50
_TOL = 1e-9


def build_agents(
    config: ExperimentConfig,
    names: list[str],
    given: Mapping[str, Agent] | None = None,
) -> dict[str, Agent]:
    """One agent per name: ``given`` ones first, the rest from ``config.agent_spec``.

    Raises:
        ValueError: an agent of kind ``learn`` (simulate plays fixed agents only),
            an unknown kind or bad parameters (the message names the agent).
    """
    import agents

    given = dict(given or {})
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise ValueError(
            f"agents given for unknown name(s) {', '.join(map(repr, unknown))}; "
            f"the market has: {', '.join(names)}"
        )
    env_options = dataclasses.asdict(config.env)
    out: dict[str, Agent] = {}
    for name in names:
        if name in given:
            out[name] = given[name]
            continue
        spec = config.agent_spec(name)
        if spec.kind == "learn":
            raise ValueError(
                f"agent {name!r} has kind 'learn', which simulate cannot play; train "
                "it with `attn-market train`, then use kind 'policy' with params "
                "{path: RUN_DIR}, or a fixed kind: " + ", ".join(agents.names())
            )
        try:
            out[name] = agents.for_market(spec.kind, spec.params, env_options)
        except (TypeError, ValueError) as err:
            raise ValueError(f"agent {name!r}: {err}") from err
    return out


def feedback(info: Mapping[str, Any], j: int, n_buyers: int) -> dict[str, Any]:
    """A round's public feedback for agent column ``j`` (``Agent.observe``'s input).

    Keys as documented in the ``agents`` package: the order book (``bids``,
    ``asks``), who traded (``alloc``, ``seller_alloc``) and who could
    (``active``, ``seller_active``), the ``clearing_price`` and the agent's own
    ``own_*`` results.
    """
    from attn_env.single_agent import feedback_for

    fb = feedback_for(info, j, n_buyers)
    fb["active"] = info["active"][:, :n_buyers]
    fb["seller_active"] = info["active"][:, n_buyers:]
    return fb


def play(
    config: ExperimentConfig,
    agents: Mapping[str, Agent] | None = None,
    episodes: int | None = None,
    progress: bool = True,
    num_envs: int | None = None,
) -> dict[str, Any]:
    """Play ``episodes`` episodes of ``config``'s market and measure it.

    Args:
        config: the experiment (env options, agents by role or name, seed).
        agents: agents to use for some names (e.g. a trained policy); the others
            come from the config.
        episodes: how many episodes (default ``config.episodes``).
        progress: show a progress bar on stderr (when it is a terminal).
        num_envs: markets stepped at once (default ``min(episodes, 1024)``).

    Returns:
        JSON-able metrics, see :func:`summarize`.
    """
    import attn_env

    episodes = config.episodes if episodes is None else int(episodes)
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    num_envs = min(episodes, 1024) if num_envs is None else int(num_envs)
    if num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}")
    num_envs = min(num_envs, episodes)

    env = attn_env.vector_env(num_envs, **dataclasses.asdict(config.env))
    players = build_agents(config, env.agents, agents)
    order = [players[a] for a in env.agents]
    n_buyers, rounds = env.spec.n_buyers, env.config.rounds
    rng = np.random.default_rng(
        [config.seed, 1]
    )  # agents' stream, apart from the env's
    for agent in order:
        agent.reset(num_envs, rng)
    obs, _ = env.reset(seed=config.seed)

    from tqdm.auto import tqdm

    bar = tqdm(
        total=episodes,
        unit="ep",
        disable=None if progress else True,
        desc=f"simulate {config.env.mechanism}",
        file=sys.stderr,
    )
    batches: list[dict[str, NDArray]] = []
    done = 0
    while done < episodes:
        steps: list[dict[str, NDArray]] = []
        for _ in range(rounds):
            alpha = env.core.alpha.copy()  # this round's slots (not in infos)
            actions = np.stack([a.act(obs[:, j], rng) for j, a in enumerate(order)], 1)
            obs, _, _, _, info = env.step(actions)
            for j, agent in enumerate(order):
                agent.observe(feedback(info, j, n_buyers))
            step = {k: np.asarray(info[k], dtype=np.float64) for k in _RECORD_KEYS}
            step["price"] = np.asarray(info["clearing_price"], dtype=np.float64)
            step["alpha"] = alpha
            steps.append(step)
        keep = min(num_envs, episodes - done)
        batches.append({k: np.stack([s[k] for s in steps], 1)[:keep] for k in steps[0]})
        done += keep
        bar.update(keep)
    bar.close()
    records = {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
    kinds = {name: _kind(config, name, agents) for name in env.agents}
    result = summarize(
        records, env.agents, n_buyers, env.spec.family, env.config.redraw
    )
    result.update(
        mechanism=config.env.mechanism,
        episodes=episodes,
        rounds=rounds,
        num_envs=num_envs,
        seed=config.seed,
        agent_kinds=kinds,
    )
    return result


def _kind(
    config: ExperimentConfig, name: str, given: Mapping[str, Agent] | None
) -> str:
    if given and name in given:
        return type(given[name]).__name__
    return config.agent_spec(name).kind


def summarize(
    rec: Mapping[str, NDArray],
    names: list[str],
    n_buyers: int,
    family: str,
    redraw: str = "round",
) -> dict[str, Any]:
    """Market metrics from round records ``[E, T, ...]`` (episodes x rounds).

    Args:
        rec: ``value``, ``bid``, ``alloc``, ``payment``, ``utility``, ``active``
            ``[E, T, A]`` (columns in ``names`` order, buyers first), ``price``
            ``[E, T]`` (nan: no trade) and ``alpha [E, T, K]``.
        names: agent names.
        n_buyers: number of buyer columns.
        family: ``one_sided``, ``two_sided`` or ``matching``.
        redraw: ``round`` or ``episode`` (a two-sided period's first-best is per draw).

    Returns:
        ``efficiency``, ``welfare``, ``optimal_welfare``, ``revenue``,
        ``budget_surplus``, ``volume``, ``mean_price`` (payments per unit),
        ``price_std`` (of clearing prices), ``walrasian_distance`` (mean distance of
        clearing prices to the round's Walrasian interval), ``walrasian_share``
        (share of prices inside it), ``ir_violations`` (agent-rounds with an IR
        action yet negative utility), ``mean_utility`` and ``exposure_share`` by
        agent name, ``gini_utility`` (of agents' mean utilities, negatives
        clipped to 0), ``gini_exposure``, and ``series`` (per round, or per bin of
        episodes when an episode has one round) for the plot.
    """
    n = n_buyers
    value, bid, alloc, pay = rec["value"], rec["bid"], rec["alloc"], rec["payment"]
    util, active, price = rec["utility"], rec["active"] > 0.5, rec["price"]
    E, T = price.shape

    def flat(x: NDArray) -> NDArray:
        return x.reshape(E * T, *x.shape[2:])

    bv, ba, bpay = value[..., :n], alloc[..., :n], pay[..., :n]
    two_sided = family == "two_sided"
    if two_sided:
        cost, sold, receipt = value[..., n:], alloc[..., n:], pay[..., n:]
        welfare = metrics.welfare(flat(bv), flat(ba), flat(cost), flat(sold)).reshape(
            E, T
        )
        opt = metrics.optimal_welfare(flat(bv), costs=flat(cost)).reshape(E, T)
        if redraw == "episode":  # one period per episode: its first-best once
            opt[:, 1:] = 0.0
        low, high = metrics.walrasian_interval(flat(bv), flat(cost))
        surplus = metrics.budget_surplus(flat(bpay), flat(receipt)).reshape(E, T)
    else:
        live_value = np.where(active[..., :n], bv, 0.0)
        welfare = metrics.welfare(flat(bv), flat(ba)).reshape(E, T)
        opt = metrics.optimal_welfare(flat(live_value), alpha=flat(rec["alpha"]))
        opt = opt.reshape(E, T)
        low, high = metrics.walrasian_interval(
            flat(live_value), n_units=rec["alpha"].shape[-1]
        )
        surplus = metrics.budget_surplus(flat(bpay)).reshape(E, T)
    low, high = low.reshape(E, T), high.reshape(E, T)
    dist = metrics.walrasian_distance(price, low, high)
    traded = np.isfinite(price)

    rational = np.concatenate(
        [bid[..., :n] <= bv + _TOL, bid[..., n:] >= value[..., n:] - _TOL], axis=-1
    )
    ir = metrics.ir_violations(flat(util), flat(rational))
    utility_per_episode = util.sum(axis=1)  # [E, A]
    mean_u = metrics.mean_utility(utility_per_episode)
    exposure = metrics.exposure_share(flat(ba))
    units = ba.sum()
    price_mean, price_std = metrics.price_stats(price)
    return {
        "efficiency": metrics.efficiency(welfare, opt),
        "welfare": float(welfare.sum(axis=1).mean()),
        "optimal_welfare": float(opt.sum(axis=1).mean()),
        "revenue": float(bpay.sum(axis=(1, 2)).mean()),
        "budget_surplus": float(surplus.sum(axis=1).mean()),
        "volume": float(ba.sum(axis=(1, 2)).mean()),
        "mean_price": float(bpay.sum() / units) if units > _TOL else math.nan,
        "mean_clearing_price": price_mean,
        "price_std": price_std,
        "walrasian_distance": float(dist[traded].mean()) if traded.any() else math.nan,
        "walrasian_share": float((dist[traded] <= _TOL).mean())
        if traded.any()
        else math.nan,
        "ir_violations": int(ir.sum()),
        "mean_utility": dict(zip(names, map(float, mean_u), strict=True)),
        "exposure_share": dict(zip(names[:n], map(float, exposure), strict=True)),
        "gini_utility": float(metrics.gini(np.clip(mean_u, 0.0, None))),
        "gini_exposure": float(metrics.gini(exposure)),
        "series": _series(
            price, low, high, welfare, opt, cumulative=two_sided and redraw == "episode"
        ),
    }


def _ratio(num: NDArray, den: NDArray) -> NDArray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > _TOL, num / np.where(den > _TOL, den, 1.0), np.nan)


def _series(
    price: NDArray,
    low: NDArray,
    high: NDArray,
    welfare: NDArray,
    opt: NDArray,
    cumulative: bool,
) -> dict[str, Any]:
    """Price path, Walrasian band and efficiency by round (or by bins of episodes).

    With ``cumulative`` (one two-sided period per episode) efficiency at round ``t``
    is the share of the period's first-best realised by the end of round ``t``.
    """
    E, T = price.shape
    if T > 1:
        x = np.arange(1, T + 1)
        groups = [np.s_[:, t] for t in range(T)]
        label = "round"
    else:
        edges = np.linspace(0, E, min(_MAX_BINS, E) + 1).astype(int)
        groups = [np.s_[a:b, 0] for a, b in itertools.pairwise(edges)]
        x = (edges[:-1] + edges[1:]) / 2
        label = "episode"
    if cumulative:
        welfare, opt = (
            np.cumsum(welfare, axis=1),
            np.broadcast_to(opt.sum(1, keepdims=True), opt.shape),
        )

    def mean_finite(x: NDArray) -> float:
        x = x[np.isfinite(x)]
        return float(x.mean()) if x.size else math.nan

    return {
        "x_label": label,
        "efficiency_label": "cumulative efficiency" if cumulative else "efficiency",
        "x": x.tolist(),
        "price": [mean_finite(price[g]) for g in groups],
        "walrasian_low": [float(low[g].mean()) for g in groups],
        "walrasian_high": [float(high[g].mean()) for g in groups],
        "efficiency": [float(_ratio(welfare[g].sum(), opt[g].sum())) for g in groups],
    }


def _jsonable(x: Any) -> Any:
    """Plain JSON data: nan and inf become ``null``, numpy scalars Python ones."""
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


# ---------------------------------------------------------------------- command


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``simulate CONFIG [--json] [--plot FILE] [--episodes N] [--num-envs N]``."""
    p = subparsers.add_parser(
        "simulate",
        help="play fixed agents in a market and report its metrics",
        description="Play the config's agents (truthful, bne, zi_c, zip, gd, pacing, "
        "policy, ...) in its market and print efficiency, revenue, prices and "
        "per-agent utility.",
    )
    p.add_argument("config", help="YAML experiment config (see configs/)")
    p.add_argument(
        "--json", action="store_true", help="print one JSON object on stdout"
    )
    p.add_argument(
        "--plot", metavar="FILE", help="write a PNG of prices and efficiency"
    )
    p.add_argument("--episodes", type=int, metavar="N", help="override config episodes")
    p.add_argument("--num-envs", type=int, metavar="N", help="markets stepped at once")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    result = play(config, episodes=args.episodes, num_envs=args.num_envs)
    if args.plot:
        from attn_env.plots import plot_market

        plot_market(result, args.plot)
    if args.json:
        print(json.dumps(_jsonable(result), allow_nan=False))
    else:
        _print_table(result)
        if args.plot:
            print(f"plot written to {args.plot}")
    return 0


def _fmt(x: Any) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    return f"{x:.4f}" if isinstance(x, float) else str(x)


_HEADLINE = (
    ("efficiency", "allocative efficiency (welfare / first-best)"),
    ("welfare", "welfare per episode"),
    ("revenue", "revenue per episode (buyers' payments)"),
    ("budget_surplus", "budget surplus per episode"),
    ("volume", "units traded per episode"),
    ("mean_price", "mean price per unit"),
    ("price_std", "std of clearing prices"),
    ("walrasian_distance", "mean distance to Walrasian interval"),
    ("walrasian_share", "share of prices inside it"),
    ("ir_violations", "IR violations (agent-rounds)"),
    ("gini_utility", "Gini of mean utilities"),
    ("gini_exposure", "Gini of exposure shares"),
)


def _print_table(result: Mapping[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    title = (
        f"{result['mechanism']}: {result['episodes']} episodes x {result['rounds']} "
        f"round(s), seed {result['seed']}"
    )
    market = Table(title=title)
    market.add_column("metric")
    market.add_column("value", justify="right")
    for key, label in _HEADLINE:
        market.add_row(label, _fmt(result[key]))
    per_agent = Table(title="agents")
    for col in ("agent", "kind", "mean utility", "exposure share"):
        per_agent.add_column(
            col, justify="left" if col in ("agent", "kind") else "right"
        )
    for name, u in result["mean_utility"].items():
        share = result["exposure_share"].get(name)
        per_agent.add_row(name, result["agent_kinds"][name], _fmt(u), _fmt(share))
    console = Console()
    console.print(market)
    console.print(per_agent)
