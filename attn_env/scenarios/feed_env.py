"""The recommendation feed as a PettingZoo parallel env: creators choose
promotion bids, advertisers choose ad bids, the platform's rule (and its
fairness constraint) is the config's.

==================  =============================================================
agents              ``creator_0 .. creator_{nc-1}``, ``advertiser_0 ..
                    advertiser_{na-1}`` (``n_creators``, ``n_advertisers``)
action              ``Box(0, 2, (1,))``: the bid factor (bid per unit of
                    attention = factor x value; 1 is truthful; a creator's bid
                    is its promotion bid, 0: no promotion)
observation         ``Box(-inf, inf, (6,))``: is creator, is advertiser, the
                    agent's theta over its role's largest (``creator_value`` or
                    ``ad_value``), its attention per feed last step, the price
                    it paid last step per unit of attention over its theta, the
                    share of the episode played
reward              the agent's mean utility per feed this step, ``theta r x -
                    payment`` (0 in feeds where it sits out)
step                one session in each of ``env_markets`` feeds, cleared at
                    once by :func:`attn_env.scenarios.feed.clear`
episode             ``env_sessions`` steps; the fair rules' exposure deficits
                    are amortised over them (all agents end together)
==================  =============================================================

The rule is the config's first ``mechanisms`` entry, under its first
``user_models`` entry, with ``gamma`` = its first ``fairness_weights`` entry
for the fair rules (0 for the others): to train under another rule, list it
first. Each agent is one business: its ``theta`` is drawn at ``reset`` and is
the same in all the step's feeds, whose queries, budgets and catalogues differ.
Every ``reset`` draws a new episode from the env's generator;
``reset(seed=s)`` reseeds it. An action outside ``[0, 2]``, NaN or of the
wrong shape is refused with a message naming the agent; it is never clipped.

Version history: ``feed_v0``, the first.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from gymnasium.spaces import Box
from gymnasium.utils import seeding
from numpy.typing import NDArray
from pettingzoo import ParallelEnv

from attn_env.checks import check_agent_actions, check_one_of
from attn_env.errors import UserError
from attn_env.scenarios.feed import (
    BASE,
    MECHANISMS,
    FeedConfig,
    Feeds,
    clear,
    deviations,
    load,
    tv_gap,
    validate,
)
from attn_env.scenarios.feed_rules import USER_MODELS, fair_bonus

__all__ = ["FACTOR_MAX", "OBS_SIZE", "FeedEnv", "Step", "check_factors"]

FACTOR_MAX = 2.0
"Largest bid factor an agent may choose (1: truthful)."
OBS_SIZE = 6
"Observation length (see the module table)."


def check_factors(a: Any, names: list[str]) -> NDArray[np.float64]:
    """``a`` as ``float64 [n]`` if every entry is in ``[0, FACTOR_MAX]``, else one
    line naming the first bad agent."""
    x = np.asarray(a, dtype=np.float64).reshape(-1)
    if x.shape != (len(names),):
        raise UserError(
            f"expected {len(names)} bid factors (one per agent), got shape "
            f"{np.shape(a)}"
        )
    return check_agent_actions(
        x, names, 0.0, FACTOR_MAX, f"a bid factor in [0, {FACTOR_MAX:g}]"
    )


@dataclass
class Step:
    """One step's outcome: per agent ``[N]`` means over the step's feeds, and the
    platform's per-feed means (floats)."""

    utility: NDArray[np.float64]
    exposure: NDArray[np.float64]
    payment: NDArray[np.float64]
    revenue: float
    user_welfare: float
    deviation: NDArray[np.float64] | None
    "``[N, L]`` each agent's utility at each asked-for factor, others fixed."


