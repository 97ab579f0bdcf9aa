"""Sponsored sources in a generated answer: the ``answer_slots`` scenario.

One market is one query of the shipped corpus and the answer a model writes
for it from ``n_segments`` context passages. Everything is read from the
shipped attention bank (``BankSettings()``, no transformer runs per market):

- the query ``q`` (uniform over the bank's queries) and a page layout; the
  answer's positions get the bank's attention ``alpha_1 >= ... >= alpha_K`` of
  that layout's ``K``-slot page (``sum alpha = 1``): the share of the answer's
  attention a passage in position k receives;
- the query's candidates (24 in the default bank) with the bank's relevance
  ``r`` in [0, 1] (logistic map of the attention the query pays each): the
  ``n_organic`` most relevant are the organic passages (what retrieval would
  cite), and ``n_ads`` sponsored passages are drawn uniformly from the rest;
- advertiser ``i``'s value per unit of answer attention ``v_i = theta_i r_i``
  with ``theta_i ~ U[0, 1]`` (a relevant mention converts better).

The organic answer fills the positions with the organic passages in order of
relevance; its quality ``Q0 = sum_k alpha_k r_org(k)``. With ads, the platform
puts organic passages into the auction as its own bidders with bid ``lambda``
(the **quality weight**) and quality ``r_j``: sponsored passage ``i`` competes
with score ``b_i r_i``, organic passage ``j`` with ``lambda r_j``. Then

- ``segment_auction`` / ``prominence_auction``: expected attention shares
  ``x`` of every passage (``attn_env/mechanisms/answer.py``);
- ``gsp`` (baseline, pay per attention): the ``K`` positions by score, ads
  paying the next score over their relevance.

Metrics per market (expected values where the rule is random, so exact):
revenue (ads' payments), advertiser welfare ``sum v_i x_i``, advertiser
utility, **answer quality** ``Q = sum_passages x r`` (attention-weighted
relevance of what the answer cites), the sponsored share of attention and the
quality cost ``Q0 - Q``. Bidders are truthful, or a **learner**: a common bid
factor ``s`` (bid ``= s v``), updated by damped best response on a grid
(``s <- s + step (f* - s)`` where ``f*`` maximises one advertiser's mean
utility on fresh markets when the others bid ``s``).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from attn_env import mechanisms
from attn_env.checks import check_int, check_one_of, check_real
from attn_env.errors import ConfigError
from attn_env.scenarios.train_config import ScenarioTrainConfig, check_train_config

__all__ = [
    "CONFIG",
    "MECHANISMS",
    "AnswerSlotsConfig",
    "Markets",
    "Source",
    "clear",
    "deviation_utilities",
    "learn_factor",
    "row_metrics",
    "rows_of",
    "simulate",
    "validate",
]

MECHANISMS = ("segment_auction", "prominence_auction", "gsp")
"Mechanisms the scenario compares (gsp: the pay-per-attention baseline)."
BIDDERS = ("truthful", "learner")


@dataclass
class AnswerSlotsConfig:
    """The ``answer_slots`` scenario (``configs/scenarios/answer_slots.yaml``)."""

    scenario: str = "answer_slots"
    "Scenario name (the registry key)."
    seed: int = 0
    "Seed of every draw."
    markets: int = 20_000
    "Markets (queries) per mechanism and quality weight; standard errors over them."
    n_segments: int = 3
    "Answer positions K (at most the bank's max_slots)."
    n_organic: int = 4
    "Organic passages retrieved per query (at least n_segments)."
    n_ads: int = 4
    "Sponsored passages (advertisers) per query."
    mechanisms: list[str] = field(default_factory=lambda: list(MECHANISMS))
    "Mechanisms to compare, of segment_auction, prominence_auction, gsp."
    beta: float = 2.0
    "Exponent of the prominence auction's share rule."
    reserve: float = 0.0
    "Reserve per unit of attention (all mechanisms)."
    quality_weights: list[float] = field(
        default_factory=lambda: [0.0, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6]
    )
    "Bids of the organic passages (the platform's quality weight lambda)."
    bidders: str = "truthful"
    "truthful, or learner (a common bid factor by damped best response)."
    learner_rounds: int = 15
    "Best-response rounds of the learner."
    learner_markets: int = 4_000
    "Fresh markets per learner round."
    learner_step: float = 0.5
    "Damping of the learner's update."
    env_markets: int = 512
    "Markets per step of the PettingZoo env (a reward is the mean over them)."
    env_steps: int = 4
    "Steps per episode of the PettingZoo env (mechanism and quality weight fixed)."
    train: ScenarioTrainConfig = field(default_factory=ScenarioTrainConfig)
    "Shared-policy PPO of the env's advertisers (``attn-market train``)."


CONFIG = AnswerSlotsConfig


def validate(c: AnswerSlotsConfig) -> AnswerSlotsConfig:
    """``c`` with every number range-checked (one-line ``ConfigError``)."""
    check_int(c.seed, "seed", 0)
    check_int(c.markets, "markets", 1, 10_000_000)
    check_int(c.n_segments, "n_segments", 1, 64)
    check_int(c.n_organic, "n_organic", c.n_segments, 1_000)
    check_int(c.n_ads, "n_ads", 1, 1_000)
    check_real(c.beta, "beta", 0.0, 64.0, above=True)
    check_real(c.reserve, "reserve", 0.0)
    check_int(c.learner_rounds, "learner_rounds", 0, 1_000)
    check_int(c.learner_markets, "learner_markets", 1, 1_000_000)
    check_real(c.learner_step, "learner_step", 0.0, 1.0, above=True)
    check_int(c.env_markets, "env_markets", 1, 1_000_000)
    check_int(c.env_steps, "env_steps", 1, 100_000)
    check_train_config(c.train, "answer_slots")
    if c.scenario != "answer_slots":
        raise ConfigError(f"scenario must be answer_slots, got {c.scenario!r}")
    bad = [m for m in c.mechanisms if m not in MECHANISMS]
    if bad or not c.mechanisms:
        raise ConfigError(
            f"mechanisms must be a non-empty list of {', '.join(MECHANISMS)}, "
            f"got {c.mechanisms!r}"
        )
    if not c.quality_weights:
        raise ConfigError("quality_weights must be a non-empty list of numbers >= 0")
    for w in c.quality_weights:
        check_real(w, "quality_weights entry", 0.0)
    check_one_of(c.bidders, BIDDERS, "bidders")
    return c


@dataclass
class Markets:
    """``M`` drawn answers: relevance, values and position attention."""

    r_org: NDArray[np.float64]  # [M, n_organic], sorted descending
    r_ad: NDArray[np.float64]  # [M, n_ads]
    value: NDArray[np.float64]  # [M, n_ads], per unit of attention
    alpha: NDArray[np.float64]  # [M, K], descending, sums to 1
    q0: NDArray[np.float64]  # [M], quality of the organic answer


class Source:
    """The shipped attention bank's relevance and alpha, opened once."""

    def __init__(self, n_segments: int) -> None:
        from attn_env.valuations.attention import AttentionSource

        src = AttentionSource(build="never")
        self.relevance = src.relevance  # [Q, C] in [0, 1]
        self.alpha = src.page_alpha(n_segments)  # [Q, P, K]
        self.n_candidates = self.relevance.shape[1]

    def draw(self, rng: np.random.Generator, m: int, c: AnswerSlotsConfig) -> Markets:
        """``m`` markets of config ``c``."""
        n_q, n_c = self.relevance.shape
        need = c.n_organic + c.n_ads
        if need > n_c:
            raise ConfigError(
                f"n_organic + n_ads must be at most {n_c} (the bank's candidates "
                f"per query), got {need}"
            )
        q = rng.integers(n_q, size=m)
        # retrieval: the n_organic most relevant candidates are the organic
        # passages; the ads are drawn uniformly from the rest
        r_all = -np.sort(-self.relevance[q], axis=1)
        r_org = r_all[:, : c.n_organic]
        rest = c.n_organic + np.argsort(rng.random((m, n_c - c.n_organic)), axis=1)
        r_ad = np.take_along_axis(r_all, rest[:, : c.n_ads], axis=1)
        alpha = self.alpha[q, rng.integers(self.alpha.shape[1], size=m)]
        value = rng.random((m, c.n_ads)) * r_ad
        q0 = (alpha * r_org[:, : c.n_segments]).sum(axis=1)
        return Markets(r_org, r_ad, value, alpha, q0)


