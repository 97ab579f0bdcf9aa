"""The detectors of :mod:`attn_env.integrity.detect` on a played run.

A :class:`DetectionRecorder` (a ``runner.simulate`` recorder) keeps the first
:data:`HISTORY` market rounds of a run, after any warmup, episode-major;
:meth:`DetectionRecorder.report` runs the detectors on them as a platform
would on its logs: the collusion index of the prices, each bidder's shill
score and the p-value of its winning more rounds than the others.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from attn_env import metrics
from attn_env.integrity.detect import (
    exposure_pvalues,
    price_benchmarks,
    shill_scores,
)
from attn_env.mechanisms import name_of
from runner.attacks import ATTACKS

__all__ = ["HISTORY", "DetectionRecorder"]

HISTORY = 5000
"Most market rounds the detectors read."
_KEYS = ("bid", "payment", "alloc", "value", "alpha", "clearing_price")
_BENCHMARKS = {
    "mean_price": "price",
    "competitive_price": "competitive",
    "collusive_price": "collusive",
}
"The report's keys for the collusion index's three means."


class DetectionRecorder:
    """Keeps the first ``limit`` market rounds of a run for the detectors."""

    def __init__(self, limit: int = HISTORY) -> None:
        self.limit = int(limit)
        self._round: list[dict[str, NDArray]] = []
        self._done: dict[str, list[NDArray]] = {k: [] for k in _KEYS}
        self._count = 0

    def start(self, env: Any) -> None:
        self.n = env.spec.n_buyers
        self.names = list(env.agents[: self.n])
        self.family = env.spec.family
        self.mechanism = name_of(env.core.mechanism)
        self.reserve = float(env.core.mechanism.reserve)

    def add_round(self, info: Mapping[str, Any]) -> None:
        if self._count < self.limit:
            self._round.append({k: np.asarray(info[k], float) for k in _KEYS})

    def end_batch(self, keep: int) -> None:
        if self._round:
            for k in _KEYS:
                stacked = np.stack([r[k] for r in self._round], axis=1)[:keep]
                self._done[k].append(stacked.reshape(-1, *stacked.shape[2:]))
            self._count += keep * len(self._round)
        self._round = []

    def report(self) -> dict[str, Any]:
        """The detectors on the kept rounds.

        Returns:
            ``rounds``; ``collusion_index``: mean clearing price against the
            competitive one (the lower end of each round's Walrasian interval;
            in slot markets the top slot's) and the collusive one (the
            reserve): 0 competitive, 1 collusive, < 0 above competitive
            (``None`` in matchings, whose mean price has no one interval),
            with its means over rounds with a sale: ``mean_price`` (the
            clearing price P), ``competitive_price`` (C) and
            ``collusive_price`` (K), so that index = (C - P) / (C - K);
            ``shill_score`` by bidder (where a shill can set prices: second
            price, GSP, VCG; share of rounds it set a winner's price from just
            under that winner's bid);
            ``exposure_pvalue`` by bidder (slot markets: one-sided p-value of
            winning more rounds than the bidders' mean).
        """
        h = {k: np.concatenate(v)[: self.limit] for k, v in self._done.items()}
        n, fam = self.n, self.family
        value, price = h["value"], h["clearing_price"]
        bv = value[:, :n]
        out: dict[str, Any] = {"rounds": int(price.size), "collusion_index": None}
        out.update(dict.fromkeys(_BENCHMARKS))
        low = None
        if fam == "two_sided":
            low = metrics.walrasian_interval(bv, costs=value[:, n:])[0]
        elif fam == "one_sided":
            low = metrics.walrasian_interval(bv, alpha=h["alpha"])[0]
        if low is not None:
            bench = price_benchmarks(price, low, self.reserve)
            out["collusion_index"] = bench["index"]
            out.update({key: bench[part] for key, part in _BENCHMARKS.items()})
        if self.mechanism in ATTACKS["shill"][0]:
            b, pay, alloc = (h[k][:, :n] for k in ("bid", "payment", "alloc"))
            scores = shill_scores(b, pay, alloc)
            out["shill_score"] = dict(zip(self.names, scores, strict=True))
        if fam != "two_sided":
            p = exposure_pvalues(h["alloc"][:, :n])
            out["exposure_pvalue"] = dict(zip(self.names, p, strict=True))
        return out
