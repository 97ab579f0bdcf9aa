"""``simulate``: play a config's agents in its market and measure it.

:func:`play` builds the vector env of a config and one agent per agent name,
plays ``episodes`` episodes ``num_envs`` markets at a time through the one
driver of fixed agents (:class:`attn_env.players.Seats`) and reduces every
round with :class:`attn_env.market_log.MarketLog`. It returns plain-data
metrics (``nan`` where undefined), each mean with its standard error over
episodes; the command line prints them. :func:`play_log` returns the log
itself, for experiments that need per-episode figures (``runner.compare``).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np

import attn_env
from attn_env.config import ExperimentConfig
from attn_env.errors import UserError
from attn_env.market_log import MarketLog
from attn_env.mechanisms import name_of
from attn_env.players import Agent, Seats
from runner.seats import build_agents

__all__ = ["MAX_NUM_ENVS", "Recorder", "play", "play_log"]

MAX_NUM_ENVS = 1024
"Markets stepped at once by default (``min(episodes, MAX_NUM_ENVS)``)."


class Recorder(Protocol):
    """Something that watches :func:`play_log`'s rounds beside the market log.

    A recorder may also define ``warmup_round(info)``: it then sees the
    ``config.warmup`` learning rounds too (``runner.collusion`` draws the bid
    path from them); the others see only the measured episodes.
    """

    def start(self, env: Any) -> None:
        """Called once with the vector env, before the warmup and the first round."""

    def add_round(self, info: Mapping[str, Any]) -> None:
        """One round's infos of ``num_envs`` markets."""

    def end_batch(self, keep: int) -> None:
        """The batch's episodes ended; only the first ``keep`` markets count."""


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
        Plain-data metrics (keys in :meth:`MarketLog.result`), plus ``mechanism``,
        ``episodes``, ``rounds``, ``num_envs``, ``seed`` and ``agent_kinds``.
    """
    log, about = play_log(config, agents, episodes, progress, num_envs)
    result = log.result()
    result.update(about)
    return result


def play_log(
    config: ExperimentConfig,
    agents: Mapping[str, Agent] | None = None,
    episodes: int | None = None,
    progress: bool = True,
    num_envs: int | None = None,
    recorders: Sequence[Recorder] = (),
) -> tuple[MarketLog, dict[str, Any]]:
    """:func:`play`'s episodes, unreduced.

    ``recorders`` see the run too: each is started with the vector env, then
    gets every round's infos and the end of every batch of episodes, as the
    log does (``runner.fairness`` keeps the rounds it needs this way); those
    with a ``warmup_round`` method get the warmup's rounds as well.

    Returns:
        ``(log, about)``: the :class:`MarketLog` of every episode, and the run's
        ``mechanism``, ``episodes``, ``rounds``, ``num_envs``, ``seed`` and
        ``agent_kinds``.
    """
    episodes = config.episodes if episodes is None else int(episodes)
    if episodes < 1:
        raise UserError(f"episodes must be >= 1, got {episodes}")
    num_envs = min(episodes, MAX_NUM_ENVS) if num_envs is None else int(num_envs)
    if num_envs < 1:
        raise UserError(f"num_envs must be >= 1, got {num_envs}")
    num_envs = min(num_envs, episodes)

    # agents bid absolutely (the protocol), whatever the env's ``action`` option
    env = attn_env.vector_env(num_envs, config=config.env, action="absolute")
    players = build_agents(config, env.agents, agents)
    n_buyers, rounds = env.spec.n_buyers, env.config.rounds
    seats = Seats([players[a] for a in env.agents], n_buyers)
    # the agents' own stream, apart from the env's
    rng = np.random.default_rng([config.seed, 1])
    seats.reset(num_envs, rng)
    obs, _ = env.reset(seed=config.seed)
    for r in recorders:
        r.start(env)
    if config.warmup:
        # learning agents (qlearn, zip, ...) learn first; the measured episodes
        # then start afresh in markets whose agents keep what they learned
        watch = [r.warmup_round for r in recorders if hasattr(r, "warmup_round")]
        for _ in range(config.warmup):
            obs, _, _, _, info = env.step(seats.act(obs, rng))
            seats.observe(info)
            for hook in watch:
                hook(info)
        obs, _ = env.reset()
    log = MarketLog(
        env.agents,
        n_buyers,
        env.spec.family,
        env.config.redraw,
        reserve=env.core.mechanism.reserve,
    )

    from tqdm.auto import tqdm

    mechanism = name_of(config.env.mechanism)
    bar = tqdm(
        total=episodes,
        unit="ep",
        disable=None if progress else True,
        desc=f"simulate {mechanism}",
        file=sys.stderr,
    )
    done = 0
    while done < episodes:
        for _ in range(rounds):
            obs, _, _, _, info = env.step(seats.act(obs, rng))
            seats.observe(info)
            log.add_round(info)
            for r in recorders:
                r.add_round(info)
        keep = min(num_envs, episodes - done)
        log.end_batch(keep)
        for r in recorders:
            r.end_batch(keep)
        done += keep
        bar.update(keep)
    bar.close()
    about = {
        "mechanism": mechanism,
        "episodes": episodes,
        "rounds": rounds,
        "num_envs": num_envs,
        "seed": config.seed,
        "agent_kinds": {name: _kind(config, name, agents) for name in env.agents},
    }
    return log, about


def _kind(
    config: ExperimentConfig, name: str, given: Mapping[str, Agent] | None
) -> str:
    if given and name in given:
        return type(given[name]).__name__
    return config.agent_spec(name).kind