def clear(
    name: str, mk: Markets, bids: NDArray[np.float64], lam: float, c: AnswerSlotsConfig
) -> dict[str, NDArray[np.float64]]:
    """Expected attention ``x [M, n_ads]``, payments and answer quality ``[M]``.

    The platform bids ``lam`` for its organic content: in ``gsp`` each organic
    passage is a bidder of quality ``r_j`` (positions go by score); in the
    share rules the organic answer is one bidder of quality ``Q0`` whose share
    is filled as the organic answer is (so its quality per unit is ``Q0``).
    """
    m, n_ads = bids.shape
    lam_col = np.full((m, 1), float(lam))
    if name == "gsp":
        n_org = mk.r_org.shape[1]
        all_bids = np.concatenate([bids, np.repeat(lam_col, n_org, axis=1)], axis=1)
        qual = np.maximum(np.concatenate([mk.r_ad, mk.r_org], axis=1), 1e-9)
        mech = mechanisms.make("gsp", reserve=c.reserve, seed=0)
        out = mech.clear(all_bids, mk.alpha, qual, rng=np.random.default_rng(0))
        x, pay = out.alloc, out.pay
        quality = (x * qual).sum(axis=1)
    else:
        all_bids = np.concatenate([bids, lam_col], axis=1)
        qual = np.maximum(np.concatenate([mk.r_ad, mk.q0[:, None]], axis=1), 1e-9)
        params = {"beta": c.beta} if name == "prominence_auction" else {}
        mech = mechanisms.make(name, reserve=c.reserve, **params)
        x, pay, _ = mech.expected(all_bids, mk.alpha, qual)
        # where no one takes part (lam = 0 and no ad), the answer stays organic
        none = x.sum(axis=1) <= 0
        if none.any():
            x = x.copy()
            x[none, n_ads] = mk.alpha[none].sum(axis=1)
        quality = (x * qual).sum(axis=1)
    return {
        "x": x[:, :n_ads],
        "pay": pay[:, :n_ads],
        "quality": quality,
        "organic_share": x[:, n_ads:].sum(axis=1),
    }