class FeedEnv(ParallelEnv):
    """Creators' promotion bids and advertisers' bids on a feed; every owner
    is an agent."""

    metadata: ClassVar[dict[str, Any]] = {
        "name": "feed_v0",
        "render_modes": [],
        "is_parallelizable": True,
    }

    def __init__(self, config: FeedConfig | None = None, feeds: Feeds | None = None):
        self.config = c = validate(config or FeedConfig())
        self.feeds = feeds if feeds is not None else load(c)
        self.rule = check_one_of(c.mechanisms[0], MECHANISMS, "mechanisms[0]")
        self.model = check_one_of(c.user_models[0], USER_MODELS, "user_models[0]")
        self.gamma = float(c.fairness_weights[0]) if self.rule in BASE else 0.0
        nc, na = c.n_creators, c.n_advertisers
        self.possible_agents = [f"creator_{i}" for i in range(nc)] + [
            f"advertiser_{j}" for j in range(na)
        ]
        self.agents: list[str] = []
        self.render_mode = None
        self.np_random, self.np_random_seed = seeding.np_random(c.seed)
        self.is_creator = np.arange(nc + na) < nc
        self.role_max = np.where(self.is_creator, c.creator_value, c.ad_value)
        self.theta = np.zeros(nc + na)
        self.t = 0

    @functools.cache  # noqa: B019 - one space object per agent, as the API test wants
    def observation_space(self, agent: str) -> Box:
        return Box(-np.inf, np.inf, shape=(OBS_SIZE,), dtype=np.float32)

    @functools.cache  # noqa: B019
    def action_space(self, agent: str) -> Box:
        return Box(0.0, FACTOR_MAX, shape=(1,), dtype=np.float32)

    # --- the market -------------------------------------------------------------

    def start(self, seed: int | None = None) -> NDArray[np.float32]:
        """Draw a new episode (thetas, catalogues); the observations ``[N, 6]``."""
        if seed is not None:
            self.np_random, self.np_random_seed = seeding.np_random(seed)
        c, rng = self.config, self.np_random
        n, b = len(self.possible_agents), c.env_markets
        self.theta = rng.random(n) * self.role_max
        self.cat = rng.integers(self.feeds.rel.shape[0], size=b)
        self.cum_e = np.zeros((b, c.n_creators))
        self.cum_u = np.zeros((b, c.n_creators))
        self.t = 0
        self.last = np.zeros((n, 2))
        return self.observe()

    def observe(self) -> NDArray[np.float32]:
        """``[N, 6]`` every agent's observation (see the module table)."""
        n = len(self.possible_agents)
        obs = np.zeros((n, OBS_SIZE), dtype=np.float32)
        obs[:, 0] = self.is_creator
        obs[:, 1] = ~self.is_creator
        obs[:, 2] = self.theta / np.where(self.role_max > 0, self.role_max, 1.0)
        obs[:, 3:5] = self.last
        obs[:, 5] = self.t / self.config.env_sessions
        return obs

    @property
    def done(self) -> bool:
        """Whether the episode's sessions are all played."""
        return self.t >= self.config.env_sessions

    def play(
        self, factors: NDArray[np.float64], levels: NDArray[np.float64] | None = None
    ) -> Step:
        """One session in every feed with bid ``factors [N] x value``.

        ``levels [N, L]``, if given, also clears each agent's unilateral
        deviations to those factors on the same session (:func:`feed.deviations`).
        """
        c, rng = self.config, self.np_random
        b, nc = c.env_markets, c.n_creators
        q = rng.integers(self.feeds.n_queries, size=b)
        budget = rng.uniform(c.budget_low, c.budget_high, size=b)
        r = self.feeds.rel[self.cat, q]
        value = self.theta[None, :] * r
        bids = factors[None, :] * value
        pos = self.feeds.pos[q]
        bonus = (
            fair_bonus(self.cum_e, self.cum_u, self.gamma)
            if self.rule in BASE
            else np.zeros((b, nc))
        )
        x, shown_r, got, paid = clear(
            self.rule, self.model, r, bids, pos, budget, bonus, c
        )
        dev = None
        if levels is not None:
            dev = deviations(
                self.rule, self.model, r, value, bids, pos, budget, bonus, c, levels
            ).mean(axis=0)
        self.cum_e += got[:, :nc]
        self.cum_u += r[:, :nc]
        self.t += 1
        step = Step(
            utility=(value * got - paid).mean(axis=0),
            exposure=got.mean(axis=0),
            payment=paid.mean(axis=0),
            revenue=float(paid.sum(axis=1).mean()),
            user_welfare=float((x * shown_r).sum(axis=1).mean()),
            deviation=dev,
        )
        with np.errstate(invalid="ignore", divide="ignore"):
            price = np.where(step.exposure > 0, step.payment / step.exposure, 0.0)
            rel_price = np.where(self.theta > 0, price / self.theta, 0.0)
        self.last = np.stack([step.exposure, rel_price], axis=1)
        return step

    def fairness_gap(self) -> float:
        """Mean amortised exposure/merit gap of the creators over the feeds so far."""
        return float(np.nanmean(tv_gap(self.cum_e, self.cum_u)))

    # --- PettingZoo ---------------------------------------------------------------

    def _by_agent(self, obs: NDArray[np.float32]) -> dict[str, NDArray[np.float32]]:
        return {a: obs[i] for i, a in enumerate(self.possible_agents)}

    def reset(self, seed: int | None = None, options: dict | None = None):
        obs = self.start(seed)
        self.agents = self.possible_agents[:]
        return self._by_agent(obs), {a: {} for a in self.agents}

    def step(self, actions: dict[str, Any]):
        if not self.agents:
            raise UserError("step() called before reset() or after the episode ended")
        missing = [a for a in self.agents if a not in actions]
        if missing:
            raise UserError(f"no action for {missing[0]} (every agent acts each step)")
        f = check_factors(
            [np.asarray(actions[a], dtype=np.float64).reshape(-1) for a in self.agents],
            self.agents,
        )
        res = self.play(f)
        obs = self._by_agent(self.observe())
        done = self.done
        rewards = {a: float(res.utility[i]) for i, a in enumerate(self.agents)}
        infos = {
            a: {"exposure": float(res.exposure[i]), "payment": float(res.payment[i])}
            for i, a in enumerate(self.agents)
        }
        terms = dict.fromkeys(self.agents, False)
        truncs = dict.fromkeys(self.agents, done)
        if done:
            self.agents = []
        return obs, rewards, terms, truncs, infos


