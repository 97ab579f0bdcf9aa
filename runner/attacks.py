"""Attacks on a market and the damage they do, on common random numbers.

:func:`attack_damage` plays a config's market twice on one seed: clean, and
with an attack (``ATTACKS``), both under an optional defence (``DEFENCES``).
Seats an attack adds (a shill, a wash pair) sit in the clean market too, as
empty seats (``kind: absent``), and the mechanism breaks ties from its own
stream (``attn_env.integrity.defences.hardened``), so both markets draw the
same values episode by episode and their difference is paired.

The accounting is the honest market's: seats with no real value (shill, wash
pair) are left out of revenue, welfare, first-best and utilities (a slot a
shill wins is unsold); a ring's members are real buyers, in welfare but not in
``honest_utility``; under fake traffic every figure uses the real r and alpha
(``attn_env.valuations.fake_traffic.true_draw``), while bids followed the
measured ones. Figures are means over episodes with standard errors
(:mod:`attn_env.estimates`), the damage is ``attacked - clean`` with its paired
standard error and 95% interval.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

import attn_env
from attn_env import mechanisms
from attn_env.config import AgentSpec, ExperimentConfig, validate_experiment
from attn_env.core import MarketSpec
from attn_env.errors import UserError
from attn_env.estimates import Estimate, difference
from attn_env.integrity.defences import hardened
from attn_env.market_log import MarketLog
from attn_env.players import Seats
from attn_env.valuations.fake_traffic import check_fake_traffic, true_draw
from runner.seats import build_agents
from runner.simulate import MAX_NUM_ENVS

__all__ = [
    "ATTACKS",
    "DEFENCES",
    "FIGURES",
    "Scenario",
    "attack_damage",
    "defend",
    "record",
    "scenario",
]

_ONE_SIDED = ("first_price", "second_price", "gsp", "vcg")
ATTACKS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "shill": (("second_price", "gsp", "vcg"), ("margin", "rank", "opening", "sees")),
    "ring": (_ONE_SIDED, ("members", "shade", "cover")),
    "fake_traffic": (
        (*_ONE_SIDED, "assignment", "stable_matching"),
        ("ads", "share", "boost", "target"),
    ),
    "wash": (("k_double", "mcafee", "call_market", "cda"), ("pairs", "level")),
}
"Attack name -> (mechanisms it supports, its parameters)."

DEFENCES: dict[str, tuple[str, ...]] = {
    "none": (),
    "reserve": ("reserve",),
    "random_reserve": ("low", "high"),
    "trade_reduction": (),
    "feedback": ("feedback",),
}
"Defence name -> its parameters."

FIGURES = (
    "revenue",
    "efficiency",
    "welfare",
    "honest_utility",
    "mean_clearing_price",
    "volume",
    "budget_surplus",
    "attacker_net",
    "ring_utility",
)
"The figures :func:`attack_damage` reports for each market and their damage."


@dataclass(frozen=True)
class Scenario:
    """A clean and an attacked experiment on the same seats.

    Attributes:
        name: the attack.
        params: its parameters as given.
        clean, attacked: the two experiments (mechanism not yet hardened).
        fake: agent columns with no real value (shill, wash pair).
        ring: columns of ring members (real buyers, not honest).
        fake_traffic: the bots' options, or ``None``.
    """

    name: str
    params: dict[str, Any]
    clean: ExperimentConfig
    attacked: ExperimentConfig
    fake: tuple[int, ...] = ()
    ring: tuple[int, ...] = ()
    fake_traffic: dict[str, Any] | None = None


def _spec(what: str, spec: str | Mapping[str, Any] | None, table: dict) -> tuple:
    """``(name, params)`` of an attack or defence given as a name or a mapping."""
    if spec is None:
        spec = "none"
    if isinstance(spec, str):
        name, params = spec, {}
    elif isinstance(spec, Mapping) and isinstance(spec.get("name"), str):
        params = {k: v for k, v in spec.items() if k != "name"}
        name = spec["name"]
    else:
        raise UserError(
            f"{what} must be a name or a mapping with a 'name', got {spec!r}"
        )
    if name not in table:
        raise UserError(f"unknown {what} {name!r}; known: {', '.join(table)}")
    known = table[name][1] if what == "attack" else table[name]
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise UserError(
            f"{what} {name!r} has no parameter {', '.join(map(repr, unknown))}; "
            f"known: {', '.join(known) or '(none)'}"
        )
    return name, dict(params)


def _with(
    config: ExperimentConfig, env: dict[str, Any], agents: dict[str, AgentSpec]
) -> ExperimentConfig:
    out = dataclasses.replace(
        config,
        env=dataclasses.replace(config.env, **env),
        agents={**config.agents, **agents},
    )
    validate_experiment(out)
    return out


def scenario(config: ExperimentConfig, attack: str | Mapping[str, Any]) -> Scenario:
    """The clean and attacked experiments of ``attack`` on ``config``'s market.

    Args:
        config: the clean market (its agents are the honest traders).
        attack: a name of :data:`ATTACKS` or ``{name: ..., **params}``:
            ``shill`` (``margin``, ``rank``, ``opening``, ``sees``: ``agents.attacks``)
            adds one buyer seat; ``ring`` (``members``: buyer indices, default
            ``[0, 1]``, the first the leader; ``shade``, ``cover``); ``fake_traffic``
            (``ads``, ``share``, ``boost``, ``target``); ``wash`` (``pairs``,
            default 1, and ``level``) adds buyer-seller pairs.

    Raises:
        ValueError: unknown attack or parameter, or a mechanism the attack does
            not support (the message names the supported ones).
    """
    name, params = _spec("attack", attack, ATTACKS)
    env = config.env
    mech = mechanisms.name_of(env.mechanism)
    supported = ATTACKS[name][0]
    if mech not in supported:
        raise UserError(
            f"attack {name!r} does not support mechanism {mech!r}; "
            f"supported: {', '.join(supported)}"
        )
    n = env.n_buyers
    if name == "shill":
        seat = {"n_buyers": n + 1}
        return Scenario(
            name,
            params,
            clean=_with(config, seat, {f"buyer_{n}": AgentSpec("absent")}),
            attacked=_with(config, seat, {f"buyer_{n}": AgentSpec("shill", params)}),
            fake=(n,),
        )
    if name == "ring":
        members = list(params.pop("members", [0, 1]))
        if len(set(members)) < 2 or not all(
            isinstance(i, int) and 0 <= i < n for i in members
        ):
            raise UserError(
                f"ring members must be at least 2 distinct buyer indices in "
                f"[0, {n}), got {members!r}"
            )
        ring = {
            f"buyer_{i}": AgentSpec("ring", {**params, "leader": k == 0})
            for k, i in enumerate(members)
        }
        return Scenario(
            name,
            {**params, "members": members},
            clean=config,
            attacked=_with(config, {}, ring),
            ring=tuple(sorted(members)),
        )
    if name == "fake_traffic":
        bots = check_fake_traffic(params)
        vp = {**env.valuation_params, "fake_traffic": params}
        return Scenario(
            name,
            params,
            clean=config,
            attacked=_with(config, {"valuation_params": vp}, {}),
            fake_traffic=bots,
        )
    pairs = params.pop("pairs", 1)
    if isinstance(pairs, bool) or not isinstance(pairs, int) or pairs < 1:
        raise UserError(f"wash pairs must be an integer >= 1, got {pairs!r}")
    m = mechanisms.n_sellers(env.mechanism, n, env.n_sellers)  # wash: two-sided
    seats = {"n_buyers": n + pairs, "n_sellers": m + pairs}
    added = [f"buyer_{n + k}" for k in range(pairs)]
    added += [f"seller_{m + k}" for k in range(pairs)]
    return Scenario(
        name,
        {**params, "pairs": pairs},
        clean=_with(config, seats, dict.fromkeys(added, AgentSpec("absent"))),
        attacked=_with(config, seats, dict.fromkeys(added, AgentSpec("wash", params))),
        fake=(*range(n, n + pairs), *range(n + pairs + m, n + 2 * pairs + m)),
    )


def defend(
    config: ExperimentConfig, defence: str | Mapping[str, Any] | None
) -> tuple[ExperimentConfig, tuple[float, float] | None]:
    """``config`` under ``defence``, and the random-reserve range it asks for.

    ``reserve`` sets the mechanism's ``reserve`` (default 0.25 of the top
    price); ``random_reserve`` draws it per market and round (default
    ``[0, 0.5]`` of the top price; :mod:`attn_env.integrity.defences`);
    ``trade_reduction`` replaces a sealed double auction (``k_double``,
    ``call_market``) by McAfee's; ``feedback`` sets the env's ``feedback``
    (default ``none``: nothing published).
    """
    name, params = _spec("defence", defence, DEFENCES)
    env = config.env
    mech = mechanisms.name_of(env.mechanism)
    top = MarketSpec.from_config(env).max_bid
    if name == "none":
        return config, None
    if name == "reserve":
        mp = {**env.mechanism_params, "reserve": params.get("reserve", 0.25 * top)}
        return _with(config, {"mechanism_params": mp}, {}), None
    if name == "random_reserve":
        return config, (params.get("low", 0.0), params.get("high", 0.5 * top))
    if name == "trade_reduction":
        if mech not in ("k_double", "call_market"):
            raise UserError(
                f"defence 'trade_reduction' replaces a sealed double auction "
                f"(k_double, call_market) by mcafee; got {mech!r}"
            )
        return _with(config, {"mechanism": "mcafee"}, {}), None
    if "feedback" not in {f.name for f in dataclasses.fields(env)}:
        raise UserError("defence 'feedback' needs the env option feedback")
    return _with(config, {"feedback": params.get("feedback", "none")}, {}), None


def attack_damage(
    config: ExperimentConfig,
    attack: str | Mapping[str, Any],
    episodes: int | None = None,
    seed: int | None = None,
    defence: str | Mapping[str, Any] | None = None,
    num_envs: int | None = None,
) -> dict[str, Any]:
    """The damage ``attack`` does to ``config``'s market, on common random numbers.

    Args:
        config: the clean market.
        attack: a name of :data:`ATTACKS` or ``{name: ..., **params}``.
        episodes: episodes per market (default ``config.episodes``).
        seed: the seed of both markets (default ``config.seed``).
        defence: a name of :data:`DEFENCES` or ``{name: ..., **params}``, applied
            to both markets.
        num_envs: markets stepped at once (default
            ``min(episodes, runner.simulate.MAX_NUM_ENVS)``).

    Returns:
        ``attack``, ``params``, ``defence``, ``mechanism``, ``episodes``, ``seed``,
        ``crn`` (share of episodes whose honest draws matched: 1.0 when the
        pairing holds), ``clean`` and ``attacked`` (each figure of
        :data:`FIGURES` and ``FIGURE_se``) and ``damage`` (per figure ``diff``
        = attacked - clean, its paired ``se``, ``ci_low``, ``ci_high``).
    """
    seed = config.seed if seed is None else int(seed)
    episodes = config.episodes if episodes is None else int(episodes)
    if episodes < 2:
        raise UserError(f"episodes must be >= 2 (standard errors), got {episodes}")
    num_envs = min(episodes, MAX_NUM_ENVS) if num_envs is None else int(num_envs)
    scen = scenario(config, attack)
    d_name, _ = _spec("defence", defence, DEFENCES)
    runs = {}
    for label, cfg in (("clean", scen.clean), ("attacked", scen.attacked)):
        cfg, rr = defend(dataclasses.replace(cfg, seed=seed), defence)
        bots = scen.fake_traffic if label == "attacked" else None
        runs[label] = _play(cfg, scen, bots, episodes, num_envs, rr)
    clean, attacked = runs["clean"], runs["attacked"]
    draws = [r.pop("_draws") for r in (clean, attacked)]
    crn = float(np.mean(np.all(np.isclose(draws[0], draws[1]), axis=1)))
    damage = {}
    for k in FIGURES:
        diff = difference(attacked[k], clean[k], paired=True)
        damage[k] = {
            "diff": diff.diff,
            "se": diff.se,
            "ci_low": diff.ci_low,
            "ci_high": diff.ci_high,
        }
    return {
        "attack": scen.name,
        "params": scen.params,
        "defence": d_name if isinstance(defence, str | None) else dict(defence),
        "mechanism": mechanisms.name_of(config.env.mechanism),
        "episodes": episodes,
        "seed": seed,
        "crn": crn,
        "clean": _plain(clean),
        "attacked": _plain(attacked),
        "damage": damage,
    }


def _plain(figures: dict[str, Estimate]) -> dict[str, float]:
    out = {}
    for k, est in figures.items():
        out[k], out[f"{k}_se"] = est.value, est.se
    return out


def _play(
    config: ExperimentConfig,
    scen: Scenario,
    bots: dict[str, Any] | None,
    episodes: int,
    num_envs: int,
    random_reserve: tuple[float, float] | None,
) -> dict[str, Any]:
    """Play one market; its figures as estimates (honest accounting).

    ``bots``: the fake traffic this market carries (its real r and alpha are
    restored from the measured ones), or ``None``.
    """
    env, rounds = _market(config, min(num_envs, episodes), random_reserve)
    num_envs, env_cfg = env.num_envs, env.config
    keep = [j for j in range(len(env.agents)) if j not in scen.fake]
    names = [env.agents[j] for j in keep]
    n = env.spec.n_buyers
    n_keep = sum(j < n for j in keep)
    reserve = env.core.mechanism.reserve
    log = MarketLog(names, n_keep, env.spec.family, env_cfg.redraw, reserve)
    two_sided = env.spec.family == "two_sided"
    fake_b = [j for j in scen.fake if j < n]
    fake_s = [j for j in scen.fake if j >= n]
    net: list[NDArray] = []
    done = 0
    while done < episodes:
        acc = np.zeros(num_envs)
        for _ in range(env_cfg.rounds):
            info = next(rounds)
            pay = np.asarray(info["payment"], dtype=np.float64)
            acc += pay[:, fake_s].sum(axis=1) - pay[:, fake_b].sum(axis=1)
            log.add_round(_honest_view(info, keep, n, bots, two_sided))
        take = min(num_envs, episodes - done)
        log.end_batch(take)
        net.append(acc[:take])
        done += take
    est = log.estimates()
    utility = log.agent_estimates()["mean_utility"]
    ring = {f"buyer_{i}" for i in scen.ring}
    out = {k: est[k] for k in ("revenue", "efficiency", "welfare")}
    out["honest_utility"] = _sum([u for a, u in utility.items() if a not in ring])
    out["mean_clearing_price"] = est["mean_clearing_price"]
    out["volume"] = est["volume"]
    out["budget_surplus"] = est["budget_surplus"]
    out["attacker_net"] = Estimate.mean(np.concatenate(net))
    out["ring_utility"] = _sum([u for a, u in utility.items() if a in ring])
    out["_draws"] = log.draws()
    return out


def _market(
    config: ExperimentConfig,
    num_envs: int,
    random_reserve: tuple[float, float] | None = None,
) -> tuple[Any, Iterator[dict[str, Any]]]:
    """``config``'s vector env (hardened mechanism) and an endless iterator of
    its rounds' infos, the config's agents playing (seeded as ``play``)."""
    env_cfg = config.env
    mech = hardened(
        mechanisms.name_of(env_cfg.mechanism),
        env_cfg.mechanism_params,
        config.seed,
        random_reserve,
    )
    env_cfg = dataclasses.replace(env_cfg, mechanism=mech, mechanism_params={})
    env = attn_env.vector_env(num_envs, config=env_cfg, action="absolute")
    players = build_agents(dataclasses.replace(config, env=env_cfg), env.agents)
    seats = Seats([players[a] for a in env.agents], env.spec.n_buyers)

    def rounds() -> Iterator[dict[str, Any]]:
        rng = np.random.default_rng([config.seed, 1])  # the agents' stream
        seats.reset(num_envs, rng)
        obs, _ = env.reset(seed=config.seed)
        while True:
            obs, _, _, _, info = env.step(seats.act(obs, rng))
            seats.observe(info)
            yield info

    return env, rounds()


def record(
    config: ExperimentConfig,
    markets: int,
    episodes: int,
    random_reserve: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """Every round of ``markets`` markets, ``episodes`` episodes each, kept whole.

    Labelled traffic for the detectors: market ``b``'s history is row ``b``.

    Returns:
        ``agents`` (names, buyers first), ``n_buyers``, and ``[B, T, ...]``
        arrays (``T = episodes * rounds``): ``bid``, ``payment``, ``alloc``,
        ``value`` ``[B, T, A]``, ``theta``, ``relevance`` ``[B, T, n]``,
        ``alpha [B, T, K]``, ``clearing_price [B, T]``.
    """
    env, rounds = _market(config, markets, random_reserve)
    keys = ("bid", "payment", "alloc", "value", "theta", "relevance", "alpha")
    seen: dict[str, list[NDArray]] = {k: [] for k in (*keys, "clearing_price")}
    for _ in range(episodes * env.config.rounds):
        info = next(rounds)
        for k in seen:
            seen[k].append(np.asarray(info[k], dtype=np.float64))
    out: dict[str, Any] = {k: np.stack(v, axis=1) for k, v in seen.items()}
    out.update(agents=list(env.agents), n_buyers=env.spec.n_buyers)
    return out


def _sum(parts: list[Estimate]) -> Estimate:
    """The estimate of a sum of per-episode means (influences add up)."""
    if not parts:
        return Estimate(0.0, np.zeros(0))
    return Estimate(
        math.fsum(p.value for p in parts), np.sum([p.influence for p in parts], axis=0)
    )


def _honest_view(
    info: Mapping[str, Any],
    keep: list[int],
    n: int,
    bots: dict[str, Any] | None,
    two_sided: bool,
) -> dict[str, Any]:
    """A round's info as the honest market saw it: fake seats dropped, real values.

    Args:
        info: the vector env's step info.
        keep: agent columns kept (buyers first).
        n: number of buyer columns in ``info``.
        bots: fake-traffic options, to restore the real r and alpha.
        two_sided: a double auction (its price is the market's, wash trades and
            all); one-sided, a round whose slots went to fake seats only is unsold.
    """
    out = {k: np.asarray(info[k])[:, keep] for k in _AGENT_KEYS}
    buyers = [j for j in keep if j < n]
    out["slot"] = np.asarray(info["slot"])[:, buyers]
    out["alpha"] = np.asarray(info["alpha"], dtype=np.float64)
    price = np.asarray(info["clearing_price"], dtype=np.float64)
    nb = len(buyers)
    if bots is not None:
        r, alpha = true_draw(bots, info["relevance"], info["alpha"])
        alloc = out["alloc"].astype(np.float64)
        if bots["target"] == "alpha":
            alloc = alloc / bots["boost"]
        value = out["value"].astype(np.float64)
        value[:, :nb] = np.asarray(info["theta"])[:, buyers] * r[:, buyers]
        utility = out["utility"].astype(np.float64)
        utility[:, :nb] = value[:, :nb] * alloc[:, :nb] - out["payment"][:, :nb]
        out.update(value=value, alloc=alloc, utility=utility, alpha=alpha)
    if nb < n and not two_sided:
        won = (out["alloc"][:, :nb] > 0).any(axis=1)
        price = np.where(won, price, np.nan)
    out["clearing_price"] = price
    return out


_AGENT_KEYS = ("value", "bid", "alloc", "payment", "utility", "active")