def deviation_utilities(
    name: str,
    mk: Markets,
    bids: NDArray[np.float64],
    factors: Any,
    lam: float,
    c: AnswerSlotsConfig,
    who: int = 0,
) -> NDArray[np.float64]:
    """Advertiser ``who``'s utility per market ``[len(factors), M]`` when it bids
    ``f v`` for each factor ``f`` and the others keep ``bids [M, n_ads]``."""
    out = []
    for f in factors:
        dev = bids.copy()
        dev[:, who] = f * mk.value[:, who]
        res = clear(name, mk, dev, lam, c)
        out.append(mk.value[:, who] * res["x"][:, who] - res["pay"][:, who])
    return np.array(out)


LEARNER_GRID = np.round(np.arange(0.2, 1.41, 0.05), 10)
"Bid factors the learner's best response searches."


def learn_factor(
    src: Source, name: str, lam: float, c: AnswerSlotsConfig, rng: np.random.Generator
) -> tuple[float, list[float]]:
    """The learners' common bid factor after ``learner_rounds`` damped best
    responses (and its path)."""
    grid = LEARNER_GRID
    s, path = 1.0, [1.0]
    for _ in range(c.learner_rounds):
        mk = src.draw(rng, c.learner_markets, c)
        u = deviation_utilities(name, mk, s * mk.value, (s, *grid), lam, c)
        utils = [float(row.mean()) for row in u]
        k = int(np.argmax(utils[1:]))
        # move only on a strict gain: an indifferent learner keeps its factor
        best = float(grid[k]) if utils[1 + k] > utils[0] + 1e-12 else s
        s = s + c.learner_step * (best - s)
        path.append(s)
    return s, path