Chooser = Callable[[NDArray[np.float32], FeedEnv], NDArray[np.float64]]
"``(observations [N, 6], env) -> bid factors [N]`` of one step."


def episode(
    env: FeedEnv,
    seed: int,
    choose: Chooser,
    levels: NDArray[np.float64] | None = None,
    learn: Callable[[Step], None] | None = None,
) -> dict[str, Any]:
    """Play one episode of ``env`` from ``seed`` with bid factors from ``choose``.

    Returns per-agent means over the steps (``utility``, ``factor`` ``[N]``,
    ``deviation [N, L]`` when ``levels`` is given) and the platform's means
    (``revenue``, ``user_welfare``) and final ``fairness_gap``; ``learn`` sees
    every step (the learners' feedback).
    """
    obs = env.start(seed)
    util, fac, dev = [], [], []
    rev, wel = [], []
    while not env.done:
        f = check_factors(choose(obs, env), env.possible_agents)
        s = env.play(f, levels)
        if learn is not None:
            learn(s)
        util.append(s.utility)
        fac.append(f)
        rev.append(s.revenue)
        wel.append(s.user_welfare)
        if s.deviation is not None:
            dev.append(s.deviation)
        obs = env.observe()
    out: dict[str, Any] = {
        "utility": np.mean(util, axis=0),
        "factor": np.mean(fac, axis=0),
        "revenue": float(np.mean(rev)),
        "user_welfare": float(np.mean(wel)),
        "fairness_gap": env.fairness_gap(),
    }
    if dev:
        out["deviation"] = np.mean(dev, axis=0)
    return out
