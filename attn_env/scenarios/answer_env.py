"""Sponsored sources in a generated answer as a PettingZoo parallel env: one
agent per sponsored passage (advertiser), bidding a common factor of its value.

==================  =============================================================
agents              ``advertiser_0 .. advertiser_{n_ads-1}`` (``n_ads``)
action              ``Box(-1, 1, (1,))``: the bid factor minus one; the agent
                    bids ``(1 + a) v`` per unit of attention in every market of
                    the step (``a = 0`` is truthful, ``a < 0`` shades)
observation         ``Box(-inf, inf, (8,))``: the mechanism (one-hot over
                    segment_auction, prominence_auction, gsp), the platform's
                    quality weight ``lambda``, and the agent's own last step:
                    bid factor, mean attention won, mean payment, mean utility
                    (per market; factor 1 and zeros after ``reset``)
reward              the agent's mean utility ``v x - payment`` over the step's
                    markets (expected values: exact per market)
step                ``env_markets`` fresh markets (queries of the shipped bank,
                    :meth:`attn_env.scenarios.answer_slots.Source.draw`) cleared
                    by :func:`attn_env.scenarios.answer_slots.clear`
episode             ``env_steps`` steps with one mechanism and quality weight,
                    drawn uniformly from the config's lists at ``reset`` unless
                    ``options`` names them (``{"mechanism", "quality_weight"}``)
==================  =============================================================

Markets are drawn from the env's generator only (the rules are deterministic in
expectation), so two episodes from the same ``reset(seed=s)`` and options play
the same markets whatever the bids: bidders are compared paired. An action
outside ``[-1, 1]``, NaN, or of the wrong shape is refused with a message naming
the agent; it is never clipped.

Version history: ``answer_slots_v0``, the first.
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar

import numpy as np
from gymnasium.spaces import Box
from gymnasium.utils import seeding
from numpy.typing import NDArray
from pettingzoo import ParallelEnv

from attn_env.errors import UserError
from attn_env.scenarios.answer_slots import (
    MECHANISMS,
    AnswerSlotsConfig,
    Markets,
    Source,
    clear,
    validate,
)

__all__ = ["OBS_SIZE", "AnswerSlotsEnv", "check_actions", "observe"]

OBS_SIZE = len(MECHANISMS) + 5
"One-hot mechanism, lambda, last factor, attention, payment, utility."


def check_actions(actions: Any, names: list[str]) -> NDArray[np.float64]:
    """The bid factors ``1 + a`` (``float64 [n]``) of ``{agent: a}``; one line
    naming the first agent whose action is missing, misshapen or outside [-1, 1]."""
    out = np.empty(len(names))
    for i, name in enumerate(names):
        if name not in actions:
            raise UserError(f"no action for {name} (every live agent must act)")
        a = np.asarray(actions[name], dtype=np.float64)
        if a.size != 1:
            raise UserError(
                f"action of {name} must be one number in [-1, 1], got shape {a.shape}"
            )
        v = float(a.reshape(-1)[0])
        if not (np.isfinite(v) and -1.0 <= v <= 1.0):
            raise UserError(
                f"action of {name} must be a bid factor minus one in [-1, 1], got {v!r}"
            )
        out[i] = 1.0 + v
    return out


def observe(
    mechanism: str,
    lam: float,
    factors: NDArray[np.float64],
    own: NDArray[np.float64],
) -> NDArray[np.float32]:
    """Observations ``(n, OBS_SIZE)``: one-hot ``mechanism``, ``lam``, each agent's
    last factor and ``own [n, 3]`` (mean attention, payment, utility)."""
    n = len(factors)
    obs = np.zeros((n, OBS_SIZE), dtype=np.float32)
    obs[:, MECHANISMS.index(mechanism)] = 1.0
    obs[:, len(MECHANISMS)] = lam
    obs[:, len(MECHANISMS) + 1] = factors
    obs[:, len(MECHANISMS) + 2 :] = own
    return obs


class AnswerSlotsEnv(ParallelEnv):
    """Advertisers bidding for an answer's attention; every advertiser is an agent."""

    metadata: ClassVar[dict[str, Any]] = {
        "name": "answer_slots_v0",
        "render_modes": [],
        "is_parallelizable": True,
    }

    def __init__(
        self, config: AnswerSlotsConfig | None = None, source: Source | None = None
    ) -> None:
        self.config = validate(config or AnswerSlotsConfig())
        self.source = source or Source(self.config.n_segments)
        self.possible_agents = [f"advertiser_{i}" for i in range(self.config.n_ads)]
        self.agents: list[str] = []
        self.render_mode = None
        self.np_random, self.np_random_seed = seeding.np_random(self.config.seed)
        self.mechanism = self.config.mechanisms[0]
        self.quality_weight = float(self.config.quality_weights[0])
        self.t = 0
        self.markets: Markets | None = None
        "The last step's markets (for counterfactual checks)."
        self.bids: NDArray[np.float64] | None = None
        "The last step's bids ``[env_markets, n_ads]``."
        self.measures: dict[str, float] = {}
        """The last step's means per market (revenue, advertiser welfare and
        utility, quality, quality cost, sponsored share) and mean bid factor."""

    @functools.cache  # noqa: B019 - one space object per agent, as the API test wants
    def observation_space(self, agent: str) -> Box:
        return Box(-np.inf, np.inf, shape=(OBS_SIZE,), dtype=np.float32)

    @functools.cache  # noqa: B019
    def action_space(self, agent: str) -> Box:
        return Box(-1.0, 1.0, shape=(1,), dtype=np.float32)

    def _obs(self, obs: NDArray[np.float32]) -> dict[str, NDArray[np.float32]]:
        return {a: obs[i] for i, a in enumerate(self.possible_agents)}

    def reset(
        self, seed: int | None = None, options: dict | None = None
    ) -> tuple[dict[str, NDArray[np.float32]], dict[str, dict]]:
        """A new episode; ``options`` may fix ``mechanism`` and ``quality_weight``
        (other keys are ignored, as PettingZoo's API test passes its own)."""
        if seed is not None:
            self.np_random, self.np_random_seed = seeding.np_random(seed)
        c, options = self.config, dict(options or {})
        if "mechanism" in options:
            if options["mechanism"] not in MECHANISMS:
                raise UserError(
                    f"mechanism must be one of {', '.join(MECHANISMS)}, "
                    f"got {options['mechanism']!r}"
                )
            self.mechanism = options["mechanism"]
        else:
            self.mechanism = c.mechanisms[
                int(self.np_random.integers(len(c.mechanisms)))
            ]
        if "quality_weight" in options:
            lam = options["quality_weight"]
            if not (isinstance(lam, int | float) and np.isfinite(lam) and lam >= 0):
                raise UserError(f"quality_weight must be a number >= 0, got {lam!r}")
            self.quality_weight = float(lam)
        else:
            k = int(self.np_random.integers(len(c.quality_weights)))
            self.quality_weight = float(c.quality_weights[k])
        self.agents = self.possible_agents[:]
        self.t = 0
        n = len(self.agents)
        obs = observe(self.mechanism, self.quality_weight, np.ones(n), np.zeros((n, 3)))
        return self._obs(obs), {a: {} for a in self.agents}

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        """Clear ``env_markets`` fresh markets at the agents' bid factors."""
        if not self.agents:
            raise UserError("step called on a finished episode; call reset() first")
        c = self.config
        factors = check_actions(actions, self.agents)
        mk = self.source.draw(self.np_random, c.env_markets, c)
        bids = factors[None, :] * mk.value
        res = clear(self.mechanism, mk, bids, self.quality_weight, c)
        utility = mk.value * res["x"] - res["pay"]
        own = np.stack(
            [res["x"].mean(axis=0), res["pay"].mean(axis=0), utility.mean(axis=0)],
            axis=1,
        )
        self.markets, self.bids = mk, bids
        revenue = float(res["pay"].sum(axis=1).mean())
        welfare = float((mk.value * res["x"]).sum(axis=1).mean())
        self.measures = {
            "revenue": revenue,
            "advertiser_welfare": welfare,
            "advertiser_utility": welfare - revenue,
            "quality": float(res["quality"].mean()),
            "quality_cost": float((mk.q0 - res["quality"]).mean()),
            "sponsored_share": float(res["x"].sum(axis=1).mean()),
            "bid_factor": float(factors.mean()),
        }
        self.t += 1
        names = self.agents
        obs = self._obs(observe(self.mechanism, self.quality_weight, factors, own))
        rewards = {a: float(own[i, 2]) for i, a in enumerate(names)}
        over = self.t >= c.env_steps
        terminations = dict.fromkeys(names, False)
        truncations = dict.fromkeys(names, over)
        infos = {a: {} for a in names}
        if over:
            self.agents = []
        return obs, rewards, terminations, truncations, infos

    def close(self) -> None:
        """Nothing to release."""