def row_metrics(
    name: str, mk: Markets, bids: NDArray[np.float64], lam: float, c: AnswerSlotsConfig
) -> dict[str, NDArray[np.float64]]:
    """Per-market measures ``[M]`` of ``bids`` in mechanism ``name`` at ``lam``:
    revenue, advertiser welfare and utility, quality, quality cost, sponsored share."""
    res = clear(name, mk, bids, lam, c)
    welfare = (mk.value * res["x"]).sum(axis=1)
    revenue = res["pay"].sum(axis=1)
    return {
        "revenue": revenue,
        "advertiser_welfare": welfare,
        "advertiser_utility": welfare - revenue,
        "quality": res["quality"],
        "quality_cost": mk.q0 - res["quality"],
        # what the ads take: attention a reserve leaves unsold is neither
        "sponsored_share": res["x"].sum(axis=1),
    }


def _mean_se(x: NDArray[np.float64]) -> dict[str, float]:
    return {"mean": float(x.mean()), "se": float(x.std(ddof=1) / np.sqrt(x.size))}


def rows_of(
    c: AnswerSlotsConfig, src: Source, mk: Markets
) -> Iterator[
    tuple[dict[str, Any], dict[str, NDArray[np.float64]], list[float] | None]
]:
    """Each mechanism x quality weight of ``c`` on markets ``mk``: the row's head
    (mechanism, quality weight, bid factor), its per-market measures
    (:func:`row_metrics`) and the learner's path (``None`` for truthful bidders)."""
    k = 0
    for name in c.mechanisms:
        for lam in c.quality_weights:
            factor, path = 1.0, None
            if c.bidders == "learner":
                lrng = np.random.default_rng([c.seed, k])
                factor, path = learn_factor(src, name, float(lam), c, lrng)
            head = {
                "mechanism": name,
                "quality_weight": float(lam),
                "bid_factor": float(factor),
            }
            yield head, row_metrics(name, mk, factor * mk.value, float(lam), c), path
            k += 1


def simulate(config: AnswerSlotsConfig, progress: bool = False) -> dict[str, Any]:
    """Run the scenario: one row per mechanism and quality weight (JSON-able).

    Returns:
        ``{"config", "rows", "organic_quality", "seconds"}``; each row has the
        mechanism, ``quality_weight``, ``bid_factor`` (1 for truthful bidders)
        and ``{mean, se}`` of ``revenue``, ``advertiser_welfare``,
        ``advertiser_utility``, ``quality``, ``quality_cost``,
        ``sponsored_share`` per market.
    """
    c = validate(config)
    start = time.perf_counter()
    src = Source(c.n_segments)
    mk = src.draw(np.random.default_rng(c.seed), c.markets, c)
    rows = []
    for head, per_market, path in rows_of(c, src, mk):
        row = {**head, **{k: _mean_se(v) for k, v in per_market.items()}}
        if path is not None:
            row["bid_factor_path"] = [float(p) for p in path]
        rows.append(row)
        if progress:
            print(
                f"{row['mechanism']:>18} lambda={row['quality_weight']:<5g} "
                f"revenue={row['revenue']['mean']:.4f} "
                f"quality={row['quality']['mean']:.4f}"
            )
    return {
        "config": dataclasses.asdict(c),
        "organic_quality": _mean_se(mk.q0),
        "rows": rows,
        "seconds": time.perf_counter() - start,
    }
