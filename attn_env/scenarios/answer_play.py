"""Episodes of the ``answer_slots`` env played by a bidder, paired over seeds,
with the best-response gain of one deviating advertiser at every step.

A bidder maps observations ``(n_ads, OBS_SIZE)`` to actions ``(n_ads, 1)`` (the
bid factor minus one, :mod:`attn_env.scenarios.answer_env`): a trained policy,
truthful bidding (:func:`constant`) or the scenario's learner's factor. The
env's markets depend only on the seed, so the same seeds give every bidder the
same markets and their per-episode measures can be differenced.

The **best-response gain** of a step: advertiser 0's largest mean utility over
the factors ``DEVIATIONS`` (and its own), the others' bids held, minus its
utility as played (>= 0; 0 at an equilibrium of common factors).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import NDArray

from attn_env.scenarios.answer_env import AnswerSlotsEnv
from attn_env.scenarios.answer_slots import AnswerSlotsConfig, deviation_utilities

__all__ = ["DEVIATIONS", "MEASURES", "Bidder", "constant", "contexts", "play"]

Bidder = Callable[[NDArray[np.float32]], NDArray[np.float32]]
"Observations ``(n, OBS_SIZE)`` -> actions ``(n, 1)`` in [-1, 1]."

DEVIATIONS = np.round(np.arange(0.0, 2.001, 0.1), 10)
"Bid factors a deviating advertiser tries (0 .. 2 in steps of 0.1)."

MEASURES = (
    "revenue",
    "advertiser_welfare",
    "advertiser_utility",
    "quality",
    "quality_cost",
    "sponsored_share",
    "bid_factor",
)
"Per-market means the env records at every step (``env.measures``)."


def constant(factor: float) -> Bidder:
    """Every advertiser bids ``factor`` times its value (1: truthful)."""
    if not 0.0 <= factor <= 2.0:
        raise ValueError(f"a bid factor must be in [0, 2], got {factor!r}")

    def act(obs: NDArray[np.float32]) -> NDArray[np.float32]:
        return np.full((len(obs), 1), factor - 1.0, dtype=np.float32)

    return act


def contexts(c: AnswerSlotsConfig) -> list[tuple[str, float]]:
    """Every (mechanism, quality weight) of config ``c``, in its order."""
    return [(m, float(w)) for m in c.mechanisms for w in c.quality_weights]


def play(
    env: AnswerSlotsEnv,
    bidder: Bidder,
    mechanism: str,
    quality_weight: float,
    seeds: Sequence[int],
    best_response: bool = False,
) -> dict[str, NDArray[np.float64]]:
    """One episode per seed with every advertiser bidding by ``bidder``.

    Returns:
        ``{measure: [episodes]}``: each of :data:`MEASURES` averaged over the
        episode's steps, and ``br_gain`` (the step's best-response gain, averaged)
        when ``best_response``.
    """
    c = env.config
    out: dict[str, list[float]] = {k: [] for k in MEASURES}
    if best_response:
        out["br_gain"] = []
    options = {"mechanism": mechanism, "quality_weight": quality_weight}
    for seed in seeds:
        obs, _ = env.reset(seed=int(seed), options=options)
        sums = dict.fromkeys(out, 0.0)
        steps = 0
        while env.agents:
            names = env.agents
            acts = np.asarray(bidder(np.stack([obs[a] for a in names])))
            acts = acts.reshape(len(names), 1)
            obs, *_ = env.step({a: acts[i] for i, a in enumerate(names)})
            for k in MEASURES:
                sums[k] += env.measures[k]
            if best_response:
                mk, bids = env.markets, env.bids
                factors = (1.0 + float(acts[0, 0]), *DEVIATIONS)
                u = deviation_utilities(
                    mechanism, mk, bids, factors, quality_weight, c
                ).mean(axis=1)
                sums["br_gain"] += float(u.max() - u[0])
            steps += 1
        for k in out:
            out[k].append(sums[k] / steps)
    return {k: np.array(v) for k, v in out.items()}
